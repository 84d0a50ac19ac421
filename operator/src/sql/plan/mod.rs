//! The plan: a pure diff of the validated stack against the observed catalogs, as ordered units
//! of statements. Each unit is one item of the spec (or one pruned item) and applies in one
//! transaction. Nothing changed ⇒ no statements.

mod extensions;
mod migrations;
mod options;
mod partitions;
mod refreshes;
mod roles;
mod schedules;
mod sources;

pub use sources::POSTGRES_FDW_FETCH_SIZE;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::secrets::Secrets;
use crate::sql::ledger::{self, LedgerOp};
use crate::sql::observe::Observed;
use crate::sql::quote::Sql;
use crate::validate::ValidatedStack;

/// What a statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Alter,
    Drop,
    Grant,
    Revoke,
    Run,
    Schedule,
    Unschedule,
}

/// The spec item a unit converges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Ledger,
    Extension,
    Source,
    Migration,
    Partition,
    Schedule,
    Refresh,
    Role,
}

impl ItemKind {
    /// The kind as users read it: `source/control_plane`, `migration/001`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Ledger => "ledger",
            ItemKind::Extension => "extension",
            ItemKind::Source => "source",
            ItemKind::Migration => "migration",
            ItemKind::Partition => "partition",
            ItemKind::Schedule => "schedule",
            ItemKind::Refresh => "refresh",
            ItemKind::Role => "role",
        }
    }

    pub fn label(self, name: &str) -> String {
        format!("{}/{name}", self.as_str())
    }
}

/// One statement of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub action: Action,
    /// The database object kind: extension, schema, server, user_mapping, foreign_table, ...
    pub kind: &'static str,
    pub name: String,
    pub sql: Sql,
}

/// The statements that converge one item, applied in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub item: ItemKind,
    pub name: String,
    pub changes: Vec<Change>,
    pub ledger: Vec<LedgerOp>,
    /// Why the item cannot converge; nothing of it is applied.
    pub blocked: Option<String>,
}

impl Unit {
    /// Whether a change makes the operator's own machinery, which runs on a Citus coordinator and
    /// nowhere else: the ledger, its functions, sources (servers, user mappings, foreign tables)
    /// and pg_cron jobs.
    pub fn coordinator_only(&self, change: &Change) -> bool {
        matches!(self.item, ItemKind::Source | ItemKind::Schedule) || ["ledger", "function"].contains(&change.kind)
    }

    fn new(item: ItemKind, name: impl Into<String>) -> Unit {
        Unit { item, name: name.into(), changes: Vec::new(), ledger: Vec::new(), blocked: None }
    }

    fn change(&mut self, action: Action, kind: &'static str, name: impl Into<String>, sql: Sql) {
        self.changes.push(Change { action, kind, name: name.into(), sql });
    }

    fn blocked(item: ItemKind, name: impl Into<String>, why: impl Into<String>) -> Unit {
        Unit { blocked: Some(why.into()), ..Unit::new(item, name) }
    }

    /// Whether applying the unit sends anything to the database.
    pub fn has_work(&self) -> bool {
        self.blocked.is_none() && !(self.changes.is_empty() && self.ledger.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub units: Vec<Unit>,
    /// A distributed stack: the operator's own machinery (see [`Unit::coordinator_only`]) is
    /// created on the coordinator only, where it runs; Citus is told not to copy it to the
    /// workers. Everything else (migrations, extensions, partitions, roles, grants, table owners)
    /// propagates as Citus propagates it.
    pub coordinator_only: bool,
}

/// One entry of `plan --output json`.
#[derive(Debug, Serialize)]
pub struct ChangeView {
    pub item: String,
    pub action: Action,
    pub kind: &'static str,
    pub name: String,
    pub sql: String,
}

#[derive(Debug, Serialize)]
pub struct BlockedView {
    pub item: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct PlanView {
    pub changes: Vec<ChangeView>,
    pub blocked: Vec<BlockedView>,
}

impl Plan {
    pub fn changes(&self) -> impl Iterator<Item = (&Unit, &Change)> {
        self.units.iter().flat_map(|u| u.changes.iter().map(move |c| (u, c)))
    }

    pub fn is_empty(&self) -> bool {
        !self.units.iter().any(|u| u.has_work() || u.blocked.is_some())
    }

    /// The reviewable form: secrets redacted.
    pub fn view(&self) -> PlanView {
        PlanView {
            changes: self
                .changes()
                .map(|(u, c)| ChangeView {
                    item: item_label(u),
                    action: c.action,
                    kind: c.kind,
                    name: c.name.clone(),
                    sql: c.sql.to_string(),
                })
                .collect(),
            blocked: self
                .units
                .iter()
                .filter_map(|u| Some(BlockedView { item: item_label(u), error: u.blocked.clone()? }))
                .collect(),
        }
    }
}

pub fn item_label(unit: &Unit) -> String {
    unit.item.label(&unit.name)
}

/// A state of the server that no plan can fix; reported before any statement runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "this stack needs pg_cron, and the server must load it for database {database:?}: set \
         shared_preload_libraries to include 'pg_cron' and cron.database_name = '{database}' in \
         postgresql.conf, then restart Postgres (now: shared_preload_libraries = {preload:?}, \
         cron.database_name = {cron_database:?})"
    )]
    PgCronNotLoaded { database: String, preload: String, cron_database: Option<String> },
}

/// What planning knows beyond the catalogs: existing and planned schemas, and what this plan
/// creates (so grants cover tables made in the same run).
struct Planner<'a> {
    stack: &'a ValidatedStack,
    observed: &'a Observed,
    secrets: &'a Secrets,
    schemas: BTreeSet<String>,
    wrappers: BTreeSet<String>,
    /// Schemas whose tables this plan creates (grants must cover them in the same run).
    touched_schemas: BTreeSet<String>,
    /// A migration runs: it may create tables in any schema.
    migrations_run: bool,
}

impl Planner<'_> {
    /// The schema exists or this plan creates it; the unit creates it itself when the database
    /// lacks it, so that no unit depends on another one's success (a failed source must not
    /// take the schema its neighbours' tables live in down with it).
    fn ensure_schema(&mut self, unit: &mut Unit, schema: &str) {
        self.schemas.insert(schema.to_string());
        self.create_missing_schema(unit, schema);
    }

    /// `CREATE SCHEMA IF NOT EXISTS` in `unit`, when the database lacks the schema and the unit
    /// does not create it already.
    fn create_missing_schema(&self, unit: &mut Unit, schema: &str) {
        let exists = self.observed.schemas.iter().any(|s| s == schema);
        let in_unit = unit.changes.iter().any(|c| c.kind == "schema" && c.name == schema);
        if !exists && !in_unit {
            unit.change(Action::Create, "schema", schema, Sql::new("CREATE SCHEMA IF NOT EXISTS ").ident(schema));
        }
    }

    fn touched(&self, schema: &str) -> bool {
        self.migrations_run || self.touched_schemas.contains(schema)
    }
}

/// Diffs the stack against the catalogs. Pure: the same inputs give the same plan.
pub fn plan(stack: &ValidatedStack, observed: &Observed, secrets: &Secrets) -> Result<Plan, PlanError> {
    if stack.needs_pg_cron() {
        let preloaded = observed.preload_libraries.split(',').any(|l| l.trim() == "pg_cron");
        if !preloaded || observed.cron_database_name.as_deref() != Some(observed.database.as_str()) {
            return Err(PlanError::PgCronNotLoaded {
                database: observed.database.clone(),
                preload: observed.preload_libraries.clone(),
                cron_database: observed.cron_database_name.clone(),
            });
        }
    }
    let mut planner = Planner {
        stack,
        observed,
        secrets,
        schemas: observed.schemas.iter().cloned().collect(),
        wrappers: observed.wrappers.iter().cloned().collect(),
        touched_schemas: BTreeSet::new(),
        migrations_run: false,
    };
    let mut units = Vec::new();
    if !observed.ledger_exists {
        let mut unit = Unit::new(ItemKind::Ledger, "pgwarehouse");
        for sql in ledger::bootstrap() {
            unit.change(Action::Create, "ledger", "pgwarehouse", sql);
        }
        units.push(unit);
    }
    units.extend(stack.extensions.iter().map(|e| extensions::extension(&mut planner, e)));
    units.extend(sources::removed_sources(&planner));
    units.extend(stack.sources.iter().map(|s| sources::source(&mut planner, s)));
    units.extend(migrations::migrations(&mut planner));
    units.extend(partitions::partitions(&planner));
    units.extend(refreshes::api(&planner));
    units.extend(refreshes::refreshes(&mut planner));
    units.extend(schedules::schedules(&planner));
    units.extend(roles::roles(&planner));
    wait_for_missing_secrets(stack, secrets, &mut units);
    if units.iter().any(Unit::has_work) {
        for unit in units.iter_mut().filter(|u| u.item == ItemKind::Refresh) {
            if let Some(why) = unit.blocked.as_mut().filter(|why| why.starts_with("query: ")) {
                why.push_str(" (described again once this plan's sources and migrations are applied)");
            }
        }
    }
    Ok(Plan { units, coordinator_only: stack.spec.distributed.is_some() })
}

/// The item that a secret reference's field belongs to: `spec.sources[2]...` → that source.
fn item_of_field(stack: &ValidatedStack, path: &str) -> Option<(ItemKind, String)> {
    let index = |prefix: &str| path.strip_prefix(prefix)?.split(']').next()?.parse::<usize>().ok();
    if let Some(i) = index("spec.sources[") {
        return Some((ItemKind::Source, stack.sources.get(i)?.spec.name.clone()));
    }
    let i = index("spec.roles[")?;
    Some((ItemKind::Role, stack.spec.roles.get(i)?.name.clone()))
}

/// How a blocked item that waits for a Secret begins its reason.
pub const WAITING_FOR_SECRET: &str = "waiting for a Secret";

/// Items naming a Secret that cannot be read wait for it, whole: nothing of them is applied (an
/// existing server or role stays as it is), every other item converges.
fn wait_for_missing_secrets(stack: &ValidatedStack, secrets: &Secrets, units: &mut [Unit]) {
    for missing in secrets.missing() {
        let Some((item, name)) = item_of_field(stack, &missing.path) else { continue };
        let Some(unit) = units.iter_mut().find(|u| u.item == item && u.name == name) else { continue };
        let why = format!("{WAITING_FOR_SECRET}: {}: {}", missing.path, missing.message);
        let blocked = match unit.blocked.take() {
            Some(earlier) if earlier.starts_with(WAITING_FOR_SECRET) => format!("{earlier}; {why}"),
            _ => why,
        };
        *unit = Unit::blocked(item, name, blocked);
    }
}

#[cfg(test)]
mod tests;
