//! The report of a local warehouse, filled from its catalogs.

use chrono::Utc;

use super::{Local, PASSWORD_FILE};
use crate::report::{self, JobLine, PartitionLine, SourceLine, StackReport};
use crate::sql::status::WarehouseStatus;
use crate::validate::{ValidatedStack, next_run};

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
            })
            .collect(),
        logins: report::logins(&stack.spec.roles, &format!("127.0.0.1:{}", local.port), &stack.database),
        ..StackReport::default()
    }
}
