//! `pgwarehouse local`: the embedded default — a private Postgres from the host's binaries,
//! configured as the StatefulSet would be (the same rendered settings), converged by the same
//! engine. Its state lives in one directory per stack: `data/`, `log`, the superuser password
//! and `pgwarehouse-local.json` (which stack owns it, on which port).

mod backup;
pub mod cluster;
pub mod ha;
mod report;
mod workers;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Executor, PgConnection};

use crate::render::config;
use crate::secrets::Secrets;
use crate::sql::{self, apply::ApplyReport, quote};
use crate::validate::ValidatedStack;
use cluster::{Binaries, Cluster, ClusterError};

pub use backup::{backup, repository_dir, restore};
pub use report::local_report;

pub const DEFAULT_PORT: u16 = 5433;
const STATE_FILE: &str = "pgwarehouse-local.json";
const PASSWORD_FILE: &str = "superuser-password";
/// A server whose binaries a package upgrade replaced while it ran.
const REPLACED: &str =
    "its PostgreSQL binaries were replaced on disk while it ran (a package upgrade), so it fails to load extensions";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{dir} belongs to stack {owner:?}, not {stack:?}: pass another --data-dir")]
    OtherStack { dir: String, owner: String, stack: String },
    #[error("port {0} is in use by another program: pass --port with a free one")]
    PortInUse(u16),
    #[error("no local warehouse in {0}: run `pgwarehouse local up` first")]
    NotCreated(String),
    #[error("the local warehouse in {0} is stopped: run `pgwarehouse local up` first")]
    Stopped(String),
    #[error("the local server does not answer: {0}")]
    Connect(String),
    #[error("seed {path}: {message}")]
    Seed { path: String, message: String },
    #[error(transparent)]
    Engine(#[from] sql::EngineError),
    #[error(transparent)]
    Refresh(#[from] sql::refresh::RunError),
    #[error(transparent)]
    Backup(#[from] crate::backup::PgBackRestError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

/// Where and how the local server runs.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    pub data_dir: Option<PathBuf>,
    pub port: Option<u16>,
    /// Databases to create (once) and fill from SQL files, e.g. a demo's source database.
    pub seeds: Vec<(String, PathBuf)>,
    /// The volume repository of backups (default: beside the stack's directory).
    pub backup_dir: Option<PathBuf>,
    /// `local restore`: the volume repository to restore from (default: the one beside the
    /// restored stack's default directory, `.pgwarehouse/<stack>.backup`).
    pub restore_from: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    stack: String,
    port: u16,
    /// The Citus workers' ports, worker 0 first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    workers: Vec<u16>,
    /// More than one instance: etcd's and each Patroni member's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ha: Option<ha::HaState>,
}

/// A local warehouse: its cluster, port and superuser.
pub struct Local {
    pub cluster: Cluster,
    pub port: u16,
    password: String,
    database: String,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LocalError + '_ {
    move |e| LocalError::Io(format!("{}: {e}", path.display()))
}

fn write_secret(path: &Path, text: &str) -> Result<(), LocalError> {
    crate::secrets::write_secret_file(path, text).map_err(io(path))
}

/// The stack's directory: `--data-dir`, or `.pgwarehouse/<stack>` under the working directory.
fn data_dir(stack: &ValidatedStack, options: &LocalOptions) -> Result<PathBuf, LocalError> {
    let dir = options.data_dir.clone().unwrap_or_else(|| Path::new(".pgwarehouse").join(&stack.name));
    std::path::absolute(&dir).map_err(io(&dir))
}

fn read_state(dir: &Path) -> Option<State> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(STATE_FILE)).ok()?).ok()
}

impl Local {
    /// The local warehouse of `stack` and its recorded state (none before the first `up`).
    fn open(stack: &ValidatedStack, options: &LocalOptions) -> Result<(Local, Option<State>), LocalError> {
        let dir = data_dir(stack, options)?;
        let state = read_state(&dir);
        if let Some(state) = &state
            && state.stack != stack.name
        {
            return Err(LocalError::OtherStack {
                dir: dir.display().to_string(),
                owner: state.stack.clone(),
                stack: stack.name.clone(),
            });
        }
        let binaries = Binaries::find()?;
        let port = match (options.port, &state) {
            (Some(port), _) => port,
            (None, Some(state)) => state.port,
            (None, None) => first_free_port()?,
        };
        let password = std::fs::read_to_string(dir.join(PASSWORD_FILE)).unwrap_or_default().trim().to_string();
        let local = Local { cluster: Cluster { binaries, dir }, port, password, database: stack.database.clone() };
        Ok((local, state))
    }

    /// The local warehouse of `stack`, which must be up; with more than one instance, its primary.
    async fn running(stack: &ValidatedStack, options: &LocalOptions) -> Result<Local, LocalError> {
        let (mut local, state) = Local::open(stack, options)?;
        if let Some(ha_state) = state.as_ref().and_then(|s| s.ha.as_ref()) {
            let members = ha::instances(stack, &local.cluster.dir, ha_state).await?;
            let primary = members.iter().find(|m| m.is_primary() && m.state == "running");
            local.port = primary.and_then(|p| p.port).ok_or_else(|| {
                LocalError::Connect(format!(
                    "no primary among {}",
                    members
                        .iter()
                        .map(|m| format!("{} ({} {})", m.name, m.role, m.state))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            return Ok(local);
        }
        if state.is_none() || !local.cluster.initialized() {
            return Err(LocalError::NotCreated(local.cluster.dir.display().to_string()));
        }
        if !local.cluster.running() {
            return Err(LocalError::Stopped(local.cluster.dir.display().to_string()));
        }
        Ok(local)
    }

    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    async fn connect(&self, database: &str) -> Result<PgConnection, LocalError> {
        self.connect_to(self.port, database).await
    }

    /// The superuser on this stack's server at `port` (the coordinator's, or a worker's).
    async fn connect_to(&self, port: u16, database: &str) -> Result<PgConnection, LocalError> {
        let options = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("postgres")
            .password(&self.password)
            .database(database);
        sql::connection::connect(options).await.map_err(|e| LocalError::Connect(e.to_string()))
    }

    async fn switch_wal(&self) -> Result<(), LocalError> {
        let mut conn = self.connect("postgres").await?;
        conn.execute("SELECT pg_switch_wal()").await.map_err(|e| LocalError::Connect(e.to_string()))?;
        Ok(())
    }

    /// The rendered settings, with what differs on a laptop: loopback only, our port and socket dir.
    fn settings(&self, stack: &ValidatedStack) -> BTreeMap<String, String> {
        let mut settings = server_settings(config::settings(stack), &self.cluster, self.port);
        settings.extend(self.archive_settings(stack).into_iter().map(|(k, v)| (k.to_string(), v)));
        settings
    }
}

/// `rendered` (a coordinator's or a worker's settings) for one server of the stack on this machine.
fn server_settings(mut settings: BTreeMap<String, String>, cluster: &Cluster, port: u16) -> BTreeMap<String, String> {
    settings.insert("listen_addresses".into(), "127.0.0.1".into());
    settings.insert("port".into(), port.to_string());
    let socket_dir = cluster.binaries.in_server(&cluster.dir);
    settings.insert("unix_socket_directories".into(), socket_dir.display().to_string());
    settings
}

/// A free port that is none of `taken` (the stack's other servers, stopped or not).
fn free_port_besides(taken: &[u16]) -> Result<u16, LocalError> {
    loop {
        let any = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| LocalError::Io(e.to_string()))?;
        if !taken.contains(&any.port()) {
            return Ok(any.port());
        }
    }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// 5433 when it is free, else any port the kernel hands out: a newcomer's first `local up`
/// works whatever else runs on the machine.
fn first_free_port() -> Result<u16, LocalError> {
    if port_is_free(DEFAULT_PORT) {
        return Ok(DEFAULT_PORT);
    }
    let any =
        TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()).map_err(|e| LocalError::Io(e.to_string()))?;
    Ok(any.port())
}

/// Starts (initializing on first use) and converges the local warehouse; prints progress.
pub async fn up(
    stack: &ValidatedStack,
    secrets: &Secrets,
    options: &LocalOptions,
    out: &mut dyn Write,
) -> Result<(Local, ApplyReport), LocalError> {
    let (mut local, state) = Local::open(stack, options)?;
    local.cluster.binaries.require_extensions(stack.extensions.iter().map(|e| e.name.as_str()))?;
    let _ = writeln!(
        out,
        "- PostgreSQL {} from {}",
        local.cluster.binaries.major(),
        local.cluster.binaries.on_host(&local.cluster.binaries.bindir).display()
    );
    let recorded_ha = state.as_ref().and_then(|s| s.ha.clone());
    match (stack.highly_available(), recorded_ha) {
        (true, recorded) => return up_highly_available(stack, secrets, options, local, recorded, out).await,
        (false, Some(_)) => {
            return Err(LocalError::Invalid(format!(
                "spec.postgres.instances: {} runs its instances under Patroni; going back to one instance is \
                 not supported locally (`local down --purge` and up again, or keep instances)",
                local.cluster.dir.display()
            )));
        }
        (false, None) => {}
    }
    let running = local.cluster.running();
    let replaced = running && local.cluster.binaries_replaced();
    if replaced {
        let _ = writeln!(out, "- restarting the server: {REPLACED}");
    }
    let port_changed = state.as_ref().is_some_and(|s| s.port != local.port);
    if (!running || port_changed) && !port_is_free(local.port) {
        return Err(LocalError::PortInUse(local.port));
    }
    if !local.cluster.initialized() {
        local.password = crate::secrets::random_password().map_err(|e| LocalError::Io(format!("/dev/urandom: {e}")))?;
        local.cluster.init(&local.password)?;
        write_secret(&local.cluster.dir.join(PASSWORD_FILE), &local.password)?;
        let _ = writeln!(out, "- initialized {}", local.cluster.dir.display());
    }
    let recorded_workers = state.map(|s| s.workers).unwrap_or_default();
    write_state(&local, stack, &recorded_workers, None)?;
    let pgbackrest = local.pgbackrest(stack, options, secrets)?;
    let restart = local.cluster.configure(&local.settings(stack))? || replaced;
    if running && restart {
        local.cluster.stop()?;
    }
    if !running || restart {
        local.cluster.start()?;
    }
    let _ = writeln!(out, "- server listening on 127.0.0.1:{}", local.port);
    if let (Some(pgbackrest), Some(repository)) = (&pgbackrest, local.repository_name(stack, options)) {
        pgbackrest.stanza_create()?;
        let _ = writeln!(out, "- archiving WAL to {repository} (stanza {:?})", stack.name);
    }

    let report = converge_databases(&local, stack, secrets, options, out).await?;
    if let Some(distributed) = &stack.spec.distributed {
        distribute(&local, stack, secrets, distributed.workers as usize, &recorded_workers, out).await?;
    }
    if let Some(pgbackrest) = &pgbackrest {
        backup::first_full_backup(&local, stack, pgbackrest, out).await?;
    }
    Ok((local, report))
}

/// Runs the stack on `instances` servers under Patroni (etcd on loopback), then converges the
/// warehouse through the primary.
async fn up_highly_available(
    stack: &ValidatedStack,
    secrets: &Secrets,
    options: &LocalOptions,
    mut local: Local,
    recorded: Option<ha::HaState>,
    out: &mut dyn Write,
) -> Result<(Local, ApplyReport), LocalError> {
    let dir = local.cluster.dir.clone();
    if local.cluster.initialized() {
        return Err(LocalError::Invalid(format!(
            "spec.postgres.instances: {} holds a one-instance server (data/); moving it under Patroni is \
             not supported locally: pass another --data-dir",
            dir.display()
        )));
    }
    crate::secrets::create_private_dir(&dir).map_err(io(&dir))?;
    local.cluster.give_to_postgres()?;
    if local.password.is_empty() {
        local.password = crate::secrets::random_password().map_err(|e| LocalError::Io(format!("/dev/urandom: {e}")))?;
        write_secret(&dir.join(PASSWORD_FILE), &local.password)?;
    }
    let first_port = recorded.as_ref().and_then(|r| r.members.first()).map_or(local.port, |m| m.postgres);
    let placed = ha::place(recorded, stack.instances() as usize, first_port, || ha::etcd_api(&local.cluster.binaries))?;
    local.port = first_port;
    write_state(&local, stack, &[], Some(&placed))?;
    let primary = ha::start(stack, &local.cluster.binaries, &dir, &placed, &local.password, out).await?;
    local.port = primary.port.unwrap_or(local.port);
    let report = converge_databases(&local, stack, secrets, options, out).await?;
    Ok((local, report))
}

/// Creates the warehouse database (and seeds) once and converges the warehouse in it.
async fn converge_databases(
    local: &Local,
    stack: &ValidatedStack,
    secrets: &Secrets,
    options: &LocalOptions,
    out: &mut dyn Write,
) -> Result<ApplyReport, LocalError> {
    let mut admin = local.connect("postgres").await?;
    for database in std::iter::once(&local.database).chain(options.seeds.iter().map(|(db, _)| db)) {
        let created = create_database(&mut admin, database).await?;
        if let Some((_, path)) = options.seeds.iter().find(|(db, _)| db == database).filter(|_| created) {
            let sql = std::fs::read_to_string(path).map_err(io(path))?;
            let mut conn = local.connect(database).await?;
            conn.execute(AssertSqlSafe(sql))
                .await
                .map_err(|e| LocalError::Seed { path: path.display().to_string(), message: e.to_string() })?;
            let _ = writeln!(out, "- seeded database {database} from {}", path.display());
        }
    }
    let mut conn = local.connect(&local.database).await?;
    let (_, report) = sql::converge(&mut conn, stack, secrets).await?;
    let _ = writeln!(
        out,
        "- converged {:?}: {} item(s), {} changed, {} failed, {} statement(s)",
        stack.name,
        report.items.len(),
        report.items.iter().filter(|i| i.state == sql::apply::ItemState::Changed).count(),
        report.failed().count(),
        report.statements
    );
    for failed in report.failed() {
        let _ =
            writeln!(out, "  FAILED {}: {}", failed.item.label(&failed.name), failed.message.as_deref().unwrap_or(""));
    }
    Ok(report)
}

fn write_state(
    local: &Local,
    stack: &ValidatedStack,
    workers: &[u16],
    ha: Option<&ha::HaState>,
) -> Result<(), LocalError> {
    let state = State { stack: stack.name.clone(), port: local.port, workers: workers.to_vec(), ha: ha.cloned() };
    let path = local.cluster.dir.join(STATE_FILE);
    std::fs::write(&path, serde_json::to_string(&state).expect("state serializes")).map_err(io(&path))
}

/// Starts the wanted workers, converges the nodes (a worker no longer wanted is drained and
/// removed from the coordinator's metadata), then stops and deletes the ones no longer wanted.
async fn distribute(
    local: &Local,
    stack: &ValidatedStack,
    secrets: &Secrets,
    wanted: usize,
    recorded: &[u16],
    out: &mut dyn Write,
) -> Result<(), LocalError> {
    let kept = workers::wanted(&local.cluster.dir, &local.cluster.binaries, recorded, wanted, local.port)?;
    for worker in &kept {
        workers::start(
            worker,
            local,
            server_settings(config::worker_settings(stack), &worker.cluster, worker.port),
            out,
        )
        .await?;
    }
    let ports: Vec<u16> = kept.iter().map(|w| w.port).collect();
    // Recorded before registering: a failure leaves every started server known to `down`.
    let mut known = ports.clone();
    known.extend(recorded.iter().skip(kept.len()));
    write_state(local, stack, &known, None)?;
    let report = workers::converge(local, &kept, stack, secrets).await?;
    for retired in
        &workers::recorded(&local.cluster.dir, &local.cluster.binaries, recorded)[kept.len().min(recorded.len())..]
    {
        workers::retire(retired)?;
    }
    write_state(local, stack, &ports, None)?;
    let listed = |items: &[String]| if items.is_empty() { "none".to_string() } else { items.join(", ") };
    let _ = writeln!(
        out,
        "- workers on 127.0.0.1:{}: added {}, removed {}, tables laid out {}, {} statement(s)",
        ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
        listed(&report.added),
        listed(&report.removed),
        listed(&report.laid_out),
        report.statements
    );
    for waiting in &report.waiting {
        let _ = writeln!(out, "  table {waiting} does not exist yet: laid out once it does");
    }
    for problem in &report.problems {
        let _ = writeln!(out, "  FAILED {problem}");
    }
    Ok(())
}

async fn create_database(admin: &mut PgConnection, name: &str) -> Result<bool, LocalError> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut *admin)
        .await
        .map_err(|e| LocalError::Connect(e.to_string()))?;
    if !exists {
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {}", quote::ident(name))))
            .await
            .map_err(|e| LocalError::Connect(e.to_string()))?;
    }
    Ok(!exists)
}

/// Prints where the local warehouse is and what it does.
pub async fn status(stack: &ValidatedStack, options: &LocalOptions, out: &mut dyn Write) -> Result<(), LocalError> {
    let (local, state) = Local::open(stack, options)?;
    if let Some(ha_state) = state.as_ref().and_then(|s| s.ha.as_ref()) {
        let members = ha::instances(stack, &local.cluster.dir, ha_state).await?;
        let local = Local::running(stack, options).await?;
        let mut conn = local.connect(&local.database).await?;
        let status = sql::status::read_status(&mut conn).await.map_err(|e| LocalError::Connect(e.to_string()))?;
        let mut report = local_report(stack, &local, &status);
        report.instances = members.iter().map(instance_status).collect();
        return report.print(out).map_err(|e| LocalError::Io(e.to_string()));
    }
    if state.is_none() || !local.cluster.initialized() {
        return Err(LocalError::NotCreated(local.cluster.dir.display().to_string()));
    }
    if !local.cluster.running() {
        let _ = writeln!(out, "{}: stopped (data kept in {})", stack.name, local.cluster.dir.display());
        return Ok(());
    }
    if local.cluster.binaries_replaced() {
        let _ = writeln!(out, "WARNING: {REPLACED}; `pgwarehouse local up` restarts it on the new ones\n");
    }
    let mut conn = local.connect(&local.database).await?;
    let status = sql::status::read_status(&mut conn).await.map_err(|e| LocalError::Connect(e.to_string()))?;
    let mut report = local_report(stack, &local, &status);
    if let (Some(backup), Some(repository)) = (&stack.backup, local.repository_name(stack, options)) {
        let state = crate::backup::record::read(&mut conn, &stack.name)
            .await
            .map_err(|e| LocalError::Connect(e.to_string()))?;
        report.backup = Some(crate::backup::status::backup_status(repository, &state));
        let (ok, reason, message) = crate::backup::status::backed_up(backup, &state, chrono::Utc::now());
        report.conditions.push(crate::report::ConditionLine {
            type_: "BackedUp".into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            message,
        });
    }
    report.print(out).map_err(|e| LocalError::Io(e.to_string()))
}

/// A member as the status shows it, from Patroni's account.
fn instance_status(member: &crate::ha::ClusterMember) -> crate::api::InstanceStatus {
    crate::api::InstanceStatus {
        pod: member.name.clone(),
        role: if member.is_primary() { "primary".into() } else { member.role.clone() },
        state: member.state.clone(),
        timeline: member.timeline.and_then(|t| i64::try_from(t).ok()),
        lag_bytes: if member.is_primary() { None } else { member.lag_bytes().and_then(|l| i64::try_from(l).ok()) },
    }
}

/// A planned switchover of a local stack run by Patroni, to `to` or any healthy replica.
pub async fn switchover(
    stack: &ValidatedStack,
    options: &LocalOptions,
    to: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), LocalError> {
    let (local, state) = Local::open(stack, options)?;
    let Some(ha_state) = state.and_then(|s| s.ha) else {
        return Err(LocalError::Invalid(format!(
            "{} runs one instance: set spec.postgres.instances above 1 for replicas to switch over to",
            stack.name
        )));
    };
    let started = std::time::Instant::now();
    let primary = ha::switchover(stack, &local.cluster.dir, &ha_state, to).await?;
    let _ = writeln!(out, "- {primary} is the primary ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs the local warehouse's refreshes now (all, or those named).
pub async fn refresh(
    stack: &ValidatedStack,
    options: &LocalOptions,
    names: &[String],
) -> Result<Vec<sql::refresh::RunFigures>, LocalError> {
    let local = Local::running(stack, options).await?;
    let mut conn = local.connect(&local.database).await?;
    Ok(sql::refresh::run_now(&mut conn, stack, names).await?)
}

/// Stops the local server; `purge` also deletes its directory, data included (not the backups).
/// With backups, the current WAL segment is closed first so that the repository holds every
/// committed transaction.
pub async fn down(
    stack: &ValidatedStack,
    options: &LocalOptions,
    purge: bool,
    out: &mut dyn Write,
) -> Result<(), LocalError> {
    let (mut local, state) = Local::open(stack, options)?;
    let Some(state) = state else {
        return Err(LocalError::NotCreated(local.cluster.dir.display().to_string()));
    };
    if let Some(ha_state) = &state.ha {
        ha::stop(stack, &local.cluster.dir, ha_state, out).await;
        return finish_down(&local, purge, out);
    }
    // The server listens where it was started, whatever port this command was given.
    local.port = state.port;
    if local.cluster.running() {
        // The open WAL segment holds the last writes; archived, a restore has them. Stopping matters
        // more: a server that cannot be reached is stopped all the same.
        if stack.backup.is_some()
            && let Err(e) = local.switch_wal().await
        {
            let _ = writeln!(out, "- WARNING: the last WAL segment was not archived before stopping: {e}");
        }
        local.cluster.stop()?;
        let _ = writeln!(out, "- stopped the server on 127.0.0.1:{}", local.port);
    }
    for worker in workers::recorded(&local.cluster.dir, &local.cluster.binaries, &state.workers) {
        if worker.cluster.running() {
            worker.cluster.stop()?;
            let _ = writeln!(out, "- stopped the worker on 127.0.0.1:{}", worker.port);
        }
    }
    finish_down(&local, purge, out)
}

fn finish_down(local: &Local, purge: bool, out: &mut dyn Write) -> Result<(), LocalError> {
    if purge {
        std::fs::remove_dir_all(&local.cluster.dir).map_err(io(&local.cluster.dir))?;
        let _ = writeln!(out, "- deleted {}", local.cluster.dir.display());
    } else {
        let _ = writeln!(out, "- data kept in {} (`local up` starts it again)", local.cluster.dir.display());
    }
    Ok(())
}
