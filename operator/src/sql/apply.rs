//! Applies a plan: each unit in its own transaction, so a failure leaves no half-made object;
//! a failing unit is reported and the others go on (a failed migration holds back later ones).

use serde::Serialize;
use sqlx::postgres::PgDatabaseError;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::sql::ledger;
use crate::sql::plan::{ItemKind, Plan, Unit};
use crate::sql::quote::{Sql, scrub};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ItemState {
    Converged,
    Changed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemOutcome {
    pub item: ItemKind,
    pub name: String,
    pub state: ItemState,
    pub statements: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What applying did, per item, and what it cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub items: Vec<ItemOutcome>,
    /// Statements of the plan that ran (ledger bookkeeping not counted).
    pub statements: usize,
    pub round_trips: usize,
}

impl ApplyReport {
    pub fn failed(&self) -> impl Iterator<Item = &ItemOutcome> {
        self.items.iter().filter(|i| i.state == ItemState::Failed)
    }

    /// Two passes as one: each item as the second left it, changed if either changed it.
    pub fn merged(first: ApplyReport, second: ApplyReport) -> ApplyReport {
        let mut items = second.items;
        for earlier in first.items {
            match items.iter_mut().find(|i| i.item == earlier.item && i.name == earlier.name) {
                Some(item) => {
                    if earlier.state == ItemState::Changed && item.state == ItemState::Converged {
                        item.state = ItemState::Changed;
                    }
                    item.statements += earlier.statements;
                }
                None => items.push(earlier),
            }
        }
        ApplyReport {
            items,
            statements: first.statements + second.statements,
            round_trips: first.round_trips + second.round_trips,
        }
    }
}

pub async fn apply(conn: &mut PgConnection, plan: &Plan) -> ApplyReport {
    let mut report = ApplyReport::default();
    let mut failed_migration: Option<String> = None;
    for unit in &plan.units {
        let outcome = |state, message: Option<String>| ItemOutcome {
            item: unit.item,
            name: unit.name.clone(),
            state,
            statements: if state == ItemState::Changed { unit.changes.len() } else { 0 },
            message,
        };
        let outcome = if let Some(why) = &unit.blocked {
            outcome(ItemState::Failed, Some(why.clone()))
        } else if !unit.has_work() {
            outcome(ItemState::Converged, None)
        } else if let (ItemKind::Migration, Some(failed)) = (unit.item, &failed_migration) {
            outcome(ItemState::Failed, Some(format!("not run: migration {failed:?} before it failed")))
        } else {
            tracing::debug!(item = %unit.item.label(&unit.name), statements = %redacted(unit), "applying");
            let started = std::time::Instant::now();
            let result = run_unit(conn, unit, plan.coordinator_only, &mut report.round_trips).await;
            let elapsed = started.elapsed();
            if elapsed >= SLOW_UNIT {
                let elapsed_ms = elapsed.as_millis() as u64;
                tracing::warn!(item = %unit.item.label(&unit.name), elapsed_ms, statements = %redacted(unit), "slow unit");
            }
            match result {
                Ok(()) => {
                    report.statements += unit.changes.len();
                    outcome(ItemState::Changed, None)
                }
                Err(error) => {
                    if unit.item == ItemKind::Migration {
                        failed_migration = Some(unit.name.clone());
                    }
                    let secrets = unit.changes.iter().flat_map(|c| c.sql.secrets());
                    outcome(ItemState::Failed, Some(scrub(&describe(&error), secrets)))
                }
            }
        };
        if let Some(message) = &outcome.message {
            tracing::warn!(item = ?outcome.item, name = %outcome.name, %message, "item failed");
        }
        report.items.push(outcome);
    }
    report
}

/// A unit past this is logged (redacted), as sqlx would log a slow statement were it allowed to.
const SLOW_UNIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A unit's statements for a log line: `Display` of `Sql` renders every secret as '<redacted>'.
fn redacted(unit: &Unit) -> String {
    let text = unit.changes.iter().map(|c| c.sql.to_string()).collect::<Vec<_>>().join("; ");
    if text.chars().count() > 2000 { format!("{}…", text.chars().take(2000).collect::<String>()) } else { text }
}

/// The database's words: message, detail and hint (a connection failure's cause is in the detail).
fn describe(error: &sqlx::Error) -> String {
    let Some(db) = error.as_database_error() else { return error.to_string() };
    let mut text = db.message().to_string();
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        for extra in [pg.detail(), pg.hint()].into_iter().flatten() {
            text.push_str(": ");
            text.push_str(extra.trim());
        }
    }
    match db.code() {
        Some(code) => format!("{text} (SQLSTATE {code})"),
        None => text,
    }
}

/// One transaction; consecutive statements without parameters go as one script (one round trip).
/// `distributed`: Citus keeps the operator's own machinery off the workers (each such statement
/// runs with DDL propagation off, the others with the session's setting).
async fn run_unit(
    conn: &mut PgConnection,
    unit: &Unit,
    distributed: bool,
    round_trips: &mut usize,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    *round_trips += 1;
    let bookkeeping = ledger::render(&unit.ledger);
    let mut propagating = true;
    let toggles = [
        Sql::new("SET LOCAL citus.enable_ddl_propagation = off"),
        Sql::new("SET LOCAL citus.enable_ddl_propagation = DEFAULT"),
    ];
    let mut statements: Vec<&Sql> = Vec::new();
    for change in &unit.changes {
        let local = distributed && unit.coordinator_only(change);
        if local == propagating {
            statements.push(&toggles[usize::from(!local)]);
            propagating = !local;
        }
        statements.push(&change.sql);
    }
    statements.extend(&bookkeeping);
    let mut script = String::new();
    if statements.iter().any(|s| s.secrets().next().is_some()) {
        // A failing statement is otherwise written to the server log with its secret inside.
        script.push_str("SET LOCAL log_min_error_statement = panic;\nSET LOCAL log_statement = none;\n");
    }
    for sql in statements {
        let (text, params) = sql.expose();
        if params.is_empty() {
            // A newline first: a script may end in a `--` comment.
            script.push_str(&text);
            script.push_str("\n;\n");
            continue;
        }
        if !script.is_empty() {
            sqlx::raw_sql(AssertSqlSafe(std::mem::take(&mut script))).execute(&mut *tx).await?;
            *round_trips += 1;
        }
        let mut query = sqlx::query(AssertSqlSafe(text));
        for param in params {
            query = query.bind(param.to_string());
        }
        query.execute(&mut *tx).await?;
        *round_trips += 1;
    }
    if !script.is_empty() {
        sqlx::raw_sql(AssertSqlSafe(script)).execute(&mut *tx).await?;
        *round_trips += 1;
    }
    tx.commit().await?;
    *round_trips += 1;
    Ok(())
}
