use super::{Action, ItemKind, Planner, Unit};
use crate::api::ExtensionSpec;
use crate::sql::quote::Sql;

pub(super) fn extension(planner: &mut Planner, ext: &ExtensionSpec) -> Unit {
    let mut unit = Unit::new(ItemKind::Extension, &ext.name);
    if let Some(schema) = &ext.schema {
        planner.ensure_schema(&mut unit, schema);
    }
    match planner.observed.extension(&ext.name) {
        None => {
            let mut sql = Sql::new("CREATE EXTENSION IF NOT EXISTS ").ident(&ext.name);
            if let Some(schema) = &ext.schema {
                sql = sql.push(" SCHEMA ").ident(schema);
            }
            if let Some(version) = &ext.version {
                sql = sql.push(" VERSION ").literal(version);
            }
            unit.change(Action::Create, "extension", &ext.name, sql);
        }
        Some(found) => {
            if let Some(version) = ext.version.as_ref().filter(|v| **v != found.version) {
                let sql = Sql::new("ALTER EXTENSION ").ident(&ext.name).push(" UPDATE TO ").literal(version);
                unit.change(Action::Alter, "extension", &ext.name, sql);
            }
            if let Some(schema) = ext.schema.as_ref().filter(|s| **s != found.schema) {
                let sql = Sql::new("ALTER EXTENSION ").ident(&ext.name).push(" SET SCHEMA ").ident(schema);
                unit.change(Action::Alter, "extension", &ext.name, sql);
            }
        }
    }
    unit
}
