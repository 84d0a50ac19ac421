//! The readable status table of `local up` and `local status`.

use std::io::Write;

use chrono::Utc;

use super::{Local, PASSWORD_FILE};
use crate::sql::status::WarehouseStatus;
use crate::validate::ValidatedStack;

fn when(time: Option<chrono::DateTime<Utc>>) -> String {
    time.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "-".into())
}

pub fn print_status(stack: &ValidatedStack, local: &Local, status: &WarehouseStatus, out: &mut dyn Write) {
    let now = Utc::now();
    let password = local.cluster.dir.join(PASSWORD_FILE);
    let _ = writeln!(out, "\nWarehouse {:?}: {}", stack.name, local.url("postgres", &local.database));
    let _ = writeln!(out, "  superuser password: {}", password.display());
    let _ = writeln!(out, "\nSOURCES");
    for s in &status.sources {
        let _ = writeln!(out, "  {:<24} {:<16} {} foreign table(s)", s.name, s.wrapper, s.tables);
    }
    let _ = writeln!(out, "\nJOBS");
    for j in &status.jobs {
        let last = match (&j.last_status, j.last_start) {
            (Some(state), start) => format!("{state} at {}", when(start)),
            (None, _) => "not run yet".into(),
        };
        let _ = writeln!(
            out,
            "  {:<32} {:<14} {:<8} last: {last}; next: {}",
            j.name,
            j.schedule,
            if j.active { "active" } else { "paused" },
            when(j.next_run(now))
        );
    }
    let _ = writeln!(out, "\nPARTITIONS");
    for p in &status.partitions {
        let _ = writeln!(
            out,
            "  {:<32} {} partition(s), {} .. {}; retention {}",
            p.table,
            p.partitions,
            p.oldest.as_deref().unwrap_or("-"),
            p.newest.as_deref().unwrap_or("-"),
            p.retention.as_deref().unwrap_or("none")
        );
    }
    let logins: Vec<_> = stack.spec.roles.iter().filter(|r| r.login.unwrap_or(true)).collect();
    if !logins.is_empty() {
        let _ = writeln!(out, "\nFOR BI TOOLS");
        for role in logins {
            let secret = role
                .password_secret_ref
                .as_ref()
                .map(|r| format!(" (password: Secret {}/{})", r.name, r.key))
                .unwrap_or_default();
            let _ = writeln!(out, "  {}{secret}", local.url(&role.name, &local.database));
        }
    }
}
