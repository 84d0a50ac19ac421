//! The readable report of a warehouse — what `local status` prints for a local server and
//! `pgwarehouse status` for a stack in a cluster. Each side fills the same [`StackReport`] from
//! what it can read (the catalogs; the stack's status), and one printer shows both.

mod cluster;

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use cluster::{cluster_report, fetch_cluster_report};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackReport {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The superuser's connection URL (no password).
    pub url: String,
    /// Where the superuser password is.
    pub password: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionLine>,
    pub sources: Vec<SourceLine>,
    pub jobs: Vec<JobLine>,
    pub partitions: Vec<PartitionLine>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refreshes: Vec<RefreshLine>,
    /// Citus nodes, when the warehouse is distributed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<crate::sql::status::NodeStatus>,
    /// The Postgres servers Patroni runs, with more than one instance.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<crate::api::InstanceStatus>,
    pub logins: Vec<LoginLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::api::BackupStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionLine {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceLine {
    pub name: String,
    pub wrapper: String,
    pub foreign_tables: i64,
    /// Why the source failed to converge, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobLine {
    pub name: String,
    pub schedule: String,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_start: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLine {
    pub table: String,
    pub partitions: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Columnar partitions and bytes in each storage, where the catalogs were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<PartitionStorage>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStorage {
    pub columnar_partitions: i64,
    pub columnar_bytes: i64,
    pub heap_bytes: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshLine {
    pub name: String,
    /// succeeded, failed or skipped; none before the first run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_start: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Rows inserted, updated and deleted by the last run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<(i64, i64, i64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_water: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<DateTime<Utc>>,
    pub stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginLine {
    pub url: String,
    /// The Secret key holding the role's password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

fn when(time: Option<DateTime<Utc>>) -> String {
    time.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "-".into())
}

impl StackReport {
    pub fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let place = self.namespace.as_ref().map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
        writeln!(out, "\nWarehouse {:?}{place}: {}", self.name, self.url)?;
        writeln!(out, "  superuser password: {}", self.password)?;
        if let Some(phase) = &self.phase {
            writeln!(out, "  phase: {phase}")?;
        }
        for c in &self.conditions {
            writeln!(out, "  {}={} ({}): {}", c.type_, c.status, c.reason, c.message)?;
        }
        writeln!(out, "\nSOURCES")?;
        for s in &self.sources {
            let failure = s.failure.as_ref().map(|f| format!("  FAILED: {f}")).unwrap_or_default();
            writeln!(out, "  {:<24} {:<16} {} foreign table(s){failure}", s.name, s.wrapper, s.foreign_tables)?;
        }
        writeln!(out, "\nJOBS")?;
        for j in &self.jobs {
            let last = match &j.last_status {
                Some(state) => format!("{state} at {}", when(j.last_start)),
                None => "not run yet".into(),
            };
            let state = if j.active { "active" } else { "paused" };
            writeln!(out, "  {:<32} {:<14} {state:<8} last: {last}; next: {}", j.name, j.schedule, when(j.next_run))?;
        }
        writeln!(out, "\nPARTITIONS")?;
        for p in &self.partitions {
            let storage = match &p.storage {
                Some(s) if s.columnar_partitions > 0 => format!(
                    "; {} columnar ({} bytes), heap {} bytes",
                    s.columnar_partitions, s.columnar_bytes, s.heap_bytes
                ),
                Some(s) => format!("; heap {} bytes", s.heap_bytes),
                None => String::new(),
            };
            writeln!(
                out,
                "  {:<32} {} partition(s), {} .. {}; retention {}{storage}",
                p.table,
                p.partitions,
                p.oldest.as_deref().unwrap_or("-"),
                p.newest.as_deref().unwrap_or("-"),
                p.retention.as_deref().unwrap_or("none")
            )?;
        }
        if !self.refreshes.is_empty() {
            writeln!(out, "\nREFRESHES")?;
            for r in &self.refreshes {
                let last = match (&r.last_state, r.rows) {
                    (Some(state), Some((i, u, d))) => format!(
                        "{state} at {} in {} ms (+{i} ~{u} -{d})",
                        when(r.last_start),
                        r.duration_ms.unwrap_or_default()
                    ),
                    (Some(state), None) => format!("{state} at {}", when(r.last_start)),
                    _ => "not run yet".into(),
                };
                let mark = r.high_water.as_ref().map(|m| format!("; high-water {m}")).unwrap_or_default();
                let stale = if r.stale { "; STALE" } else { "" };
                let error = r.error.as_ref().map(|e| format!("; error: {e}")).unwrap_or_default();
                writeln!(
                    out,
                    "  {:<24} last: {last}; last success: {}{mark}{stale}{error}",
                    r.name,
                    when(r.last_success)
                )?;
            }
        }
        if !self.nodes.is_empty() {
            writeln!(out, "\nNODES")?;
            for n in &self.nodes {
                let role = if n.coordinator { "coordinator" } else { "worker" };
                let state = if n.active { "active" } else { "inactive" };
                writeln!(out, "  {:<28} {role:<12} {state:<9} {} shard(s), {} bytes", n.node, n.shards, n.bytes)?;
            }
        }
        if !self.instances.is_empty() {
            writeln!(out, "\nINSTANCES")?;
            for i in &self.instances {
                let timeline = i.timeline.map_or("-".to_string(), |t| format!("timeline {t}"));
                let lag = i.lag_bytes.map(|l| format!(", {l} bytes behind")).unwrap_or_default();
                writeln!(out, "  {:<28} {:<12} {:<10} {timeline}{lag}", i.pod, i.role, i.state)?;
            }
        }
        if let Some(b) = &self.backup {
            print_backup(b, out)?;
        }
        if !self.logins.is_empty() {
            writeln!(out, "\nFOR BI TOOLS")?;
            for login in &self.logins {
                let password = login.password.as_ref().map(|p| format!(" (password: {p})")).unwrap_or_default();
                writeln!(out, "  {}{password}", login.url)?;
            }
        }
        Ok(())
    }
}

fn print_backup(b: &crate::api::BackupStatus, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "\nBACKUPS to {} ({} kept)", b.repository, b.backups)?;
    for (kind, set) in [("full", &b.last_full), ("differential", &b.last_differential)] {
        match set {
            Some(s) => writeln!(
                out,
                "  last {kind:<13} {} at {}: {:.1} MB in {} s, {:.1} MB in the repository",
                s.label,
                s.time,
                s.size_bytes as f64 / 1e6,
                s.duration_seconds,
                s.repository_bytes as f64 / 1e6
            )?,
            None => writeln!(out, "  last {kind:<13} none")?,
        }
    }
    let a = &b.archive;
    let failing = if a.failing {
        format!(
            "; FAILING since {} ({})",
            a.last_failed_time.as_deref().unwrap_or("-"),
            a.last_failed_wal.as_deref().unwrap_or("-")
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "  WAL archiving      last {} at {}; {} failure(s){failing}",
        a.last_archived_wal.as_deref().unwrap_or("-"),
        a.last_archived_time.as_deref().unwrap_or("-"),
        a.failed_count
    )?;
    writeln!(
        out,
        "  restorable         {} .. {}",
        b.oldest_recovery_point.as_deref().unwrap_or("-"),
        b.newest_recovery_point.as_deref().unwrap_or("-")
    )
}

/// The BI logins of a stack, at the given host and port.
pub fn logins(roles: &[crate::api::RoleSpec], host_port: &str, database: &str) -> Vec<LoginLine> {
    roles
        .iter()
        .filter(|r| r.login.unwrap_or(true))
        .map(|role| LoginLine {
            url: format!("postgres://{}@{host_port}/{database}", role.name),
            password: role.password_secret_ref.as_ref().map(|r| format!("Secret {}/{}", r.name, r.key)),
        })
        .collect()
}
