//! Migrations run once each, in order; a changed migration is refused, and a failed or refused
//! one holds back those after it.

use sha2::{Digest, Sha256};

use super::{Action, ItemKind, Planner, Unit};
use crate::sql::ledger::LedgerOp;
use crate::sql::quote::Sql;

pub fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn migrations(planner: &mut Planner) -> Vec<Unit> {
    let applied = &planner.observed.managed.migrations;
    let mut units = Vec::new();
    let mut held_back: Option<String> = None;
    for migration in &planner.stack.spec.migrations {
        let sum = checksum(&migration.sql);
        let done = applied.iter().find(|m| m.name == migration.name);
        if let (Some(reason), false) = (&held_back, done.is_some_and(|d| d.checksum == sum)) {
            units.push(Unit::blocked(ItemKind::Migration, &migration.name, reason.clone()));
            continue;
        }
        match done {
            Some(done) if done.checksum == sum => units.push(Unit::new(ItemKind::Migration, &migration.name)),
            Some(done) => {
                units.push(Unit::blocked(
                    ItemKind::Migration,
                    &migration.name,
                    format!(
                        "migration {:?} changed after it was applied (checksum {} now {}); migrations run once, so add a new one instead",
                        migration.name,
                        &done.checksum[..12.min(done.checksum.len())],
                        &sum[..12]
                    ),
                ));
                held_back = Some(format!("not run: migration {:?} before it is refused", migration.name));
            }
            None => {
                planner.migrations_run = true;
                let mut unit = Unit::new(ItemKind::Migration, &migration.name);
                unit.change(Action::Run, "migration", &migration.name, Sql::user_script(&migration.sql));
                unit.ledger.push(LedgerOp::MigrationApplied { name: migration.name.clone(), checksum: sum });
                units.push(unit);
            }
        }
    }
    units
}
