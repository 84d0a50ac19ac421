//! High availability in local mode: three instances under real Patroni with etcd on loopback,
//! `synchronous: on` and the fast failover profile. A writer inserts through a libpq multi-host
//! URL (`target_session_attrs=read-write`) throughout and logs every acknowledged id; then
//! (a) a switchover, (b) SIGKILL of the primary's postmaster, (c) SIGKILL of the primary's Patroni
//! and postmaster together, (d) SIGSTOP of the primary's Patroni for ttl + 20 s. After each:
//! exactly one primary, every acknowledged id present, every other member streaming again within
//! 120 s (the old primary rewound), the write gap printed. Last, a `* * * * *` pg_cron job runs on
//! the primary and its launcher runs on no replica, only the primary's backup agent would back up;
//! a parameter change reaches every member, and one needing a restart restarts the replicas first
//! and ends with a switchover; lowered again, the primary restarts in place first.

#[path = "support/ha_cluster.rs"]
mod ha_cluster;

use std::time::{Duration, Instant};

use ha_cluster::{FAST, Harness, Stack, manifest};

fn parameters(work_mem: &str, max_connections: u32) -> String {
    format!("work_mem: \"{work_mem}\", max_connections: \"{max_connections}\"")
}

fn stack_manifest(work_mem: &str, max_connections: u32) -> String {
    manifest(3, "on", FAST, &parameters(work_mem, max_connections), "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_fail_over_switch_over_and_lose_no_acknowledged_insert() {
    let mut h = Harness::start(Stack::new(&stack_manifest("32MB", 100))).await;
    assert_eq!(h.stack.members().len(), 3);
    let report = h.fail_over_and_switch_over(FAST).await;
    for settled in &report {
        assert_eq!(settled.lost, 0, "{}: synchronous: on loses no acknowledged insert", settled.scenario);
    }
    h.stop_writer().await;

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
    h.stack.write_manifest(&stack_manifest("48MB", 100));
    let out = h.stack.local(&["up"]);
    assert!(out.contains("postgresql.parameters.work_mem"), "{out}");
    assert!(!out.contains("restarted for a setting"), "{out}");
    for member in h.stack.members() {
        let client = h.connect(member.ports.postgres).await;
        let value: String = client.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
        assert_eq!(value, "48MB", "{}", member.name);
    }
    let before = h.primary().await;
    h.stack.write_manifest(&stack_manifest("48MB", 120));
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
    // Lowered again: a replica may not run below its primary's value, so the primary restarts
    // in place before the replicas can take it; then nothing is pending and an idle `up`
    // restarts nothing.
    let primary = h.primary().await;
    h.stack.write_manifest(&stack_manifest("48MB", 100));
    let out = h.stack.local(&["up"]);
    let restarted = out.lines().find(|l| l.contains("restarted for a setting")).unwrap_or_else(|| panic!("{out}"));
    assert!(restarted.contains(&primary.name), "the primary restarted for a decrease: {restarted}");
    for member in h.stack.members() {
        let client = h.connect(member.ports.postgres).await;
        let value: String = client.query_one("SHOW max_connections", &[]).await.unwrap().get(0);
        assert_eq!(value, "100", "{}", member.name);
    }
    assert!(h.cluster().await.iter().all(|m| !m.pending_restart), "nothing left pending");
    let idle = h.stack.local(&["up"]);
    assert!(!idle.contains("restarted for a setting") && !idle.contains("configuration changed"), "{idle}");
    let client = h.connect(h.primary().await.ports.postgres).await;
    let rows: i64 = client.query_one("SELECT count(*) FROM acked", &[]).await.unwrap().get(0);
    assert!(rows >= h.log.lock().unwrap().len() as i64);

    let status = h.stack.local(&["status"]);
    assert_eq!(status.matches(" primary ").count(), 1, "{status}");
    println!("{}", report.iter().map(|s| s.line.as_str()).collect::<Vec<_>>().join("\n"));
    let down = h.stack.local(&["down"]);
    assert!(down.contains("stopped etcd"), "{down}");
    assert!(h.stack.members().iter().all(|m| m.patroni_pid().is_none()), "{down}");
}

/// The server's clock, as text, for comparing with pg_cron's run times.
async fn chrono_now(h: &Harness, port: u16) -> String {
    let client = h.connect(port).await;
    client.query_one("SELECT now()::text", &[]).await.unwrap().get(0)
}
