//! `make bench`: a warehouse's history three ways, in one `pgwarehouse local up` stack with two
//! Citus workers: heap partitions, columnar partitions (loaded sorted by time, as the columnar
//! job converts ended partitions) and a distributed table over the workers. Rows of
//! `(id int8, time int8, value float8)`, 5,000 series over 30 daily partitions
//! (`PGW_BENCH_CITUS_ROWS`, default 10,000,000). Reported: sizes; the "most active series"
//! aggregate over the last 7 and 30 days, warm (median of 3) and cold (every server restarted
//! with the page cache dropped, when this runs as root), each as a ratio to heap; and the time a
//! single-row lookup takes through the coordinator against the same lookup on one server; and a
//! third worker's rebalance (rows moved per second) against a binary COPY of the same rows from
//! the coordinator into the new worker.
//! Ratios, all sides run in this process on this machine.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

const DAY: i64 = 86_400;
const END: i64 = 1_780_000_000 - 1_780_000_000 % DAY;
const TABLES: [&str; 3] = ["heap_hist", "columnar_hist", "dist_hist"];

fn manifest(workers: u32) -> String {
    let mut partitions = String::new();
    for table in TABLES {
        let using = if table == "columnar_hist" { " USING columnar" } else { "" };
        partitions.push_str(&format!(
            "      CREATE TABLE {table} (id int8 NOT NULL, \"time\" int8 NOT NULL, value float8 NOT NULL) PARTITION BY RANGE (\"time\");\n\
             \x20     DO $$ BEGIN FOR d IN 0..29 LOOP EXECUTE format('CREATE TABLE {table}_%s PARTITION OF {table} FOR VALUES FROM (%s) TO (%s){using}', \
             d, {END} - (30 - d) * {DAY}, {END} - (29 - d) * {DAY}); END LOOP; END $$;\n"
        ));
    }
    format!(
        "kind: DataWarehouseStack\nmetadata: {{name: bench}}\nspec:\n  template: datawarehouse\n  \
         extensions: [{{name: citus_columnar}}]\n  distributed: {{workers: {workers}, shardCount: 8}}\n  migrations:\n  \
         - name: 001_history\n    sql: |\n{partitions}\
         \x20     CREATE INDEX ON heap_hist (id, \"time\");\n      CREATE INDEX ON dist_hist (id, \"time\");\n  \
         tables:\n  - {{table: public.dist_hist, distribute: {{column: id}}}}\n"
    )
}

fn local(dir: &Path, command: &str, port: Option<u16>) -> String {
    let file = dir.join("bench.yaml").display().to_string();
    let data = dir.join("stack").display().to_string();
    let port = port.map(|p| p.to_string());
    let mut args = vec!["local", command, "-f", &file, "--data-dir", &data];
    if let Some(port) = &port {
        args.extend(["--port", port]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarehouse")).args(&args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "local {command}: {text}");
    text
}

async fn connect(dir: &Path, port: u16) -> PgConnection {
    let password = std::fs::read_to_string(dir.join("stack/superuser-password")).unwrap();
    PgConnection::connect(&format!("postgres://postgres:{}@127.0.0.1:{port}/warehouse", password.trim())).await.unwrap()
}

async fn exec(db: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(db).await.unwrap();
}

async fn scalar_i64(db: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(db).await.unwrap()
}

/// The ten most active series of the last `days` days, with a constant bound (the form a
/// dashboard's parameter takes), and how long it took.
async fn aggregate(db: &mut PgConnection, table: &str, days: i64) -> (Duration, String) {
    let sql = format!(
        "SELECT string_agg(id::text || ':' || n, ',') FROM (SELECT id, count(*) AS n FROM {table} \
         WHERE \"time\" >= {} GROUP BY id ORDER BY n DESC, id LIMIT 10) top",
        END - days * DAY
    );
    let started = Instant::now();
    let answer: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(db).await.unwrap();
    (started.elapsed(), answer)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Restarts every server of the stack with the kernel's page cache dropped: false when this
/// process may not drop it (not root).
fn cold_restart(dir: &Path) -> bool {
    local(dir, "down", None);
    let dropped = Command::new("sh").args(["-c", "sync && echo 3 > /proc/sys/vm/drop_caches"]).status();
    let ok = dropped.is_ok_and(|s| s.success());
    local(dir, "up", None);
    ok
}

/// Mean time of `rounds` single-row lookups of random series at one instant.
async fn lookups(db: &mut PgConnection, table: &str, rounds: i64) -> Duration {
    let sql = format!("SELECT value FROM {table} WHERE id = $1 AND \"time\" = $2");
    let started = Instant::now();
    for round in 0..rounds {
        let id = (round * 7919) % 5000;
        let time = END - DAY + (round % 1440) * 60;
        let _: Option<f64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .bind(time)
            .fetch_optional(&mut *db)
            .await
            .unwrap();
    }
    started.elapsed() / u32::try_from(rounds).unwrap()
}

#[tokio::main]
async fn main() {
    let rows: i64 = std::env::var("PGW_BENCH_CITUS_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let work = tempfile::Builder::new().prefix("pgw-bench-citus-").tempdir_in("/tmp").unwrap();
    let dir = work.path();
    std::fs::write(dir.join("bench.yaml"), manifest(2)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    local(dir, "up", Some(port));
    let mut db = connect(dir, port).await;

    let started = Instant::now();
    exec(
        &mut db,
        &format!(
            "INSERT INTO heap_hist SELECT g % 5000, {END} - 30 * {DAY} + (g * (30 * {DAY})) / {rows}, random() FROM generate_series(0::int8, {rows} - 1) g"
        ),
    )
    .await;
    exec(&mut db, "INSERT INTO columnar_hist SELECT * FROM heap_hist ORDER BY \"time\"").await;
    exec(&mut db, "INSERT INTO dist_hist SELECT * FROM heap_hist").await;
    for statement in ["VACUUM ANALYZE heap_hist", "VACUUM ANALYZE columnar_hist", "ANALYZE dist_hist"] {
        exec(&mut db, statement).await;
    }
    println!("citus: {rows} rows loaded three ways in {:.0?}", started.elapsed());

    let heap = scalar_i64(
        &mut db,
        "SELECT sum(pg_total_relation_size(inhrelid))::int8 FROM pg_inherits WHERE inhparent = 'heap_hist'::regclass",
    )
    .await;
    let columnar = scalar_i64(
        &mut db,
        "SELECT sum(pg_total_relation_size(inhrelid))::int8 FROM pg_inherits WHERE inhparent = 'columnar_hist'::regclass",
    )
    .await;
    let distributed = scalar_i64(
        &mut db,
        "SELECT sum(shard_size)::int8 FROM citus_shards WHERE table_name::text LIKE 'dist\\_hist%'",
    )
    .await;
    println!(
        "citus: sizes heap {:.0} MB, columnar {:.0} MB ({:.1}x smaller), distributed {:.0} MB over 2 workers",
        heap as f64 / 1e6,
        columnar as f64 / 1e6,
        heap as f64 / columnar as f64,
        distributed as f64 / 1e6
    );

    for days in [7, 30] {
        let mut warm = Vec::new();
        let mut answers = Vec::new();
        for table in TABLES {
            aggregate(&mut db, table, days).await;
            let mut samples = Vec::new();
            for _ in 0..3 {
                let (took, answer) = aggregate(&mut db, table, days).await;
                samples.push(took);
                answers.push(answer);
            }
            warm.push(median(samples));
        }
        answers.dedup();
        assert_eq!(answers.len(), 1, "the three layouts answer the same");
        println!(
            "citus: {days}-day aggregate warm: heap {:.0?}; columnar {:.2}x heap's time; distributed {:.2}x",
            warm[0],
            warm[1].as_secs_f64() / warm[0].as_secs_f64(),
            warm[2].as_secs_f64() / warm[0].as_secs_f64()
        );
    }

    let mut cold = Vec::new();
    let mut dropped = true;
    for days in [7, 30] {
        for table in TABLES {
            drop(db);
            dropped &= cold_restart(dir);
            db = connect(dir, port).await;
            cold.push((days, table, aggregate(&mut db, table, days).await.0));
        }
    }
    if dropped {
        for days in [7, 30] {
            let time = |t: &str| cold.iter().find(|(d, table, _)| *d == days && *table == t).unwrap().2;
            println!(
                "citus: {days}-day aggregate cold: heap {:.0?}; columnar {:.2}x heap's time; distributed {:.2}x",
                time("heap_hist"),
                time("columnar_hist").as_secs_f64() / time("heap_hist").as_secs_f64(),
                time("dist_hist").as_secs_f64() / time("heap_hist").as_secs_f64()
            );
        }
    } else {
        println!("citus: cold runs skipped: dropping the page cache needs root");
    }

    lookups(&mut db, "heap_hist", 100).await;
    lookups(&mut db, "dist_hist", 100).await;
    let one_server = lookups(&mut db, "heap_hist", 1000).await;
    let through_coordinator = lookups(&mut db, "dist_hist", 1000).await;
    println!(
        "citus: single-row lookup {:.2} ms on one server, {:.2} ms through the coordinator ({:+.2} ms per query)",
        one_server.as_secs_f64() * 1e3,
        through_coordinator.as_secs_f64() * 1e3,
        (through_coordinator.as_secs_f64() - one_server.as_secs_f64()) * 1e3
    );

    rebalance_against_copy(dir, &mut db).await;
    drop(db);
    local(dir, "down", None);
}

/// Adds a third worker (`local up` rebalances and waits) and sets the rows per second the
/// rebalance moved against a binary COPY of the same rows into a table on the new worker.
async fn rebalance_against_copy(dir: &Path, db: &mut PgConnection) {
    use futures::StreamExt;

    std::fs::write(dir.join("bench.yaml"), manifest(3)).unwrap();
    local(dir, "up", None);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stack/pgwarehouse-local.json")).unwrap()).unwrap();
    let new_port = u16::try_from(state["workers"][2].as_u64().unwrap()).unwrap();
    let seconds: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM finished_at - started_at)::float8 FROM citus_rebalance_status() WHERE state = 'finished'",
    )
    .fetch_one(&mut *db)
    .await
    .unwrap();
    // The series whose shards now live on the new worker, and their rows.
    let moved_ids = format!(
        "SELECT id FROM generate_series(0::int8, 4999) id WHERE get_shard_id_for_distribution_column('dist_hist', id) IN \
         (SELECT shardid FROM citus_shards WHERE table_name = 'dist_hist'::regclass AND nodeport = {new_port})"
    );
    let rows = scalar_i64(db, &format!("SELECT count(*) FROM heap_hist WHERE id IN ({moved_ids})")).await;

    let mut worker = connect(dir, new_port).await;
    exec(&mut worker, "CREATE TABLE copy_floor (id int8 NOT NULL, \"time\" int8 NOT NULL, value float8 NOT NULL)")
        .await;
    let started = Instant::now();
    let mut copy_in = worker.copy_in_raw("COPY copy_floor FROM STDIN (FORMAT binary)").await.unwrap();
    let copy = format!("COPY (SELECT * FROM heap_hist WHERE id IN ({moved_ids})) TO STDOUT (FORMAT binary)");
    let mut copy_out = db.copy_out_raw(&copy).await.unwrap();
    while let Some(chunk) = copy_out.next().await {
        copy_in.send(chunk.unwrap()).await.unwrap();
    }
    drop(copy_out);
    let copied = copy_in.finish().await.unwrap();
    let floor = started.elapsed().as_secs_f64();
    assert_eq!(copied, u64::try_from(rows).unwrap());
    println!(
        "citus: adding a third worker moved {rows} rows in {seconds:.1} s ({:.0} rows/s); a binary COPY of them {floor:.1} s \
         ({:.0} rows/s): the rebalance at {:.2}x the floor's time",
        rows as f64 / seconds,
        rows as f64 / floor,
        seconds / floor
    );
}
