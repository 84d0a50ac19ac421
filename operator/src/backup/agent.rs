//! `pgwarehouse agent`: what runs in the stack's pod beside Postgres. `backup` keeps the stanza,
//! takes the scheduled full and differential backups (a first full at once when the repository
//! has none) and records the repository's contents in the database every minute; `restore`
//! (an init container) fills an empty data volume from a repository and recovers it before
//! Postgres first starts. Neither needs the Kubernetes API: the operator reads what they record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::PgConnectOptions;

use super::{BackupKind, PgBackRest, record, recover};
use crate::local::cluster::Binaries;
use crate::validate::backup::parse_target;
use crate::validate::next_run;

#[derive(clap::Args, Debug, Clone)]
pub struct AgentOptions {
    /// The pgBackRest config file.
    #[arg(long)]
    pub config: PathBuf,
    /// The stanza (the stack whose backups these are).
    #[arg(long)]
    pub stanza: String,
    /// The server's socket directory.
    #[arg(long, default_value = "/var/run/postgresql")]
    pub socket_dir: PathBuf,
    /// The server's port (which names its socket).
    #[arg(long, default_value_t = 5432)]
    pub port: u16,
    /// Patroni's REST API beside the server, on a stack of more than one instance: only the
    /// leader's agent creates the stanza and backs up; the others idle.
    #[arg(long, value_name = "URL")]
    pub patroni_api: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum AgentCommand {
    /// Scheduled backups and their record, for as long as the pod runs.
    Backup {
        #[command(flatten)]
        options: AgentOptions,
        /// Full backups, cron (UTC).
        #[arg(long)]
        full: String,
        /// Differential backups, cron (UTC).
        #[arg(long)]
        differential: String,
        /// The warehouse database, where the record is kept.
        #[arg(long)]
        database: String,
    },
    /// Restore into an empty data directory and recover it (an init container).
    Restore {
        #[command(flatten)]
        options: AgentOptions,
        /// The data directory.
        #[arg(long, env = "PGDATA")]
        pgdata: PathBuf,
        /// `latest` or an RFC 3339 time.
        #[arg(long, default_value = "latest")]
        target: String,
        /// A setting the stack's server runs with, `NAME=VALUE` (repeat): recovery runs with the
        /// ones WAL replay checks, raised to the source's where those were higher.
        #[arg(long = "setting", value_parser = parse_setting)]
        settings: Vec<(String, String)>,
    },
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    Ok((name.to_string(), value.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    PgBackRest(#[from] super::PgBackRestError),
    #[error(transparent)]
    Cluster(#[from] crate::local::cluster::ClusterError),
    #[error(transparent)]
    Recover(#[from] recover::RecoverError),
    #[error("{0}")]
    Invalid(String),
}

fn pgbackrest(options: &AgentOptions) -> Result<PgBackRest, AgentError> {
    let binaries = Binaries::find()?;
    Ok(PgBackRest::new(binaries, options.config.clone(), &options.stanza, None))
}

fn socket(options: &AgentOptions, database: &str) -> PgConnectOptions {
    PgConnectOptions::new().socket(&options.socket_dir).port(options.port).username("postgres").database(database)
}

pub async fn run(command: AgentCommand) -> Result<(), AgentError> {
    match command {
        AgentCommand::Backup { options, full, differential, database } => {
            backup_loop(&options, &full, &differential, &database).await
        }
        AgentCommand::Restore { options, pgdata, target, settings } => {
            restore(&options, &pgdata, &target, &settings.into_iter().collect()).await
        }
    }
}

/// Runs a blocking pgbackrest call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, super::PgBackRestError> + Send + 'static,
) -> Result<T, super::PgBackRestError> {
    tokio::task::spawn_blocking(f).await.expect("pgbackrest task")
}

/// The wait after the `failures`-th failure in a row: 10 s, doubling, at most 10 minutes.
fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs(10).saturating_mul(1 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(600))
}

/// Whether this pod's agent backs up: always on one instance; under Patroni, while its member is
/// the leader (asked each time: the leader moves).
pub async fn leads(patroni_api: Option<&str>) -> bool {
    let Some(api) = patroni_api else { return true };
    match crate::ha::Rest::new(api).is_primary().await {
        Ok(primary) => primary,
        Err(e) => {
            tracing::warn!(error = %e, "asking Patroni whether this pod leads");
            false
        }
    }
}

/// How often an agent beside a replica asks whether its member became the leader.
const FOLLOWER_POLL: Duration = Duration::from_secs(15);

async fn backup_loop(options: &AgentOptions, full: &str, differential: &str, database: &str) -> Result<(), AgentError> {
    let pgbackrest = pgbackrest(options)?;
    let patroni = options.patroni_api.as_deref();
    while !leads(patroni).await {
        tokio::time::sleep(FOLLOWER_POLL).await;
    }
    // The server may still be starting (or restoring): retry until the stanza is there.
    let mut failures = 0;
    loop {
        let p = pgbackrest.clone();
        match blocking(move || p.stanza_create()).await {
            Ok(()) => break,
            Err(e) => {
                failures += 1;
                let delay = retry_delay(failures);
                tracing::warn!(error = %e, retry_in_seconds = delay.as_secs(), "stanza-create failed");
                tokio::time::sleep(delay).await;
            }
        }
    }
    let mut due = None;
    // Failed backups in a row: each waits longer before the next try (a backup that fails at
    // once, say while Postgres restarts, must not turn the loop into a busy one).
    let mut failures = 0;
    loop {
        if !leads(patroni).await {
            // A switchover made this pod a replica: what was due is the new leader's to take.
            due = None;
            tokio::time::sleep(FOLLOWER_POLL).await;
            continue;
        }
        let p = pgbackrest.clone();
        match blocking(move || p.info()).await {
            Ok(info) => {
                if info.backups.is_empty() && due.is_none() {
                    due = Some(BackupKind::Full);
                }
                if let Ok(mut conn) = crate::sql::connection::connect(socket(options, database)).await
                    && let Err(e) = record::write(&mut conn, &options.stanza, &info).await
                {
                    tracing::warn!(error = %e, "recording the backups");
                }
            }
            Err(e) => tracing::warn!(error = %e, "pgbackrest info"),
        }
        if let Some(kind) = due.take() {
            tracing::info!(kind = kind.as_pgbackrest(), "backup starting");
            let p = pgbackrest.clone();
            match blocking(move || p.backup(kind)).await {
                Ok(took) => {
                    failures = 0;
                    tracing::info!(kind = kind.as_pgbackrest(), seconds = took.as_secs(), "backup done");
                }
                Err(e) => {
                    failures += 1;
                    let delay = retry_delay(failures);
                    tracing::error!(error = %e, retry_in_seconds = delay.as_secs(), "backup failed");
                    tokio::time::sleep(delay).await;
                }
            }
            continue;
        }
        let now = Utc::now();
        let next_full = next_run(full, now);
        let next_diff = next_run(differential, now);
        let next = [next_full, next_diff].into_iter().flatten().min();
        let wait = next.map(|t| (t - now).to_std().unwrap_or_default()).unwrap_or(Duration::from_secs(60));
        if wait <= Duration::from_secs(60) {
            tokio::time::sleep(wait).await;
            // A full and a differential due together: the full covers both.
            due = Some(if next == next_full { BackupKind::Full } else { BackupKind::Differential });
        } else {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }
}

/// Beside PGDATA (never in it: a backup of the restored stack must not carry them): written
/// before the restore begins, and once its last step is done.
struct Markers {
    in_progress: PathBuf,
    done: PathBuf,
}

impl Markers {
    fn beside(pgdata: &Path) -> Markers {
        Markers {
            in_progress: pgdata.with_file_name("restore.in-progress"),
            done: pgdata.with_file_name("restore.done"),
        }
    }
}

fn invalid(what: &str) -> impl Fn(std::io::Error) -> AgentError + '_ {
    move |e| AgentError::Invalid(format!("{what}: {e}"))
}

/// Writes `path` and makes it durable before going on.
fn write_durably(path: &Path, text: &str) -> Result<(), AgentError> {
    let file = std::fs::File::create(path).map_err(invalid(&path.display().to_string()))?;
    std::io::Write::write_all(&mut &file, text.as_bytes()).map_err(invalid(&path.display().to_string()))?;
    file.sync_all().map_err(invalid(&path.display().to_string()))
}

/// What an interrupted restore left: a recovery server it started (the step was killed, its
/// server was not) is stopped, and PGDATA's contents are removed.
fn clear_interrupted(binaries: &Binaries, pgdata: &Path) -> Result<(), AgentError> {
    let pg_ctl = binaries.bindir.join("pg_ctl");
    let running = Command::new(&pg_ctl).arg("-D").arg(pgdata).arg("status").output().is_ok_and(|o| o.status.success());
    if running {
        let _ = Command::new(&pg_ctl).arg("-D").arg(pgdata).args(["-m", "immediate", "-w", "stop"]).output();
    }
    for entry in std::fs::read_dir(pgdata).map_err(invalid("reading PGDATA"))? {
        let path = entry.map_err(invalid("reading PGDATA"))?.path();
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(invalid(&path.display().to_string()))?;
    }
    Ok(())
}

/// The restore step: crash-safe (a step killed at any point is redone from scratch on the next
/// start, and Postgres, which starts only after this step succeeded, never sees a directory
/// whose restore did not complete).
async fn restore(
    options: &AgentOptions,
    pgdata: &Path,
    target: &str,
    settings: &BTreeMap<String, String>,
) -> Result<(), AgentError> {
    let markers = Markers::beside(pgdata);
    let binaries = Binaries::find()?;
    if markers.done.exists() {
        println!("{} was restored already: nothing to restore", pgdata.display());
        return Ok(());
    }
    if markers.in_progress.exists() {
        println!(
            "an earlier restore into {} did not complete: clearing what it left and restoring again",
            pgdata.display()
        );
        clear_interrupted(&binaries, pgdata)?;
    } else if pgdata.join("PG_VERSION").exists() {
        // A volume whose database predates this step's markers.
        println!("{} holds a database already: nothing to restore", pgdata.display());
        return Ok(());
    } else if std::fs::read_dir(pgdata).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(AgentError::Invalid(format!(
            "spec.bootstrap.restore: {} is not empty and holds no database; refusing to restore over it",
            pgdata.display()
        )));
    }
    let target = parse_target(target, Utc::now())
        .map_err(|e| AgentError::Invalid(format!("spec.bootstrap.restore.target: {e}")))?;
    let pgbackrest = pgbackrest(options)?;
    pgbackrest
        .info()?
        .restorable(&options.stanza, target, "spec.bootstrap.restore.target")
        .map_err(AgentError::Invalid)?;
    write_durably(&markers.in_progress, &format!("stanza {}\n", options.stanza))?;
    pgbackrest.restore(pgdata, target)?;
    recover_restored(&binaries, options, pgdata, settings).await?;
    write_durably(&markers.done, &format!("stanza {}\n", options.stanza))?;
    std::fs::remove_file(&markers.in_progress).map_err(invalid("removing the in-progress marker"))?;
    println!("restored stanza {} into {}", options.stanza, pgdata.display());
    Ok(())
}

/// Replays the restored directory's WAL to the target on a private server (no TCP, no
/// archiving) running with the settings replay checks, finishes recovery, and stops it.
async fn recover_restored(
    binaries: &Binaries,
    options: &AgentOptions,
    pgdata: &Path,
    settings: &BTreeMap<String, String>,
) -> Result<(), AgentError> {
    let controldata = Command::new(binaries.bindir.join("pg_controldata"))
        .arg(pgdata)
        .env("LC_ALL", "C")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // No statement of this private server is logged, whatever the source's auto.conf says.
    let mut server_options = format!(
        "-c listen_addresses='' -c port={} -c unix_socket_directories={} -c archive_mode=off \
         -c log_statement=none -c log_min_duration_statement=-1",
        options.port,
        options.socket_dir.display()
    );
    for (name, value) in recover::replay_settings(settings, &controldata) {
        server_options.push_str(&format!(" -c {name}={value}"));
    }
    let log = pgdata.with_file_name("restore.log");
    let pg_ctl = binaries.bindir.join("pg_ctl");
    let start = Command::new(&pg_ctl)
        .arg("-D")
        .arg(pgdata)
        .arg("-l")
        .arg(&log)
        .arg("-o")
        .arg(&server_options)
        .arg("start")
        .status();
    if !start.is_ok_and(|s| s.success()) {
        return Err(AgentError::Invalid(std::fs::read_to_string(&log).unwrap_or_default()));
    }
    let running = || Command::new(&pg_ctl).arg("-D").arg(pgdata).arg("status").status().is_ok_and(|s| s.success());
    let password = std::env::var("POSTGRES_PASSWORD").unwrap_or_default();
    recover::finish(socket(options, "postgres"), &password, running, || {
        std::fs::read_to_string(&log).unwrap_or_default()
    })
    .await?;
    let stopped = Command::new(&pg_ctl).arg("-D").arg(pgdata).args(["-m", "fast", "-w", "stop"]).status();
    if !stopped.is_ok_and(|s| s.success()) {
        return Err(AgentError::Invalid("stopping the recovered server failed".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_wait_longer_each_time_up_to_ten_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 600, 600, 600]);
    }
}
