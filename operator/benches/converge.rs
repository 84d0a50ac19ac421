//! `make bench`: a stack with 1,000 foreign tables, 50 cron jobs and 20 partition sets.
//! Compares the engine's first apply with the floor (the same DDL as one script in one
//! transaction, on an identical fresh server), then measures the no-op apply. Ratios, not
//! wall-clock thresholds: both sides run in this process on this machine.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Executor};
use support::{Fixture, WAREHOUSE};

const TABLES: usize = 1_000;
const JOBS: usize = 50;
const PARTITION_SETS: usize = 20;

fn stack_spec() -> String {
    let mut spec = String::from(
        "sources:\n- name: control_plane\n  wrapper: postgres_fdw\n  \
         options: {host: 127.0.0.1, port: \"PORT\", dbname: controlplane}\n  \
         userMapping: {options: {user: cp_reader}}\n  tables:\n",
    );
    for i in 0..TABLES {
        writeln!(
            spec,
            "  - {{name: t{i:04}, schema: f, columns: [{{name: id, type: bigint}}, {{name: name, type: text}}], \
             options: {{table_name: organizations}}}}"
        )
        .unwrap();
    }
    spec.push_str("migrations:\n- name: metrics\n  sql: |\n");
    for i in 0..PARTITION_SETS {
        writeln!(
            spec,
            "    CREATE TABLE m{i:02} (id int8 NOT NULL, t int8 NOT NULL, v float8) PARTITION BY RANGE (t);"
        )
        .unwrap();
    }
    spec.push_str("schedules:\n");
    for i in 0..JOBS {
        writeln!(spec, "- {{name: job{i:02}, schedule: '{} * * * *', command: SELECT {i}}}", i % 60).unwrap();
    }
    spec.push_str("partitions:\n");
    for i in 0..PARTITION_SETS {
        writeln!(spec, "- {{table: public.m{i:02}, column: t, interval: 1 day, epoch: seconds, retention: 30 days}}")
            .unwrap();
    }
    spec
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let spec = stack_spec();

    // The floor: what the engine would run, as one script in one transaction.
    let floor_fx = Fixture::start().await;
    let plan = floor_fx.plan(&spec).await;
    let statements: Vec<String> = plan.changes().map(|(_, c)| c.sql.to_string()).collect();
    let script = format!("BEGIN;\n{};\nCOMMIT;\n", statements.join(";\n"));
    let mut conn = floor_fx.warehouse().await;
    let started = Instant::now();
    conn.execute(AssertSqlSafe(script)).await.expect("the floor script runs");
    let floor = started.elapsed();

    // The engine on an identical fresh server.
    let fx = Fixture::start().await;
    let (stack, secrets) = fx.load(&spec);
    let mut conn = fx.server.connect(WAREHOUSE).await;
    let started = Instant::now();
    let (_, first) = pgwarehouse::sql::converge(&mut conn, &stack, &secrets).await.unwrap();
    let first_time = started.elapsed();
    assert_eq!(first.failed().count(), 0, "{first:#?}");

    let mut noop_times = Vec::new();
    let mut noop = None;
    for _ in 0..5 {
        let started = Instant::now();
        let (_, report) = pgwarehouse::sql::converge(&mut conn, &stack, &secrets).await.unwrap();
        noop_times.push(started.elapsed());
        noop = Some(report);
    }
    noop_times.sort();
    let noop_time = noop_times[noop_times.len() / 2];
    let noop = noop.unwrap();

    println!("stack: {TABLES} foreign tables, {JOBS} cron jobs, {PARTITION_SETS} partition sets");
    println!("floor (same DDL, one script, one transaction): {} statements in {floor:.2?}", statements.len());
    println!(
        "first apply: {} statements, {} round trips in {first_time:.2?} = {:.2}x floor (target <= 1.3x)",
        first.statements,
        first.round_trips,
        ratio(first_time, floor)
    );
    println!(
        "no-op apply (median of 5): {} statements, {} round trips in {noop_time:.2?} = {:.3}x floor \
         (target: 0 statements, <= 3 round trips)",
        noop.statements,
        noop.round_trips,
        ratio(noop_time, floor)
    );
    assert_eq!(noop.statements, 0, "a no-op apply issued statements");
    assert!(noop.round_trips <= 3, "a no-op apply took {} round trips", noop.round_trips);
}
