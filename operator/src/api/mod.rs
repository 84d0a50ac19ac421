//! The `DataWarehouseStack` custom resource: the public contract users write in manifests.

mod backup;
mod status;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use backup::*;
pub use status::*;

/// A whole data warehouse on Postgres: the server, its extensions, foreign-data sources,
/// migrations, pg_cron schedules, pg_partman partition sets and login roles.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "pgwarehouse.dev",
    version = "v1alpha1",
    kind = "DataWarehouseStack",
    namespaced,
    shortname = "dws",
    status = "DataWarehouseStackStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Sources","type":"string","jsonPath":".status.readySources"}"#,
    printcolumn = r#"{"name":"Jobs","type":"integer","jsonPath":".status.activeJobs"}"#,
    printcolumn = r#"{"name":"Refreshes","type":"string","jsonPath":".status.readyRefreshes"}"#,
    printcolumn = r#"{"name":"Workers","type":"string","jsonPath":".status.distributed.readyWorkers"}"#,
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.primary"}"#,
    printcolumn = r#"{"name":"Instances","type":"string","jsonPath":".status.readyInstances"}"#,
    printcolumn = r#"{"name":"Last backup","type":"date","jsonPath":".status.backup.lastBackupTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DataWarehouseStackSpec {
    /// Name of a stack template (from stack-templates/, built into the operator) whose values are
    /// merged under this spec: the spec wins, and lists merge item by item by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The Postgres server that hosts the warehouse.
    #[serde(default)]
    pub postgres: PostgresSpec,
    /// Extensions to create in the warehouse database. Extensions that sources, schedules and
    /// partitions need are added automatically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<ExtensionSpec>,
    /// Foreign-data sources: one foreign server each, with its user mapping and foreign tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceSpec>,
    /// SQL migrations for the warehouse's own tables, views and functions. Each runs once, in
    /// order; its checksum is recorded and a changed migration is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<MigrationSpec>,
    /// pg_cron jobs that keep the warehouse fresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleSpec>,
    /// pg_partman time-partitioned tables with retention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionSpec>,
    /// Roles for BI tools and analysts, with schema-wide grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleSpec>,
    /// Tables kept filled from a query on a schedule: replaced, appended to or upserted, all or
    /// only what changed since the last successful run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refreshes: Vec<RefreshSpec>,
    /// Continuous WAL archiving and scheduled base backups with pgBackRest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// How the database starts: empty (default) or restored from a backup repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,
    /// Scale-out on Citus: worker nodes beside the stack's Postgres, which becomes the
    /// coordinator. Absent: one Postgres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedSpec>,
    /// How local tables (a migration's, a refresh's target) are laid out on the Citus nodes:
    /// distributed by a column across the workers' shards, or copied whole to every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableLayoutSpec>,
}

/// Citus worker nodes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributedSpec {
    /// Worker nodes.
    pub workers: u32,
    /// Shards of each table distributed from now on (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_count: Option<u32>,
    /// Each worker's volume (default: the stack's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Each worker's resources (default: the stack's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// A local table's layout on the Citus nodes: exactly one of `distribute` and `reference`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableLayoutSpec {
    /// The table, schema-qualified (`public.metric_values`).
    pub table: String,
    /// Spread the table's rows over shards by this column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribute: Option<DistributeSpec>,
    /// Copy the whole table to every node (small tables joined with distributed ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<bool>,
}

/// How a table is distributed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributeSpec {
    /// The distribution column.
    pub column: String,
    /// `default` (co-located with tables distributed by a column of the same type and shard
    /// count), `none`, or a distributed table (`public.orgs`) to co-locate with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colocate_with: Option<String>,
}

impl DataWarehouseStackSpec {
    /// Every Secret key the stack reads, with the field path that reads it.
    pub fn secret_refs(&self) -> Vec<(String, SecretKeyRef)> {
        let mut refs = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            for (key, value) in &source.secret_options {
                refs.push((format!("spec.sources[{i}].secretOptions.{key}"), value.secret_key_ref.clone()));
            }
            for (key, value) in source.user_mapping.iter().flat_map(|m| &m.secret_options) {
                refs.push((format!("spec.sources[{i}].userMapping.secretOptions.{key}"), value.secret_key_ref.clone()));
            }
        }
        for (i, role) in self.roles.iter().enumerate() {
            if let Some(r) = &role.password_secret_ref {
                refs.push((format!("spec.roles[{i}].passwordSecretRef"), r.clone()));
            }
        }
        for (path, repository) in self.repositories() {
            if let Some(s3) = &repository.s3 {
                for key in S3_CREDENTIAL_KEYS {
                    let reference = SecretKeyRef { name: s3.credentials_secret_ref.name.clone(), key: key.into() };
                    refs.push((format!("{path}.s3.credentialsSecretRef"), reference));
                }
            }
        }
        refs
    }

    /// The repositories the stack reads or writes, with their field paths.
    pub fn repositories(&self) -> Vec<(&'static str, &RepositorySpec)> {
        let backup = self.backup.iter().map(|b| ("spec.backup.repository", &b.repository));
        let restore = self
            .bootstrap
            .iter()
            .flat_map(|b| &b.restore)
            .map(|r| ("spec.bootstrap.restore.repository", &r.repository));
        backup.chain(restore).collect()
    }
}

/// The Postgres server that hosts the warehouse.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Container image with Postgres and the stack's extensions installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Name of the warehouse database (default `warehouse`). pg_cron runs its jobs here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Persistent storage of the data directory.
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory for the Postgres container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// postgresql.conf parameters. Parameters the operator owns (for example
    /// `shared_preload_libraries`, `cron.database_name`, `port`) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// Postgres servers (default 1). More than one runs them under Patroni: one primary,
    /// streaming replicas, automatic failover; the client Service follows the primary and
    /// `<stack>-ro` the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Synchronous replication with more than one instance (default `off`): `on` waits for one
    /// replica before a commit returns, so a failover loses no acknowledged commit; `quorum`
    /// waits for any one of them (Patroni's quorum commit). With `off` a failover may lose
    /// acknowledged commits: those not yet replicated when the primary dies, and, when only the
    /// primary's Patroni hangs, whatever the old primary acknowledged after a replica took over
    /// until Patroni (or the pod's liveness probe) stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<Synchronous>,
    /// Patroni's failure detection: how soon a lost primary is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverSpec>,
}

/// Whether commits wait for a replica.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Synchronous {
    #[default]
    Off,
    On,
    Quorum,
}

/// Patroni's timing: the leader lock lives `ttlSeconds`, each member checks every
/// `loopWaitSeconds`, and gives up on the lock store after `retryTimeoutSeconds`. Patroni
/// requires `loopWaitSeconds + 2 × retryTimeoutSeconds ≤ ttlSeconds`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// Default 30: a lost primary is replaced within about ttl + loop wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
    /// Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_wait_seconds: Option<u32>,
    /// Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_timeout_seconds: Option<u32>,
}

/// Persistent storage of the data directory.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the volume, as a Kubernetes quantity (default `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// StorageClass of the volume; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Keep the volume when the stack is deleted (default true): the data outlives the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_on_delete: Option<bool>,
}

/// An extension to create in the warehouse database.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionSpec {
    /// Extension name, as in `CREATE EXTENSION`.
    pub name: String,
    /// Schema to install into; created when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Version to install or update to; the default version when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A foreign-data source: one foreign server, its user mapping and its foreign tables.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// Name of the foreign server.
    pub name: String,
    /// Foreign data wrapper. Known wrappers (`postgres_fdw`, `prometheus_fdw`, `clerk_fdw`)
    /// imply their extension, handler and validator.
    pub wrapper: String,
    /// Extension that provides the wrapper, for wrappers the operator does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// Handler function of a wrapper the extension does not create itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Validator function of a wrapper the extension does not create itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
    /// The source is another database on the warehouse's own Postgres server (postgres_fdw
    /// only): the engine sets the server's `host` and `port` to how that server reaches itself
    /// (127.0.0.1 and the port it listens on), so the stack works unchanged in a cluster and on
    /// any local port. Name the database in `options.dbname`; `host`, `hostaddr` and `port`
    /// are then refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_server: Option<bool>,
    /// Server options in plain text (host, port, dbname, base_url, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Server options whose values come from Secrets (API keys, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_options: BTreeMap<String, SecretValue>,
    /// The user mapping for this server, where the wrapper needs per-user credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_mapping: Option<UserMappingSpec>,
    /// Foreign tables declared column by column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<ForeignTableSpec>,
    /// Remote schemas imported with `IMPORT FOREIGN SCHEMA`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub import_schemas: Vec<ImportSchemaSpec>,
}

/// A value read from a Kubernetes Secret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretValue {
    /// The Secret and key holding the value.
    pub secret_key_ref: SecretKeyRef,
}

/// A key of a Secret in the stack's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// A user mapping for a source's server.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserMappingSpec {
    /// The local role the mapping is for, or `PUBLIC` (the default) for every role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Mapping options in plain text (for postgres_fdw: `user`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Mapping options whose values come from Secrets (for postgres_fdw: `password`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_options: BTreeMap<String, SecretValue>,
}

/// A foreign table declared column by column.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForeignTableSpec {
    /// Table name.
    pub name: String,
    /// Local schema of the table (default `public`); created when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Columns, in order.
    #[serde(default)]
    pub columns: Vec<ColumnSpec>,
    /// Table options (postgres_fdw: `schema_name`, `table_name`; clerk_fdw: `object`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A column of a foreign table.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Postgres type, e.g. `bigint`, `text`, `jsonb`, `timestamptz`, `varchar(64)`.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// A remote schema imported with `IMPORT FOREIGN SCHEMA`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportSchemaSpec {
    /// Schema on the remote side.
    pub remote_schema: String,
    /// Local schema that receives the foreign tables; created when missing.
    pub into: String,
    /// Import only these remote tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    /// Import every remote table but these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// A versioned SQL migration.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSpec {
    /// Unique, stable name, e.g. `001_ingested_clusters`.
    pub name: String,
    /// The SQL to run once, in one transaction.
    pub sql: String,
}

/// A pg_cron job.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Job name, unique in the stack.
    pub name: String,
    /// When to run: 5-field cron (`*/5 * * * *`), a macro (`@hourly`), or `N seconds` (1-59,
    /// pg_cron 1.5 and later).
    pub schedule: String,
    /// SQL the job runs, e.g. `SELECT refresh_clusters()`.
    pub command: String,
    /// Whether the job runs (default true); false keeps it scheduled but paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// A table kept filled from a query (dbt's models, as one declaration).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshSpec {
    /// Refresh name, unique in the stack (an identifier).
    pub name: String,
    /// The table to fill (`public.ingested_clusters`; `public` when unqualified), created from
    /// the query's columns when missing.
    pub target: String,
    /// One SELECT, over foreign tables, views and local tables.
    pub query: String,
    /// `replace` (default: the whole table, atomically for readers), `append` or `upsert`.
    #[serde(default)]
    pub mode: RefreshMode,
    /// `upsert`: the conflict key (a unique index is created when missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    /// `append`/`upsert`: read only rows whose column is above the high-water mark of the last
    /// successful run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalSpec>,
    /// `upsert` without `incremental`: delete target rows whose key left the source.
    #[serde(default)]
    pub delete_missing: bool,
    /// When to run, in pg_cron's grammar (`*/5 * * * *`, `@hourly`, `30 seconds`).
    pub schedule: String,
    /// Statement timeout of one run, a Postgres interval (`10 min`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RefreshMode {
    /// Delete every row and insert the query's, in one transaction.
    #[default]
    Replace,
    /// Insert the query's rows.
    Append,
    /// Insert new keys, update changed rows.
    Upsert,
}

impl RefreshMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshMode::Replace => "replace",
            RefreshMode::Append => "append",
            RefreshMode::Upsert => "upsert",
        }
    }
}

/// The column whose high-water mark selects new rows.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncrementalSpec {
    pub column: String,
}

/// A pg_partman partition set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionSpec {
    /// The range-partitioned parent table, schema-qualified (`public.metric_values`).
    pub table: String,
    /// The control column partitions are keyed on.
    pub column: String,
    /// Width of one partition, a Postgres interval (`1 day`, `1 week`, `1 month`).
    pub interval: String,
    /// How an integer control column encodes time (default `none`: the column is a timestamp).
    #[serde(default)]
    pub epoch: Epoch,
    /// How many partitions to create ahead of time (pg_partman's default 4 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub premake: Option<u32>,
    /// Drop partitions older than this Postgres interval (`30 days`); kept forever when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Detach expired partitions instead of dropping them (default false).
    #[serde(default)]
    pub retention_keep_table: bool,
    /// Partitions that ended longer ago than this Postgres interval (`7 days`) are rewritten into
    /// columnar storage (citus_columnar: compressed, read column by column; INSERT only) after
    /// each partition maintenance; they stay heap when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columnar_after: Option<String>,
}

/// How an integer control column encodes time.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Epoch {
    /// The control column is a timestamp or date.
    #[default]
    None,
    /// Seconds since 1970-01-01 in an integer column.
    Seconds,
    /// Milliseconds since 1970-01-01 in an integer column.
    Milliseconds,
}

impl Epoch {
    pub fn as_partman(self) -> &'static str {
        match self {
            Epoch::None => "none",
            Epoch::Seconds => "seconds",
            Epoch::Milliseconds => "milliseconds",
        }
    }
}

/// A role for BI tools and analysts.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    /// Role name.
    pub name: String,
    /// Whether the role may log in (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<bool>,
    /// The Secret key holding the role's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Schema-wide grants: USAGE on the schema and the privileges on its existing and future tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantSpec>,
}

/// Privileges on every table of a schema, present and future.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantSpec {
    /// The schema.
    pub schema: String,
    /// Table privileges: SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER.
    pub privileges: Vec<String>,
}
