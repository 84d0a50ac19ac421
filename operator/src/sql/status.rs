//! What the warehouse is doing: foreign tables per source, pg_cron jobs with their last run,
//! partition sets with their partitions. One catalog read, shaped by the installed extensions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection};

use crate::sql::quote::ident;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WarehouseStatus {
    pub sources: Vec<SourceStatus>,
    pub jobs: Vec<JobStatus>,
    pub partitions: Vec<PartitionStatus>,
    #[serde(default)]
    pub refreshes: Vec<RefreshStatus>,
    /// With Citus: the coordinator and the workers, with their shards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeStatus>,
    /// With Citus: the latest shard rebalance, if any ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceStatus>,
    /// With `spec.backup`: the recorded repository contents and the archiver's counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::backup::record::BackupState>,
}

/// A refresh's last run (any outcome) and last success, from its run log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshStatus {
    pub name: String,
    pub target: String,
    pub mode: String,
    pub state: Option<String>,
    pub last_start: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub inserted: Option<i64>,
    pub updated: Option<i64>,
    pub deleted: Option<i64>,
    pub high_water: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// A Citus node: its address, whether it is the coordinator and active, its shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub coordinator: bool,
    pub active: bool,
    pub shards: i64,
    pub bytes: i64,
}

/// Citus's latest rebalance job: its state and its shard moves done out of all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebalanceStatus {
    pub state: String,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    pub moves_done: i64,
    pub moves: i64,
}

impl RebalanceStatus {
    /// Still moving shards (or winding down).
    pub fn in_progress(&self) -> bool {
        ["scheduled", "running", "cancelling", "failing"].contains(&self.state.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub wrapper: String,
    pub tables: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: i64,
    pub name: String,
    pub schedule: String,
    pub active: bool,
    pub last_start: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub last_message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub table: String,
    pub partitions: i64,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    pub retention: Option<String>,
    /// Partitions in columnar storage, and the bytes of each storage (indexes included).
    #[serde(default)]
    pub columnar: i64,
    #[serde(default)]
    pub columnar_bytes: i64,
    #[serde(default)]
    pub heap_bytes: i64,
}

const EXTENSION_SCHEMAS: &str = "SELECT json_build_object(\
    'cron', EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron'), \
    'partman', (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'pg_partman'), \
    'refreshes', to_regclass('pgwarehouse.refresh_runs') IS NOT NULL, \
    'citus', EXISTS (SELECT FROM pg_extension WHERE extname = 'citus'))";

#[derive(Deserialize)]
struct ExtensionSchemas {
    /// pg_cron keeps its tables in `cron` whatever its extension's namespace says.
    cron: bool,
    partman: Option<String>,
    refreshes: bool,
    citus: bool,
}

/// Shard placements and sizes per node, from `citus_shards` (which asks each worker).
const NODES: &str = "COALESCE((SELECT json_agg(json_build_object('node', n.nodename || ':' || n.nodeport, \
    'coordinator', n.groupid = 0, 'active', n.isactive, 'shards', COALESCE(s.shards, 0), 'bytes', COALESCE(s.bytes, 0)) \
    ORDER BY n.groupid) FROM pg_dist_node n LEFT JOIN (SELECT nodename, nodeport, count(*) AS shards, \
    sum(shard_size)::bigint AS bytes FROM citus_shards GROUP BY 1, 2) s \
    ON s.nodename = n.nodename AND s.nodeport = n.nodeport), '[]')";

/// `citus_rebalance_status()`: the latest rebalance job and its tasks counted by state.
const REBALANCE: &str = "(SELECT json_build_object('state', state, 'started', started_at, 'finished', finished_at, \
    'moves_done', COALESCE((details->'task_state_counts'->>'done')::bigint, 0), \
    'moves', COALESCE((SELECT sum(value::bigint) FROM jsonb_each_text(details->'task_state_counts')), 0)) \
    FROM citus_rebalance_status())";

const REFRESHES: &str = "COALESCE((SELECT json_agg(json_build_object('name', d.name, \
    'target', d.target_schema || '.' || d.target_table, 'mode', d.mode, 'state', l.state, 'last_start', l.started_at, \
    'duration_ms', (extract(epoch FROM l.finished_at - l.started_at) * 1000)::bigint, 'inserted', l.inserted, \
    'updated', l.updated, 'deleted', l.deleted, 'high_water', d.high_water, 'error', l.error, \
    'last_success', (SELECT max(s.finished_at) FROM pgwarehouse.refresh_runs s WHERE s.name = d.name AND s.state = 'succeeded')) \
    ORDER BY d.name) FROM pgwarehouse.refreshes d LEFT JOIN LATERAL (SELECT * FROM pgwarehouse.refresh_runs r \
    WHERE r.name = d.name ORDER BY r.id DESC LIMIT 1) l ON true), '[]')";

pub async fn read_status(conn: &mut PgConnection) -> Result<WarehouseStatus, sqlx::Error> {
    let Json(schemas): Json<ExtensionSchemas> = sqlx::query_scalar(EXTENSION_SCHEMAS).fetch_one(&mut *conn).await?;
    let jobs = if schemas.cron {
        String::from(
            "COALESCE((SELECT json_agg(json_build_object('id', j.jobid, 'name', j.jobname, 'schedule', j.schedule, \
             'active', j.active, 'last_start', r.start_time, 'last_status', r.status, 'last_message', r.return_message) \
             ORDER BY j.jobname) FROM cron.job j LEFT JOIN LATERAL (SELECT * FROM cron.job_run_details d \
             WHERE d.jobid = j.jobid ORDER BY d.start_time DESC NULLS LAST LIMIT 1) r ON true), '[]')",
        )
    } else {
        "'[]'::json".into()
    };
    let partitions = match schemas.partman {
        Some(partman) => format!(
            "COALESCE((SELECT json_agg(json_build_object('table', p.parent_table, 'retention', p.retention, \
             'partitions', k.n, 'oldest', k.oldest, 'newest', k.newest, 'columnar', k.columnar, \
             'columnar_bytes', k.columnar_bytes, 'heap_bytes', k.heap_bytes) ORDER BY p.parent_table) \
             FROM {}.part_config p LEFT JOIN LATERAL (SELECT count(*) AS n, min(c.relname) AS oldest, max(c.relname) AS newest, \
             count(*) FILTER (WHERE a.amname = 'columnar') AS columnar, \
             COALESCE(sum(pg_total_relation_size(c.oid)) FILTER (WHERE a.amname = 'columnar'), 0)::bigint AS columnar_bytes, \
             COALESCE(sum(pg_total_relation_size(c.oid)) FILTER (WHERE a.amname = 'heap'), 0)::bigint AS heap_bytes \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid LEFT JOIN pg_am a ON a.oid = c.relam \
             WHERE i.inhparent = to_regclass(p.parent_table) AND c.relname NOT LIKE '%\\_default') k ON true), '[]')",
            ident(&partman)
        ),
        None => "'[]'::json".into(),
    };
    let refreshes = if schemas.refreshes { REFRESHES } else { "'[]'::json" };
    let (nodes, rebalance) = if schemas.citus { (NODES, REBALANCE) } else { ("'[]'::json", "NULL::json") };
    let query = format!(
        "SELECT json_build_object('sources', COALESCE((SELECT json_agg(json_build_object('name', s.srvname, \
         'wrapper', w.fdwname, 'tables', (SELECT count(*) FROM pg_foreign_table t WHERE t.ftserver = s.oid)) \
         ORDER BY s.srvname) FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw), '[]'), \
         'jobs', {jobs}, 'partitions', {partitions}, 'refreshes', {refreshes}, 'nodes', {nodes}, \
         'rebalance', {rebalance})"
    );
    let Json(status): Json<WarehouseStatus> = sqlx::query_scalar(AssertSqlSafe(query)).fetch_one(&mut *conn).await?;
    Ok(status)
}
