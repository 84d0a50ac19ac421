//! pg_partman partition sets: created once (speaking 4.x or 5.x), premake and retention kept in
//! step through `part_config`, and released (never dropped) when removed from the spec.

use serde_json::json;

use super::schedules::partman_schema;
use super::{Action, ItemKind, Planner, Unit};
use crate::api::Epoch;
use crate::sql::columnar;
use crate::sql::ledger::LedgerOp;
use crate::sql::observe::ObservedPartConfig;
use crate::sql::quote::Sql;
use crate::validate::{Interval, ValidatedPartition};

const PARTMAN_DEFAULT_PREMAKE: u32 = 4;
const INTEGER_TYPES: &[&str] = &["bigint", "integer", "smallint"];

/// pg_partman's major version, installed or about to be.
fn partman_major(planner: &Planner) -> Option<u32> {
    planner.observed.extension_version("pg_partman")?.split('.').next()?.parse().ok()
}

pub(super) fn partitions(planner: &Planner) -> Vec<Unit> {
    let observed = planner.observed;
    let schema = partman_schema(planner);
    let mut units: Vec<Unit> = columnar_api(planner).into_iter().collect();
    units.extend(planner.stack.partitions.iter().map(|p| partition(planner, &schema, p)));
    let wanted: Vec<String> = planner.stack.partitions.iter().map(parent_name).collect();
    for converted in observed.managed.columnar.iter().filter(|c| !wanted.contains(&c.parent)) {
        let mut unit = Unit::new(ItemKind::Partition, &converted.parent);
        unit.change(Action::Drop, "columnar", &converted.parent, forget_columnar(&converted.parent));
        units.push(unit);
    }
    for entry in observed.ledger("partition_set").filter(|e| !wanted.contains(&e.name)) {
        let mut unit = Unit::new(ItemKind::Partition, &entry.name);
        if observed.managed.part_configs.iter().any(|c| c.parent_table == entry.name) {
            let sql = Sql::new("DELETE FROM ")
                .qualified(&schema, "part_config")
                .push(" WHERE parent_table = ")
                .param(&entry.name);
            unit.change(Action::Drop, "partition_set", &entry.name, sql);
        }
        unit.ledger.push(LedgerOp::Forget { kind: "partition_set", name: entry.name.clone() });
        units.push(unit);
    }
    units
}

fn parent_name(p: &ValidatedPartition) -> String {
    format!("{}.{}", p.schema, p.table)
}

fn partition(planner: &Planner, schema: &str, p: &ValidatedPartition) -> Unit {
    let parent = parent_name(p);
    let observed = planner.observed;
    if let Some(problem) = column_problem(planner, p) {
        return Unit::blocked(ItemKind::Partition, &parent, problem);
    }
    let premake = p.spec.premake.unwrap_or(PARTMAN_DEFAULT_PREMAKE).to_string();
    let mut unit = Unit::new(ItemKind::Partition, &parent);
    match observed.managed.part_configs.iter().find(|c| c.parent_table == parent) {
        None => {
            let mut create = Sql::new("SELECT ")
                .qualified(schema, "create_parent")
                .push("(p_parent_table => ")
                .param(&parent)
                .push(", p_control => ")
                .param(&p.spec.column)
                .push(", p_interval => ")
                .param(&p.spec.interval);
            // 4.x needs the partitioning type named; 5.x has only native and rejects it.
            if partman_major(planner).is_some_and(|major| major < 5) {
                create = create.push(", p_type => 'native'");
            }
            let create = create
                .push(", p_epoch => ")
                .param(p.spec.epoch.as_partman())
                .push(", p_premake => ")
                .param(&premake)
                .push("::int)");
            unit.change(Action::Create, "partition_set", &parent, create);
            unit.change(Action::Alter, "partition_set", &parent, update_config(schema, p, &premake));
            unit.ledger.push(LedgerOp::Record { kind: "partition_set", name: parent.clone(), detail: json!({}) });
        }
        Some(config) => {
            if let Some(problem) = fixed_settings_problem(config, p) {
                return Unit::blocked(ItemKind::Partition, &parent, problem);
            }
            let retention = config.retention.as_deref().and_then(|r| Interval::parse(r).ok());
            if config.premake.to_string() != premake
                || retention != p.retention
                || config.retention_keep_table != p.spec.retention_keep_table
            {
                unit.change(Action::Alter, "partition_set", &parent, update_config(schema, p, &premake));
            }
            if !observed.owns("partition_set", &parent) {
                unit.ledger.push(LedgerOp::Record { kind: "partition_set", name: parent.clone(), detail: json!({}) });
            }
        }
    }
    columnar_changes(planner, p, &mut unit);
    unit
}

/// The conversion function and its table, when a partition set asks for columnar history and
/// they are missing or older.
fn columnar_api(planner: &Planner) -> Option<Unit> {
    let wanted = planner.stack.partitions.iter().any(|p| p.columnar_after.is_some());
    if !wanted || planner.observed.columnar_api.as_deref() == Some(columnar::API_VERSION) {
        return None;
    }
    let mut unit = Unit::new(ItemKind::Ledger, "columnar");
    for sql in columnar::install() {
        unit.change(Action::Create, "function", "pgwarehouse.columnar_convert", sql);
    }
    Some(unit)
}

/// The set's row in `pgwarehouse.columnar`: written when `columnarAfter` is set or changed,
/// removed when it is unset (partitions already converted stay columnar).
fn columnar_changes(planner: &Planner, p: &ValidatedPartition, unit: &mut Unit) {
    let parent = parent_name(p);
    let observed = planner.observed.managed.columnar.iter().find(|c| c.parent == parent);
    let epoch = p.spec.epoch.as_partman();
    match (&p.spec.columnar_after, observed) {
        (Some(after), Some(found)) if found.after == *after && found.epoch == epoch => {}
        (Some(after), _) => {
            let sql = Sql::new("INSERT INTO pgwarehouse.columnar (parent, epoch, after) VALUES (")
                .param(&parent)
                .push(", ")
                .param(epoch)
                .push(", ")
                .param(after)
                .push(") ON CONFLICT (parent) DO UPDATE SET epoch = EXCLUDED.epoch, after = EXCLUDED.after");
            unit.change(Action::Alter, "columnar", &parent, sql);
        }
        (None, Some(_)) => unit.change(Action::Drop, "columnar", &parent, forget_columnar(&parent)),
        (None, None) => {}
    }
}

fn forget_columnar(parent: &str) -> Sql {
    Sql::new("DELETE FROM pgwarehouse.columnar WHERE parent = ").param(parent)
}

fn update_config(schema: &str, p: &ValidatedPartition, premake: &str) -> Sql {
    Sql::new("UPDATE ")
        .qualified(schema, "part_config")
        .push(" SET premake = ")
        .param(premake)
        .push("::int, retention = NULLIF(")
        .param(p.spec.retention.as_deref().unwrap_or(""))
        .push(", ''), retention_keep_table = ")
        .param(if p.spec.retention_keep_table { "true" } else { "false" })
        .push("::boolean WHERE parent_table = ")
        .param(&parent_name(p))
}

/// The control column must exist and suit the epoch setting (checked when the table exists).
fn column_problem(planner: &Planner, p: &ValidatedPartition) -> Option<String> {
    let parent = parent_name(p);
    let columns: Vec<_> = planner.observed.managed.columns.iter().filter(|c| c.table == parent).collect();
    if columns.is_empty() {
        return None;
    }
    let column = columns.iter().find(|c| c.column == p.spec.column);
    let Some(column) = column else {
        return Some(format!("table {parent} has no column {:?}", p.spec.column));
    };
    let integer = INTEGER_TYPES.contains(&column.type_name.as_str());
    match (p.spec.epoch, integer) {
        (Epoch::None, true) => Some(format!(
            "column {:?} is {}; set epoch to seconds or milliseconds for an integer time column",
            p.spec.column, column.type_name
        )),
        (Epoch::Seconds | Epoch::Milliseconds, false) => Some(format!(
            "epoch {:?} needs an integer column; {:?} is {}",
            p.spec.epoch.as_partman(),
            p.spec.column,
            column.type_name
        )),
        _ => None,
    }
}

/// What pg_partman cannot change on an existing set.
fn fixed_settings_problem(config: &ObservedPartConfig, p: &ValidatedPartition) -> Option<String> {
    let interval = Interval::parse(&config.interval).ok();
    let problems: Vec<String> = [
        (config.control != p.spec.column).then(|| format!("column {:?} (spec: {:?})", config.control, p.spec.column)),
        (interval != Some(p.interval)).then(|| format!("interval {:?} (spec: {:?})", config.interval, p.spec.interval)),
        (config.epoch != p.spec.epoch.as_partman())
            .then(|| format!("epoch {:?} (spec: {:?})", config.epoch, p.spec.epoch.as_partman())),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!problems.is_empty()).then(|| {
        format!(
            "the partition set exists with {}; pg_partman cannot change these on a live set — migrate the table by hand or restore the old values",
            problems.join(", ")
        )
    })
}
