//! Validation before any SQL: pure, reports every error at once, each naming its field path.
//!
//! The pipeline's later stages take a [`ValidatedStack`], so an unchecked spec cannot reach them.

pub mod backup;
mod interval;
mod schedule;
mod wrappers;

pub use crate::field_errors::{FieldError, ValidationErrors};
use std::collections::{BTreeMap, BTreeSet};

pub use backup::{Repository, RestoreTarget, S3Repository, ValidatedBackup, ValidatedRestore};
pub use interval::Interval;
pub use schedule::{Schedule, is_stale, next_run, parse_schedule};
pub use wrappers::Wrapper;
use wrappers::known_wrapper;

use crate::api::{
    DataWarehouseStack, DataWarehouseStackSpec, Epoch, ExtensionSpec, ForeignTableSpec, PartitionSpec, RefreshMode,
    RefreshSpec, RoleSpec, ScheduleSpec, SecretKeyRef, SecretValue, SourceSpec,
};
use crate::sql::quote::TypeName;
use crate::template::{self, LoadError};

pub const DEFAULT_DATABASE: &str = "warehouse";
/// Leaves room for `-superuser` and the StatefulSet's pod and revision suffixes.
pub const MAX_STACK_NAME: usize = 52;
/// The schema where the engine keeps its ledger; no spec item may use it.
pub const LEDGER_SCHEMA: &str = "pgwarehouse";
/// Prefix of the pg_cron jobs the engine schedules for itself.
pub const INTERNAL_JOB_PREFIX: &str = "pgwarehouse-";
/// Connection options the engine fills in for a `sameServer` source.
pub const SAME_SERVER_OPTIONS: &[&str] = &["host", "hostaddr", "port"];
/// How the warehouse's server reaches itself: loopback is in `listen_addresses` in a pod and locally.
pub const SAME_SERVER_HOST: &str = "127.0.0.1";
pub const TABLE_PRIVILEGES: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"];
/// postgresql.conf parameters the operator sets itself.
pub const OPERATOR_OWNED_PARAMETERS: &[&str] = &[
    "shared_preload_libraries",
    "cron.database_name",
    "cron.use_background_workers",
    "cron.host",
    "max_worker_processes",
    "listen_addresses",
    "port",
    "data_directory",
    "hba_file",
    "ident_file",
    "unix_socket_directories",
    "archive_mode",
    "archive_command",
    "archive_library",
    "restore_command",
];

#[derive(Debug, Clone)]
pub struct ValidatedTable {
    pub schema: String,
    pub name: String,
    pub columns: Vec<(String, TypeName)>,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ValidatedSource {
    pub spec: SourceSpec,
    pub wrapper: Wrapper,
    pub tables: Vec<ValidatedTable>,
}

#[derive(Debug, Clone)]
pub struct ValidatedPartition {
    pub spec: PartitionSpec,
    pub schema: String,
    pub table: String,
    pub interval: Interval,
    pub retention: Option<Interval>,
    pub columnar_after: Option<Interval>,
}

#[derive(Debug, Clone)]
pub struct ValidatedRefresh {
    pub spec: RefreshSpec,
    pub schema: String,
    pub table: String,
    pub schedule: Schedule,
    /// The statement timeout of one run, in milliseconds.
    pub timeout_ms: Option<i64>,
}

impl ValidatedRefresh {
    /// The pg_cron job that runs it.
    pub fn job_name(&self) -> String {
        format!("{INTERNAL_JOB_PREFIX}refresh-{}", self.spec.name)
    }
}

#[derive(Debug, Clone)]
pub struct ValidatedSchedule {
    pub spec: ScheduleSpec,
    pub schedule: Schedule,
}

/// A spec that passed validation, with its template merged and its implied parts made explicit.
#[derive(Debug, Clone)]
pub struct ValidatedStack {
    pub name: String,
    pub namespace: Option<String>,
    /// Set when the stack came from the API server; owner references need it.
    pub uid: Option<String>,
    pub spec: DataWarehouseStackSpec,
    pub database: String,
    /// Declared extensions plus those the sources, schedules and partitions need, in order.
    pub extensions: Vec<ExtensionSpec>,
    pub sources: Vec<ValidatedSource>,
    pub schedules: Vec<ValidatedSchedule>,
    pub partitions: Vec<ValidatedPartition>,
    pub refreshes: Vec<ValidatedRefresh>,
    pub backup: Option<ValidatedBackup>,
    pub restore: Option<ValidatedRestore>,
}

impl ValidatedStack {
    /// The stack's namespace; `default` for a manifest that names none, as kubectl would use.
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// The Postgres servers the spec asks for; more than one runs under Patroni.
    pub fn instances(&self) -> u32 {
        self.spec.postgres.instances.unwrap_or(1)
    }

    pub fn highly_available(&self) -> bool {
        self.instances() > 1
    }

    pub fn needs_pg_cron(&self) -> bool {
        self.extensions.iter().any(|e| e.name == "pg_cron")
    }

    /// Every Secret key the stack reads, with the field that reads it.
    pub fn secret_refs(&self) -> Vec<(String, SecretKeyRef)> {
        self.spec.secret_refs()
    }
}

/// Lowercase letters, digits and `-`, starting and ending with a letter or digit, 1 to 63 long.
fn is_dns1123_label(label: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    label.len() <= 63
        && label.starts_with(alnum)
        && label.ends_with(alnum)
        && label.chars().all(|c| alnum(c) || c == '-')
}

/// Collects errors as validation walks the spec.
#[derive(Default)]
struct Report(Vec<FieldError>);

impl Report {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { path: path.into(), message: message.into() });
    }

    /// A Postgres identifier: 1 to 63 bytes, no NUL.
    fn ident(&mut self, path: &str, name: &str) {
        if name.is_empty() {
            self.error(path, "must not be empty");
        } else if name.len() > 63 {
            self.error(path, format!("{name:?} is {} bytes; Postgres names are at most 63", name.len()));
        } else if name.contains('\0') {
            self.error(path, "must not contain a NUL character");
        }
    }

    /// A name users own: an identifier that is not Postgres's or ours.
    fn user_name(&mut self, path: &str, name: &str, what: &str) {
        self.ident(path, name);
        let lower = name.to_ascii_lowercase();
        let reserved = lower.starts_with("pg_")
            || match what {
                "schema" => ["information_schema", LEDGER_SCHEMA].contains(&lower.as_str()),
                "role" => ["postgres", "public", "current_user", "session_user", crate::sql::refresh::REFRESH_ROLE]
                    .contains(&lower.as_str()),
                "database" => ["postgres", "template0", "template1"].contains(&lower.as_str()),
                _ => false,
            };
        if reserved {
            self.error(path, format!("{name:?} is a reserved {what} name"));
        }
    }

    fn text(&mut self, path: &str, value: &str) {
        if value.contains('\0') {
            self.error(path, "must not contain a NUL character");
        }
    }

    fn options<'a>(&mut self, path: &str, keys: impl Iterator<Item = &'a String>) {
        for key in keys {
            self.ident(&format!("{path}.{key}"), key);
        }
    }

    /// A Secret's name is a DNS subdomain; its keys are made of `[-._a-zA-Z0-9]`.
    fn secret(&mut self, path: &str, value: &SecretKeyRef) {
        let name = &value.name;
        let name_ok = name.len() <= 253 && name.split('.').all(is_dns1123_label);
        if name.is_empty() {
            self.error(format!("{path}.name"), "must name a Secret");
        } else if !name_ok {
            self.error(format!("{path}.name"), format!("{name:?} is not a Secret name (a lowercase DNS subdomain)"));
        }
        let key = &value.key;
        if key.is_empty() {
            self.error(format!("{path}.key"), "must name a key of the Secret");
        } else if key.len() > 253
            || key == "."
            || key == ".."
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            self.error(format!("{path}.key"), format!("{key:?} is not a Secret key (letters, digits, '-', '_', '.')"));
        }
    }

    fn duplicates<'a>(&mut self, path: &str, names: impl Iterator<Item = &'a str>) {
        let mut seen = BTreeSet::new();
        for (i, name) in names.enumerate() {
            if !seen.insert(name) {
                self.error(format!("{path}[{i}]"), format!("{name:?} is declared twice"));
            }
        }
    }
}

/// A manifest's text → every error it has (structure and meaning together), or the validated stack.
pub fn validate_manifest(yaml: &str) -> Result<ValidatedStack, LoadError> {
    let (stack, mut errors) = template::read_manifest(yaml)?;
    match validate(&stack) {
        Ok(validated) if errors.is_empty() => Ok(validated),
        Ok(_) => Err(LoadError::Invalid(ValidationErrors(errors))),
        Err(ValidationErrors(more)) => {
            errors.extend(more);
            Err(LoadError::Invalid(ValidationErrors(errors)))
        }
    }
}

/// Validates a stack (template already merged); returns it in the form later stages take.
pub fn validate(stack: &DataWarehouseStack) -> Result<ValidatedStack, ValidationErrors> {
    let spec = &stack.spec;
    let mut report = Report::default();
    let name = stack.metadata.name.as_deref().unwrap_or_default();
    // Service names are DNS-1035 labels: a DNS-1123 label that starts with a letter.
    let dns_label = is_dns1123_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !dns_label || name.len() > MAX_STACK_NAME {
        report.error(
            "metadata.name",
            format!("{name:?} must be a lowercase DNS label of at most {MAX_STACK_NAME} characters (it names Services and a StatefulSet)"),
        );
    }
    let database = spec.postgres.database.clone().unwrap_or_else(|| DEFAULT_DATABASE.to_string());
    report.user_name("spec.postgres.database", &database, "database");
    // Postgres compares parameter names case-insensitively: so does every check here.
    let mut spelled: BTreeMap<String, &String> = BTreeMap::new();
    for (key, value) in &spec.postgres.parameters {
        let path = format!("spec.postgres.parameters.{key}");
        let name_ok = key.starts_with(|c: char| c.is_ascii_alphabetic())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let lowercase = key.to_ascii_lowercase();
        if OPERATOR_OWNED_PARAMETERS.contains(&lowercase.as_str()) {
            report.error(path, "is set by the operator and cannot be overridden");
        } else if let Some(first) = spelled.insert(lowercase, key) {
            report.error(
                path,
                format!("is the same parameter as {first:?} (Postgres ignores case in names): set it once"),
            );
        } else if !name_ok {
            report.error(path, "is not a Postgres parameter name");
        } else if value.contains(['\n', '\r', '\0']) {
            report.error(path, "must be a single line");
        }
    }

    report.duplicates("spec.extensions", spec.extensions.iter().map(|e| e.name.as_str()));
    for (i, ext) in spec.extensions.iter().enumerate() {
        report.ident(&format!("spec.extensions[{i}].name"), &ext.name);
        if let Some(schema) = &ext.schema {
            report.user_name(&format!("spec.extensions[{i}].schema"), schema, "schema");
        }
        if let Some(version) = &ext.version {
            report.text(&format!("spec.extensions[{i}].version"), version);
        }
    }

    report.duplicates("spec.sources", spec.sources.iter().map(|s| s.name.as_str()));
    let sources: Vec<_> = spec.sources.iter().enumerate().filter_map(|(i, s)| source(&mut report, i, s)).collect();
    let mut table_names = BTreeSet::new();
    for (i, s) in spec.sources.iter().enumerate() {
        for (j, t) in s.tables.iter().enumerate() {
            let key = (t.schema.clone().unwrap_or_else(|| "public".into()), t.name.clone());
            if !table_names.insert(key.clone()) {
                report
                    .error(format!("spec.sources[{i}].tables[{j}]"), format!("{}.{} is declared twice", key.0, key.1));
            }
        }
    }

    report.duplicates("spec.migrations", spec.migrations.iter().map(|m| m.name.as_str()));
    for (i, m) in spec.migrations.iter().enumerate() {
        report.ident(&format!("spec.migrations[{i}].name"), &m.name);
        if m.sql.trim().is_empty() {
            report.error(format!("spec.migrations[{i}].sql"), "must not be empty");
        }
        report.text(&format!("spec.migrations[{i}].sql"), &m.sql);
    }

    report.duplicates("spec.schedules", spec.schedules.iter().map(|s| s.name.as_str()));
    let schedules = spec.schedules.iter().enumerate().filter_map(|(i, s)| schedule(&mut report, i, s)).collect();

    report.duplicates("spec.partitions", spec.partitions.iter().map(|p| p.table.as_str()));
    let partitions = spec.partitions.iter().enumerate().filter_map(|(i, p)| partition(&mut report, i, p)).collect();

    report.duplicates("spec.roles", spec.roles.iter().map(|r| r.name.as_str()));
    for (i, r) in spec.roles.iter().enumerate() {
        role(&mut report, i, r);
    }

    report.duplicates("spec.refreshes", spec.refreshes.iter().map(|r| r.name.as_str()));
    let refreshes = spec.refreshes.iter().enumerate().filter_map(|(i, r)| refresh(&mut report, i, r)).collect();

    distributed(&mut report, spec);
    high_availability(&mut report, spec);

    let backup = spec.backup.as_ref().map(|b| backup::backup(&mut report, b));
    let restore = spec
        .bootstrap
        .as_ref()
        .and_then(|b| b.restore.as_ref())
        .map(|r| backup::restore(&mut report, r, name, chrono::Utc::now()));

    if !report.0.is_empty() {
        return Err(ValidationErrors(report.0));
    }
    Ok(ValidatedStack {
        backup: backup.flatten(),
        restore: restore.flatten(),
        name: stack.metadata.name.clone().unwrap_or_default(),
        namespace: stack.metadata.namespace.clone(),
        uid: stack.metadata.uid.clone(),
        extensions: with_implied_extensions(spec),
        database,
        spec: spec.clone(),
        sources,
        schedules,
        partitions,
        refreshes,
    })
}

fn source(report: &mut Report, i: usize, s: &SourceSpec) -> Option<ValidatedSource> {
    let path = format!("spec.sources[{i}]");
    report.ident(&format!("{path}.name"), &s.name);
    report.ident(&format!("{path}.wrapper"), &s.wrapper);
    for (field, value) in [("extension", &s.extension), ("handler", &s.handler), ("validator", &s.validator)] {
        if let Some(v) = value {
            report.ident(&format!("{path}.{field}"), v);
        }
    }
    report.options(&format!("{path}.options"), s.options.keys());
    for (key, value) in &s.options {
        report.text(&format!("{path}.options.{key}"), value);
        if s.secret_options.contains_key(key) {
            report.error(format!("{path}.secretOptions.{key}"), "is also set in options; set it in one place");
        }
    }
    secret_options(report, &format!("{path}.secretOptions"), &s.secret_options);
    if s.same_server == Some(true) {
        if s.wrapper != "postgres_fdw" {
            report.error(format!("{path}.sameServer"), "only a postgres_fdw source can be the warehouse's own server");
        }
        for key in
            SAME_SERVER_OPTIONS.iter().filter(|k| s.options.contains_key(**k) || s.secret_options.contains_key(**k))
        {
            report.error(format!("{path}.options.{key}"), "is set by sameServer; remove it or sameServer");
        }
    }
    if let Some(m) = &s.user_mapping {
        if let Some(user) = &m.user {
            report.ident(&format!("{path}.userMapping.user"), user);
        }
        report.options(&format!("{path}.userMapping.options"), m.options.keys());
        for (key, value) in &m.options {
            report.text(&format!("{path}.userMapping.options.{key}"), value);
        }
        secret_options(report, &format!("{path}.userMapping.secretOptions"), &m.secret_options);
    }
    for (j, imp) in s.import_schemas.iter().enumerate() {
        let p = format!("{path}.importSchemas[{j}]");
        report.ident(&format!("{p}.remoteSchema"), &imp.remote_schema);
        report.user_name(&format!("{p}.into"), &imp.into, "schema");
        if !imp.only.is_empty() && !imp.except.is_empty() {
            report.error(&p, "set `only` or `except`, not both");
        }
        for (k, t) in imp.only.iter().chain(&imp.except).enumerate() {
            report.ident(&format!("{p}.{}[{k}]", if k < imp.only.len() { "only" } else { "except" }), t);
        }
    }
    if s.extension.is_none() {
        wrappers::check_options(report, &path, s);
    }
    let tables: Vec<_> =
        s.tables.iter().enumerate().filter_map(|(j, t)| table(report, &format!("{path}.tables[{j}]"), t)).collect();
    let wrapper = match (known_wrapper(&s.wrapper), &s.extension) {
        (_, Some(extension)) => Wrapper {
            name: s.wrapper.clone(),
            extension: extension.clone(),
            functions: s
                .handler
                .clone()
                .map(|h| (h, s.validator.clone()))
                .or_else(|| known_wrapper(&s.wrapper).and_then(|w| w.functions)),
        },
        (Some(known), None) => known,
        (None, None) => {
            report.error(
                format!("{path}.extension"),
                format!("wrapper {:?} is not one pgwarehouse knows; name the extension that provides it", s.wrapper),
            );
            return None;
        }
    };
    (tables.len() == s.tables.len()).then(|| ValidatedSource { spec: s.clone(), wrapper, tables })
}

fn secret_options(report: &mut Report, path: &str, options: &BTreeMap<String, SecretValue>) {
    report.options(path, options.keys());
    for (key, value) in options {
        report.secret(&format!("{path}.{key}.secretKeyRef"), &value.secret_key_ref);
    }
}

fn table(report: &mut Report, path: &str, t: &ForeignTableSpec) -> Option<ValidatedTable> {
    let schema = t.schema.clone().unwrap_or_else(|| "public".to_string());
    report.ident(&format!("{path}.name"), &t.name);
    report.user_name(&format!("{path}.schema"), &schema, "schema");
    report.options(&format!("{path}.options"), t.options.keys());
    for (key, value) in &t.options {
        report.text(&format!("{path}.options.{key}"), value);
    }
    if t.columns.is_empty() {
        report.error(format!("{path}.columns"), "declare at least one column");
    }
    report.duplicates(&format!("{path}.columns"), t.columns.iter().map(|c| c.name.as_str()));
    let mut columns = Vec::new();
    for (k, c) in t.columns.iter().enumerate() {
        report.ident(&format!("{path}.columns[{k}].name"), &c.name);
        match TypeName::parse(&c.type_name) {
            Some(ty) => columns.push((c.name.clone(), ty)),
            None => report
                .error(format!("{path}.columns[{k}].type"), format!("{:?} is not a Postgres type name", c.type_name)),
        }
    }
    (columns.len() == t.columns.len()).then(|| ValidatedTable {
        schema,
        name: t.name.clone(),
        columns,
        options: t.options.clone(),
    })
}

fn schedule(report: &mut Report, i: usize, s: &ScheduleSpec) -> Option<ValidatedSchedule> {
    let path = format!("spec.schedules[{i}]");
    report.ident(&format!("{path}.name"), &s.name);
    if s.name.starts_with(INTERNAL_JOB_PREFIX) {
        report.error(
            format!("{path}.name"),
            format!("names starting with {INTERNAL_JOB_PREFIX:?} are reserved for the operator's own jobs"),
        );
    }
    if s.command.trim().is_empty() {
        report.error(format!("{path}.command"), "must not be empty");
    }
    report.text(&format!("{path}.command"), &s.command);
    match parse_schedule(&s.schedule) {
        Ok(schedule) => Some(ValidatedSchedule { spec: s.clone(), schedule }),
        Err(message) => {
            report.error(format!("{path}.schedule"), message);
            None
        }
    }
}

fn refresh(report: &mut Report, i: usize, r: &RefreshSpec) -> Option<ValidatedRefresh> {
    let path = format!("spec.refreshes[{i}]");
    report.ident(&format!("{path}.name"), &r.name);
    let (schema, table) = r.target.split_once('.').unwrap_or(("public", r.target.as_str()));
    report.user_name(&format!("{path}.target"), schema, "schema");
    report.ident(&format!("{path}.target"), table);
    if r.query.trim().is_empty() {
        report.error(format!("{path}.query"), "must not be empty");
    } else if r.query.trim_end().ends_with(';') {
        // It runs as a subquery, `FROM (query) q`: a statement terminator breaks every run.
        report.error(format!("{path}.query"), "must be one SELECT without a trailing ';'");
    }
    report.text(&format!("{path}.query"), &r.query);
    for (j, column) in r.key.iter().enumerate() {
        report.ident(&format!("{path}.key[{j}]"), column);
    }
    report.duplicates(&format!("{path}.key"), r.key.iter().map(String::as_str));
    match r.mode {
        RefreshMode::Upsert if r.key.is_empty() => {
            report.error(format!("{path}.key"), "upsert needs the conflict key: name its columns");
        }
        RefreshMode::Replace | RefreshMode::Append if !r.key.is_empty() => {
            report.error(format!("{path}.key"), "only an upsert has a key");
        }
        _ => {}
    }
    if let Some(incremental) = &r.incremental {
        report.ident(&format!("{path}.incremental.column"), &incremental.column);
        if r.mode == RefreshMode::Replace {
            report.error(
                format!("{path}.incremental"),
                "a replace reads everything; incremental goes with append or upsert",
            );
        }
    }
    if r.delete_missing && (r.mode != RefreshMode::Upsert || r.incremental.is_some()) {
        report.error(
            format!("{path}.deleteMissing"),
            "only an upsert that reads the whole source (no incremental) knows which keys left it",
        );
    }
    let timeout = match &r.timeout {
        None => Some(None),
        Some(text) => match Interval::parse(text) {
            Ok(interval) if interval.months == 0 && (interval.days > 0 || interval.micros >= 1000) => {
                Some(Some(interval.days * 86_400_000 + interval.micros / 1000))
            }
            Ok(_) => {
                report.error(format!("{path}.timeout"), format!("{text:?}: use a positive time such as '10 min'"));
                None
            }
            Err(e) => {
                report.error(format!("{path}.timeout"), e);
                None
            }
        },
    };
    let schedule = parse_schedule(&r.schedule).map_err(|message| report.error(format!("{path}.schedule"), message));
    Some(ValidatedRefresh {
        spec: r.clone(),
        schema: schema.to_string(),
        table: table.to_string(),
        schedule: schedule.ok()?,
        timeout_ms: timeout?,
    })
}

fn partition(report: &mut Report, i: usize, p: &PartitionSpec) -> Option<ValidatedPartition> {
    let path = format!("spec.partitions[{i}]");
    let (schema, table) = p.table.split_once('.').unwrap_or(("public", p.table.as_str()));
    report.user_name(&format!("{path}.table"), schema, "schema");
    report.ident(&format!("{path}.table"), table);
    report.ident(&format!("{path}.column"), &p.column);
    let interval = Interval::parse(&p.interval).map_err(|e| report.error(format!("{path}.interval"), e)).ok();
    let retention = match &p.retention {
        Some(r) => match Interval::parse(r) {
            Ok(r) => Some(Some(r)),
            Err(e) => {
                report.error(format!("{path}.retention"), e);
                None
            }
        },
        None => Some(None),
    };
    if p.epoch != Epoch::None && interval.is_some_and(|i| i.micros % 1_000_000 != 0) {
        report.error(format!("{path}.interval"), "epoch partitions are at least one second wide");
    }
    let columnar_after = match &p.columnar_after {
        Some(text) => match Interval::parse(text) {
            Ok(after) => {
                if let Some(Some(retention)) = retention
                    && after.compared_micros() >= retention.compared_micros()
                {
                    report.error(
                        format!("{path}.columnarAfter"),
                        format!("{text:?} is not shorter than retention {:?}: nothing would be converted", p.retention),
                    );
                }
                Some(Some(after))
            }
            Err(e) => {
                report.error(format!("{path}.columnarAfter"), e);
                None
            }
        },
        None => Some(None),
    };
    Some(ValidatedPartition {
        spec: p.clone(),
        schema: schema.to_string(),
        table: table.to_string(),
        interval: interval?,
        retention: retention?,
        columnar_after: columnar_after?,
    })
}

/// Most shards Citus takes per table.
const MAX_SHARD_COUNT: u32 = 64_000;

fn distributed(report: &mut Report, spec: &DataWarehouseStackSpec) {
    if let Some(shards) = spec.distributed.as_ref().and_then(|d| d.shard_count)
        && !(1..=MAX_SHARD_COUNT).contains(&shards)
    {
        report.error("spec.distributed.shardCount", format!("{shards} is not from 1 to {MAX_SHARD_COUNT}"));
    }
    report.duplicates("spec.tables", spec.tables.iter().map(|t| t.table.as_str()));
    for (i, t) in spec.tables.iter().enumerate() {
        let path = format!("spec.tables[{i}]");
        let (schema, table) = t.table.split_once('.').unwrap_or(("public", t.table.as_str()));
        report.user_name(&format!("{path}.table"), schema, "schema");
        report.ident(&format!("{path}.table"), table);
        if spec.distributed.is_none() {
            report.error(&path, "lays a table out on Citus nodes: set spec.distributed (workers: 0 is one node)");
        }
        match (&t.distribute, t.reference.unwrap_or(false)) {
            (Some(d), false) => {
                report.ident(&format!("{path}.distribute.column"), &d.column);
                if let Some(with) = d.colocate_with.as_deref().filter(|w| !["default", "none"].contains(w)) {
                    let (schema, table) = with.split_once('.').unwrap_or(("public", with));
                    report.ident(&format!("{path}.distribute.colocateWith"), schema);
                    report.ident(&format!("{path}.distribute.colocateWith"), table);
                }
            }
            (None, true) => {}
            (Some(_), true) => report.error(&path, "is either distributed or a reference table, not both"),
            (None, false) => report.error(&path, "says nothing: set distribute: {column: ...} or reference: true"),
        }
    }
}

/// Most Postgres servers a stack runs (one primary, the rest replicas).
pub const MAX_INSTANCES: u32 = 9;

fn high_availability(report: &mut Report, spec: &DataWarehouseStackSpec) {
    let postgres = &spec.postgres;
    let instances = postgres.instances.unwrap_or(1);
    if !(1..=MAX_INSTANCES).contains(&instances) {
        report.error("spec.postgres.instances", format!("{instances} is not from 1 to {MAX_INSTANCES}"));
    }
    let timing = crate::render::patroni::Timing::of(postgres);
    if let Some(failover) = &postgres.failover {
        for (field, value) in [
            ("ttlSeconds", failover.ttl_seconds),
            ("loopWaitSeconds", failover.loop_wait_seconds),
            ("retryTimeoutSeconds", failover.retry_timeout_seconds),
        ] {
            if value == Some(0) {
                report.error(format!("spec.postgres.failover.{field}"), "must be at least 1");
            }
        }
        if timing.loop_wait + 2 * timing.retry_timeout > timing.ttl {
            report.error(
                "spec.postgres.failover",
                format!(
                    "loopWaitSeconds + 2 × retryTimeoutSeconds ({} + 2 × {}) exceeds ttlSeconds ({}): Patroni \
                     requires the leader lock to outlive a loop and two retries",
                    timing.loop_wait, timing.retry_timeout, timing.ttl
                ),
            );
        }
    }
    if instances > 1 {
        if spec.backup.as_ref().is_some_and(|b| b.repository.volume.is_some()) {
            report.error(
                "spec.backup.repository.volume",
                format!(
                    "is a ReadWriteOnce volume, which pods on different nodes cannot share: with {instances} \
                     instances the repository must be s3 (backups and WAL follow the primary)"
                ),
            );
        }
        if spec.bootstrap.as_ref().is_some_and(|b| b.restore.is_some()) {
            report.error(
                "spec.bootstrap.restore",
                "restores into one instance only for now: restore with instances: 1, then raise instances",
            );
        }
        if spec.distributed.is_some() {
            report.error(
                "spec.postgres.instances",
                "more than one instance is not supported on a distributed stack yet: Citus reaches its \
                 coordinator by the first pod's name",
            );
        }
    }
}

fn role(report: &mut Report, i: usize, r: &RoleSpec) {
    let path = format!("spec.roles[{i}]");
    report.user_name(&format!("{path}.name"), &r.name, "role");
    if let Some(secret) = &r.password_secret_ref {
        report.secret(&format!("{path}.passwordSecretRef"), secret);
    }
    report.duplicates(&format!("{path}.grants"), r.grants.iter().map(|g| g.schema.as_str()));
    for (j, g) in r.grants.iter().enumerate() {
        report.ident(&format!("{path}.grants[{j}].schema"), &g.schema);
        if let Some(why) = reserved_schema(&g.schema) {
            report.error(format!("{path}.grants[{j}].schema"), format!("{:?} cannot be granted: {why}", g.schema));
        }
        if g.privileges.is_empty() {
            report.error(format!("{path}.grants[{j}].privileges"), "name at least one privilege");
        }
        for (k, p) in g.privileges.iter().enumerate() {
            if !TABLE_PRIVILEGES.contains(&p.to_ascii_uppercase().as_str()) {
                report.error(
                    format!("{path}.grants[{j}].privileges[{k}]"),
                    format!("{p:?} is not one of {}", TABLE_PRIVILEGES.join(", ")),
                );
            }
        }
    }
}

/// Why a schema is not for BI roles: what lives there runs as (or steers) the superuser.
fn reserved_schema(schema: &str) -> Option<&'static str> {
    match schema {
        LEDGER_SCHEMA => Some("it holds the operator's ledger and refresh definitions, which run as the superuser"),
        "cron" => Some("pg_cron's jobs run as the user they name; writing them schedules any command as anyone"),
        "partman" => Some("pg_partman's configuration drives maintenance that runs as the superuser"),
        "information_schema" => Some("it is the system's own catalog"),
        s if s.starts_with("pg_") => Some("schemas named pg_* are the system's own"),
        _ => None,
    }
}

/// The declared extensions, then those the spec's parts need and did not declare.
fn with_implied_extensions(spec: &DataWarehouseStackSpec) -> Vec<ExtensionSpec> {
    let mut extensions = spec.extensions.clone();
    let mut add = |name: &str, schema: Option<&str>| {
        if !extensions.iter().any(|e| e.name == name) {
            extensions.push(ExtensionSpec { name: name.into(), schema: schema.map(Into::into), version: None });
        }
    };
    for s in &spec.sources {
        let extension = s.extension.clone().or_else(|| known_wrapper(&s.wrapper).map(|w| w.extension));
        if let Some(extension) = extension {
            add(&extension, None);
        }
    }
    if !spec.schedules.is_empty() || !spec.partitions.is_empty() || !spec.refreshes.is_empty() {
        add("pg_cron", None);
    }
    if !spec.partitions.is_empty() {
        add("pg_partman", Some("partman"));
    }
    if spec.partitions.iter().any(|p| p.columnar_after.is_some()) {
        add("citus_columnar", None);
    }
    // Last: an extension created while citus exists is propagated to the workers, and pg_cron
    // stays on the coordinator.
    if spec.distributed.is_some() {
        add("citus", None);
    }
    extensions
}

#[cfg(test)]
mod tests;
