//! A local stack of several instances under real Patroni with etcd on loopback (`local up`), a
//! writer inserting through a libpq multi-host URL (`target_session_attrs=read-write`) that logs
//! every acknowledged id, and the failure scenarios the HA test asserts and the HA bench
//! measures: (a) a switchover, (b) SIGKILL of the primary's postmaster, (c) SIGKILL of the
//! primary's Patroni and postmaster together, (d) SIGSTOP of the primary's Patroni for ttl + 20 s.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgwarehouse::ha::{ClusterMember, Rest, wait_for_members};
use pgwarehouse::local::cluster::Binaries;
use pgwarehouse::local::ha::{HaState, LocalMember, members};
use pgwarehouse::validate::validate_manifest;

/// Patroni's timing: `ttl`, `loop_wait`, `retry_timeout` in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    pub ttl: u64,
    pub loop_wait: u64,
    pub retry_timeout: u64,
}

/// Patroni's defaults (and the stack's).
pub const DEFAULTS: Profile = Profile { name: "defaults 30/10/10", ttl: 30, loop_wait: 10, retry_timeout: 10 };
/// The fast profile the issue names.
pub const FAST: Profile = Profile { name: "fast 20/5/5", ttl: 20, loop_wait: 5, retry_timeout: 5 };

/// A stack of `instances` with the `acked` table the writer fills and a `* * * * *` job; `extra`
/// is appended under `spec` (indented two spaces).
pub fn manifest(instances: u32, synchronous: &str, profile: Profile, parameters: &str, extra: &str) -> String {
    let Profile { ttl, loop_wait, retry_timeout, .. } = profile;
    format!(
        r#"kind: DataWarehouseStack
metadata: {{name: hawh}}
spec:
  postgres:
    instances: {instances}
    synchronous: "{synchronous}"
    failover: {{ttlSeconds: {ttl}, loopWaitSeconds: {loop_wait}, retryTimeoutSeconds: {retry_timeout}}}
    parameters: {{{parameters}}}
  migrations:
  - name: 001_acked
    sql: CREATE TABLE acked (id int8 PRIMARY KEY, at timestamptz DEFAULT now())
  schedules:
  - {{name: tick, schedule: "* * * * *", command: "SELECT 1"}}
{extra}"#
    )
}

/// A `local up` stack in its own directory, stopped on drop.
pub struct Stack {
    work: tempfile::TempDir,
}

impl Stack {
    /// A new directory under the host's /tmp as the server's root sees it.
    pub fn new(manifest: &str) -> Stack {
        let binaries = Binaries::find().expect("PostgreSQL binaries (PGW_PG_BINDIR)");
        let work = tempfile::Builder::new().prefix("pgw-ha-").tempdir_in(binaries.on_host(Path::new("/tmp"))).unwrap();
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let stack = Stack { work };
        stack.write_manifest(manifest);
        stack
    }

    pub fn write_manifest(&self, manifest: &str) {
        std::fs::write(self.manifest_path(), manifest).unwrap();
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.work.path().join("stack.yaml")
    }

    fn data(&self) -> PathBuf {
        self.work.path().join("stack")
    }

    pub fn local(&self, args: &[&str]) -> String {
        let manifest = self.manifest_path();
        let data = self.data();
        let mut all = vec!["local", args[0], "-f", manifest.to_str().unwrap(), "--data-dir", data.to_str().unwrap()];
        all.extend(&args[1..]);
        let out = Command::new(env!("CARGO_BIN_EXE_pgwarehouse")).args(&all).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "local {}: {text}", args[0]);
        text
    }

    /// `local up` on a free port.
    pub fn up(&self) -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        self.local(&["up", "--port", &port])
    }

    fn state(&self) -> HaState {
        let text = std::fs::read_to_string(self.data().join("pgwarehouse-local.json")).unwrap();
        let state: serde_json::Value = serde_json::from_str(&text).unwrap();
        serde_json::from_value(state["ha"].clone()).unwrap()
    }

    pub fn members(&self) -> Vec<LocalMember> {
        let stack = validate_manifest(&std::fs::read_to_string(self.manifest_path()).unwrap()).unwrap();
        members(&stack, &self.data(), &self.state().members)
    }

    pub fn password(&self) -> String {
        std::fs::read_to_string(self.data().join("superuser-password")).unwrap().trim().to_string()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let manifest = self.manifest_path();
        let data = self.data();
        let _ = Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
            .args(["local", "down", "-f", manifest.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
            .output();
    }
}

/// Acknowledged ids and when each was acknowledged.
pub type Log = Arc<Mutex<Vec<(i64, Instant)>>>;

/// Inserts ids 1, 2, ... through the multi-host URL until told to stop; an insert not answered
/// in 3 s counts as failed and the writer reconnects (to whichever host is read-write).
fn start_writer(conninfo: String, log: Log, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut id = 0i64;
        let mut client: Option<tokio_postgres::Client> = None;
        while !stop.load(Ordering::Relaxed) {
            if client.is_none() {
                match tokio::time::timeout(
                    Duration::from_secs(3),
                    tokio_postgres::connect(&conninfo, tokio_postgres::NoTls),
                )
                .await
                {
                    Ok(Ok((c, connection))) => {
                        tokio::spawn(connection);
                        client = Some(c);
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            id += 1;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
            let insert = client.as_ref().unwrap().execute("INSERT INTO acked (id) VALUES ($1)", &params);
            match tokio::time::timeout(Duration::from_secs(3), insert).await {
                Ok(Ok(_)) => log.lock().unwrap().push((id, Instant::now())),
                _ => {
                    client = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// The longest time between two acknowledged inserts after `since`.
fn write_gap(log: &Log, since: Instant) -> Duration {
    let log = log.lock().unwrap();
    let times: Vec<Instant> = log.iter().map(|(_, t)| *t).collect();
    let start = times.iter().rposition(|t| *t <= since).unwrap_or(0);
    times[start..].windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// What one scenario cost: the write gap (RTO) and the acknowledged ids missing after it (RPO).
#[derive(Debug, Clone)]
pub struct Settled {
    pub scenario: &'static str,
    pub gap: Duration,
    pub lost: i64,
    pub line: String,
}

/// A running stack of several instances and the writer inserting into it.
pub struct Harness {
    pub stack: Stack,
    pub rests: Vec<Rest>,
    pub log: Log,
    password: String,
    stop: Arc<AtomicBool>,
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    /// Brings the stack up and starts the writer.
    pub async fn start(stack: Stack) -> Harness {
        let up = stack.up();
        assert!(up.contains("INSTANCES") && up.contains("primary"), "{up}");
        let members = stack.members();
        let rests: Vec<Rest> = members.iter().map(LocalMember::rest).collect();
        let password = stack.password();
        let hosts = members.iter().map(|_| "127.0.0.1").collect::<Vec<_>>().join(",");
        let ports = members.iter().map(|m| m.ports.postgres.to_string()).collect::<Vec<_>>().join(",");
        let conninfo = format!(
            "host={hosts} port={ports} user=postgres password={password} dbname=warehouse \
             target_session_attrs=read-write connect_timeout=2"
        );
        let log: Log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = Some(start_writer(conninfo, log.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        Harness { stack, rests, log, password, stop, writer }
    }

    pub async fn stop_writer(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(writer) = self.writer.take() {
            writer.await.unwrap();
        }
    }

    pub async fn cluster(&self) -> Vec<ClusterMember> {
        pgwarehouse::ha::cluster_from_any(&self.rests).await.unwrap()
    }

    /// The end of every member's Patroni log, for a failure's message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for member in self.stack.members() {
            let log = std::fs::read_to_string(member.dir.join("patroni.log")).unwrap_or_default();
            let lines: Vec<&str> =
                log.lines().filter(|l| !l.contains("no action.") && !l.contains("waiting for WAL")).collect();
            text.push_str(&format!("--- {}\n{}\n", member.name, lines[lines.len().saturating_sub(15)..].join("\n")));
        }
        text
    }

    pub async fn primary(&self) -> LocalMember {
        let (primary, _) = wait_for_members(&self.rests, 0, Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        self.stack.members().into_iter().find(|m| m.name == primary.name).unwrap()
    }

    pub async fn connect(&self, port: u16) -> tokio_postgres::Client {
        let conninfo = format!("host=127.0.0.1 port={port} user=postgres password={} dbname=warehouse", self.password);
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// After an event: one primary, the others streaming within 120 s; the write gap and the
    /// acknowledged ids missing.
    async fn settled(&self, scenario: &'static str, started: Instant) -> Settled {
        let replicas = self.rests.len() - 1;
        let (primary, cluster) = wait_for_members(&self.rests, replicas, Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("{scenario}: {e}\n{}", self.logs()));
        let primaries: Vec<&str> = cluster.iter().filter(|m| m.is_primary()).map(|m| m.name.as_str()).collect();
        assert_eq!(primaries, [primary.name.as_str()], "{scenario}: exactly one primary");
        // A few writes on the new primary, so the gap is closed.
        let count = self.log.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log.lock().unwrap().len() < count + 5 {
            assert!(Instant::now() < deadline, "{scenario}: the writer writes again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let acked: Vec<i64> = self.log.lock().unwrap().iter().map(|(id, _)| *id).collect();
        let client = self.connect(primary.port.unwrap()).await;
        let found: i64 =
            client.query_one("SELECT count(*) FROM acked WHERE id = ANY ($1)", &[&acked]).await.unwrap().get(0);
        let lost = acked.len() as i64 - found;
        let gap = write_gap(&self.log, started);
        let line = format!(
            "{scenario}: primary {} (timeline {}), write gap {:.1} s, {lost} of {} acknowledged ids missing",
            primary.name,
            primary.timeline.unwrap_or_default(),
            gap.as_secs_f64(),
            acked.len()
        );
        println!("{line}");
        Settled { scenario, gap, lost, line }
    }

    /// Patroni's failsafe mode lets only members the leader has listed in its `/failsafe` key race
    /// for the lock, and the leader lists them once a loop: a member that rejoined moments ago
    /// (and may already be the synchronous standby) is not yet eligible. Each failure is made a
    /// loop after the last one settled, as it would be in production most of the time.
    async fn let_the_leader_list_its_members(&self, profile: Profile) {
        tokio::time::sleep(Duration::from_secs(profile.loop_wait + 1)).await;
    }

    /// The four scenarios in turn, each settled before the next, with the stack's `profile`.
    pub async fn fail_over_and_switch_over(&self, profile: Profile) -> Vec<Settled> {
        let mut settled = Vec::new();

        // (a) a planned switchover, through the CLI.
        let before = self.primary().await;
        let started = Instant::now();
        let out = self.stack.local(&["switchover"]);
        assert!(out.contains("is the primary"), "{out}");
        settled.push(self.settled("(a) switchover", started).await);
        assert_ne!(self.primary().await.name, before.name, "the switchover moved the primary");

        // (b) the primary's postmaster killed: Patroni restarts it (crash recovery) or a replica
        // takes over.
        self.let_the_leader_list_its_members(profile).await;
        let primary = self.primary().await;
        let started = Instant::now();
        kill(primary.postmaster_pid().expect("the primary's postmaster"), "KILL");
        tokio::time::sleep(Duration::from_secs(2)).await;
        settled.push(self.settled("(b) SIGKILL postmaster", started).await);

        // (c) the primary's Patroni and postmaster killed together: the lock expires, a replica is
        // promoted; `local up` starts the lost member again, which rewinds and streams.
        self.let_the_leader_list_its_members(profile).await;
        let primary = self.primary().await;
        let started = Instant::now();
        let (patroni, postmaster) = (primary.patroni_pid().unwrap(), primary.postmaster_pid().unwrap());
        kill(patroni, "KILL");
        kill(postmaster, "KILL");
        let promoted = loop {
            let (p, _) = wait_for_members(&self.rests, 0, Duration::from_secs(120))
                .await
                .unwrap_or_else(|e| panic!("(c): {e}\n{}", self.logs()));
            if p.name != primary.name {
                break p;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        println!("(c) {} promoted after {:.1} s", promoted.name, started.elapsed().as_secs_f64());
        self.stack.local(&["up"]);
        settled.push(self.settled("(c) SIGKILL Patroni + postmaster", started).await);

        // (d) the primary's Patroni frozen past its lock's ttl: a replica takes over (with
        // synchronous replication the old primary's commits wait for a standby that is gone, so
        // nothing it takes is acknowledged); thawed, Patroni demotes it and it rewinds.
        self.let_the_leader_list_its_members(profile).await;
        let primary = self.primary().await;
        let started = Instant::now();
        let patroni = primary.patroni_pid().unwrap();
        kill(patroni, "STOP");
        tokio::time::sleep(Duration::from_secs(profile.ttl + 20)).await;
        kill(patroni, "CONT");
        // As root Patroni runs under runuser, which stops itself when its child stops: it goes on too.
        if let Some(launcher) = parent(patroni).filter(|p| process_name(*p) == "runuser") {
            kill(launcher, "CONT");
        }
        settled.push(self.settled("(d) SIGSTOP Patroni ttl+20 s", started).await);
        let after = self.cluster().await;
        assert!(
            !after.iter().any(|m| m.name == primary.name && m.is_primary()),
            "the frozen primary {} was replaced\n{}",
            primary.name,
            self.logs()
        );
        settled
    }
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

fn kill(pid: u32, signal: &str) {
    assert!(Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success());
}
