//! The quickstart warehouse under `pgwarehouse local`, end to end, with the time of each step.

use std::net::TcpListener;
use std::time::Instant;

use pgwarehouse::local::{self, LocalOptions};
use pgwarehouse::secrets::{SecretsDir, resolve};
use pgwarehouse::sql::apply::ItemState;
use pgwarehouse::validate::{ValidatedStack, validate};
use sqlx::{Connection, Executor, PgConnection};

mod scenario;
#[path = "../../operator/tests/support/mod.rs"]
mod support;
use scenario::{Down, Steps, examples};
use support::{exec, scalar};

/// The quickstart as shipped (its source is `sameServer`, so any port works), its refresh job
/// every minute so pg_cron runs it during the test.
fn quickstart() -> ValidatedStack {
    let text = std::fs::read_to_string(examples().join("quickstart.yaml"))
        .unwrap()
        .replace("schedule: \"*/5 * * * *\"", "schedule: \"* * * * *\"");
    validate(&pgwarehouse::template::load_manifest(&text).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_runs_end_to_end_on_a_local_server() {
    let mut steps = Steps(Instant::now());
    let stack = quickstart();
    let secrets = resolve(&stack, &SecretsDir(examples().join("secrets"))).unwrap();
    let dir = tempfile::Builder::new().prefix("pgw-e2e-").tempdir_in("/tmp").unwrap();
    let options = scenario::local_options(dir.path(), "quickstart");
    let port = options.port.unwrap();
    let _down = Down(&stack, &options);
    let (local, password) = scenario::up_converged(&stack, &secrets, &options).await;
    steps.done("local up: initdb, start, seed, converge");

    let url = format!("postgres://postgres:{password}@127.0.0.1:{port}/warehouse");
    let mut db = PgConnection::connect(&url).await.unwrap();
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM f.instances").await, 6);
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM f.queue_archive").await, 6);
    steps.done("source data visible through foreign tables");

    let runs = pgwarehouse::sql::refresh::run_now(&mut db, &stack, &["clusters".into()]).await.unwrap();
    assert_eq!((runs[0].state.as_str(), runs[0].inserted), ("succeeded", 6));
    assert_eq!(
        scalar::<i64>(&mut db, "SELECT count(*) FROM ingested_clusters WHERE organization_name = 'acme'").await,
        3
    );
    steps.done("the clusters refresh run now: 6 instances upserted");

    let cp_url = format!("postgres://postgres:{password}@127.0.0.1:{port}/controlplane");
    let mut cp = PgConnection::connect(&cp_url).await.unwrap();
    exec(&mut cp, "INSERT INTO instances VALUES (7, 4, 'umbrella-prod', 16, 64, 1000, 'prod', 'Up', now())").await;
    scenario::wait_for_cron_job(&mut db, "pgwarehouse-refresh-clusters").await;
    let (new_rows, rewritten): (i64, i64) = sqlx::query_as(
        "SELECT sum(inserted)::bigint, sum(updated)::bigint FROM pgwarehouse.refresh_runs WHERE name = 'clusters'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((new_rows, rewritten), (7, 0), "incremental: the six, then only the new one; nothing rewritten");
    let mut printed = Vec::new();
    local::status(&stack, &options, &mut printed).await.unwrap();
    let printed = String::from_utf8(printed).unwrap();
    let line = printed.lines().skip_while(|l| *l != "REFRESHES").nth(1).unwrap_or_default();
    assert!(line.trim_start().starts_with("clusters") && line.contains("last: succeeded at"), "{printed}");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM ingested_clusters").await, 7, "the new instance");
    steps.done("pg_cron ran the clusters refresh within its minute: the new instance, and only it, came");

    let parent = "'public.metric_values'::regclass";
    let children = format!("SELECT count(*) FROM pg_inherits WHERE inhparent = {parent}");
    let before: i64 = scalar(&mut db, &children).await;
    let old_day = "date_trunc('day', now() - interval '45 days')";
    exec(&mut db, &format!("SELECT partman.create_partition_time('public.metric_values', ARRAY[{old_day}])")).await;
    exec(
        &mut db,
        &format!(
            "INSERT INTO metric_values SELECT 1, extract(epoch from {old_day} + interval '1 hour')::int8, 1.0 \
             UNION ALL SELECT 2, extract(epoch from now())::int8, 2.0"
        ),
    )
    .await;
    assert_eq!(scalar::<i64>(&mut db, &children).await, before + 1);
    exec(&mut db, "CALL partman.run_maintenance_proc()").await;
    assert_eq!(scalar::<i64>(&mut db, &children).await, before, "the 45-day-old partition is dropped");
    assert_eq!(scalar::<Vec<i64>>(&mut db, "SELECT array_agg(id) FROM metric_values").await, [2], "recent data stays");
    steps.done("pg_partman retention dropped the expired partition, kept recent rows");

    let analyst_url = format!("postgres://analyst:demo-analyst-pw@127.0.0.1:{port}/warehouse");
    let mut analyst = PgConnection::connect(&analyst_url).await.unwrap();
    assert_eq!(scalar::<i64>(&mut analyst, "SELECT count(*) FROM ingested_clusters").await, 7);
    assert_eq!(scalar::<i64>(&mut analyst, "SELECT count(*) FROM f.organizations").await, 4);
    let denied = analyst.execute("DELETE FROM ingested_clusters").await.unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    drop(analyst);
    steps.done("analyst reads the warehouse and cannot write");

    drop((db, cp));
    local::down(&stack, &options, false, &mut std::io::sink()).await.unwrap();
    assert!(!local.cluster.running());
    let (_, again) = local::up(&stack, &secrets, &options, &mut std::io::sink()).await.unwrap();
    assert_eq!(again.statements, 0, "{again:#?}");
    assert!(again.items.iter().all(|i| i.state == ItemState::Converged));
    let mut db = PgConnection::connect(&url).await.unwrap();
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM ingested_clusters").await, 7);
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM metric_values").await, 1);
    steps.done("local down, then up: every row kept, nothing to change");

    drop(db);
    local::down(&stack, &options, false, &mut std::io::sink()).await.unwrap();
    let other_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let moved = LocalOptions { port: Some(other_port), ..options.clone() };
    let (_, report) = local::up(&stack, &secrets, &moved, &mut std::io::sink()).await.unwrap();
    assert_eq!(report.failed().count(), 0, "{report:#?}");
    assert_eq!(report.statements, 1, "only the same-server source's port follows: {report:#?}");
    let url = format!("postgres://postgres:{password}@127.0.0.1:{other_port}/warehouse");
    let mut db = PgConnection::connect(&url).await.unwrap();
    assert_eq!(
        scalar::<i64>(&mut db, "SELECT count(*) FROM f.instances").await,
        7,
        "the source answers on the new port"
    );
    steps.done("local up on another port: the sameServer source follows it");
}

#[tokio::test]
async fn a_data_dir_of_another_stack_or_a_busy_port_changes_nothing() {
    let dir = tempfile::Builder::new().prefix("pgw-e2e-").tempdir_in("/tmp").unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let stack = quickstart();
    let secrets = resolve(&stack, &SecretsDir(examples().join("secrets"))).unwrap();
    let data_dir = dir.path().join("w");
    let options = LocalOptions { data_dir: Some(data_dir.clone()), port: Some(port), ..LocalOptions::default() };
    let error = local::up(&stack, &secrets, &options, &mut std::io::sink()).await.err().unwrap().to_string();
    assert_eq!(error, format!("port {port} is in use by another program: pass --port with a free one"));
    assert!(!data_dir.exists(), "nothing on disk");

    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("pgwarehouse-local.json"), r#"{"stack":"other","port":1}"#).unwrap();
    let error = local::up(&stack, &secrets, &options, &mut std::io::sink()).await.err().unwrap().to_string();
    assert!(error.contains("belongs to stack \"other\", not \"quickstart\""), "{error}");
    assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 1, "nothing added");
}

/// The restore drill: the quickstart written to, backed up, its directory purged, restored into
/// a new one with every row, and `local up` over the restored server has nothing to do.
#[tokio::test(flavor = "multi_thread")]
async fn restore_drill_brings_back_every_row() {
    let mut steps = Steps(Instant::now());
    let stack = quickstart();
    let secrets = resolve(&stack, &SecretsDir(examples().join("secrets"))).unwrap();
    let dir = tempfile::Builder::new().prefix("pgw-e2e-").tempdir_in("/tmp").unwrap();
    let options = scenario::local_options(dir.path(), "quickstart");
    let _down = Down(&stack, &options);
    let (_, password) = scenario::up_converged(&stack, &secrets, &options).await;
    let url = |port: u16, password: &str| format!("postgres://postgres:{password}@127.0.0.1:{port}/warehouse");
    let mut db = PgConnection::connect(&url(options.port.unwrap(), &password)).await.unwrap();
    pgwarehouse::sql::refresh::run_now(&mut db, &stack, &[]).await.unwrap();
    exec(&mut db, "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 5000) g").await;
    let fingerprint = "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (SELECT * FROM notes UNION ALL \
                       SELECT instance_id, organization_name FROM ingested_clusters) t";
    let before: String = scalar(&mut db, fingerprint).await;
    steps.done("local up, the refresh run, 5,000 rows written");

    local::backup(&stack, &secrets, &options, pgwarehouse::backup::BackupKind::Full, &mut std::io::sink())
        .await
        .unwrap();
    exec(&mut db, "INSERT INTO notes VALUES (5001, 'after the backup')").await;
    let after: String = scalar(&mut db, fingerprint).await;
    drop(db);
    steps.done("full backup, then one more row (only in the archived WAL)");

    local::down(&stack, &options, true, &mut std::io::sink()).await.unwrap();
    assert!(!options.data_dir.as_ref().unwrap().exists(), "purged");
    steps.done("local down --purge");

    // On the port the purged server had: the sameServer source then needs no change either.
    let restored = LocalOptions {
        data_dir: Some(dir.path().join("restored")),
        port: options.port,
        restore_from: Some(local::repository_dir(options.data_dir.as_ref().unwrap(), &options)),
        ..scenario::local_options(dir.path(), "restored")
    };
    let _down_restored = Down(&stack, &restored);
    let mut out = Vec::new();
    local::restore(&stack, &secrets, &restored, None, &mut out).await.unwrap();
    let new_password = std::fs::read_to_string(dir.path().join("restored/superuser-password")).unwrap();
    let mut db = PgConnection::connect(&url(restored.port.unwrap(), &new_password)).await.unwrap();
    assert_eq!(scalar::<String>(&mut db, fingerprint).await, after, "every row, the one after the backup too");
    assert_ne!(before, after);
    steps.done(&format!("restored into a new data dir: {}", String::from_utf8_lossy(&out).trim().replace('\n', "; ")));

    let (_, again) = local::up(&stack, &secrets, &restored, &mut std::io::sink()).await.unwrap();
    assert_eq!(again.statements, 0, "{again:#?}");
    assert_eq!(again.failed().count(), 0);
    steps.done("local up over the restored server: 0 statements");
}
