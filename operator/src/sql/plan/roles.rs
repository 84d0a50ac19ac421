//! Roles for BI tools: created with their password, kept in step with the Secret, granted
//! schema-wide privileges on present and future tables; removed roles are dropped only when
//! pgwarehouse created them, after handing what they own to the operator's user.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Action, ItemKind, Planner, Unit};
use crate::api::RoleSpec;
use crate::sql::ledger::LedgerOp;
use crate::sql::quote::Sql;

/// Tells a changed password without keeping it: the ledger stores this, not the password.
fn password_fingerprint(role: &str, password: &str) -> String {
    let digest = Sha256::digest(format!("pgwarehouse role password\0{role}\0{password}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn privileges(list: &[String]) -> BTreeSet<String> {
    list.iter().map(|p| p.to_ascii_uppercase()).collect()
}

fn privilege_list(privs: &BTreeSet<String>) -> Sql {
    // Privileges are validated against a fixed keyword list; they are keywords, not identifiers.
    Sql::default().join(privs.iter().map(|p| keyword(p)), ", ")
}

fn keyword(privilege: &str) -> Sql {
    match privilege {
        "SELECT" => Sql::new("SELECT"),
        "INSERT" => Sql::new("INSERT"),
        "UPDATE" => Sql::new("UPDATE"),
        "DELETE" => Sql::new("DELETE"),
        "TRUNCATE" => Sql::new("TRUNCATE"),
        "REFERENCES" => Sql::new("REFERENCES"),
        _ => Sql::new("TRIGGER"),
    }
}

pub(super) fn roles(planner: &Planner) -> Vec<Unit> {
    let observed = planner.observed;
    let mut units: Vec<Unit> = planner.stack.spec.roles.iter().map(|r| role(planner, r)).collect();
    let declared: BTreeSet<&str> = planner.stack.spec.roles.iter().map(|r| r.name.as_str()).collect();
    let removed: BTreeSet<&str> = observed
        .ledger("role")
        .chain(observed.ledger("role_password"))
        .chain(observed.ledger("grant"))
        .map(|e| e.detail.get("role").and_then(Value::as_str).unwrap_or(&e.name))
        .filter(|name| !declared.contains(name))
        .collect();
    for name in removed {
        let mut unit = Unit::new(ItemKind::Role, name);
        revoke_recorded(planner, name, &BTreeMap::new(), &mut unit);
        if observed.owns("role", name) && observed.managed.roles.iter().any(|r| r.name == name) {
            // What the role owns stays, owned by the operator's user; then its grants go.
            unit.change(
                Action::Alter,
                "role",
                name,
                Sql::new("REASSIGN OWNED BY ").ident(name).push(" TO CURRENT_USER"),
            );
            unit.change(Action::Revoke, "role", name, Sql::new("DROP OWNED BY ").ident(name));
            unit.change(Action::Drop, "role", name, Sql::new("DROP ROLE IF EXISTS ").ident(name));
        }
        for kind in ["role", "role_password"] {
            if observed.owns(kind, name) {
                unit.ledger.push(LedgerOp::Forget { kind, name: name.to_string() });
            }
        }
        units.push(unit);
    }
    units
}

fn role(planner: &Planner, spec: &RoleSpec) -> Unit {
    let observed = planner.observed;
    let name = &spec.name;
    let mut unit = Unit::new(ItemKind::Role, name);
    let login = spec.login.unwrap_or(true);
    let password = spec.password_secret_ref.as_ref().map(|r| planner.secrets.get(r));
    let fingerprint = password.map(|p| password_fingerprint(name, p));
    let recorded_fingerprint = observed
        .ledger("role_password")
        .find(|e| e.name == *name)
        .and_then(|e| e.detail.get("fingerprint").and_then(Value::as_str));
    let login_sql = |sql: Sql| if login { sql.push(" LOGIN") } else { sql.push(" NOLOGIN") };
    match observed.managed.roles.iter().find(|r| r.name == *name) {
        None => {
            let mut sql = login_sql(Sql::new("CREATE ROLE ").ident(name));
            if let Some(password) = password {
                sql = sql.push(" PASSWORD ").secret(password);
            }
            unit.change(Action::Create, "role", name, sql);
            unit.ledger.push(LedgerOp::Record { kind: "role", name: name.clone(), detail: json!({}) });
        }
        Some(found) => {
            if found.login != login {
                unit.change(Action::Alter, "role", name, login_sql(Sql::new("ALTER ROLE ").ident(name)));
            }
            if let Some(password) = password.filter(|_| fingerprint.as_deref() != recorded_fingerprint) {
                unit.change(
                    Action::Alter,
                    "role",
                    name,
                    Sql::new("ALTER ROLE ").ident(name).push(" PASSWORD ").secret(password),
                );
            }
        }
    }
    if let Some(fingerprint) = fingerprint.filter(|f| Some(f.as_str()) != recorded_fingerprint) {
        unit.ledger.push(LedgerOp::Record {
            kind: "role_password",
            name: name.clone(),
            detail: json!({"fingerprint": fingerprint}),
        });
    }
    let desired: BTreeMap<String, BTreeSet<String>> =
        spec.grants.iter().map(|g| (g.schema.clone(), privileges(&g.privileges))).collect();
    for (schema, privs) in &desired {
        // A schema another item of this plan creates: made here too, so that the grant does
        // not fail with that item (a misspelled schema still fails).
        if planner.schemas.contains(schema) {
            planner.create_missing_schema(&mut unit, schema);
        }
        grant(planner, name, schema, privs, &mut unit);
    }
    revoke_recorded(planner, name, &desired, &mut unit);
    unit
}

fn grant(planner: &Planner, role: &str, schema: &str, privs: &BTreeSet<String>, unit: &mut Unit) {
    let managed = &planner.observed.managed;
    let label = format!("{role}/{schema}");
    let held = |list: &[crate::sql::observe::ObservedGrant], p: &str| {
        list.iter().find(|g| g.role == role && g.schema == schema && g.privilege == p).map(|g| g.tables)
    };
    if held(&managed.schema_usage, "USAGE").is_none() {
        unit.change(
            Action::Grant,
            "grant",
            &label,
            Sql::new("GRANT USAGE ON SCHEMA ").ident(schema).push(" TO ").ident(role),
        );
    }
    let tables = managed.table_counts.get(schema).copied().unwrap_or(0);
    let missing_on_tables: BTreeSet<String> = privs
        .iter()
        .filter(|p| planner.touched(schema) || held(&managed.table_grants, p).unwrap_or(0) < tables)
        .cloned()
        .collect();
    if !missing_on_tables.is_empty() {
        let sql = Sql::new("GRANT ")
            .append(privilege_list(&missing_on_tables))
            .push(" ON ALL TABLES IN SCHEMA ")
            .ident(schema)
            .push(" TO ")
            .ident(role);
        unit.change(Action::Grant, "grant", &label, sql);
    }
    let missing_default: BTreeSet<String> =
        privs.iter().filter(|p| held(&managed.default_grants, p).is_none()).cloned().collect();
    if !missing_default.is_empty() {
        let sql = Sql::new("ALTER DEFAULT PRIVILEGES IN SCHEMA ")
            .ident(schema)
            .push(" GRANT ")
            .append(privilege_list(&missing_default))
            .push(" ON TABLES TO ")
            .ident(role);
        unit.change(Action::Grant, "grant", &label, sql);
    }
    let detail = json!({"role": role, "schema": schema, "privileges": privs});
    if !planner.observed.ledger("grant").any(|g| g.name == label && g.detail == detail) {
        unit.ledger.push(LedgerOp::Record { kind: "grant", name: label, detail });
    }
}

/// Revokes what the ledger says pgwarehouse granted and the spec no longer wants.
fn revoke_recorded(planner: &Planner, role: &str, desired: &BTreeMap<String, BTreeSet<String>>, unit: &mut Unit) {
    let role_exists = planner.observed.managed.roles.iter().any(|r| r.name == role);
    for entry in planner.observed.ledger("grant").filter(|g| g.detail.get("role").and_then(Value::as_str) == Some(role))
    {
        let schema = entry.detail.get("schema").and_then(Value::as_str).unwrap_or_default();
        if desired.contains_key(schema) {
            let recorded: BTreeSet<String> = entry.detail["privileges"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p.as_str().map(String::from)).collect())
                .unwrap_or_default();
            let dropped: BTreeSet<String> = recorded.difference(&desired[schema]).cloned().collect();
            if !dropped.is_empty() && role_exists {
                revoke(unit, role, schema, &dropped, false);
            }
            continue;
        }
        if role_exists && planner.schemas.contains(schema) {
            let all = entry.detail["privileges"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p.as_str().map(String::from)).collect())
                .unwrap_or_default();
            revoke(unit, role, schema, &all, true);
        }
        unit.ledger.push(LedgerOp::Forget { kind: "grant", name: entry.name.clone() });
    }
}

fn revoke(unit: &mut Unit, role: &str, schema: &str, privs: &BTreeSet<String>, usage: bool) {
    let label = format!("{role}/{schema}");
    if !privs.is_empty() {
        let list = privilege_list(privs);
        unit.change(
            Action::Revoke,
            "grant",
            &label,
            Sql::new("REVOKE ")
                .append(list.clone())
                .push(" ON ALL TABLES IN SCHEMA ")
                .ident(schema)
                .push(" FROM ")
                .ident(role),
        );
        unit.change(
            Action::Revoke,
            "grant",
            &label,
            Sql::new("ALTER DEFAULT PRIVILEGES IN SCHEMA ")
                .ident(schema)
                .push(" REVOKE ")
                .append(list)
                .push(" ON TABLES FROM ")
                .ident(role),
        );
    }
    if usage {
        unit.change(
            Action::Revoke,
            "grant",
            &label,
            Sql::new("REVOKE USAGE ON SCHEMA ").ident(schema).push(" FROM ").ident(role),
        );
    }
}
