//! Declarative refreshes: the entry point installed once, then per refresh its target (created
//! from the query's columns, or checked against them), the unique index an upsert needs, its
//! definition row and its pg_cron job. A removed refresh loses its definition and job; its
//! target table and rows stay.

use std::collections::BTreeSet;

use serde_json::json;

use super::schedules::{DesiredJob, job_changes, pg_cron_version};
use super::{Action, ItemKind, Planner, Unit};
use crate::api::RefreshMode;
use crate::sql::ledger::LedgerOp;
use crate::sql::observe::{ObservedColumnType, ObservedRefresh, ObservedSource};
use crate::sql::quote::{Sql, TypeName, canonical_type, literal, qualified};
use crate::sql::refresh::{self, REFRESH_ROLE};
use crate::validate::{LEDGER_SCHEMA, Schedule, ValidatedRefresh};

/// The refresh role, the entry point and its tables, when a refresh needs them and they are
/// missing, older, or were altered.
pub(super) fn api(planner: &Planner) -> Option<Unit> {
    let observed = planner.observed;
    // A distributed stack's refresh role logs in to the workers (its password only in the
    // coordinator's pg_dist_authinfo); anywhere else it never logs in.
    let distributed = planner.stack.spec.distributed.is_some();
    let role_plain = observed.refresh_role_plain == Some(true) && (distributed || !observed.refresh_role_login);
    let current = observed.refresh_api.as_deref() == Some(refresh::API_VERSION) && observed.refresh_api_intact;
    if planner.stack.refreshes.is_empty() || (current && role_plain) {
        return None;
    }
    let mut unit = Unit::new(ItemKind::Ledger, "refresh");
    if !role_plain {
        let action = if observed.refresh_role_plain.is_some() { Action::Alter } else { Action::Create };
        unit.change(action, "role", REFRESH_ROLE, refresh::role(observed.refresh_role_plain.is_some(), distributed));
    }
    for sql in refresh::install(&observed.database) {
        unit.change(Action::Create, "function", "pgwarehouse.refresh", sql);
    }
    Some(unit)
}

pub(super) fn refreshes(planner: &mut Planner) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    for r in &planner.stack.refreshes {
        let unit = refresh_unit(planner, r).unwrap_or_else(|why| Unit::blocked(ItemKind::Refresh, &r.spec.name, why));
        units.push(unit);
    }
    for entry in
        planner.observed.ledger("refresh").filter(|e| !planner.stack.refreshes.iter().any(|r| r.spec.name == e.name))
    {
        let mut unit = Unit::new(ItemKind::Refresh, &entry.name);
        let sql =
            Sql::new("DELETE FROM ").qualified(LEDGER_SCHEMA, "refreshes").push(" WHERE name = ").literal(&entry.name);
        unit.change(Action::Drop, "refresh", &entry.name, sql);
        unit.ledger.push(LedgerOp::Forget { kind: "refresh", name: entry.name.clone() });
        units.push(unit);
    }
    units
}

fn refresh_unit(planner: &mut Planner, r: &ValidatedRefresh) -> Result<Unit, String> {
    let observed = planner.observed;
    let name = &r.spec.name;
    let stored = observed.managed.refreshes.iter().find(|s| &s.name == name);
    let (columns, sources) = match (observed.described.get(name), stored) {
        (Some(Ok(described)), _) => (described.columns.clone(), described.sources.as_slice()),
        (Some(Err(why)), _) => return Err(format!("query: {why}")),
        (None, Some(stored)) => (stored.columns.clone(), &[][..]),
        (None, None) => return Err("query: not described".into()),
    };
    let column_type = |column: &str| columns.iter().find(|c| c.name == column).map(|c| c.type_name.clone());
    for key in &r.spec.key {
        if column_type(key).is_none() {
            return Err(format!("key column {key:?} is not one of the query's columns ({})", names(&columns)));
        }
    }
    let incremental = match &r.spec.incremental {
        Some(i) => Some((
            i.column.clone(),
            column_type(&i.column).ok_or_else(|| {
                format!("incremental column {:?} is not one of the query's columns ({})", i.column, names(&columns))
            })?,
        )),
        None => None,
    };
    if matches!(r.schedule, Schedule::Seconds(_)) && pg_cron_version(observed).is_some_and(|v| v < (1, 5)) {
        return Err(format!("schedule {:?} needs pg_cron 1.5 or later", r.spec.schedule));
    }

    let mut unit = Unit::new(ItemKind::Refresh, name);
    let target = observed.managed.refresh_targets.iter().find(|t| t.schema == r.schema && t.name == r.table);
    match target {
        None => {
            planner.ensure_schema(&mut unit, &r.schema);
            let mut definitions = Vec::new();
            for c in &columns {
                let type_name = TypeName::parse(&c.type_name)
                    .ok_or_else(|| format!("column {:?}: type {} cannot be created by name", c.name, c.type_name))?;
                definitions.push(Sql::new("").ident(&c.name).push(" ").type_name(&type_name));
            }
            let create =
                Sql::new("CREATE TABLE ").qualified(&r.schema, &r.table).push(" (").join(definitions, ", ").push(")");
            unit.change(Action::Create, "table", format!("{}.{}", r.schema, r.table), create);
            give_to_refresh_role(&mut unit, r);
            grant_schema_usage(&mut unit, &r.schema);
            planner.touched_schemas.insert(r.schema.clone());
        }
        Some(target) => {
            if target.owner != REFRESH_ROLE {
                // The operator's own user made it (or an administrator as that user): handing it
                // to the refresh role only lowers what runs against it.
                if target.owner != observed.current_user {
                    return Err(format!(
                        "target {schema}.{table} is owned by {owner}; a refresh runs as {REFRESH_ROLE} (never as a \
                         superuser) and writes only into tables that role owns: run ALTER TABLE {qualified} OWNER TO \
                         {REFRESH_ROLE}, or name another target",
                        schema = r.schema,
                        table = r.table,
                        owner = target.owner,
                        qualified = qualified(&r.schema, &r.table),
                    ));
                }
                give_to_refresh_role(&mut unit, r);
            }
            if !target.schema_usable {
                grant_schema_usage(&mut unit, &r.schema);
            }
            if !["r", "p"].contains(&target.kind.as_str()) {
                return Err(format!(
                    "target {}.{} is not a table (relkind {}): a refresh fills a table",
                    r.schema, r.table, target.kind
                ));
            }
            for c in &columns {
                match target.columns.iter().find(|t| t.name == c.name) {
                    None => {
                        return Err(format!(
                            "target {}.{} has no column {:?} (the query gives it)",
                            r.schema, r.table, c.name
                        ));
                    }
                    Some(t) if canonical_type(&t.type_name) != canonical_type(&c.type_name) => {
                        return Err(format!(
                            "column {:?}: the target has type {}, the query gives {}",
                            c.name, t.type_name, c.type_name
                        ));
                    }
                    Some(_) => {}
                }
            }
            if let Some(missing) = target.required.iter().find(|r| !columns.iter().any(|c| &c.name == *r)) {
                return Err(format!(
                    "target {}.{} column {missing:?} is NOT NULL without a default, and the query does not give it",
                    r.schema, r.table
                ));
            }
        }
    }
    if r.spec.mode == RefreshMode::Upsert {
        let mut key = r.spec.key.clone();
        key.sort();
        if !target.is_some_and(|t| t.unique_keys.contains(&key)) {
            let columns = r.spec.key.iter().map(|k| Sql::new("").ident(k));
            // NULL keys are one key each, as the refresh's anti-join treats them.
            let index = Sql::new("CREATE UNIQUE INDEX ON ")
                .qualified(&r.schema, &r.table)
                .push(" (")
                .join(columns, ", ")
                .push(") NULLS NOT DISTINCT");
            unit.change(Action::Create, "index", format!("{}.{}", r.schema, r.table), index);
        }
    }

    grant_sources(&mut unit, sources);

    let desired = ObservedRefresh {
        name: name.clone(),
        target_schema: r.schema.clone(),
        target_table: r.table.clone(),
        query: r.spec.query.clone(),
        mode: r.spec.mode.as_str().to_string(),
        key: r.spec.key.clone(),
        incremental_column: incremental.as_ref().map(|(c, _)| c.clone()),
        incremental_type: incremental.as_ref().map(|(_, t)| t.clone()),
        delete_missing: r.spec.delete_missing,
        columns: columns.clone(),
        timeout_ms: r.timeout_ms,
    };
    if stored != Some(&desired) {
        unit.change(Action::Alter, "refresh", name, define(&desired, stored));
    }
    if !observed.owns("refresh", name) {
        unit.ledger.push(LedgerOp::Record { kind: "refresh", name: name.clone(), detail: json!({}) });
    }
    job_changes(&mut unit, observed, &job(r));
    Ok(unit)
}

fn give_to_refresh_role(unit: &mut Unit, r: &ValidatedRefresh) {
    let sql = Sql::new("ALTER TABLE ").qualified(&r.schema, &r.table).push(" OWNER TO ").ident(REFRESH_ROLE);
    unit.change(Action::Alter, "table", format!("{}.{}", r.schema, r.table), sql);
}

fn grant_schema_usage(unit: &mut Unit, schema: &str) {
    let sql = Sql::new("GRANT USAGE ON SCHEMA ").ident(schema).push(" TO ").ident(REFRESH_ROLE);
    unit.change(Action::Grant, "schema", schema, sql);
}

/// What the refresh role lacks to read the query's sources: USAGE on their schemas and foreign
/// servers, SELECT on the relations. Nothing else: a query that calls a function reading other
/// tables fails its run with the database's "permission denied", naming what to grant.
fn grant_sources(unit: &mut Unit, sources: &[ObservedSource]) {
    let mut schemas = BTreeSet::new();
    let mut servers = BTreeSet::new();
    for source in sources {
        if !source.schema_usable && schemas.insert(source.schema.as_str()) {
            grant_schema_usage(unit, &source.schema);
        }
        if let Some(server) = source.server.as_deref().filter(|_| !source.server_usable)
            && servers.insert(server)
        {
            let sql = Sql::new("GRANT USAGE ON FOREIGN SERVER ").ident(server).push(" TO ").ident(REFRESH_ROLE);
            unit.change(Action::Grant, "server", server, sql);
        }
        if !source.readable {
            let sql =
                Sql::new("GRANT SELECT ON ").qualified(&source.schema, &source.name).push(" TO ").ident(REFRESH_ROLE);
            unit.change(Action::Grant, "table", format!("{}.{}", source.schema, source.name), sql);
        }
    }
}

fn names(columns: &[ObservedColumnType]) -> String {
    columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// The definition row, written whole; the high-water mark survives only while it still means
/// the same (same target, mode and incremental column).
fn define(desired: &ObservedRefresh, stored: Option<&ObservedRefresh>) -> Sql {
    let keeps_mark = stored.is_some_and(|s| {
        s.target_schema == desired.target_schema
            && s.target_table == desired.target_table
            && s.mode == desired.mode
            && s.incremental_column == desired.incremental_column
    });
    let text_array = |items: &[String]| {
        Sql::new("ARRAY[").join(items.iter().map(|i| Sql::new("").literal(i)), ", ").push("]::text[]")
    };
    let optional = |value: &Option<String>, cast: &'static str| match value {
        Some(v) => Sql::new("").literal(v).push(cast),
        None => Sql::new("NULL"),
    };
    let columns = serde_json::to_string(
        &desired.columns.iter().map(|c| json!({"name": c.name, "type": c.type_name})).collect::<Vec<_>>(),
    )
    .expect("columns serialize");
    let timeout = desired.timeout_ms.map(|ms| ms.to_string());
    Sql::new("INSERT INTO ")
        .qualified(LEDGER_SCHEMA, "refreshes")
        .push(" (name, target_schema, target_table, query, mode, key, incremental_column, incremental_type, ")
        .push("delete_missing, columns, timeout_ms) VALUES (")
        .literal(&desired.name)
        .push(", ")
        .literal(&desired.target_schema)
        .push(", ")
        .literal(&desired.target_table)
        .push(", ")
        .literal(&desired.query)
        .push(", ")
        .literal(&desired.mode)
        .push(", ")
        .append(text_array(&desired.key))
        .push(", ")
        .append(optional(&desired.incremental_column, "::text"))
        .push(", ")
        .append(optional(&desired.incremental_type, "::regtype"))
        .push(", ")
        .push(if desired.delete_missing { "true" } else { "false" })
        .push(", ")
        .literal(&columns)
        .push("::jsonb, ")
        .append(optional(&timeout, "::bigint"))
        .push(") ON CONFLICT (name) DO UPDATE SET target_schema = EXCLUDED.target_schema, ")
        .push(
            "target_table = EXCLUDED.target_table, query = EXCLUDED.query, mode = EXCLUDED.mode, key = EXCLUDED.key, ",
        )
        .push("incremental_column = EXCLUDED.incremental_column, incremental_type = EXCLUDED.incremental_type, ")
        .push("delete_missing = EXCLUDED.delete_missing, columns = EXCLUDED.columns, timeout_ms = EXCLUDED.timeout_ms")
        .push(if keeps_mark { "" } else { ", high_water = NULL" })
}

/// The refresh's pg_cron job: one call of the entry point, under the refresh's timeout.
fn job(r: &ValidatedRefresh) -> DesiredJob {
    let call = format!("SELECT state FROM pgwarehouse.refresh({})", literal(&r.spec.name));
    DesiredJob {
        name: r.job_name(),
        schedule: r.spec.schedule.trim().to_string(),
        command: match r.timeout_ms {
            Some(ms) => format!("SET statement_timeout = {ms}; {call}"),
            None => call,
        },
        active: true,
        seconds: matches!(r.schedule, Schedule::Seconds(_)),
    }
}
