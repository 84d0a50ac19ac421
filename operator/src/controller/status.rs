//! The status a reconcile writes: a pure function of what it found. Conditions keep their
//! `lastTransitionTime` unless their status changes; per-item arrays say which item failed, why.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::database::{PORT, service_host};
use super::instances::Instances;
use super::nodes::Nodes;
use crate::api::{
    DataWarehouseStack, DataWarehouseStackStatus, DistributedStatus, Endpoint, ItemStatus, NodeStatus, PartitionStatus,
    RebalanceStatus, RefreshStatus, ScheduleStatus, SourceStatus,
};
use crate::render::superuser_secret_name;
use crate::sql::apply::{ApplyReport, ItemOutcome, ItemState};
use crate::sql::plan::{ItemKind, WAITING_FOR_SECRET};
use crate::sql::status::WarehouseStatus;
use crate::validate::{ValidatedStack, is_stale};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Provisioning,
    Ready,
    Degraded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Degraded => "Degraded",
            Phase::Failed => "Failed",
        }
    }
}

/// What a reconcile found.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The spec failed validation (every error, with its field).
    Invalid(String),
    /// Objects applied; the pod is not ready yet.
    Provisioning,
    /// The pod is ready but the database does not answer.
    DatabaseUnavailable(String),
    /// The engine could not start (e.g. pg_cron not loaded for the database).
    EngineFailed(String),
    /// A Kubernetes API call failed (one line: message, reason, code).
    ApiFailed(String),
    /// The engine ran; `nodes`: what the Citus nodes' converge found, for a distributed stack;
    /// `refresh_now_started`: the refreshes the annotation asks for were started.
    Converged {
        report: &'a ApplyReport,
        nodes: Option<&'a Nodes>,
        warehouse: &'a WarehouseStatus,
        refresh_now_started: bool,
    },
}

/// Why the nodes are not as declared, if they are not.
fn nodes_trouble(nodes: Option<&Nodes>) -> Option<(&'static str, String)> {
    match nodes? {
        Nodes::WaitingForWorkers { ready, wanted } => {
            Some(("WorkersNotReady", format!("{ready}/{wanted} worker pod(s) ready")))
        }
        Nodes::Failed(e) => Some(("NodesFailed", format!("Citus nodes: {e}"))),
        Nodes::Converged(report) if !report.problems.is_empty() => Some(("TablesFailed", report.problems.join("; "))),
        Nodes::Converged(report) if !report.draining_after_rebalance.is_empty() => Some((
            "DrainWaiting",
            format!("removing {} once the running rebalance finishes", report.draining_after_rebalance.join(", ")),
        )),
        Nodes::Converged(_) => None,
    }
}

impl Outcome<'_> {
    pub fn phase(&self) -> Phase {
        match self {
            Outcome::Invalid(_) => Phase::Failed,
            Outcome::Provisioning => Phase::Provisioning,
            Outcome::DatabaseUnavailable(_) | Outcome::EngineFailed(_) | Outcome::ApiFailed(_) => Phase::Degraded,
            Outcome::Converged { report, .. } if report.failed().next().is_some() => Phase::Degraded,
            Outcome::Converged { nodes: Some(Nodes::WaitingForWorkers { .. }), .. } => Phase::Provisioning,
            Outcome::Converged { nodes, .. } if nodes_trouble(*nodes).is_some() => Phase::Degraded,
            Outcome::Converged { .. } => Phase::Ready,
        }
    }

    /// The one-line reason shown in events and the Ready condition.
    pub fn message(&self) -> String {
        match self {
            Outcome::Invalid(errors) => format!("invalid spec: {errors}"),
            Outcome::Provisioning => "waiting for the Postgres pod to become ready".into(),
            Outcome::DatabaseUnavailable(e) => format!("the database does not answer: {e}"),
            Outcome::EngineFailed(e) => e.clone(),
            Outcome::ApiFailed(e) => format!("Kubernetes API: {e}"),
            Outcome::Converged { report, nodes, .. } => {
                let mut failed: Vec<String> = report
                    .failed()
                    .map(|i| format!("{}: {}", i.item.label(&i.name), i.message.as_deref().unwrap_or("")))
                    .collect();
                failed.extend(nodes_trouble(*nodes).map(|(_, message)| message));
                if failed.is_empty() {
                    format!("{} item(s) converged, {} statement(s) applied", report.items.len(), report.statements)
                } else {
                    format!("{} item(s) failed: {}", failed.len(), failed.join("; "))
                }
            }
        }
    }
}

fn waits_for_secret(item: &ItemOutcome) -> bool {
    item.message.as_deref().is_some_and(|m| m.starts_with(WAITING_FOR_SECRET))
}

/// `(type, true/false/unknown, reason)` of the three conditions.
fn condition_states(outcome: &Outcome) -> [(&'static str, Option<bool>, &'static str); 3] {
    let (database, converged, reason) = match outcome {
        Outcome::Invalid(_) => (None, Some(false), "InvalidSpec"),
        Outcome::Provisioning => (Some(false), None, "PodNotReady"),
        Outcome::DatabaseUnavailable(_) => (Some(false), None, "ConnectFailed"),
        Outcome::EngineFailed(_) => (Some(true), Some(false), "EngineFailed"),
        Outcome::ApiFailed(_) => (None, None, "KubernetesAPIError"),
        Outcome::Converged { report, .. } if report.failed().any(waits_for_secret) => {
            (Some(true), Some(false), "MissingSecret")
        }
        Outcome::Converged { report, .. } if report.failed().next().is_some() => {
            (Some(true), Some(false), "ItemsFailed")
        }
        Outcome::Converged { nodes, .. } => match nodes_trouble(*nodes) {
            Some((reason, _)) => (Some(true), Some(false), reason),
            None => (Some(true), Some(true), "Converged"),
        },
    };
    let ready = database == Some(true) && converged == Some(true);
    [
        ("Ready", Some(ready), reason),
        ("DatabaseAvailable", database, if database == Some(true) { "Connected" } else { reason }),
        ("Converged", converged, reason),
    ]
}

fn set_condition(
    previous: &[Condition],
    type_: &str,
    state: Option<bool>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = match state {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

fn item(outcome: Option<&ItemOutcome>, name: &str) -> ItemStatus {
    ItemStatus {
        name: name.to_string(),
        state: outcome.map(|o| format!("{:?}", o.state)).unwrap_or_else(|| "Pending".into()),
        message: outcome.and_then(|o| o.message.clone()),
    }
}

/// Set to a new value (any), the stack's refreshes run once.
pub const REFRESH_NOW: &str = "pgwarehouse.dev/refresh-now";

/// Whether the stack's `bootstrap.restore` completed: its pod then runs without the restore
/// step, and the source's repository (another stack's claim) is no longer mounted.
pub fn restore_completed(stack: &DataWarehouseStack) -> bool {
    stack.status.as_ref().is_some_and(|s| s.restored == Some(true))
}

/// The annotation's value when it asks for a run not yet made.
pub fn refresh_now_asked(stack: &DataWarehouseStack) -> Option<&String> {
    let handled = stack.status.as_ref().and_then(|s| s.refresh_now_handled.as_ref());
    stack.annotations().get(REFRESH_NOW).filter(|asked| Some(*asked) != handled)
}

/// The new status from the previous one and what the reconcile found.
pub fn build(
    stack: &DataWarehouseStack,
    validated: Option<&ValidatedStack>,
    outcome: &Outcome,
    instances: Option<&Instances>,
    now: &Time,
) -> DataWarehouseStackStatus {
    let clock = chrono::DateTime::from_timestamp(now.0.as_second(), now.0.subsec_nanosecond().unsigned_abs())
        .unwrap_or_default();
    let previous = stack.status.clone().unwrap_or_default();
    let previous_conditions = previous.conditions.clone();
    let generation = stack.metadata.generation;
    let message = outcome.message();
    let conditions = condition_states(outcome)
        .iter()
        .map(|(type_, state, reason)| {
            set_condition(&previous.conditions, type_, *state, reason, &message, generation, now)
        })
        .collect();
    let mut status = DataWarehouseStackStatus {
        observed_generation: generation,
        phase: Some(outcome.phase().as_str().into()),
        conditions,
        endpoint: validated
            .map(|v| Endpoint {
                host: service_host(v),
                port: PORT.into(),
                database: v.database.clone(),
                secret_name: superuser_secret_name(v),
            })
            .or(previous.endpoint.clone()),
        // Item details stay as last seen until the engine runs again.
        ..previous
    };
    if let (Outcome::Converged { report, nodes, warehouse, refresh_now_started }, Some(v)) = (outcome, validated) {
        fill_items(&mut status, v, report, warehouse, clock);
        if let Some(nodes) = nodes {
            status.distributed = Some(distributed_status(v, nodes, warehouse));
            let (ok, reason, message) = match (nodes_trouble(Some(nodes)), &warehouse.rebalance) {
                (Some((reason, message)), _) => (false, reason, message),
                (None, Some(r)) if r.in_progress() => (
                    true,
                    "Rebalancing",
                    format!("moving shards to new workers: {}/{} moves done", r.moves_done, r.moves),
                ),
                (None, _) => (true, "Converged", distributed_summary(warehouse)),
            };
            let condition =
                set_condition(&previous_conditions, "Distributed", Some(ok), reason, &message, generation, now);
            status.conditions.push(condition);
        }
        if let (Some(backup), Some(state)) = (&v.backup, &warehouse.backup) {
            let repository = crate::backup::config::describe(&backup.repository, &crate::render::backup_paths(v));
            status.backup = Some(crate::backup::status::backup_status(repository, state));
            let (ok, reason, message) = crate::backup::status::backed_up(backup, state, clock);
            let condition =
                set_condition(&previous_conditions, "BackedUp", Some(ok), reason, &message, generation, now);
            status.conditions.push(condition);
        }
        if v.restore.is_some() {
            status.restored = Some(true);
        }
        // The annotation's value is handled once a reconcile started the refreshes it asked for.
        if let Some(asked) = stack.annotations().get(REFRESH_NOW).filter(|_| *refresh_now_started) {
            status.refresh_now_handled = Some(asked.clone());
        }
    }
    if validated.is_some_and(|v| v.spec.distributed.is_none()) {
        status.distributed = None;
    }
    if let Some(instances) = instances {
        status.primary = instances.primary().map(String::from);
        status.ready_instances = Some(instances.ready());
        status.instances = instances.members.clone();
        let (ok, reason, message) = instances.condition();
        let condition =
            set_condition(&previous_conditions, "HighlyAvailable", Some(ok), reason, &message, generation, now);
        status.conditions.push(condition);
    } else if validated.is_some_and(|v| !v.highly_available()) {
        (status.primary, status.ready_instances, status.instances) = (None, None, Vec::new());
    }
    // Until the database answers again, the last word on backups and on the nodes stands.
    keep_condition(&mut status, &previous_conditions, "BackedUp", validated.is_some_and(|v| v.backup.is_some()));
    let distributed = validated.is_some_and(|v| v.spec.distributed.is_some());
    keep_condition(&mut status, &previous_conditions, "Distributed", distributed);
    let highly_available = validated.is_some_and(|v| v.highly_available());
    keep_condition(&mut status, &previous_conditions, "HighlyAvailable", highly_available);
    status
}

/// Carries the previous condition `type_` over when this reconcile did not set it and the spec
/// still asks for what it reports.
fn keep_condition(status: &mut DataWarehouseStackStatus, previous: &[Condition], type_: &str, wanted: bool) {
    if wanted
        && !status.conditions.iter().any(|c| c.type_ == type_)
        && let Some(kept) = previous.iter().find(|c| c.type_ == type_)
    {
        status.conditions.push(kept.clone());
    }
}

/// The nodes as the coordinator lists them, workers ready out of wanted, the latest rebalance.
fn distributed_status(stack: &ValidatedStack, nodes: &Nodes, warehouse: &WarehouseStatus) -> DistributedStatus {
    let active_workers = warehouse.nodes.iter().filter(|n| !n.coordinator && n.active).count();
    DistributedStatus {
        ready_workers: format!("{active_workers}/{}", crate::render::wanted_workers(stack)),
        nodes: warehouse
            .nodes
            .iter()
            .map(|n| NodeStatus {
                name: n.node.clone(),
                role: if n.coordinator { "coordinator" } else { "worker" }.into(),
                active: n.active,
                shards: n.shards,
                bytes: n.bytes,
            })
            .collect(),
        rebalance: warehouse.rebalance.as_ref().map(|r| RebalanceStatus {
            state: r.state.clone(),
            started: r.started.map(|t| t.to_rfc3339()),
            finished: r.finished.map(|t| t.to_rfc3339()),
            moves_done: r.moves_done,
            moves: r.moves,
        }),
        draining: match nodes {
            Nodes::Converged(report) => report.draining_after_rebalance.clone(),
            _ => Vec::new(),
        },
    }
}

fn distributed_summary(warehouse: &WarehouseStatus) -> String {
    let workers: Vec<_> = warehouse.nodes.iter().filter(|n| !n.coordinator).collect();
    let shards: i64 = workers.iter().map(|n| n.shards).sum();
    format!("{} worker(s), {shards} shard placement(s) on them", workers.len())
}

fn fill_items(
    status: &mut DataWarehouseStackStatus,
    stack: &ValidatedStack,
    report: &ApplyReport,
    warehouse: &WarehouseStatus,
    now: chrono::DateTime<chrono::Utc>,
) {
    let find = |kind: ItemKind, name: &str| report.items.iter().find(|i| i.item == kind && i.name == name);
    status.sources = stack
        .spec
        .sources
        .iter()
        .map(|s| SourceStatus {
            item: item(find(ItemKind::Source, &s.name), &s.name),
            foreign_tables: warehouse.sources.iter().find(|w| w.name == s.name).map(|w| w.tables).unwrap_or(0),
        })
        .collect();
    status.ready_sources = Some(format!(
        "{}/{}",
        status.sources.iter().filter(|s| s.item.state != format!("{:?}", ItemState::Failed)).count(),
        status.sources.len()
    ));
    status.schedules = stack
        .spec
        .schedules
        .iter()
        .map(|s| {
            let job = warehouse.jobs.iter().find(|j| j.name == s.name);
            ScheduleStatus {
                item: item(find(ItemKind::Schedule, &s.name), &s.name),
                job_id: job.map(|j| j.id),
                last_run_start: job.and_then(|j| j.last_start).map(|t| t.to_rfc3339()),
                last_run_status: job.and_then(|j| j.last_status.clone()),
                last_run_message: job.and_then(|j| j.last_message.clone()),
            }
        })
        .collect();
    status.active_jobs = Some(warehouse.jobs.iter().filter(|j| j.active).count() as i32);
    status.partitions = stack
        .partitions
        .iter()
        .map(|p| {
            let table = format!("{}.{}", p.schema, p.table);
            let found = warehouse.partitions.iter().find(|w| w.table == table);
            PartitionStatus {
                item: item(find(ItemKind::Partition, &table), &table),
                partitions: found.map(|f| f.partitions).unwrap_or(0),
                oldest: found.and_then(|f| f.oldest.clone()),
                newest: found.and_then(|f| f.newest.clone()),
                columnar_partitions: found.map_or(0, |f| f.columnar),
                columnar_bytes: found.map_or(0, |f| f.columnar_bytes),
                heap_bytes: found.map_or(0, |f| f.heap_bytes),
            }
        })
        .collect();
    status.migrations =
        stack.spec.migrations.iter().map(|m| item(find(ItemKind::Migration, &m.name), &m.name)).collect();
    status.refreshes = stack
        .refreshes
        .iter()
        .map(|r| {
            let run = warehouse.refreshes.iter().find(|w| w.name == r.spec.name);
            let last_success = run.and_then(|w| w.last_success);
            RefreshStatus {
                item: item(find(ItemKind::Refresh, &r.spec.name), &r.spec.name),
                last_run_state: run.and_then(|w| w.state.clone()),
                last_run_start: run.and_then(|w| w.last_start).map(|t| t.to_rfc3339()),
                last_run_duration_ms: run.and_then(|w| w.duration_ms),
                rows_inserted: run.and_then(|w| w.inserted),
                rows_updated: run.and_then(|w| w.updated),
                rows_deleted: run.and_then(|w| w.deleted),
                high_water_mark: run.and_then(|w| w.high_water.clone()),
                last_success: last_success.map(|t| t.to_rfc3339()),
                last_error: run.and_then(|w| w.error.clone()),
                stale: is_stale(&r.spec.schedule, last_success, now),
            }
        })
        .collect();
    let failed = format!("{:?}", ItemState::Failed);
    let ready = status
        .refreshes
        .iter()
        .filter(|r| r.item.state != failed && r.last_run_state.as_deref() != Some("failed") && !r.stale)
        .count();
    status.ready_refreshes = (!status.refreshes.is_empty()).then(|| format!("{ready}/{}", status.refreshes.len()));
}

#[cfg(test)]
mod tests;
