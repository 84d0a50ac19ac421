//! Reads what the database has, in two round trips whatever the stack's size: the core catalogs
//! first, then what the first read says exists (pg_cron's jobs, pg_partman's config, our ledger,
//! the managed roles' grants).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::sql::quote::{ident, literal};
use crate::sql::refresh;
use crate::validate::{LEDGER_SCHEMA, ValidatedStack};

/// The database's current state, as far as the engine manages it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Observed {
    pub server_version_num: i32,
    /// The port the server listens on, as it reaches itself (for `sameServer` sources).
    pub port: String,
    pub database: String,
    pub current_user: String,
    pub cron_database_name: Option<String>,
    pub preload_libraries: String,
    pub extensions: Vec<ObservedExtension>,
    /// Default versions of the extensions whose API differs by version, for a first apply.
    pub available: Vec<ObservedExtension>,
    pub wrappers: Vec<String>,
    pub schemas: Vec<String>,
    pub servers: Vec<ObservedServer>,
    pub user_mappings: Vec<ObservedUserMapping>,
    pub foreign_tables: Vec<ObservedForeignTable>,
    pub ledger_exists: bool,
    /// The comment of `pgwarehouse.refresh(text)`, its API version; none before it is installed.
    pub refresh_api: Option<String>,
    /// The comment of `pgwarehouse.columnar_convert()`, its API version; none before it is installed.
    pub columnar_api: Option<String>,
    /// Whether `pgwarehouse.refresh_apply` is as installed (see [`refresh::apply_intact`]).
    pub refresh_api_intact: bool,
    /// Whether the refresh role has none of the attributes that reach past its own tables
    /// (superuser, createdb, createrole, inherit, replication, bypassrls); none when missing.
    pub refresh_role_plain: Option<bool>,
    /// Whether the refresh role may log in (only a distributed stack's, to reach the workers).
    #[serde(default)]
    pub refresh_role_login: bool,
    #[serde(default)]
    pub managed: Managed,
    /// Each refresh query that is new or changed (all of them after an upgrade of the refresh
    /// API), described in a rolled-back transaction, or the database's words on why it cannot be.
    #[serde(skip)]
    pub described: BTreeMap<String, Result<Described, String>>,
}

/// What a refresh query gives and reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Described {
    pub columns: Vec<ObservedColumnType>,
    /// The relations it reads directly, and what the refresh role may do with them.
    pub sources: Vec<ObservedSource>,
}

/// A relation a refresh query reads, with the refresh role's privileges on it.
#[derive(Debug, Clone, Deserialize)]
pub struct ObservedSource {
    pub schema: String,
    pub name: String,
    /// SELECT on the relation (owning it counts).
    pub readable: bool,
    pub schema_usable: bool,
    /// The foreign server of a foreign table, and whether the role may use it.
    pub server: Option<String>,
    pub server_usable: bool,
}

/// The second read: what depends on the extensions and ledger found by the first.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Managed {
    pub jobs: Vec<ObservedJob>,
    pub part_configs: Vec<ObservedPartConfig>,
    pub ledger: Vec<LedgerEntry>,
    pub migrations: Vec<AppliedMigration>,
    pub roles: Vec<ObservedRole>,
    pub table_grants: Vec<ObservedGrant>,
    pub default_grants: Vec<ObservedGrant>,
    pub schema_usage: Vec<ObservedGrant>,
    pub table_counts: BTreeMap<String, i64>,
    pub columns: Vec<ObservedColumn>,
    pub relations: Vec<ObservedRelation>,
    #[serde(default)]
    pub refreshes: Vec<ObservedRefresh>,
    #[serde(default)]
    pub refresh_targets: Vec<ObservedTarget>,
    /// The partition sets whose old partitions become columnar.
    #[serde(default)]
    pub columnar: Vec<ObservedColumnar>,
}

/// A row of `pgwarehouse.columnar`.
#[derive(Debug, Clone, Deserialize)]
pub struct ObservedColumnar {
    pub parent: String,
    pub epoch: String,
    pub after: String,
}

/// A refresh's definition as `pgwarehouse.refreshes` holds it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ObservedRefresh {
    pub name: String,
    pub target_schema: String,
    pub target_table: String,
    pub query: String,
    pub mode: String,
    pub key: Vec<String>,
    pub incremental_column: Option<String>,
    pub incremental_type: Option<String>,
    pub delete_missing: bool,
    pub columns: Vec<ObservedColumnType>,
    pub timeout_ms: Option<i64>,
}

/// A relation a refresh fills: its kind (`r`, `p`, `v`, `f`, ...), columns and unique keys.
#[derive(Debug, Clone, Deserialize)]
pub struct ObservedTarget {
    pub schema: String,
    pub name: String,
    pub kind: String,
    pub columns: Vec<ObservedColumnType>,
    /// Its columns an INSERT must give: NOT NULL, no default, not identity or generated.
    pub required: Vec<String>,
    /// The column sets of its plain unique indexes, each sorted.
    pub unique_keys: Vec<Vec<String>>,
    pub owner: String,
    /// Whether the refresh role has USAGE on the target's schema.
    pub schema_usable: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObservedExtension {
    pub name: String,
    pub version: String,
    pub schema: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObservedServer {
    pub name: String,
    pub wrapper: String,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObservedUserMapping {
    pub server: String,
    pub user: String,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObservedForeignTable {
    pub schema: String,
    pub name: String,
    pub server: String,
    pub options: Vec<String>,
    pub columns: Vec<ObservedColumnType>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ObservedColumnType {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObservedJob {
    pub id: i64,
    pub name: Option<String>,
    pub schedule: String,
    pub command: String,
    pub database: String,
    pub username: String,
    pub active: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObservedPartConfig {
    pub parent_table: String,
    pub control: String,
    pub interval: String,
    pub epoch: String,
    pub premake: i32,
    pub retention: Option<String>,
    pub retention_keep_table: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LedgerEntry {
    pub kind: String,
    pub name: String,
    pub detail: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AppliedMigration {
    pub name: String,
    pub checksum: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObservedRole {
    pub name: String,
    pub login: bool,
}

/// A privilege a role holds in a schema; for table grants, `tables` counts the tables holding it.
#[derive(Debug, Clone, Deserialize)]
pub struct ObservedGrant {
    pub role: String,
    pub schema: String,
    pub privilege: String,
    #[serde(default)]
    pub tables: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObservedColumn {
    pub table: String,
    pub column: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObservedRelation {
    pub schema: String,
    pub name: String,
}

impl Observed {
    pub fn extension(&self, name: &str) -> Option<&ObservedExtension> {
        self.extensions.iter().find(|e| e.name == name)
    }

    /// The installed version, or the one `CREATE EXTENSION` would install.
    pub fn extension_version(&self, name: &str) -> Option<&str> {
        self.extension(name).or_else(|| self.available.iter().find(|e| e.name == name)).map(|e| e.version.as_str())
    }

    pub fn ledger(&self, kind: &str) -> impl Iterator<Item = &LedgerEntry> {
        self.managed.ledger.iter().filter(move |e| e.kind == kind)
    }

    pub fn owns(&self, kind: &str, name: &str) -> bool {
        self.ledger(kind).any(|e| e.name == name)
    }
}

fn core_catalogs() -> String {
    CORE_CATALOGS
        .replace("@INTACT@", &refresh::apply_intact())
        .replace("@REFRESH_ROLE@", &literal(refresh::REFRESH_ROLE))
}

const CORE_CATALOGS: &str = r#"
SELECT json_build_object(
  'server_version_num', current_setting('server_version_num')::int,
  'port', current_setting('port'),
  'database', current_database(),
  'current_user', current_user,
  'cron_database_name', current_setting('cron.database_name', true),
  'preload_libraries', current_setting('shared_preload_libraries'),
  'extensions', COALESCE((SELECT json_agg(json_build_object('name', e.extname, 'version', e.extversion, 'schema', n.nspname))
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace), '[]'),
  'available', COALESCE((SELECT json_agg(json_build_object('name', name, 'version', default_version, 'schema', ''))
      FROM pg_available_extensions WHERE name IN ('pg_cron', 'pg_partman')), '[]'),
  'wrappers', COALESCE((SELECT json_agg(fdwname) FROM pg_foreign_data_wrapper), '[]'),
  'schemas', COALESCE((SELECT json_agg(nspname) FROM pg_namespace), '[]'),
  'servers', COALESCE((SELECT json_agg(json_build_object('name', s.srvname, 'wrapper', w.fdwname, 'options', COALESCE(s.srvoptions, '{}')))
      FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw), '[]'),
  'user_mappings', COALESCE((SELECT json_agg(json_build_object('server', srvname, 'user', usename, 'options', COALESCE(umoptions, '{}')))
      FROM pg_user_mappings), '[]'),
  'foreign_tables', COALESCE((SELECT json_agg(json_build_object('schema', n.nspname, 'name', c.relname, 'server', s.srvname,
        'options', COALESCE(ft.ftoptions, '{}'),
        'columns', COALESCE((SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]')))
      FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_foreign_server s ON s.oid = ft.ftserver), '[]'),
  'ledger_exists', to_regclass('pgwarehouse.managed') IS NOT NULL AND to_regclass('pgwarehouse.migrations') IS NOT NULL,
  'refresh_api', obj_description(to_regprocedure('pgwarehouse.refresh(text)'), 'pg_proc'),
  'refresh_api_intact', @INTACT@,
  'columnar_api', obj_description(to_regprocedure('pgwarehouse.columnar_convert()'), 'pg_proc'),
  'refresh_role_plain', (SELECT NOT (rolsuper OR rolcreatedb OR rolcreaterole OR rolinherit OR rolreplication OR rolbypassrls)
      FROM pg_roles WHERE rolname = @REFRESH_ROLE@),
  'refresh_role_login', COALESCE((SELECT rolcanlogin FROM pg_roles WHERE rolname = @REFRESH_ROLE@), false)
)"#;

// Roles: those the spec names ($1) and, once the ledger exists, those it recorded.
const ROLES_AND_GRANTS: &str = r#"
  'roles', COALESCE((SELECT json_agg(json_build_object('name', rolname, 'login', rolcanlogin)) FROM pg_roles WHERE rolname IN (SELECT * FROM managed_roles)), '[]'),
  'table_grants', COALESCE((SELECT json_agg(json_build_object('role', g.role, 'schema', g.schema, 'privilege', g.privilege, 'tables', g.tables)) FROM (
      SELECT r.rolname AS role, n.nspname AS schema, a.privilege_type AS privilege, count(*) AS tables
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
      WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition AND r.rolname IN (SELECT * FROM managed_roles)
      GROUP BY 1, 2, 3) g), '[]'),
  'default_grants', COALESCE((SELECT json_agg(json_build_object('role', r.rolname, 'schema', n.nspname, 'privilege', a.privilege_type))
      FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
      CROSS JOIN LATERAL aclexplode(d.defaclacl) a JOIN pg_roles r ON r.oid = a.grantee
      WHERE d.defaclobjtype = 'r' AND d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
        AND r.rolname IN (SELECT * FROM managed_roles)), '[]'),
  'schema_usage', COALESCE((SELECT json_agg(json_build_object('role', r.rolname, 'schema', n.nspname, 'privilege', a.privilege_type))
      FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN pg_roles r ON r.oid = a.grantee
      WHERE a.privilege_type = 'USAGE' AND r.rolname IN (SELECT * FROM managed_roles)), '[]'),
  'table_counts', COALESCE((SELECT json_object_agg(schema, tables) FROM (
      SELECT n.nspname AS schema, count(*) AS tables FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition GROUP BY 1) t), '{}'),
  'columns', COALESCE((SELECT json_agg(json_build_object('table', n.nspname || '.' || c.relname, 'column', a.attname,
        'type', format_type(a.atttypid, a.atttypmod)))
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname || '.' || c.relname = ANY($2) AND a.attnum > 0 AND NOT a.attisdropped), '[]'),
  'relations', COALESCE((SELECT json_agg(json_build_object('schema', n.nspname, 'name', c.relname))
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ANY($3) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')), '[]'),
  'refresh_targets', COALESCE((SELECT json_agg(json_build_object('schema', n.nspname, 'name', c.relname, 'kind', c.relkind,
        'columns', COALESCE((SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'),
        'required', COALESCE((SELECT json_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = c.oid
            AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''), '[]'),
        'unique_keys', COALESCE((SELECT json_agg((SELECT json_agg(a.attname ORDER BY a.attname) FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attnum = ANY (i.indkey))) FROM pg_index i
            WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
              AND (i.indnullsnotdistinct OR NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                   AND a.attnum = ANY (i.indkey) AND NOT a.attnotnull))), '[]'),
        'owner', pg_get_userbyid(c.relowner),
        'schema_usable', COALESCE((SELECT has_schema_privilege(r.oid, n.oid, 'USAGE') FROM pg_roles r WHERE r.rolname = $5), false)))
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname || '.' || c.relname = ANY($4)), '[]')"#;

/// Reads the catalogs the plan compares against.
pub async fn observe(conn: &mut PgConnection, stack: &ValidatedStack) -> Result<Observed, sqlx::Error> {
    let Json(mut observed): Json<Observed> =
        sqlx::query_scalar(AssertSqlSafe(core_catalogs())).fetch_one(&mut *conn).await?;
    let role_names: Vec<&str> = stack.spec.roles.iter().map(|r| r.name.as_str()).collect();
    let partition_tables: Vec<String> = stack.partitions.iter().map(|p| format!("{}.{}", p.schema, p.table)).collect();
    let import_schemas: Vec<&str> =
        stack.sources.iter().flat_map(|s| s.spec.import_schemas.iter().map(|i| i.into.as_str())).collect();
    let targets: Vec<String> = stack.refreshes.iter().map(|r| format!("{}.{}", r.schema, r.table)).collect();
    let Json(managed): Json<Managed> = sqlx::query_scalar(AssertSqlSafe(managed_query(&observed)))
        .bind(role_names)
        .bind(partition_tables)
        .bind(import_schemas)
        .bind(targets)
        .bind(refresh::REFRESH_ROLE)
        .fetch_one(&mut *conn)
        .await?;
    observed.managed = managed;
    // A new refresh API may need what describe finds (the sources' grants): all are described again.
    let upgrading = observed.refresh_api.as_deref() != Some(refresh::API_VERSION);
    for r in &stack.refreshes {
        let stored = observed.managed.refreshes.iter().find(|s| s.name == r.spec.name);
        if upgrading || stored.is_none_or(|s| s.query != r.spec.query) {
            let described = describe(conn, &r.spec.query).await?;
            observed.described.insert(r.spec.name.clone(), described);
        }
    }
    Ok(observed)
}

/// The view's columns, and the relations its rule depends on with the refresh role's privileges ($1).
const DESCRIBED: &str = r#"
WITH v AS (SELECT 'pg_temp.pgwarehouse_describe'::regclass AS oid), role AS (SELECT oid FROM pg_roles WHERE rolname = $1)
SELECT json_build_object(
  'columns', COALESCE((SELECT json_agg(json_build_object('name', attname, 'type', format_type(atttypid, atttypmod)) ORDER BY attnum)
      FROM pg_attribute WHERE attrelid = (SELECT oid FROM v) AND attnum > 0), '[]'),
  'sources', COALESCE((SELECT json_agg(json_build_object('schema', n.nspname, 'name', c.relname,
        'readable', COALESCE(has_table_privilege((SELECT oid FROM role), c.oid, 'SELECT'), false),
        'schema_usable', COALESCE(has_schema_privilege((SELECT oid FROM role), n.oid, 'USAGE'), false),
        'server', s.srvname,
        'server_usable', COALESCE(has_server_privilege((SELECT oid FROM role), s.oid, 'USAGE'), false)) ORDER BY n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_foreign_table ft ON ft.ftrelid = c.oid LEFT JOIN pg_foreign_server s ON s.oid = ft.ftserver
      WHERE c.oid IN (SELECT d.refobjid FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
          WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND w.ev_class = (SELECT oid FROM v))
        AND c.oid <> (SELECT oid FROM v) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')), '[]'))"#;

/// Round trips of one [`describe`]: begin, set the path, create the view, read its columns, roll back.
pub const DESCRIBE_ROUND_TRIPS: usize = 5;

/// The columns `query` gives and the relations it reads, from a temporary view made and dropped
/// in a rolled-back transaction; the database's message when it is not one valid SELECT.
async fn describe(conn: &mut PgConnection, query: &str) -> Result<Result<Described, String>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // Described as the refresh runs it: with only pg_catalog and pg_temp on the path, so that plan
    // refuses what every run would.
    sqlx::query("SET LOCAL search_path = pg_catalog, pg_temp").execute(&mut *tx).await?;
    // The user's query, as written (running it is the point); one statement only, as the
    // extended protocol sends it.
    let view = format!("CREATE TEMPORARY VIEW pgwarehouse_describe AS {query}");
    let described = match sqlx::query(AssertSqlSafe(view)).execute(&mut *tx).await {
        Ok(_) => {
            let Json(described): Json<Described> =
                sqlx::query_scalar(DESCRIBED).bind(refresh::REFRESH_ROLE).fetch_one(&mut *tx).await?;
            Ok(described)
        }
        Err(sqlx::Error::Database(error)) if error.message().contains("does not exist") => Err(format!(
            "{} (a refresh runs with search_path pg_catalog, pg_temp: qualify names with their schema)",
            error.message()
        )),
        Err(sqlx::Error::Database(error)) => Err(error.message().to_string()),
        Err(other) => return Err(other),
    };
    tx.rollback().await?;
    Ok(described)
}

/// The second read, shaped by what the first found; only catalog names enter the text.
fn managed_query(core: &Observed) -> String {
    let ledger = core.ledger_exists;
    let schema = ident(LEDGER_SCHEMA);
    let jobs = match core.extension("pg_cron") {
        Some(_) => "COALESCE((SELECT json_agg(json_build_object('id', jobid, 'name', jobname, 'schedule', schedule, \
                    'command', command, 'database', database, 'username', username, 'active', active)) FROM cron.job), '[]')"
            .to_string(),
        None => "'[]'::json".to_string(),
    };
    let part_configs = match core.extension("pg_partman") {
        Some(partman) => format!(
            "COALESCE((SELECT json_agg(json_build_object('parent_table', parent_table, 'control', control, \
             'interval', partition_interval, 'epoch', epoch, 'premake', premake, 'retention', retention, \
             'retention_keep_table', retention_keep_table)) FROM {}.part_config), '[]')",
            ident(&partman.schema)
        ),
        None => "'[]'::json".to_string(),
    };
    let refreshes = if core.refresh_api.is_some() {
        format!(
            "COALESCE((SELECT json_agg(json_build_object('name', name, 'target_schema', target_schema, \
             'target_table', target_table, 'query', query, 'mode', mode, 'key', key, \
             'incremental_column', incremental_column, 'incremental_type', incremental_type::text, \
             'delete_missing', delete_missing, 'columns', columns, 'timeout_ms', timeout_ms)) FROM {schema}.refreshes), '[]')"
        )
    } else {
        "'[]'::json".to_string()
    };
    let columnar = if core.columnar_api.is_some() {
        format!(
            "COALESCE((SELECT json_agg(json_build_object('parent', parent, 'epoch', epoch, 'after', after)) FROM {schema}.columnar), '[]')"
        )
    } else {
        "'[]'::json".to_string()
    };
    let (ledger_rows, migrations, ledger_roles) = if ledger {
        (
            format!(
                "COALESCE((SELECT json_agg(json_build_object('kind', kind, 'name', name, 'detail', detail)) FROM {schema}.managed), '[]')"
            ),
            format!(
                "COALESCE((SELECT json_agg(json_build_object('name', name, 'checksum', checksum)) FROM {schema}.migrations), '[]')"
            ),
            format!(
                " UNION SELECT name FROM {schema}.managed WHERE kind IN ({}, {})",
                literal("role"),
                literal("role_password")
            ),
        )
    } else {
        ("'[]'::json".into(), "'[]'::json".into(), String::new())
    };
    format!(
        "WITH managed_roles AS (SELECT unnest($1::text[]){ledger_roles})\nSELECT json_build_object(\n  'jobs', {jobs},\n  \
         'part_configs', {part_configs},\n  'ledger', {ledger_rows},\n  'migrations', {migrations},\n  \
         'refreshes', {refreshes},\n  'columnar', {columnar},{ROLES_AND_GRANTS})"
    )
}
