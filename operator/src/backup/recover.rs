//! After `pgbackrest restore`: the server replays the archive up to the target and promotes;
//! then the recovery settings pgBackRest wrote are reset (the source repository is not this
//! stack's to read again) and the superuser gets the new stack's password.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Executor, PgConnection};

use crate::sql::connection;
use crate::sql::quote::Sql;

/// What pgBackRest's restore puts in postgresql.auto.conf.
const RECOVERY_SETTINGS: &[&str] = &["restore_command", "recovery_target_time", "recovery_target_action"];

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("the restored server stopped during recovery: {0}")]
    Stopped(String),
    #[error("the restored server: {0}")]
    Sql(String),
}

/// Waits for the restored server (reached through `options`, over its socket as the superuser)
/// to finish recovery. `alive` tells whether it still runs; `log_tail` says why when it does not.
pub async fn finish(
    options: PgConnectOptions,
    superuser_password: &str,
    alive: impl Fn() -> bool,
    log_tail: impl Fn() -> String,
) -> Result<(), RecoverError> {
    let mut conn = wait_for_promotion(&options, &alive, &log_tail).await?;
    let sql = |e: sqlx::Error| RecoverError::Sql(e.to_string());
    for setting in RECOVERY_SETTINGS {
        conn.execute(AssertSqlSafe(format!("ALTER SYSTEM RESET {setting}"))).await.map_err(sql)?;
    }
    conn.execute("SELECT pg_reload_conf()").await.map_err(sql)?;
    let (text, _) = Sql::new("ALTER ROLE postgres PASSWORD ").secret(superuser_password).expose();
    conn.execute(AssertSqlSafe(text))
        .await
        .map_err(|_| RecoverError::Sql("setting the superuser's password failed".into()))?;
    Ok(())
}

async fn wait_for_promotion(
    options: &PgConnectOptions,
    alive: &impl Fn() -> bool,
    log_tail: &impl Fn() -> String,
) -> Result<PgConnection, RecoverError> {
    loop {
        if let Ok(mut conn) = connection::connect(options.clone()).await
            && let Ok(false) = sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&mut conn).await
        {
            return Ok(conn);
        }
        if !alive() {
            return Err(RecoverError::Stopped(log_tail()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
