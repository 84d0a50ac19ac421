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
}

const EXTENSION_SCHEMAS: &str = "SELECT json_build_object(\
    'cron', EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron'), \
    'partman', (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'pg_partman'))";

#[derive(Deserialize)]
struct ExtensionSchemas {
    /// pg_cron keeps its tables in `cron` whatever its extension's namespace says.
    cron: bool,
    partman: Option<String>,
}

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
             'partitions', k.n, 'oldest', k.oldest, 'newest', k.newest) ORDER BY p.parent_table) \
             FROM {}.part_config p LEFT JOIN LATERAL (SELECT count(*) AS n, min(c.relname) AS oldest, max(c.relname) AS newest \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass(p.parent_table) AND c.relname NOT LIKE '%\\_default') k ON true), '[]')",
            ident(&partman)
        ),
        None => "'[]'::json".into(),
    };
    let query = format!(
        "SELECT json_build_object('sources', COALESCE((SELECT json_agg(json_build_object('name', s.srvname, \
         'wrapper', w.fdwname, 'tables', (SELECT count(*) FROM pg_foreign_table t WHERE t.ftserver = s.oid)) \
         ORDER BY s.srvname) FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw), '[]'), \
         'jobs', {jobs}, 'partitions', {partitions})"
    );
    let Json(status): Json<WarehouseStatus> = sqlx::query_scalar(AssertSqlSafe(query)).fetch_one(&mut *conn).await?;
    Ok(status)
}
