//! High availability in local mode: three instances under real Patroni with etcd on loopback,
//! `synchronous: on` and the fast failover profile. A writer inserts through a libpq multi-host
//! URL (`target_session_attrs=read-write`) throughout and logs every acknowledged id; then
//! (a) a switchover, (b) SIGKILL of the primary's postmaster, (c) SIGKILL of the primary's Patroni
//! and postmaster together, (d) SIGSTOP of the primary's Patroni for ttl + 20 s. After each:
//! exactly one primary, every acknowledged id present, every other member streaming again within
//! 120 s (the old primary rewound), the write gap printed. Last, a `* * * * *` pg_cron job runs on
//! the primary and its launcher runs on no replica, only the primary's backup agent would back up;
//! a parameter change reaches every member, and one needing a restart restarts the replicas first
//! and ends with a switchover.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgwarehouse::ha::{ClusterMember, Rest, wait_for_members};
use pgwarehouse::local::cluster::Binaries;
use pgwarehouse::local::ha::{HaState, LocalMember, members};
use pgwarehouse::validate::validate_manifest;

const TTL: u64 = 20;

fn manifest(work_mem: &str, max_connections: u32) -> String {
    format!(
        r#"kind: DataWarehouseStack
metadata: {{name: hawh}}
spec:
  postgres:
    instances: 3
    synchronous: "on"
    failover: {{ttlSeconds: {TTL}, loopWaitSeconds: 5, retryTimeoutSeconds: 5}}
    parameters: {{work_mem: "{work_mem}", max_connections: "{max_connections}"}}
  migrations:
  - name: 001_acked
    sql: CREATE TABLE acked (id int8 PRIMARY KEY, at timestamptz DEFAULT now())
  schedules:
  - {{name: tick, schedule: "* * * * *", command: "SELECT 1"}}
"#
    )
}

struct Stack {
    work: tempfile::TempDir,
}

impl Stack {
    fn manifest_path(&self) -> PathBuf {
        self.work.path().join("stack.yaml")
    }

    fn data(&self) -> PathBuf {
        self.work.path().join("stack")
    }

    fn local(&self, args: &[&str]) -> String {
        let manifest = self.manifest_path();
        let data = self.data();
        let mut all = vec!["local", args[0], "-f", manifest.to_str().unwrap(), "--data-dir", data.to_str().unwrap()];
        all.extend(&args[1..]);
        let out = Command::new(env!("CARGO_BIN_EXE_pgwarehouse")).args(&all).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "local {}: {text}", args[0]);
        text
    }

    fn state(&self) -> HaState {
        let text = std::fs::read_to_string(self.data().join("pgwarehouse-local.json")).unwrap();
        let state: serde_json::Value = serde_json::from_str(&text).unwrap();
        serde_json::from_value(state["ha"].clone()).unwrap()
    }

    fn members(&self) -> Vec<LocalMember> {
        let stack = validate_manifest(&std::fs::read_to_string(self.manifest_path()).unwrap()).unwrap();
        members(&stack, &self.data(), &self.state().members)
    }

    fn password(&self) -> String {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Acknowledged ids and when each was acknowledged.
type Log = Arc<Mutex<Vec<(i64, Instant)>>>;

/// Inserts ids 1, 2, ... through the multi-host URL until told to stop; an insert not answered
/// in 3 s counts as failed and the writer reconnects (to whichever host is read-write).
fn start_writer(conninfo: String, log: Log, stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut id = 0i64;
        let mut client: Option<tokio_postgres::Client> = None;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
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

struct Harness {
    stack: Stack,
    rests: Vec<Rest>,
    log: Log,
    password: String,
}

impl Harness {
    async fn cluster(&self) -> Vec<ClusterMember> {
        pgwarehouse::ha::cluster_from_any(&self.rests).await.unwrap()
    }

    /// The end of every member's Patroni log, for a failure's message.
    fn logs(&self) -> String {
        let mut text = String::new();
        for member in self.stack.members() {
            let log = std::fs::read_to_string(member.dir.join("patroni.log")).unwrap_or_default();
            let lines: Vec<&str> =
                log.lines().filter(|l| !l.contains("no action.") && !l.contains("waiting for WAL")).collect();
            text.push_str(&format!("--- {}\n{}\n", member.name, lines[lines.len().saturating_sub(15)..].join("\n")));
        }
        text
    }

    async fn primary(&self) -> LocalMember {
        let (primary, _) = wait_for_members(&self.rests, 0, Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        self.stack.members().into_iter().find(|m| m.name == primary.name).unwrap()
    }

    async fn connect(&self, port: u16) -> tokio_postgres::Client {
        let conninfo = format!("host=127.0.0.1 port={port} user=postgres password={} dbname=warehouse", self.password);
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// After an event: one primary, the others streaming within 120 s, every acknowledged id there.
    async fn settled(&self, scenario: &str, started: Instant) -> String {
        let (primary, cluster) = wait_for_members(&self.rests, 2, Duration::from_secs(120))
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
        assert_eq!(lost, 0, "{scenario}: synchronous: on loses no acknowledged insert");
        line
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_fail_over_switch_over_and_lose_no_acknowledged_insert() {
    let binaries = Binaries::find().expect("PostgreSQL binaries (PGW_PG_BINDIR)");
    let work = tempfile::Builder::new().prefix("pgw-ha-").tempdir_in(binaries.on_host(Path::new("/tmp"))).unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let stack = Stack { work };
    std::fs::write(stack.manifest_path(), manifest("32MB", 100)).unwrap();
    let port = free_port().to_string();
    let up = stack.local(&["up", "--port", &port]);
    assert!(up.contains("INSTANCES") && up.contains("primary"), "{up}");
    let members = stack.members();
    assert_eq!(members.len(), 3);
    let rests: Vec<Rest> = members.iter().map(LocalMember::rest).collect();
    let password = stack.password();
    let hosts = members.iter().map(|_| "127.0.0.1").collect::<Vec<_>>().join(",");
    let ports = members.iter().map(|m| m.ports.postgres.to_string()).collect::<Vec<_>>().join(",");
    let conninfo = format!(
        "host={hosts} port={ports} user=postgres password={password} dbname=warehouse \
         target_session_attrs=read-write connect_timeout=2"
    );
    let h = Harness { stack, rests, log: Arc::new(Mutex::new(Vec::new())), password };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = start_writer(conninfo, h.log.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut report = Vec::new();

    // (a) a planned switchover, through the CLI.
    let before = h.primary().await;
    let started = Instant::now();
    let out = h.stack.local(&["switchover"]);
    assert!(out.contains("is the primary"), "{out}");
    report.push(h.settled("(a) switchover", started).await);
    assert_ne!(h.primary().await.name, before.name, "the switchover moved the primary");

    // (b) the primary's postmaster killed: Patroni restarts it (crash recovery) or a replica takes over.
    let primary = h.primary().await;
    let started = Instant::now();
    kill(primary.postmaster_pid().expect("the primary's postmaster"), "KILL");
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.push(h.settled("(b) SIGKILL postmaster", started).await);

    // (c) the primary's Patroni and postmaster killed together: the lock expires, a replica is
    // promoted; `local up` starts the lost member again, which rewinds and streams.
    let primary = h.primary().await;
    let started = Instant::now();
    let (patroni, postmaster) = (primary.patroni_pid().unwrap(), primary.postmaster_pid().unwrap());
    kill(patroni, "KILL");
    kill(postmaster, "KILL");
    let (promoted, _) = loop {
        let (p, c) = wait_for_members(&h.rests, 0, Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("(c): {e}\n{}", h.logs()));
        if p.name != primary.name {
            break (p, c);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("(c) {} promoted after {:.1} s", promoted.name, started.elapsed().as_secs_f64());
    h.stack.local(&["up"]);
    report.push(h.settled("(c) SIGKILL Patroni + postmaster", started).await);

    // (d) the primary's Patroni frozen past its lock's ttl: a replica takes over; the old primary's
    // commits wait for a synchronous standby that is gone, so nothing it takes is acknowledged;
    // thawed, Patroni demotes it and it rewinds.
    let primary = h.primary().await;
    let started = Instant::now();
    let patroni = primary.patroni_pid().unwrap();
    kill(patroni, "STOP");
    tokio::time::sleep(Duration::from_secs(TTL + 20)).await;
    kill(patroni, "CONT");
    // As root Patroni runs under runuser, which stops itself when its child stops: it goes on too.
    if let Some(launcher) = parent(patroni).filter(|p| process_name(*p) == "runuser") {
        kill(launcher, "CONT");
    }
    report.push(h.settled("(d) SIGSTOP Patroni ttl+20 s", started).await);
    let after = h.cluster().await;
    assert!(!after.iter().any(|m| m.name == primary.name && m.is_primary()), "the frozen primary was replaced");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();

    // pg_cron: its launcher runs on the primary only, and the job fires there.
    let primary = h.primary().await;
    let since = chrono_now(&h, primary.ports.postgres).await;
    for member in h.stack.members() {
        let client = h.connect(member.ports.postgres).await;
        let launchers: i64 = client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(launchers, i64::from(member.name == primary.name), "pg_cron launcher on {}", member.name);
    }
    let client = h.connect(primary.ports.postgres).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let runs: i64 = client
            .query_one(
                "SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid) \
                 WHERE j.jobname LIKE '%tick%' AND d.start_time >= $1::text::timestamptz",
                &[&since],
            )
            .await
            .unwrap()
            .get(0);
        if runs > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the * * * * * job ran on the new primary within 90 s");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // The backup agent beside each member: only the primary's backs up.
    for member in h.stack.members() {
        let leads = pgwarehouse::backup::agent::leads(Some(&member.rest().base)).await;
        assert_eq!(leads, member.name == primary.name, "backup agent of {}", member.name);
    }

    // Converge through Patroni: a reloadable parameter reaches every member without a restart;
    // one needing a restart restarts the replicas first, then switches over.
    std::fs::write(h.stack.manifest_path(), manifest("48MB", 100)).unwrap();
    let out = h.stack.local(&["up"]);
    assert!(out.contains("postgresql.parameters.work_mem"), "{out}");
    assert!(!out.contains("restarted for a setting"), "{out}");
    for member in h.stack.members() {
        let client = h.connect(member.ports.postgres).await;
        let value: String = client.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
        assert_eq!(value, "48MB", "{}", member.name);
    }
    let before = h.primary().await;
    std::fs::write(h.stack.manifest_path(), manifest("48MB", 120)).unwrap();
    let out = h.stack.local(&["up"]);
    let restarted = out.lines().find(|l| l.contains("restarted for a setting")).unwrap_or_else(|| panic!("{out}"));
    assert!(restarted.ends_with(&before.name), "replicas first, the old primary last: {restarted}");
    assert!(out.contains("switched over to"), "{out}");
    assert_ne!(h.primary().await.name, before.name);
    for member in h.stack.members() {
        let client = h.connect(member.ports.postgres).await;
        let value: String = client.query_one("SHOW max_connections", &[]).await.unwrap().get(0);
        assert_eq!(value, "120", "{}", member.name);
    }
    let client = h.connect(h.primary().await.ports.postgres).await;
    let rows: i64 = client.query_one("SELECT count(*) FROM acked", &[]).await.unwrap().get(0);
    assert!(rows >= h.log.lock().unwrap().len() as i64);

    let status = h.stack.local(&["status"]);
    assert_eq!(status.matches(" primary ").count(), 1, "{status}");
    println!("{}", report.join("\n"));
    let down = h.stack.local(&["down"]);
    assert!(down.contains("stopped etcd"), "{down}");
    assert!(h.stack.members().iter().all(|m| m.patroni_pid().is_none()), "{down}");
}

/// The server's clock, as text, for comparing with pg_cron's run times.
async fn chrono_now(h: &Harness, port: u16) -> String {
    let client = h.connect(port).await;
    client.query_one("SELECT now()::text", &[]).await.unwrap().get(0)
}
