//! The report of a stack in a cluster, read from the stack's own status: no database
//! connection, no pods, no exec — the same `get` permission `kubectl get dws` needs.

use chrono::{DateTime, Utc};
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::{ConditionLine, JobLine, PartitionLine, PartitionStorage, RefreshLine, SourceLine, StackReport, logins};
use crate::api::DataWarehouseStack;
use crate::sql::status::NodeStatus;
use crate::template;
use crate::validate::{DEFAULT_DATABASE, next_run};

pub async fn fetch_cluster_report(client: &Client, namespace: &str, name: &str) -> Result<StackReport, kube::Error> {
    let stack = Api::<DataWarehouseStack>::namespaced(client.clone(), namespace).get(name).await?;
    Ok(cluster_report(&stack, Utc::now()))
}

pub fn cluster_report(stack: &DataWarehouseStack, now: DateTime<Utc>) -> StackReport {
    // The template fills in what the status does not say (wrappers, schedules, retention).
    let resolved = template::resolve(stack).unwrap_or_else(|_| stack.clone());
    let spec = &resolved.spec;
    let status = stack.status.clone().unwrap_or_default();
    let namespace = stack.namespace().unwrap_or_else(|| "default".into());
    let database = spec.postgres.database.clone().unwrap_or_else(|| DEFAULT_DATABASE.into());
    let (url, password, host_port) = match &status.endpoint {
        Some(e) => (
            format!("postgres://postgres@{}:{}/{}", e.host, e.port, e.database),
            format!("Secret {namespace}/{}, key password", e.secret_name),
            format!("{}:{}", e.host, e.port),
        ),
        None => ("(not provisioned yet)".into(), "-".into(), "-".into()),
    };
    let phase = status.phase.clone().map(|phase| match (status.observed_generation, stack.metadata.generation) {
        (Some(seen), Some(current)) if seen < current => {
            format!("{phase} (generation {current} not yet observed; this is generation {seen})")
        }
        _ => phase,
    });
    StackReport {
        name: stack.name_any(),
        namespace: Some(namespace),
        backup: status.backup.clone(),
        url,
        password,
        phase: phase.or(Some("Pending (the operator has not reported yet)".into())),
        conditions: status
            .conditions
            .iter()
            .map(|c| ConditionLine {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
        sources: status
            .sources
            .iter()
            .map(|s| SourceLine {
                name: s.item.name.clone(),
                wrapper: spec
                    .sources
                    .iter()
                    .find(|d| d.name == s.item.name)
                    .map(|d| d.wrapper.clone())
                    .unwrap_or_default(),
                foreign_tables: s.foreign_tables,
                failure: (s.item.state == "Failed").then(|| s.item.message.clone().unwrap_or_default()),
            })
            .collect(),
        jobs: status
            .schedules
            .iter()
            .map(|s| {
                let declared = spec.schedules.iter().find(|d| d.name == s.item.name);
                let schedule = declared.map(|d| d.schedule.clone()).unwrap_or_default();
                JobLine {
                    name: s.item.name.clone(),
                    next_run: next_run(&schedule, now),
                    schedule,
                    active: declared.and_then(|d| d.active).unwrap_or(true),
                    last_status: s.last_run_status.clone(),
                    last_start: s
                        .last_run_start
                        .as_deref()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(Into::into),
                }
            })
            .collect(),
        partitions: status
            .partitions
            .iter()
            .map(|p| PartitionLine {
                table: p.item.name.clone(),
                partitions: p.partitions,
                oldest: p.oldest.clone(),
                newest: p.newest.clone(),
                retention: spec
                    .partitions
                    .iter()
                    .find(|d| d.table == p.item.name || format!("public.{}", d.table) == p.item.name)
                    .and_then(|d| d.retention.clone()),
                // An operator before these figures reported none.
                storage: (p.columnar_bytes + p.heap_bytes > 0).then_some(PartitionStorage {
                    columnar_partitions: p.columnar_partitions,
                    columnar_bytes: p.columnar_bytes,
                    heap_bytes: p.heap_bytes,
                }),
            })
            .collect(),
        refreshes: status
            .refreshes
            .iter()
            .map(|r| {
                let time = |t: &Option<String>| {
                    t.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(Into::into)
                };
                RefreshLine {
                    name: r.item.name.clone(),
                    last_state: r.last_run_state.clone(),
                    last_start: time(&r.last_run_start),
                    duration_ms: r.last_run_duration_ms,
                    rows: r.rows_inserted.zip(r.rows_updated).zip(r.rows_deleted).map(|((i, u), d)| (i, u, d)),
                    high_water: r.high_water_mark.clone(),
                    last_success: time(&r.last_success),
                    stale: r.stale,
                    error: r
                        .last_error
                        .clone()
                        .or_else(|| (r.item.state == "Failed").then(|| r.item.message.clone()).flatten()),
                }
            })
            .collect(),
        nodes: status
            .distributed
            .iter()
            .flat_map(|d| &d.nodes)
            .map(|n| NodeStatus {
                node: n.name.clone(),
                coordinator: n.role == "coordinator",
                active: n.active,
                shards: n.shards,
                bytes: n.bytes,
            })
            .collect(),
        instances: status.instances.clone(),
        logins: logins(&spec.roles, &host_port, &database),
    }
}

#[cfg(test)]
mod tests;
