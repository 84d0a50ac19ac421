use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator last observed and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataWarehouseStackStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Provisioning, Converging, Ready, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Ready, DatabaseAvailable and Converged, per Kubernetes API conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where BI tools and applications connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    /// Converged sources out of declared sources, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_sources: Option<String>,
    /// pg_cron jobs scheduled and active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_jobs: Option<i32>,
    /// Refreshes whose last run succeeded and that are not stale, out of declared, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_refreshes: Option<String>,
    /// Each source (foreign server) and its foreign tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceStatus>,
    /// Each pg_cron job and its last run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleStatus>,
    /// Each pg_partman partition set and its partitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionStatus>,
    /// Each migration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<ItemStatus>,
    /// Each refresh: its definition's state and its last run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refreshes: Vec<RefreshStatus>,
    /// The last value of the annotation `pgwarehouse.dev/refresh-now` acted on: setting it to
    /// any other value runs every refresh once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_now_handled: Option<String>,
    /// Backups, WAL archiving and the restorable range, with `spec.backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// True once `spec.bootstrap.restore` completed (the database answered after its restore
    /// step): from then on the pod runs without the step and without the source's repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<bool>,
    /// The Citus nodes, with `spec.distributed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedStatus>,
    /// The last value of the annotation `pgwarehouse.dev/switchover-to` acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover_handled: Option<String>,
    /// Why the switchover `switchoverHandled` names was refused or failed; none when it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover_error: Option<String>,
    /// The value of `pgwarehouse.dev/switchover-to` whose switchover the operator has begun,
    /// recorded before it is made so that no request is made twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover_started: Option<String>,
    /// The pod Patroni runs as primary, with more than one instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// The primary and its streaming replicas out of `postgres.instances`, e.g. `3/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_instances: Option<String>,
    /// Each Postgres pod as Patroni reports it, with more than one instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,
}

/// One Postgres pod run by Patroni.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    pub pod: String,
    /// primary or replica (Patroni's pod label).
    pub role: String,
    /// Patroni's state of its Postgres: running, streaming, starting, stopped, ...
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<i64>,
    /// Bytes of WAL a replica is behind the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
}

/// The coordinator and its workers as the coordinator's metadata lists them.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributedStatus {
    /// Active workers out of `spec.distributed.workers`, e.g. `2/2`.
    pub ready_workers: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeStatus>,
    /// The latest shard rebalance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceStatus>,
    /// Workers to be drained and removed once the running rebalance finishes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<String>,
}

/// One Citus node.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// `host:port` as the coordinator reaches it.
    pub name: String,
    /// coordinator or worker.
    pub role: String,
    pub active: bool,
    /// Shard placements on the node.
    pub shards: i64,
    /// Bytes of those placements.
    pub bytes: i64,
}

/// A shard rebalance: Citus's background job.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceStatus {
    /// scheduled, running, finished, cancelled, failing, failed or cancelling.
    pub state: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Shard moves done, out of `moves`.
    pub moves_done: i64,
    pub moves: i64,
}

/// A refresh and its last run.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshStatus {
    #[serde(flatten)]
    pub item: ItemStatus,
    /// The last run's outcome: succeeded, failed or skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_state: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_inserted: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_updated: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_deleted: Option<i64>,
    /// The incremental column's high-water mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_water_mark: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// The last run's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last success is older than three schedule periods.
    #[serde(default)]
    pub stale: bool,
}

/// How to reach the warehouse. The password is in the named Secret, never here.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The client Service's DNS name.
    pub host: String,
    pub port: i32,
    pub database: String,
    /// The Secret holding the superuser's `username` and `password`.
    pub secret_name: String,
}

/// The state of one item of the spec.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemStatus {
    /// Item name.
    pub name: String,
    /// Converged, Changed or Failed.
    pub state: String,
    /// Why the item failed; never holds secret values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    #[serde(flatten)]
    pub item: ItemStatus,
    /// Foreign tables on the source's server.
    #[serde(default)]
    pub foreign_tables: i64,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    #[serde(flatten)]
    pub item: ItemStatus,
    /// pg_cron's job id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
    /// Start of the last run (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_start: Option<String>,
    /// pg_cron's status of the last run: succeeded, failed, running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_status: Option<String>,
    /// What the last run returned or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStatus {
    #[serde(flatten)]
    pub item: ItemStatus,
    /// Child partitions, the default partition not counted.
    #[serde(default)]
    pub partitions: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    /// Partitions converted to columnar storage (`columnarAfter`).
    #[serde(default)]
    pub columnar_partitions: i64,
    /// Bytes of the columnar partitions and of the heap ones, indexes included.
    #[serde(default)]
    pub columnar_bytes: i64,
    #[serde(default)]
    pub heap_bytes: i64,
}

/// Backups and WAL archiving, as the database and the repository last reported them.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Where the backups go (`s3://bucket/path`, or the volume).
    pub repository: String,
    /// End of the newest backup (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_full: Option<BackupSetStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_differential: Option<BackupSetStatus>,
    /// Backup sets in the repository.
    #[serde(default)]
    pub backups: i64,
    pub archive: ArchiveStatus,
    /// The earliest time a restore can reach (RFC 3339): the end of the oldest backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_recovery_point: Option<String>,
    /// The latest time a restore can reach (RFC 3339): the last archived WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_recovery_point: Option<String>,
}

/// One backup set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSetStatus {
    pub label: String,
    /// When it finished (RFC 3339).
    pub time: String,
    pub duration_seconds: i64,
    /// The database's size.
    pub size_bytes: i64,
    /// What it takes in the repository.
    pub repository_bytes: i64,
}

/// The WAL archiver (`pg_stat_archiver`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_wal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_time: Option<String>,
    #[serde(default)]
    pub failed_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_wal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_time: Option<String>,
    /// The last attempt failed and none has succeeded since.
    #[serde(default)]
    pub failing: bool,
}
