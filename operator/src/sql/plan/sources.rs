//! Sources: the wrapper, the foreign server, its user mapping, declared and imported foreign
//! tables, and pruning of what a removed source or table left behind (ledger-owned only).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::options::{self, OptionValue};
use super::{Action, ItemKind, Planner, Unit};
use crate::api::ImportSchemaSpec;
use crate::sql::ledger::LedgerOp;
use crate::sql::observe::{LedgerEntry, ObservedForeignTable};
use crate::sql::quote::{Sql, canonical_type};
use crate::validate::{SAME_SERVER_HOST, ValidatedSource, ValidatedTable};

/// Rows a postgres_fdw server fetches per round trip unless the source sets `fetch_size`:
/// postgres_fdw's own default (100) makes a bulk refresh several times slower than a COPY of
/// the same rows; refreshes read whole tables.
pub const POSTGRES_FDW_FETCH_SIZE: &str = "10000";

fn detail_str<'a>(entry: &'a LedgerEntry, key: &str) -> &'a str {
    entry.detail.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn import_key(server: &str, import: &ImportSchemaSpec) -> String {
    format!("{server}:{}:{}", import.remote_schema, import.into)
}

fn import_detail(server: &str, import: &ImportSchemaSpec) -> Value {
    json!({"server": server, "remote": import.remote_schema, "into": import.into, "only": import.only, "except": import.except})
}

fn import_wants(import: &ImportSchemaSpec, table: &str) -> bool {
    (import.only.is_empty() || import.only.iter().any(|t| t == table)) && !import.except.iter().any(|t| t == table)
}

/// `PUBLIC` or a role, as SQL and as `pg_user_mappings.usename` spells it.
fn mapping_user(user: Option<&str>) -> (Sql, String) {
    match user {
        None => (Sql::new("PUBLIC"), "public".into()),
        Some(u) if u.eq_ignore_ascii_case("public") => (Sql::new("PUBLIC"), "public".into()),
        Some(u) => (Sql::default().ident(u), u.to_string()),
    }
}

fn drop_mapping(unit: &mut Unit, server: &str, user: &str) {
    let (user_sql, user_name) = mapping_user(Some(user));
    let sql = Sql::new("DROP USER MAPPING IF EXISTS FOR ").append(user_sql).push(" SERVER ").ident(server);
    unit.change(Action::Drop, "user_mapping", format!("{server}/{user_name}"), sql);
    unit.ledger.push(LedgerOp::Forget { kind: "user_mapping", name: format!("{server}/{user_name}") });
}

fn drop_table(unit: &mut Unit, entry: &LedgerEntry) {
    let sql =
        Sql::new("DROP FOREIGN TABLE IF EXISTS ").qualified(detail_str(entry, "schema"), detail_str(entry, "table"));
    unit.change(Action::Drop, "foreign_table", &entry.name, sql);
    unit.ledger.push(LedgerOp::Forget { kind: "foreign_table", name: entry.name.clone() });
}

/// Units that remove ledger-owned servers no longer declared, with their tables and mappings.
/// Dropping is RESTRICT: a user's view over a foreign table blocks it instead of vanishing.
pub(super) fn removed_sources(planner: &Planner) -> Vec<Unit> {
    let observed = planner.observed;
    let declared: BTreeSet<&str> = planner.stack.sources.iter().map(|s| s.spec.name.as_str()).collect();
    let mut units: Vec<Unit> = observed
        .ledger("server")
        .filter(|e| !declared.contains(e.name.as_str()))
        .map(|server| {
            let mut unit = Unit::new(ItemKind::Source, &server.name);
            for table in observed.ledger("foreign_table").filter(|t| detail_str(t, "server") == server.name) {
                drop_table(&mut unit, table);
            }
            for mapping in observed.ledger("user_mapping").filter(|m| detail_str(m, "server") == server.name) {
                drop_mapping(&mut unit, &server.name, detail_str(mapping, "user"));
            }
            for import in observed.ledger("import").filter(|i| detail_str(i, "server") == server.name) {
                unit.ledger.push(LedgerOp::Forget { kind: "import", name: import.name.clone() });
            }
            unit.change(Action::Drop, "server", &server.name, Sql::new("DROP SERVER IF EXISTS ").ident(&server.name));
            unit.ledger.push(LedgerOp::Forget { kind: "server", name: server.name.clone() });
            unit
        })
        .collect();
    let wanted: BTreeSet<&str> = planner.stack.sources.iter().map(|s| s.wrapper.name.as_str()).collect();
    for wrapper in observed.ledger("wrapper").filter(|w| !wanted.contains(w.name.as_str())) {
        let mut unit = Unit::new(ItemKind::Source, format!("wrapper {}", wrapper.name));
        let sql = Sql::new("DROP FOREIGN DATA WRAPPER IF EXISTS ").ident(&wrapper.name);
        unit.change(Action::Drop, "wrapper", &wrapper.name, sql);
        unit.ledger.push(LedgerOp::Forget { kind: "wrapper", name: wrapper.name.clone() });
        units.push(unit);
    }
    units
}

pub(super) fn source(planner: &mut Planner, source: &ValidatedSource) -> Unit {
    let spec = &source.spec;
    let observed = planner.observed;
    let mut unit = Unit::new(ItemKind::Source, &spec.name);

    if let Some((handler, validator)) = &source.wrapper.functions
        && planner.wrappers.insert(source.wrapper.name.clone())
    {
        let mut sql =
            Sql::new("CREATE FOREIGN DATA WRAPPER ").ident(&source.wrapper.name).push(" HANDLER ").ident(handler);
        if let Some(validator) = validator {
            sql = sql.push(" VALIDATOR ").ident(validator);
        }
        unit.change(Action::Create, "wrapper", &source.wrapper.name, sql);
        unit.ledger.push(LedgerOp::Record { kind: "wrapper", name: source.wrapper.name.clone(), detail: json!({}) });
    }

    let mut server_options = options::desired(&spec.options, &spec.secret_options, planner.secrets);
    if source.wrapper.name == "postgres_fdw" {
        server_options.entry("fetch_size").or_insert(OptionValue::Plain(POSTGRES_FDW_FETCH_SIZE));
    }
    if spec.same_server == Some(true) {
        server_options.insert("host", OptionValue::Plain(SAME_SERVER_HOST));
        server_options.insert("port", OptionValue::Plain(&observed.port));
    }
    match observed.servers.iter().find(|s| s.name == spec.name) {
        None => {
            let sql = Sql::new("CREATE SERVER ")
                .ident(&spec.name)
                .push(" FOREIGN DATA WRAPPER ")
                .ident(&source.wrapper.name)
                .append(options::create_clause(&server_options));
            unit.change(Action::Create, "server", &spec.name, sql);
            unit.ledger.push(LedgerOp::Record { kind: "server", name: spec.name.clone(), detail: json!({}) });
        }
        Some(found) if found.wrapper != source.wrapper.name => {
            return Unit::blocked(
                ItemKind::Source,
                &spec.name,
                format!(
                    "server {:?} exists with wrapper {:?}, not {:?}; rename the source or drop the server",
                    spec.name, found.wrapper, source.wrapper.name
                ),
            );
        }
        Some(found) => {
            if let Some(clause) = options::alter_clause(&found.options, &server_options) {
                unit.change(
                    Action::Alter,
                    "server",
                    &spec.name,
                    Sql::new("ALTER SERVER ").ident(&spec.name).append(clause),
                );
            }
        }
    }

    user_mapping(planner, source, &mut unit);
    let wanted_tables = tables(planner, source, &mut unit);
    imports(planner, source, &wanted_tables, &mut unit);
    unit
}

fn user_mapping(planner: &Planner, source: &ValidatedSource, unit: &mut Unit) {
    let server = &source.spec.name;
    let observed = planner.observed;
    let wanted_user = source.spec.user_mapping.as_ref().map(|m| mapping_user(m.user.as_deref()).1);
    for recorded in observed.ledger("user_mapping").filter(|m| detail_str(m, "server") == server) {
        if wanted_user.as_deref() != Some(detail_str(recorded, "user")) {
            drop_mapping(unit, server, detail_str(recorded, "user"));
        }
    }
    let Some(mapping) = &source.spec.user_mapping else { return };
    let (user_sql, user_name) = mapping_user(mapping.user.as_deref());
    let desired = options::desired(&mapping.options, &mapping.secret_options, planner.secrets);
    let name = format!("{server}/{user_name}");
    match observed.user_mappings.iter().find(|m| m.server == *server && m.user == user_name) {
        None => {
            let sql = Sql::new("CREATE USER MAPPING FOR ")
                .append(user_sql)
                .push(" SERVER ")
                .ident(server)
                .append(options::create_clause(&desired));
            unit.change(Action::Create, "user_mapping", &name, sql);
            unit.ledger.push(LedgerOp::Record {
                kind: "user_mapping",
                name,
                detail: json!({"server": server, "user": user_name}),
            });
        }
        Some(found) => {
            if let Some(clause) = options::alter_clause(&found.options, &desired) {
                let sql =
                    Sql::new("ALTER USER MAPPING FOR ").append(user_sql).push(" SERVER ").ident(server).append(clause);
                unit.change(Action::Alter, "user_mapping", name, sql);
            }
        }
    }
}

fn create_table(unit: &mut Unit, server: &str, table: &ValidatedTable, options: &BTreeMap<&str, OptionValue>) {
    let columns = table.columns.iter().map(|(name, ty)| Sql::default().ident(name).push(" ").type_name(ty));
    let sql = Sql::new("CREATE FOREIGN TABLE ")
        .qualified(&table.schema, &table.name)
        .push(" (")
        .join(columns, ", ")
        .push(") SERVER ")
        .ident(server)
        .append(options::create_clause(options));
    let name = format!("{}.{}", table.schema, table.name);
    unit.change(Action::Create, "foreign_table", &name, sql);
    unit.ledger.push(LedgerOp::Record {
        kind: "foreign_table",
        name,
        detail: json!({"schema": table.schema, "table": table.name, "server": server}),
    });
}

/// Declared tables: created, altered to match, re-created on another server; returns the
/// `schema.table` names the source wants from declarations.
fn tables(planner: &mut Planner, source: &ValidatedSource, unit: &mut Unit) -> BTreeSet<String> {
    let server = &source.spec.name;
    let observed = planner.observed;
    let mut wanted = BTreeSet::new();
    for table in &source.tables {
        let name = format!("{}.{}", table.schema, table.name);
        wanted.insert(name.clone());
        planner.ensure_schema(unit, &table.schema);
        let options: BTreeMap<&str, OptionValue> =
            table.options.iter().map(|(k, v)| (k.as_str(), OptionValue::Plain(v))).collect();
        match observed.foreign_tables.iter().find(|t| t.schema == table.schema && t.name == table.name) {
            None => {
                planner.touched_schemas.insert(table.schema.clone());
                create_table(unit, server, table, &options);
            }
            Some(found) if found.server != *server => {
                if !observed.owns("foreign_table", &name) {
                    *unit = Unit::blocked(
                        ItemKind::Source,
                        server,
                        format!(
                            "foreign table {name} exists on server {:?} and was not made by pgwarehouse",
                            found.server
                        ),
                    );
                    return wanted;
                }
                unit.change(
                    Action::Drop,
                    "foreign_table",
                    &name,
                    Sql::new("DROP FOREIGN TABLE ").qualified(&table.schema, &table.name),
                );
                create_table(unit, server, table, &options);
            }
            Some(found) => alter_table(unit, table, found, &options),
        }
    }
    wanted
}

fn alter_table(
    unit: &mut Unit,
    table: &ValidatedTable,
    found: &ObservedForeignTable,
    options: &BTreeMap<&str, OptionValue>,
) {
    let name = format!("{}.{}", table.schema, table.name);
    let mut actions = Vec::new();
    for (column, ty) in &table.columns {
        match found.columns.iter().find(|c| c.name == *column) {
            None => actions.push(Sql::new("ADD COLUMN ").ident(column).push(" ").type_name(ty)),
            Some(c) if canonical_type(&c.type_name) != ty.as_str() => {
                actions.push(Sql::new("ALTER COLUMN ").ident(column).push(" TYPE ").type_name(ty))
            }
            Some(_) => {}
        }
    }
    for column in found.columns.iter().filter(|c| !table.columns.iter().any(|(n, _)| *n == c.name)) {
        actions.push(Sql::new("DROP COLUMN ").ident(&column.name));
    }
    if !actions.is_empty() {
        let sql = Sql::new("ALTER FOREIGN TABLE ").qualified(&table.schema, &table.name).push(" ").join(actions, ", ");
        unit.change(Action::Alter, "foreign_table", &name, sql);
    }
    if let Some(clause) = options::alter_clause(&found.options, options) {
        unit.change(
            Action::Alter,
            "foreign_table",
            &name,
            Sql::new("ALTER FOREIGN TABLE ").qualified(&table.schema, &table.name).append(clause),
        );
    }
}

/// Imports run once, then repair: tables the import recorded and that went missing are imported
/// again by name. A changed import (only/except) imports what is new and drops what it excludes.
fn imports(planner: &mut Planner, source: &ValidatedSource, declared: &BTreeSet<String>, unit: &mut Unit) {
    let server = &source.spec.name;
    let observed = planner.observed;
    let mut keys = BTreeSet::new();
    for import in &source.spec.import_schemas {
        let key = import_key(server, import);
        keys.insert(key.clone());
        planner.ensure_schema(unit, &import.into);
        // What stands in the target schema blocks an import of the same name; declared tables
        // count too, as this unit may create them just before.
        let present: BTreeSet<&str> = observed
            .managed
            .relations
            .iter()
            .filter(|r| r.schema == import.into)
            .map(|r| r.name.as_str())
            .chain(source.tables.iter().filter(|t| t.schema == import.into).map(|t| t.name.as_str()))
            .collect();
        let recorded: Vec<&LedgerEntry> =
            observed.ledger("foreign_table").filter(|t| detail_str(t, "import") == key).collect();
        let detail = import_detail(server, import);
        let unchanged = observed.ledger("import").any(|e| e.name == key && e.detail == detail);
        for gone in
            recorded.iter().filter(|t| !import_wants(import, detail_str(t, "table")) && !declared.contains(&t.name))
        {
            drop_table(unit, gone);
        }
        let (limit, names): (bool, Vec<String>) = if unchanged {
            let missing = recorded
                .iter()
                .map(|t| detail_str(t, "table"))
                .filter(|t| import_wants(import, t) && !present.contains(t))
                .map(String::from)
                .collect();
            (true, missing)
        } else if import.only.is_empty() {
            (
                false,
                import
                    .except
                    .iter()
                    .cloned()
                    .chain(present.iter().map(|t| t.to_string()))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            )
        } else {
            (true, import.only.iter().filter(|t| !present.contains(t.as_str())).cloned().collect())
        };
        if limit && names.is_empty() {
            if !unchanged {
                unit.ledger.push(LedgerOp::Record { kind: "import", name: key, detail });
            }
            continue;
        }
        planner.touched_schemas.insert(import.into.clone());
        let list = names.iter().map(|t| Sql::default().ident(t));
        let filter = match (limit, names.is_empty()) {
            (true, _) => Sql::new(" LIMIT TO (").join(list, ", ").push(")"),
            (false, true) => Sql::default(),
            (false, false) => Sql::new(" EXCEPT (").join(list, ", ").push(")"),
        };
        let sql = Sql::new("IMPORT FOREIGN SCHEMA ")
            .ident(&import.remote_schema)
            .append(filter)
            .push(" FROM SERVER ")
            .ident(server)
            .push(" INTO ")
            .ident(&import.into);
        unit.change(Action::Create, "import", &key, sql);
        unit.ledger.push(LedgerOp::RecordImported {
            server: server.clone(),
            schema: import.into.clone(),
            import: key.clone(),
            existing: present.iter().map(|t| t.to_string()).collect(),
        });
        if !unchanged {
            unit.ledger.push(LedgerOp::Record { kind: "import", name: key, detail });
        }
    }
    for entry in observed.ledger("import").filter(|e| detail_str(e, "server") == server && !keys.contains(&e.name)) {
        for table in observed
            .ledger("foreign_table")
            .filter(|t| detail_str(t, "import") == entry.name && !declared.contains(&t.name))
        {
            drop_table(unit, table);
        }
        unit.ledger.push(LedgerOp::Forget { kind: "import", name: entry.name.clone() });
    }
    for table in observed.ledger("foreign_table").filter(|t| {
        detail_str(t, "server") == server && t.detail.get("import").is_none() && !declared.contains(&t.name)
    }) {
        drop_table(unit, table);
    }
}
