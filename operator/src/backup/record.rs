//! The repository's contents as recorded in the database by whoever took the last backup, and
//! the WAL archiver's own counters: everything status shows about backups, in one place any
//! reader with a connection can reach.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use sqlx::types::Json;

use super::RepositoryInfo;

const TABLE_DDL: &str = "CREATE SCHEMA IF NOT EXISTS pgwarehouse; \
     CREATE TABLE IF NOT EXISTS pgwarehouse.backup_info \
     (stanza text PRIMARY KEY, info jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())";

/// `pg_stat_archiver`: the server's own account of archiving.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archiver {
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<DateTime<Utc>>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<DateTime<Utc>>,
}

impl Archiver {
    /// The last attempt failed: nothing archived since the last failure.
    pub fn failing(&self) -> bool {
        match (self.last_failed_time, self.last_archived_time) {
            (Some(failed), Some(archived)) => failed > archived,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupState {
    pub repository: RepositoryInfo,
    pub archiver: Archiver,
}

impl BackupState {
    /// The newest time a restore reaches: the last archived WAL's, or the newest backup's end.
    pub fn newest_recovery_point(&self) -> Option<DateTime<Utc>> {
        self.archiver.last_archived_time.max(self.repository.newest().map(|b| b.stop))
    }
}

/// Records the repository's contents; writes only when they changed, so a periodic check of an
/// unchanged repository writes no WAL.
pub async fn write(conn: &mut PgConnection, stanza: &str, info: &RepositoryInfo) -> Result<(), sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('pgwarehouse.backup_info') IS NOT NULL").fetch_one(&mut *conn).await?;
    if !exists {
        sqlx::raw_sql(TABLE_DDL).execute(&mut *conn).await?;
    }
    sqlx::query(
        "INSERT INTO pgwarehouse.backup_info (stanza, info) VALUES ($1, $2) ON CONFLICT (stanza) DO UPDATE \
         SET info = EXCLUDED.info, recorded_at = now() WHERE backup_info.info IS DISTINCT FROM EXCLUDED.info",
    )
    .bind(stanza)
    .bind(Json(info))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Deserialize)]
struct Observed {
    archiver: Archiver,
    recorded: bool,
}

/// What the database knows about `stanza`'s backups and its own archiving.
pub async fn read(conn: &mut PgConnection, stanza: &str) -> Result<BackupState, sqlx::Error> {
    let Json(Observed { archiver, recorded }): Json<Observed> = sqlx::query_scalar(
        "SELECT json_build_object('archiver', (SELECT row_to_json(a) FROM (SELECT archived_count, last_archived_wal, \
         last_archived_time, failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver) a), \
         'recorded', to_regclass('pgwarehouse.backup_info') IS NOT NULL)",
    )
    .fetch_one(&mut *conn)
    .await?;
    let repository = if recorded {
        sqlx::query_scalar::<_, Json<RepositoryInfo>>("SELECT info FROM pgwarehouse.backup_info WHERE stanza = $1")
            .bind(stanza)
            .fetch_optional(&mut *conn)
            .await?
            .map(|j| j.0)
            .unwrap_or_default()
    } else {
        RepositoryInfo::default()
    };
    Ok(BackupState { repository, archiver })
}
