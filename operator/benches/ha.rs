//! `make bench`: high availability under real Patroni, etcd and Postgres (`local up`, three
//! instances). For each scenario of `tests/ha.rs` — (a) switchover, (b) SIGKILL of the primary's
//! postmaster, (c) SIGKILL of its Patroni and postmaster, (d) SIGSTOP of its Patroni for ttl + 20 s
//! — the write gap a writer on a multi-host URL sees (RTO) and the acknowledged ids missing after it
//! (RPO), with `synchronous: on` and `off`, Patroni's default timing and the fast profile. Then the
//! replication overhead of a write-heavy refresh: three instances, synchronous and asynchronous,
//! against one instance, as ratios of runs in this process on this machine (the three members
//! share its cores).

#[path = "../tests/support/ha_cluster.rs"]
mod ha_cluster;

use std::time::{Duration, Instant};

use ha_cluster::{DEFAULTS, FAST, Harness, Profile, Stack, manifest};
use pgwarehouse::ha::wait_for_members;
use pgwarehouse::local::ha::LocalMember;

const LOAD_ROWS: u32 = 500_000;
const RUNS: usize = 3;

/// The goals: a switchover's gap, a hard failure's gap with the fast profile.
const SWITCHOVER_GOAL: Duration = Duration::from_secs(5);
const HARD_FAILURE_GOAL: Duration = Duration::from_secs(30);

fn load_refresh() -> String {
    format!(
        "  refreshes:\n  - name: load\n    target: public.load\n    \
         query: SELECT g AS id, md5(g::text) AS payload, repeat('x', 100) AS padding FROM generate_series(1, {LOAD_ROWS}) g\n    \
         schedule: \"@daily\"\n"
    )
}

async fn failover(profile: Profile, synchronous: &str) -> Vec<ha_cluster::Settled> {
    let stack = Stack::new(&manifest(3, synchronous, profile, "", ""));
    let mut h = Harness::start(stack).await;
    let settled = h.fail_over_and_switch_over(profile).await;
    h.stop_writer().await;
    settled
}

/// The primary's Postgres port once `replicas` stream from it (none for one instance).
async fn primary_port(stack: &Stack, port: u16, instances: u32) -> u16 {
    if instances == 1 {
        return port;
    }
    let members = stack.members();
    let rests: Vec<_> = members.iter().map(LocalMember::rest).collect();
    let (primary, _) = wait_for_members(&rests, members.len() - 1, Duration::from_secs(120)).await.unwrap();
    members.iter().find(|m| m.name == primary.name).unwrap().ports.postgres
}

/// The median time of the `load` refresh (`replace` of LOAD_ROWS rows) on the primary.
async fn refresh_time(instances: u32, synchronous: &str) -> Duration {
    let stack = Stack::new(&manifest(instances, synchronous, FAST, "", &load_refresh()));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    stack.local(&["up", "--port", &port.to_string()]);
    let port = primary_port(&stack, port, instances).await;
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres password={} dbname=warehouse", stack.password());
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let row = client.query_one("SELECT state, error FROM pgwarehouse.refresh('load')", &[]).await.unwrap();
        times.push(started.elapsed());
        let (state, error): (String, Option<String>) = (row.get(0), row.get(1));
        assert_eq!(state, "succeeded", "{error:?}");
    }
    times.sort();
    times[RUNS / 2]
}

fn verdict(met: bool) -> &'static str {
    if met { "goal met" } else { "GOAL MISSED" }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let mut table = vec![format!("{:<20} {:<10} {:<34} {:>8} {:>6}", "profile", "sync", "scenario", "RTO", "RPO")];
    for profile in [FAST, DEFAULTS] {
        for synchronous in ["on", "off"] {
            for settled in failover(profile, synchronous).await {
                let goal = match settled.scenario {
                    "(a) switchover" => Some(settled.gap <= SWITCHOVER_GOAL),
                    "(c) SIGKILL Patroni + postmaster" if profile.name == FAST.name => {
                        Some(settled.gap <= HARD_FAILURE_GOAL)
                    }
                    _ => None,
                };
                let rpo_goal = (synchronous == "on").then_some(settled.lost == 0);
                let verdicts: Vec<&str> = [goal, rpo_goal].into_iter().flatten().map(verdict).collect();
                table.push(format!(
                    "{:<20} {:<10} {:<34} {:>6.1} s {:>6}   {}",
                    profile.name,
                    synchronous,
                    settled.scenario,
                    settled.gap.as_secs_f64(),
                    settled.lost,
                    verdicts.join(", ")
                ));
            }
        }
    }
    println!("\nRTO (longest gap between acknowledged inserts) and RPO (acknowledged ids missing):");
    println!("{}", table.join("\n"));

    let one = refresh_time(1, "off").await;
    let asynchronous = refresh_time(3, "off").await;
    let synchronous = refresh_time(3, "on").await;
    println!("\nA `replace` refresh of {LOAD_ROWS} rows, median of {RUNS}:");
    println!("  one instance                    {:>7.2} s  (baseline)", one.as_secs_f64());
    println!(
        "  three instances, asynchronous   {:>7.2} s  {:.2}x the baseline",
        asynchronous.as_secs_f64(),
        asynchronous.as_secs_f64() / one.as_secs_f64()
    );
    println!(
        "  three instances, synchronous    {:>7.2} s  {:.2}x the baseline",
        synchronous.as_secs_f64(),
        synchronous.as_secs_f64() / one.as_secs_f64()
    );
}
