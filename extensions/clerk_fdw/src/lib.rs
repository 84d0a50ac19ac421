//! `clerk_fdw`: Clerk's users, organizations and organization memberships as foreign tables.
//! Thin glue between the shared scan layer ([`fdw_scan`]) and the pure [`clerk_api`] crate:
//! `user_id` and `organization_id` restrictions become Clerk's own filtered endpoints, every
//! page is read when the scan starts, and each record's columns are filled by name.

mod options;

use clerk_api::{fields, ClerkError, Client, Field, Filter, Kind, Limits, Object};
use pgrx::prelude::*;
use pgrx::{IntoDatum, JsonB};
use serde_json::Value as Json;

use fdw_scan::{ForeignSource, Op, Qual, Reader, ReaderFailed, Row, Table, Value};
use options::{OptionsError, ServerConfig};

pgrx::pg_module_magic!();

/// Microseconds between the Unix epoch and Postgres's (2000-01-01).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

#[derive(Debug, thiserror::Error)]
enum ClerkFdwError {
    #[error("{0}")]
    Options(#[from] OptionsError),
    #[error("{0}")]
    Clerk(#[from] ClerkError),
    #[error("{0}")]
    Reader(#[from] ReaderFailed),
    #[error("foreign table {table}: object {object} has no column {name} (it has: {known})")]
    UnknownColumn { table: String, object: String, name: String, known: String },
    #[error("foreign table {table}: column {name} cannot be {type_name}; it can be {allowed}")]
    ColumnType { table: String, name: String, type_name: String, allowed: &'static str },
}

/// The Postgres types a kind of value can be read into.
fn accepts(kind: Kind, field: Field, type_oid: pg_sys::Oid) -> Result<(), &'static str> {
    let (ok, allowed) = match kind {
        Kind::Text => ([pg_sys::TEXTOID, pg_sys::VARCHAROID].contains(&type_oid), "text or varchar"),
        Kind::Time => (
            [pg_sys::INT8OID, pg_sys::TIMESTAMPTZOID].contains(&type_oid),
            "bigint (Clerk's epoch milliseconds) or timestamptz",
        ),
        Kind::Integer => ([pg_sys::INT8OID, pg_sys::INT4OID].contains(&type_oid), "bigint or integer"),
        Kind::Boolean => (type_oid == pg_sys::BOOLOID, "boolean"),
        Kind::Json if field == Field::PhoneNumbers => {
            ([pg_sys::JSONBOID, pg_sys::TEXTOID].contains(&type_oid), "jsonb or text (comma-separated)")
        }
        Kind::Json => (type_oid == pg_sys::JSONBOID, "jsonb"),
    };
    if ok {
        Ok(())
    } else {
        Err(allowed)
    }
}

/// A JSON value as a datum of `type_oid` (one [`accepts`] said yes to); JSON null is NULL.
fn datum(value: &Json, type_oid: pg_sys::Oid) -> Option<pg_sys::Datum> {
    match value {
        Json::Null => None,
        _ if type_oid == pg_sys::JSONBOID => JsonB(value.clone()).into_datum(),
        Json::String(text) if type_oid == pg_sys::TEXTOID || type_oid == pg_sys::VARCHAROID => {
            text.as_str().into_datum()
        }
        Json::Array(items) if type_oid == pg_sys::TEXTOID => {
            let texts: Vec<&str> = items.iter().filter_map(Json::as_str).collect();
            texts.join(", ").into_datum()
        }
        Json::Bool(flag) if type_oid == pg_sys::BOOLOID => flag.into_datum(),
        Json::Number(number) if type_oid == pg_sys::INT8OID => number.as_i64().into_datum(),
        Json::Number(number) if type_oid == pg_sys::INT4OID => {
            number.as_i64().and_then(|n| i32::try_from(n).ok()).into_datum()
        }
        Json::Number(millis) if type_oid == pg_sys::TIMESTAMPTZOID => millis
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000)?.checked_sub(POSTGRES_EPOCH_MICROS))
            .and_then(|micros| TimestampWithTimeZone::try_from(micros).ok())
            .into_datum(),
        other if type_oid == pg_sys::TEXTOID || type_oid == pg_sys::VARCHAROID => other.to_string().into_datum(),
        _ => None,
    }
}

/// Ids a restriction names; `None` when its value cannot equal any (NULL).
fn ids(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Text(id) => Some(vec![id.clone()]),
        Value::List(items) => Some(
            items
                .iter()
                .filter_map(|item| match item {
                    Value::Text(id) => Some(id.clone()),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

struct ClerkScan {
    config: ServerConfig,
    object: Object,
    outputs: Vec<(usize, Field, pg_sys::Oid)>,
    /// Pages as a reader thread fetches them, while rows are already being returned.
    pages: Option<Reader<Vec<Json>, ClerkFdwError>>,
    page: std::vec::IntoIter<Json>,
}

impl ForeignSource for ClerkScan {
    const NAME: &'static str = "clerk_fdw";
    type Error = ClerkFdwError;

    fn pushable(column: &str, op: Op) -> bool {
        matches!((column, op), ("user_id" | "organization_id", Op::Eq | Op::In))
    }

    fn open(table: &Table) -> Result<Self, ClerkFdwError> {
        let object = options::table_object(&table.options)?;
        let config = ServerConfig::read(&table.server_name, &table.server, &table.mapping)?;
        let known = fields::columns(object);
        let mut outputs = Vec::new();
        for column in &table.columns {
            let Some((_, field, kind)) = known.iter().find(|(name, ..)| *name == column.name) else {
                return Err(ClerkFdwError::UnknownColumn {
                    table: table.name.clone(),
                    object: table.options["object"].clone(),
                    name: column.name.clone(),
                    known: known.iter().map(|(name, ..)| *name).collect::<Vec<_>>().join(", "),
                });
            };
            accepts(*kind, *field, column.type_oid).map_err(|allowed| ClerkFdwError::ColumnType {
                table: table.name.clone(),
                name: column.name.clone(),
                type_name: fdw_scan::type_name(column.type_oid),
                allowed,
            })?;
            if column.wanted {
                outputs.push((column.index, *field, column.type_oid));
            }
        }
        Ok(ClerkScan { config, object, outputs, pages: None, page: Vec::new().into_iter() })
    }

    fn start(&mut self, quals: &[Qual]) -> Result<(), ClerkFdwError> {
        self.stop_reading();
        self.page = Vec::new().into_iter();
        let mut filter = Filter::default();
        for qual in quals {
            let Some(ids) = ids(&qual.value) else { return Ok(()) };
            let narrowed = match (qual.column.as_str(), self.object) {
                ("user_id", Object::Users | Object::OrganizationMemberships) => &mut filter.user_ids,
                ("organization_id", Object::Organizations | Object::OrganizationMemberships) => {
                    &mut filter.organization_ids
                }
                _ => continue,
            };
            // Two restrictions on one column: only ids both allow.
            *narrowed = Some(match narrowed.take() {
                Some(before) => before.into_iter().filter(|id| ids.contains(id)).collect(),
                None => ids,
            });
        }
        let limits = Limits { timeout: self.config.timeout, ..Limits::default() };
        let mut client = Client::new(&self.config.api_url, &self.config.api_key, limits)?;
        let object = self.object;
        self.pages = Some(Reader::start(move |each, wanted| {
            Ok(client.list_each(object, &filter, &mut |page| wanted() && each(page))?)
        })?);
        Ok(())
    }

    fn next(&mut self, row: &mut Row) -> Result<bool, ClerkFdwError> {
        let record = loop {
            if let Some(record) = self.page.next() {
                break record;
            }
            let Some(pages) = &mut self.pages else { return Ok(false) };
            match pages.receive()? {
                Some(page) => self.page = page.into_iter(),
                None => return Ok(false),
            }
        };
        for &(index, field, type_oid) in &self.outputs {
            row.set(index, datum(&fields::read(field, &record), type_oid));
        }
        Ok(true)
    }

    fn end(&mut self) {
        self.stop_reading();
        self.page = Vec::new().into_iter();
    }
}

impl ClerkScan {
    /// One reader thread per scan: the previous one has ended before another starts.
    fn stop_reading(&mut self) {
        if let Some(mut pages) = self.pages.take() {
            pages.stop();
        }
    }
}

#[pg_extern(create_or_replace)]
fn clerk_fdw_handler() -> PgBox<pg_sys::FdwRoutine> {
    fdw_scan::routine::<ClerkScan>().into_pg_boxed()
}

#[pg_extern(create_or_replace)]
fn clerk_fdw_validator(options: Vec<Option<String>>, catalog: Option<pg_sys::Oid>) {
    if let Err(error) = options::validate(&options, fdw_scan::validator_target(catalog)) {
        fdw_scan::raise::<ClerkScan>(error);
    }
}

// The statement a validator refuses can hold a credential (a URL's `user:password@`, a mapping's
// password): Postgres would log it under the ERROR. Set for the call, the setting keeps it out;
// a SUSET setting needs the superuser's rights, which the function has only for this call.
pgrx::extension_sql!(
    "ALTER FUNCTION clerk_fdw_validator(text[], oid) SECURITY DEFINER \
     SET search_path = pg_catalog, pg_temp SET log_min_error_statement = panic;",
    name = "validator_keeps_statements_out_of_the_log",
    requires = [clerk_fdw_validator]
);
