//! `make bench`: refreshes of 1,000,000 source rows over postgres_fdw. A full `replace` against
//! the floor — `COPY (source) TO STDOUT | COPY target FROM STDIN`, binary, between the same two
//! databases — at the operator's defaults (the source sets no `fetch_size`) and with
//! postgres_fdw's own default of 100 rows a round trip; and an incremental upsert after 1% of the
//! rows changed against that full refresh.
//! Ratios, both sides run in this process on this machine. The source indexes `updated_at`, as a
//! table read incrementally should.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use sqlx::{Executor, Row};
use support::{Fixture, exec, scalar};

const ROWS: i64 = 1_000_000;

const STACK: &str = r#"
sources:
- name: cp
  wrapper: postgres_fdw
  options: {host: 127.0.0.1, port: "PORT", dbname: controlplane}
  userMapping:
    options: {user: cp_reader}
    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}
  importSchemas:
  - {remoteSchema: public, into: f, only: [big]}
- name: cp_fetch_100
  wrapper: postgres_fdw
  options: {host: 127.0.0.1, port: "PORT", dbname: controlplane, fetch_size: "100"}
  userMapping:
    options: {user: cp_reader}
    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}
  importSchemas:
  - {remoteSchema: public, into: f100, only: [big]}
migrations:
- name: floor
  sql: CREATE TABLE big_floor (id bigint, account text, amount int, updated_at timestamptz)
refreshes:
- name: full
  target: public.big_full
  query: SELECT id, account, amount, updated_at FROM f.big
  schedule: "@daily"
- name: full_fetch_100
  target: public.big_full_fetch_100
  query: SELECT id, account, amount, updated_at FROM f100.big
  schedule: "@daily"
- name: incremental
  target: public.big_incremental
  query: SELECT id, account, amount, updated_at FROM f.big
  mode: upsert
  key: [id]
  incremental: {column: updated_at}
  schedule: "@daily"
"#;

async fn refresh(db: &mut sqlx::PgConnection, name: &str) -> (Duration, i64, i64) {
    let started = Instant::now();
    let row = sqlx::query("SELECT state, inserted, updated, error FROM pgwarehouse.refresh($1)")
        .bind(name)
        .fetch_one(&mut *db)
        .await
        .unwrap();
    let took = started.elapsed();
    let (state, error): (String, Option<String>) = (row.get("state"), row.get("error"));
    assert_eq!(state, "succeeded", "{name}: {error:?}");
    (took, row.get("inserted"), row.get("updated"))
}

#[tokio::main]
async fn main() {
    let fx = Fixture::start().await;
    let mut cp = fx.server.connect("controlplane").await;
    exec(
        &mut cp,
        &format!(
            "CREATE TABLE big (id bigint PRIMARY KEY, account text NOT NULL, amount int NOT NULL, updated_at timestamptz NOT NULL); \
             INSERT INTO big SELECT g, 'account-' || (g % 5000), (g % 1000)::int, '2026-01-01'::timestamptz + g * interval '1 second' \
             FROM generate_series(1, {ROWS}) g; CREATE INDEX ON big (updated_at); GRANT SELECT ON big TO cp_reader; ANALYZE big"
        ),
    )
    .await;
    fx.apply_ok(STACK).await;
    let mut db = fx.warehouse().await;

    // The floor: the same rows, binary COPY out of the source and into the warehouse.
    let mut floors = Vec::new();
    for _ in 0..3 {
        exec(&mut db, "TRUNCATE big_floor").await;
        let started = Instant::now();
        let mut copy_in = db.copy_in_raw("COPY big_floor FROM STDIN (FORMAT binary)").await.unwrap();
        let mut copy_out = cp
            .copy_out_raw("COPY (SELECT id, account, amount, updated_at FROM big) TO STDOUT (FORMAT binary)")
            .await
            .unwrap();
        while let Some(chunk) = copy_out.next().await {
            copy_in.send(chunk.unwrap()).await.unwrap();
        }
        drop(copy_out);
        assert_eq!(copy_in.finish().await.unwrap(), ROWS as u64);
        floors.push(started.elapsed());
    }
    floors.sort();
    let floor = floors[1];

    let (first, inserted, _) = refresh(&mut db, "full").await;
    assert_eq!(inserted, ROWS);
    let mut fulls = Vec::new();
    for _ in 0..3 {
        fulls.push(refresh(&mut db, "full").await.0);
    }
    fulls.sort();
    let full = fulls[1];
    refresh(&mut db, "full_fetch_100").await;
    let mut fulls_100 = Vec::new();
    for _ in 0..3 {
        fulls_100.push(refresh(&mut db, "full_fetch_100").await.0);
    }
    fulls_100.sort();
    let full_100 = fulls_100[1];

    let (initial, inserted, _) = refresh(&mut db, "incremental").await;
    assert_eq!(inserted, ROWS);
    exec(&mut cp, "UPDATE big SET amount = amount + 1, updated_at = updated_at + interval '1 year' WHERE id % 100 = 0")
        .await;
    let (incremental, inserted, updated) = refresh(&mut db, "incremental").await;
    assert_eq!((inserted, updated), (0, ROWS / 100));
    let (idle, inserted, updated) = refresh(&mut db, "incremental").await;
    assert_eq!((inserted, updated), (0, 0));
    let same: i64 = scalar(
        &mut db,
        "SELECT count(*) FROM big_incremental i JOIN big_full f USING (id) WHERE i.amount = f.amount + 1",
    )
    .await;
    assert_eq!(same, ROWS / 100, "exactly the changed rows were rewritten");
    db.execute("SELECT 1").await.unwrap();

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "refresh: {ROWS} rows over postgres_fdw at the operator's defaults (fetch_size {}), medians of 3",
        pgwarehouse::sql::plan::POSTGRES_FDW_FETCH_SIZE
    );
    println!("floor (binary COPY source -> warehouse): {floor:.2?}");
    println!(
        "full replace into an empty table: {first:.2?} = {:.2}x floor; steady state (DELETE 1M + INSERT 1M, one transaction): {full:.2?} = {:.2}x floor (target <= 2x)",
        ratio(first, floor),
        ratio(full, floor)
    );
    println!(
        "the same steady state at postgres_fdw's own fetch_size 100: {full_100:.2?} = {:.2}x floor ({:.1}x the default's time)",
        ratio(full_100, floor),
        ratio(full_100, full)
    );
    println!(
        "incremental upsert: first run (1M new) {initial:.2?}; after 1% changed {incremental:.2?} = {:.1}% of the full refresh (target <= 10%); nothing changed {idle:.2?}",
        100.0 * ratio(incremental, full)
    );
}
