//! pg_cron jobs: scheduled by name, updated in place, re-created when unscheduled by hand, and
//! unscheduled when removed from the spec (ledger-owned jobs only).

use serde_json::json;

use super::{Action, ItemKind, Planner, Unit};
use crate::sql::columnar;
use crate::sql::ledger::LedgerOp;
use crate::sql::observe::Observed;
use crate::sql::quote::{Sql, ident};
use crate::validate::Schedule;

pub const PARTMAN_MAINTENANCE_JOB: &str = "pgwarehouse-partman-maintenance";
/// Converts old partitions to columnar, a quarter past each hour: after pg_partman's hourly run.
pub const COLUMNAR_JOB: &str = "pgwarehouse-columnar";

pub(super) struct DesiredJob {
    pub name: String,
    pub schedule: String,
    pub command: String,
    pub active: bool,
    pub seconds: bool,
}

/// Where pg_partman lives (or will, once its extension unit runs).
pub(super) fn partman_schema(planner: &Planner) -> String {
    planner
        .observed
        .extension("pg_partman")
        .map(|e| e.schema.clone())
        .or_else(|| planner.stack.extensions.iter().find(|e| e.name == "pg_partman").and_then(|e| e.schema.clone()))
        .unwrap_or_else(|| "public".to_string())
}

fn desired_jobs(planner: &Planner) -> Vec<DesiredJob> {
    let mut jobs: Vec<DesiredJob> = planner
        .stack
        .schedules
        .iter()
        .map(|s| DesiredJob {
            name: s.spec.name.clone(),
            schedule: s.spec.schedule.trim().to_string(),
            command: s.spec.command.clone(),
            active: s.spec.active.unwrap_or(true),
            seconds: matches!(s.schedule, Schedule::Seconds(_)),
        })
        .collect();
    let bgw = planner.observed.preload_libraries.split(',').any(|l| l.trim() == "pg_partman_bgw");
    if !planner.stack.partitions.is_empty() && !bgw {
        jobs.push(DesiredJob {
            name: PARTMAN_MAINTENANCE_JOB.to_string(),
            schedule: "@hourly".to_string(),
            command: format!("CALL {}.run_maintenance_proc()", ident(&partman_schema(planner))),
            active: true,
            seconds: false,
        });
    }
    // Its own job: pg_partman's procedure commits, which it cannot inside a two-statement command.
    if planner.stack.partitions.iter().any(|p| p.columnar_after.is_some()) {
        jobs.push(DesiredJob {
            name: COLUMNAR_JOB.to_string(),
            schedule: "15 * * * *".to_string(),
            command: columnar::CONVERT_CALL.to_string(),
            active: true,
            seconds: false,
        });
    }
    jobs
}

/// pg_cron's version as (major, minor), when installed.
pub(super) fn pg_cron_version(observed: &Observed) -> Option<(u32, u32)> {
    let version = observed.extension_version("pg_cron")?;
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    Some((parts.next()?, parts.next().unwrap_or(0)))
}

pub(super) fn schedules(planner: &Planner) -> Vec<Unit> {
    let observed = planner.observed;
    let jobs = desired_jobs(planner);
    let mut units = Vec::new();
    for job in &jobs {
        if job.seconds && pg_cron_version(observed).is_some_and(|v| v < (1, 5)) {
            units.push(Unit::blocked(
                ItemKind::Schedule,
                &job.name,
                format!(
                    "schedule {:?} needs pg_cron 1.5 or later; this server has {}",
                    job.schedule,
                    observed.extension_version("pg_cron").unwrap_or("?")
                ),
            ));
            continue;
        }
        let mut unit = Unit::new(ItemKind::Schedule, &job.name);
        job_changes(&mut unit, observed, job);
        units.push(unit);
    }
    // A refresh's job is planned with its refresh; kept here whatever that plan says.
    let refresh_jobs: Vec<String> = planner.stack.refreshes.iter().map(|r| r.job_name()).collect();
    let kept = |name: &str| jobs.iter().any(|j| j.name == name) || refresh_jobs.iter().any(|j| j == name);
    for entry in observed.ledger("job").filter(|e| !kept(&e.name)) {
        let mut unit = Unit::new(ItemKind::Schedule, &entry.name);
        if observed.managed.jobs.iter().any(|j| j.name.as_deref() == Some(entry.name.as_str())) {
            unit.change(
                Action::Unschedule,
                "job",
                &entry.name,
                Sql::new("SELECT cron.unschedule(").param(&entry.name).push(")"),
            );
        }
        unit.ledger.push(LedgerOp::Forget { kind: "job", name: entry.name.clone() });
        units.push(unit);
    }
    units
}

/// The statements that make pg_cron's job `job` as desired, and its ledger entry.
pub(super) fn job_changes(unit: &mut Unit, observed: &Observed, job: &DesiredJob) {
    let found = observed
        .managed
        .jobs
        .iter()
        .find(|j| j.name.as_deref() == Some(job.name.as_str()) && j.username == observed.current_user);
    let schedule = Sql::new("SELECT cron.schedule(")
        .param(&job.name)
        .push(", ")
        .param(&job.schedule)
        .push(", ")
        .param(&job.command)
        .push(")");
    match found {
        None => {
            unit.change(Action::Schedule, "job", &job.name, schedule);
            unit.ledger.push(LedgerOp::Record { kind: "job", name: job.name.clone(), detail: json!({}) });
        }
        Some(found) if found.schedule != job.schedule || found.command != job.command => {
            unit.change(Action::Alter, "job", &job.name, schedule);
        }
        Some(_) => {}
    }
    let needs_alter = match found {
        None => !job.active,
        Some(found) => found.active != job.active || found.database != observed.database,
    };
    if needs_alter {
        // cron.schedule on an existing name updates only schedule and command (pg_cron 1.4).
        let sql = Sql::new("SELECT cron.alter_job(job_id => jobid, database => current_database(), active => ")
            .param(if job.active { "true" } else { "false" })
            .push("::boolean) FROM cron.job WHERE jobname = ")
            .param(&job.name)
            .push(" AND username = current_user");
        unit.change(Action::Alter, "job", &job.name, sql);
    }
    if found.is_some() && !observed.owns("job", &job.name) {
        unit.ledger.push(LedgerOp::Record { kind: "job", name: job.name.clone(), detail: json!({}) });
    }
}
