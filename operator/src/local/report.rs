//! The report of a local warehouse, filled from its catalogs.

use chrono::Utc;

use super::{Local, PASSWORD_FILE};
use crate::report::{self, JobLine, PartitionLine, PartitionStorage, RefreshLine, SourceLine, StackReport};
use crate::sql::status::WarehouseStatus;
use crate::validate::{ValidatedStack, is_stale, next_run};

pub fn local_report(stack: &ValidatedStack, local: &Local, status: &WarehouseStatus) -> StackReport {
    let now = Utc::now();
    StackReport {
        name: stack.name.clone(),
        url: local.url("postgres", &local.database),
        password: local.cluster.dir.join(PASSWORD_FILE).display().to_string(),
        sources: status
            .sources
            .iter()
            .map(|s| SourceLine {
                name: s.name.clone(),
                wrapper: s.wrapper.clone(),
                foreign_tables: s.tables,
                failure: None,
            })
            .collect(),
        jobs: status
            .jobs
            .iter()
            .map(|j| JobLine {
                name: j.name.clone(),
                schedule: j.schedule.clone(),
                active: j.active,
                last_status: j.last_status.clone(),
                last_start: j.last_start,
                next_run: next_run(&j.schedule, now),
            })
            .collect(),
        partitions: status
            .partitions
            .iter()
            .map(|p| PartitionLine {
                table: p.table.clone(),
                partitions: p.partitions,
                oldest: p.oldest.clone(),
                newest: p.newest.clone(),
                retention: p.retention.clone(),
                storage: Some(PartitionStorage {
                    columnar_partitions: p.columnar,
                    columnar_bytes: p.columnar_bytes,
                    heap_bytes: p.heap_bytes,
                }),
            })
            .collect(),
        refreshes: stack
            .refreshes
            .iter()
            .map(|r| {
                let run = status.refreshes.iter().find(|w| w.name == r.spec.name);
                RefreshLine {
                    name: r.spec.name.clone(),
                    last_state: run.and_then(|w| w.state.clone()),
                    last_start: run.and_then(|w| w.last_start),
                    duration_ms: run.and_then(|w| w.duration_ms),
                    rows: run.and_then(|w| Some((w.inserted?, w.updated?, w.deleted?))),
                    high_water: run.and_then(|w| w.high_water.clone()),
                    last_success: run.and_then(|w| w.last_success),
                    stale: is_stale(&r.spec.schedule, run.and_then(|w| w.last_success), now),
                    error: run.and_then(|w| w.error.clone()),
                }
            })
            .collect(),
        nodes: status.nodes.clone(),
        instances: Vec::new(),
        logins: report::logins(&stack.spec.roles, &format!("127.0.0.1:{}", local.port), &stack.database),
        ..StackReport::default()
    }
}
