//! After `pgbackrest restore`: the server replays the archive up to the target and promotes;
//! then the recovery settings pgBackRest wrote are reset (the source repository is not this
//! stack's to read again) and the superuser gets the new stack's password (as a SCRAM verifier
//! computed here: the password itself never reaches the restored server's logs).

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Executor, PgConnection};

use crate::sql::connection;
use crate::sql::quote::Sql;

/// What pgBackRest's restore puts in postgresql.auto.conf.
const RECOVERY_SETTINGS: &[&str] = &["restore_command", "recovery_target_time", "recovery_target_action"];

/// The settings WAL replay checks against the source's: a restored server with a lower value
/// aborts recovery ("insufficient parameter settings"). Each with its `pg_controldata` label.
pub const REPLAY_CHECKED: [(&str, &str); 5] = [
    ("max_connections", "max_connections setting"),
    ("max_worker_processes", "max_worker_processes setting"),
    ("max_wal_senders", "max_wal_senders setting"),
    ("max_prepared_transactions", "max_prepared_xacts setting"),
    ("max_locks_per_transaction", "max_locks_per_xact setting"),
];

/// The replay-checked settings a restored server recovers with: the stack's own (`stack`, the
/// rendered settings), raised to the source's where the source ran with more (`controldata`,
/// `pg_controldata` of the restored directory). Settings neither names keep Postgres's default.
pub fn replay_settings(stack: &BTreeMap<String, String>, controldata: &str) -> BTreeMap<String, String> {
    let recorded = |label: &str| {
        controldata
            .lines()
            .find_map(|line| line.strip_prefix(label)?.trim_start_matches(':').trim().parse::<u64>().ok())
    };
    REPLAY_CHECKED
        .iter()
        .filter_map(|(name, label)| {
            let own = stack.get(*name).and_then(|v| v.parse::<u64>().ok());
            let value = own.into_iter().chain(recorded(label)).max()?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

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
    // The restored server runs with the source's postgresql.auto.conf (log_statement,
    // pg_stat_statements...): it gets the verifier, never the password.
    let verifier = postgres_protocol::password::scram_sha_256(superuser_password.as_bytes());
    let (text, _) = Sql::new("ALTER ROLE postgres PASSWORD ").secret(&verifier).expose();
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

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROLDATA: &str = "pg_control version number:            1300\n\
        max_connections setting:              100\n\
        max_worker_processes setting:         48\n\
        max_wal_senders setting:              10\n\
        max_prepared_xacts setting:           0\n\
        max_locks_per_xact setting:           64\n";

    #[test]
    fn replay_settings_take_the_higher_of_the_stack_and_the_source() {
        let stack: BTreeMap<String, String> =
            [("max_worker_processes", "20"), ("max_connections", "300"), ("work_mem", "1GB")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into();
        let settings = replay_settings(&stack, CONTROLDATA);
        let expected: BTreeMap<String, String> = [
            ("max_connections", "300"),
            ("max_worker_processes", "48"),
            ("max_wal_senders", "10"),
            ("max_prepared_transactions", "0"),
            ("max_locks_per_transaction", "64"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        assert_eq!(settings, expected);
        assert_eq!(replay_settings(&stack, "")["max_worker_processes"], "20", "without pg_control: the stack's");
    }
}
