//! A distributed warehouse in local mode: a coordinator and Citus workers started by `local up`
//! (their own data dirs and ports), registered by `127.0.0.1:<port>`, the stack's tables laid
//! out (a partitioned, pg_partman-managed table distributed, a reference table), answers equal
//! to the single-node ones, an idempotent second `up`, scale 2 → 3 (rebalanced) and 3 → 2
//! (drained first) with every row kept and every insert a writer made meanwhile there, and
//! `down` stopping every server.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pgwarehouse::local::cluster::Binaries;
use sqlx::{Connection, PgConnection};

const MANIFEST: &str = r#"kind: DataWarehouseStack
metadata: {name: spread}
spec:
  template: datawarehouse
  distributed: {workers: WORKERS, shardCount: 8}
  migrations:
  - name: 001_tables
    sql: |
      CREATE TABLE metric_values (id int8 NOT NULL, "time" int8 NOT NULL, value float8) PARTITION BY RANGE ("time");
      CREATE TABLE organizations (id int8 PRIMARY KEY, name text NOT NULL);
      CREATE TABLE events (id int8, at timestamptz);
  partitions:
  - {table: public.metric_values, column: time, interval: 1 day, epoch: seconds, premake: 2}
  tables:
  - {table: public.metric_values, distribute: {column: id}}
  - {table: public.organizations, reference: true}
  - {table: public.events, distribute: {column: nope}}
"#;

struct Stack {
    _work: tempfile::TempDir,
    manifest: String,
    data: String,
    /// The manifest, `WORKERS` standing for the worker count.
    template: &'static str,
}

impl Stack {
    fn new() -> Stack {
        Stack::of(MANIFEST)
    }

    fn of(template: &'static str) -> Stack {
        let binaries = Binaries::find().expect("PostgreSQL binaries (PGW_PG_BINDIR)");
        let work =
            tempfile::Builder::new().prefix("pgw-citus-").tempdir_in(binaries.on_host(Path::new("/tmp"))).unwrap();
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let manifest = work.path().join("stack.yaml").display().to_string();
        let data = work.path().join("stack").display().to_string();
        Stack { _work: work, manifest, data, template }
    }

    /// `pgwarehouse local <command>` with `workers` workers; its output.
    fn local(&self, command: &str, workers: u32) -> String {
        local(self.template, &self.manifest, &self.data, command, workers)
    }

    /// `local up` with `workers` workers while a writer inserts rows one by one, ids from
    /// `first`: the output and every id whose INSERT was acknowledged.
    async fn up_while_writing(&self, workers: u32, first: i64) -> (String, Vec<i64>) {
        let mut conn = self.connect(self.ports().0).await;
        let writing = Arc::new(AtomicBool::new(true));
        let still = writing.clone();
        let writer = tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for id in first..first + 100_000 {
                if !still.load(Ordering::Relaxed) {
                    break;
                }
                let insert = sqlx::query("INSERT INTO metric_values VALUES ($1, extract(epoch FROM now())::int8, 1)")
                    .bind(id)
                    .execute(&mut conn)
                    .await;
                if insert.is_ok() {
                    acknowledged.push(id);
                }
            }
            acknowledged
        });
        let (template, manifest, data) = (self.template, self.manifest.clone(), self.data.clone());
        let output =
            tokio::task::spawn_blocking(move || local(template, &manifest, &data, "up", workers)).await.unwrap();
        writing.store(false, Ordering::Relaxed);
        (output, writer.await.unwrap())
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(Path::new(&self.data).join("pgwarehouse-local.json")).unwrap())
            .unwrap()
    }

    async fn connect(&self, port: u64) -> PgConnection {
        let password = std::fs::read_to_string(Path::new(&self.data).join("superuser-password")).unwrap();
        PgConnection::connect(&format!("postgres://postgres:{}@127.0.0.1:{port}/warehouse", password.trim()))
            .await
            .unwrap()
    }

    fn ports(&self) -> (u64, Vec<u64>) {
        let state = self.state();
        let workers = state["workers"].as_array().map(|w| w.iter().map(|p| p.as_u64().unwrap()).collect());
        (state["port"].as_u64().unwrap(), workers.unwrap_or_default())
    }
}

fn local(template: &str, manifest: &str, data: &str, command: &str, workers: u32) -> String {
    std::fs::write(manifest, template.replace("WORKERS", &workers.to_string())).unwrap();
    let secrets = concat!(env!("CARGO_MANIFEST_DIR"), "/../stack-templates/examples/secrets");
    let mut args = vec!["local", command, "-f", manifest, "--data-dir", data, "--secrets-dir", secrets];
    // Tests run side by side: each stack's first `up` takes a port of its own, not 5433.
    let port = free_port().to_string();
    if command == "up" && !Path::new(data).exists() {
        args.extend(["--port", &port]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarehouse")).args(&args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "local {command}: {text}");
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every id in `ids` is in `metric_values`, once.
async fn all_there(db: &mut PgConnection, ids: &[i64]) {
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM metric_values WHERE id = ANY ($1)")
        .bind(ids)
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(found, ids.len() as i64, "every acknowledged insert is there");
}

impl Drop for Stack {
    /// A failed test leaves no server running.
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
            .args(["local", "down", "-f", &self.manifest, "--data-dir", &self.data])
            .output();
    }
}

async fn scalar<T>(conn: &mut PgConnection, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The worker ports holding shards of `metric_values`, sorted.
async fn shard_ports(db: &mut PgConnection) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT DISTINCT nodeport::int8 FROM citus_shards WHERE citus_table_type = 'distributed' ORDER BY 1",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

const CHECK: &str = "SELECT count(*) || '/' || sum(value) || '/' || sum(id) FROM metric_values";

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_and_workers_spread_the_warehouse_and_scale_without_losing_a_row() {
    let stack = Stack::new();
    let up = stack.local("up", 2);
    assert!(up.contains("tables laid out \"public\".\"metric_values\", \"public\".\"organizations\""), "{up}");
    assert!(
        up.contains("FAILED spec.tables[2].distribute.column: \"public\".\"events\" has no column \"nope\""),
        "{up}"
    );
    let (port, workers) = stack.ports();
    assert_eq!(workers.len(), 2, "{up}");
    let mut db = stack.connect(port).await;
    sqlx::raw_sql(
        "INSERT INTO organizations SELECT g, 'org-' || g FROM generate_series(0, 9) g; \
         INSERT INTO metric_values SELECT g % 100, extract(epoch FROM now())::int8 - g, g FROM generate_series(1, 20000) g",
    )
    .execute(&mut db)
    .await
    .unwrap();

    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN SELECT id, sum(value) FROM metric_values GROUP BY id")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("Custom Scan (Citus Adaptive)"), "{plan}");
    assert!(plan.contains("Task Count: "), "{plan}");
    let mut workers_i64: Vec<i64> = workers.iter().map(|&p| p as i64).collect();
    workers_i64.sort();
    assert_eq!(shard_ports(&mut db).await, workers_i64, "shards on both workers");
    let reference: i64 = scalar(
        &mut db,
        "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'organizations'::regclass AND repmodel = 't'",
    )
    .await;
    assert_eq!(reference, 1);

    // The "most active customers" answer, distributed and joined with the reference table, equals
    // the same rows' answer computed on one node.
    let distributed: String = scalar(
        &mut db,
        "SELECT string_agg(name || '=' || total, ',' ORDER BY total DESC, name) FROM (SELECT o.name, sum(m.value) AS total \
         FROM metric_values m JOIN organizations o ON o.id = m.id % 10 GROUP BY o.name ORDER BY 2 DESC LIMIT 5) t",
    )
    .await;
    let single: String = scalar(
        &mut db,
        "SELECT string_agg(name || '=' || total, ',' ORDER BY total DESC, name) FROM (SELECT 'org-' || (g % 100) % 10 AS name, \
         sum(g::float8) AS total FROM generate_series(1, 20000) g GROUP BY 1 ORDER BY 2 DESC LIMIT 5) t",
    )
    .await;
    assert_eq!(distributed, single);

    let mut worker = stack.connect(workers[0]).await;
    let cron: i64 = scalar(&mut worker, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'").await;
    let partman: i64 = scalar(&mut worker, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_partman'").await;
    assert_eq!((cron, partman), (0, 1), "pg_cron on the coordinator only; pg_partman everywhere");
    drop(worker);

    let again = stack.local("up", 2);
    assert!(again.contains("0 statement(s)\n- workers on"), "{again}");
    assert!(again.contains("added none, removed none, tables laid out none, 0 statement(s)"), "{again}");

    let status = stack.local("status", 2);
    assert!(status.contains(&format!("127.0.0.1:{port}")) && status.contains("coordinator"), "{status}");
    for worker in &workers {
        let line =
            status.lines().find(|l| l.contains(&format!("127.0.0.1:{worker} "))).unwrap_or_else(|| panic!("{status}"));
        assert!(line.contains("worker") && line.contains("active") && !line.contains(" 0 shard(s)"), "{line}");
    }

    let before: String = scalar(&mut db, CHECK).await;
    let (grown, written) = stack.up_while_writing(3, 1_000_000).await;
    eprintln!("2 -> 3 workers: {} rows written during the rebalance", written.len());
    assert!(!written.is_empty());
    all_there(&mut db, &written).await;
    sqlx::query("DELETE FROM metric_values WHERE id >= 1000000").execute(&mut db).await.unwrap();
    let (_, three) = stack.ports();
    assert_eq!(three.len(), 3);
    assert!(grown.contains(&format!("added 127.0.0.1:{}", three[2])), "{grown}");
    assert_eq!(scalar::<String>(&mut db, CHECK).await, before, "every row after the rebalance");
    assert_eq!(shard_ports(&mut db).await.len(), 3, "the new worker took shards");

    let (shrunk, written) = stack.up_while_writing(2, 2_000_000).await;
    eprintln!("3 -> 2 workers: {} rows written during the drain", written.len());
    assert!(!written.is_empty());
    all_there(&mut db, &written).await;
    sqlx::query("DELETE FROM metric_values WHERE id >= 2000000").execute(&mut db).await.unwrap();
    assert!(shrunk.contains(&format!("removed 127.0.0.1:{}", three[2])), "{shrunk}");
    assert_eq!(scalar::<String>(&mut db, CHECK).await, before, "every row after the drain");
    assert_eq!(shard_ports(&mut db).await, workers_i64);
    assert!(!Path::new(&stack.data).join("worker-2").exists());
    drop(db);

    let down = stack.local("down", 2);
    assert_eq!(down.matches("- stopped the worker on").count(), 2, "{down}");
}

#[test]
fn table_layouts_are_checked_with_their_paths() {
    let manifest = "kind: DataWarehouseStack\nmetadata: {name: w}\nspec:\n  distributed: {workers: 1, shardCount: 0}\n  tables:\n  \
        - {table: public.a, distribute: {column: id}, reference: true}\n  - {table: public.b}\n  \
        ";
    let stack = pgwarehouse::template::load_manifest(manifest).unwrap();
    let errors = pgwarehouse::validate::validate(&stack).unwrap_err().to_string();
    for expected in [
        "spec.distributed.shardCount: 0 is not from 1 to 64000",
        "spec.tables[0]: is either distributed or a reference table, not both",
        "spec.tables[1]: says nothing: set distribute: {column: ...} or reference: true",
    ] {
        assert!(errors.contains(expected), "{expected}\n{errors}");
    }
    let single =
        "kind: DataWarehouseStack\nmetadata: {name: w}\nspec:\n  tables: [{table: public.a, reference: true}]\n";
    let errors = pgwarehouse::validate::validate(&pgwarehouse::template::load_manifest(single).unwrap()).unwrap_err();
    assert!(
        errors.to_string().contains("spec.tables[0]: lays a table out on Citus nodes: set spec.distributed"),
        "{errors}"
    );
}

#[test]
fn local_restore_refuses_a_distributed_stack_and_touches_nothing() {
    let stack = Stack::new();
    std::fs::write(&stack.manifest, MANIFEST.replace("WORKERS", "2")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
        .args(["local", "restore", "-f", &stack.manifest, "--data-dir", &stack.data])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("spec.distributed: local restore brings back one server"), "{text}");
    assert!(!Path::new(&stack.data).exists(), "nothing was created");
}

const REFRESHED: &str = r#"kind: DataWarehouseStack
metadata: {name: refreshed}
spec:
  template: datawarehouse
  distributed: {workers: WORKERS, shardCount: 4}
  migrations:
  - name: 001_staging
    sql: |
      CREATE TABLE staging (id int8 PRIMARY KEY, v text NOT NULL, updated_at timestamptz NOT NULL);
      INSERT INTO staging SELECT g, 'v' || g, '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 200) g;
      CREATE TABLE kinds (id int8 PRIMARY KEY, name text NOT NULL);
  refreshes:
  - {name: appended, target: public.appended, query: "SELECT id, v, updated_at FROM public.staging", mode: append,
     incremental: {column: updated_at}, schedule: "@hourly"}
  - {name: upserted, target: public.upserted, query: "SELECT id, v FROM public.staging", mode: upsert, key: [id],
     deleteMissing: true, schedule: "@hourly"}
  - {name: replaced, target: public.replaced, query: "SELECT id, v FROM public.staging WHERE id % 2 = 0", mode: replace,
     schedule: "@hourly"}
  - {name: kinds, target: public.kinds_copy, query: "SELECT id, name FROM public.kinds", mode: replace, schedule: "@hourly"}
  roles:
  - {name: analyst, passwordSecretRef: {name: analyst, key: password}, grants: [{schema: public, privileges: [SELECT]}]}
  tables:
  - {table: public.appended, distribute: {column: id}}
  - {table: public.upserted, distribute: {column: id}}
  - {table: public.replaced, distribute: {column: id}}
  - {table: public.kinds_copy, reference: true}
"#;

/// Refreshes write into distributed and reference tables in every mode, as the refresh role
/// (which reaches the workers with a password only the coordinator's superuser can read); a
/// second `up` issues no statement.
#[tokio::test]
async fn refreshes_write_into_distributed_and_reference_targets_in_every_mode() {
    let stack = Stack::of(REFRESHED);
    stack.local("up", 2);
    let again = stack.local("up", 2);
    assert!(again.contains("0 statement(s)\n- workers on"), "{again}");
    assert!(again.contains("tables laid out none, 0 statement(s)"), "{again}");
    let (port, _) = stack.ports();
    let mut db = stack.connect(port).await;
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT logicalrelid::text || ':' || partmethod::text FROM pg_dist_partition \
         WHERE logicalrelid::text IN ('appended', 'upserted', 'replaced', 'kinds_copy') ORDER BY 1",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(kinds, ["appended:h", "kinds_copy:n", "replaced:h", "upserted:h"]);
    sqlx::query("INSERT INTO kinds VALUES (1, 'one'), (2, 'two')").execute(&mut db).await.unwrap();

    let refresh = || stack.local("refresh", 2);
    let first = refresh();
    assert!(!first.contains("failed"), "{first}");
    let sums = |table: &str| format!("SELECT count(*)::text || '/' || COALESCE(sum(id), 0)::text FROM {table}");
    for (table, expected) in
        [("appended", "200/20100"), ("upserted", "200/20100"), ("replaced", "100/10100"), ("kinds_copy", "2/3")]
    {
        assert_eq!(scalar::<String>(&mut db, &sums(table)).await, expected, "{table} after the first run");
    }

    // New, changed and removed source rows: append takes the new ones past its mark, upsert
    // mirrors the source, replace rewrites.
    sqlx::raw_sql(
        "INSERT INTO staging SELECT g, 'v' || g, '2027-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(201, 210) g; \
         UPDATE staging SET v = 'changed' WHERE id = 5; DELETE FROM staging WHERE id = 7",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let second = refresh();
    assert!(!second.contains("failed"), "{second}");
    for (table, expected) in [("appended", "210/22155"), ("upserted", "209/22148"), ("replaced", "105/11130")] {
        assert_eq!(scalar::<String>(&mut db, &sums(table)).await, expected, "{table} after the second run");
    }
    let changed: String = scalar(&mut db, "SELECT v FROM upserted WHERE id = 5").await;
    assert_eq!(changed, "changed");
    let runs: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT state FROM pgwarehouse.refresh_runs").fetch_all(&mut db).await.unwrap();
    assert_eq!(runs, ["succeeded"]);
    let owner: String = scalar(&mut db, "SELECT tableowner::text FROM pg_tables WHERE tablename = 'upserted'").await;
    assert_eq!(owner, "pgwarehouse_refresh");
    let readable: bool =
        scalar(&mut db, "SELECT has_table_privilege('pgwarehouse_refresh', 'pg_dist_authinfo', 'SELECT')").await;
    assert!(!readable, "the refresh role cannot read the passwords");

    // A BI login reads the distributed tables: the coordinator reaches the workers as it.
    let analyst = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../stack-templates/examples/secrets/analyst/password"
    ))
    .unwrap();
    let mut bi = PgConnection::connect(&format!("postgres://analyst:{}@127.0.0.1:{port}/warehouse", analyst.trim()))
        .await
        .unwrap();
    assert_eq!(scalar::<String>(&mut bi, &sums("upserted")).await, "209/22148");
    let denied = sqlx::query("SELECT count(*) FROM pg_dist_authinfo").fetch_one(&mut bi).await.unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
}

const GROWN: &str = r#"kind: DataWarehouseStack
metadata: {name: grown}
spec:
  template: datawarehouse
  distributed: {workers: WORKERS, shardCount: 4}
  migrations:
  - name: 001_events
    sql: |
      CREATE TABLE events (id int8 PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), kind text);
      INSERT INTO events SELECT g, now(), 'seed' FROM generate_series(1, 50000) g;
"#;

/// A table that already holds rows is distributed online (`create_distributed_table_concurrently`)
/// while a writer keeps inserting: every acknowledged row is there. Removing its `tables` entry
/// later leaves it distributed with every row where it is.
#[tokio::test]
async fn a_table_with_rows_is_distributed_online_and_pruning_its_entry_moves_nothing() {
    let stack = Stack::of(GROWN);
    stack.local("up", 2);
    let (port, _) = stack.ports();
    let mut db = stack.connect(port).await;
    let laid_out = format!("{GROWN}  tables:\n  - {{table: public.events, distribute: {{column: id}}}}\n");
    let laid_out: &'static str = Box::leak(laid_out.into_boxed_str());

    let mut writer_db = stack.connect(port).await;
    let writing = Arc::new(AtomicBool::new(true));
    let still = writing.clone();
    let writer = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for id in 1_000_000..1_100_000i64 {
            if !still.load(Ordering::Relaxed) {
                break;
            }
            if sqlx::query("INSERT INTO events (id, kind) VALUES ($1, 'live')")
                .bind(id)
                .execute(&mut writer_db)
                .await
                .is_ok()
            {
                acknowledged.push(id);
            }
        }
        acknowledged
    });
    let (manifest, data) = (stack.manifest.clone(), stack.data.clone());
    let out = tokio::task::spawn_blocking(move || local(laid_out, &manifest, &data, "up", 2)).await.unwrap();
    writing.store(false, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(out.contains("tables laid out \"public\".\"events\", 1 statement(s)"), "{out}");
    assert!(!written.is_empty());
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE id = ANY ($1)")
        .bind(&written)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(found, written.len() as i64, "every insert acknowledged while the rows moved is there");
    let seeded: i64 = scalar(&mut db, "SELECT count(*) FROM events WHERE kind = 'seed'").await;
    assert_eq!(seeded, 50_000);
    let placed: i64 = scalar(
        &mut db,
        "SELECT count(DISTINCT nodeport)::int8 FROM citus_shards WHERE table_name = 'events'::regclass",
    )
    .await;
    assert_eq!(placed, 2, "on both workers");

    let total: i64 = scalar(&mut db, "SELECT count(*) FROM events").await;
    let pruned = local(GROWN, &stack.manifest, &stack.data, "up", 2);
    assert!(pruned.contains("tables laid out none, 0 statement(s)"), "{pruned}");
    let still_distributed: bool =
        scalar(&mut db, "SELECT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'events'::regclass)").await;
    assert!(still_distributed, "a removed entry leaves the table as it is laid out");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM events").await, total);
}
