//! Columnar history on one node: citus_columnar (built from third_party/citus by `make citus`)
//! in a real PostgreSQL with pg_partman. Partitions that ended more than `columnarAfter` ago
//! become columnar when the maintenance job runs, the rest stay heap, every row reads the same,
//! converted partitions refuse UPDATE, and a second plan is empty.

mod support;

use support::{Fixture, exec, scalar};

const STACK: &str = r#"
migrations:
- name: 001_tables
  sql: |
    CREATE TABLE metric_values (id int8 NOT NULL, "time" int8 NOT NULL, value float8) PARTITION BY RANGE ("time");
    CREATE INDEX ON metric_values ("time");
    CREATE TABLE events (at timestamptz NOT NULL, kind text) PARTITION BY RANGE (at);
partitions:
- {table: public.metric_values, column: time, interval: 1 day, epoch: seconds, premake: 8, retention: 30 days, columnarAfter: 3 days}
- {table: public.events, column: at, interval: 1 day, premake: 8, columnarAfter: 3 days}
"#;

/// Each partition of `parent` with its access method and whether pg_partman says it ended
/// more than three days ago.
async fn partitions(db: &mut sqlx::PgConnection, parent: &str) -> Vec<(String, String, bool)> {
    let sql = format!(
        "SELECT c.oid::regclass::text, a.amname::text, \
           (partman.show_partition_info(c.relnamespace::regnamespace || '.' || c.relname, p_parent_table => '{parent}')).child_end_time <= now() - interval '3 days' \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_am a ON a.oid = c.relam \
         WHERE i.inhparent = '{parent}'::regclass AND c.relname NOT LIKE '%default' ORDER BY 1"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db).await.unwrap()
}

#[tokio::test]
async fn partitions_past_columnar_after_become_columnar_and_read_the_same() {
    let fx = Fixture::start().await;
    fx.apply_ok(STACK).await;
    let mut db = fx.warehouse().await;
    exec(
        &mut db,
        "INSERT INTO metric_values SELECT g % 50, extract(epoch FROM now() - g * interval '37 minutes')::bigint, g \
           FROM generate_series(0, 7 * 24 * 60 / 37) g; \
         INSERT INTO events SELECT now() - g * interval '1 hour', 'k' || g % 3 FROM generate_series(0, 7 * 24) g",
    )
    .await;
    let totals = "SELECT (SELECT count(*) || '/' || sum(value) FROM metric_values) || ' ' || \
                  (SELECT count(*) || '/' || string_agg(kind, '' ORDER BY at) FROM events)";
    let before: String = scalar(&mut db, totals).await;

    let (schedule, command): (String, String) =
        sqlx::query_as("SELECT schedule, command FROM cron.job WHERE jobname = 'pgwarehouse-columnar'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(
        (schedule.as_str(), command.as_str()),
        ("15 * * * *", "SELECT count(*) FROM pgwarehouse.columnar_convert()")
    );
    exec(&mut db, r#"CALL "partman".run_maintenance_proc()"#).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(command)).execute(&mut db).await.unwrap();

    for parent in ["public.metric_values", "public.events"] {
        let found = partitions(&mut db, parent).await;
        let converted = found.iter().filter(|(_, am, _)| am == "columnar").count();
        assert!(converted >= 3, "{parent}: {found:#?}");
        for (partition, am, ended) in &found {
            let expected = if *ended { "columnar" } else { "heap" };
            assert_eq!(am, expected, "{partition}: {found:#?}");
        }
    }
    assert_eq!(scalar::<String>(&mut db, totals).await, before, "every row reads the same");
    let status = pgwarehouse::sql::status::read_status(&mut db).await.unwrap();
    for set in &status.partitions {
        let converted = partitions(&mut db, &set.table).await.iter().filter(|(_, am, _)| am == "columnar").count();
        assert_eq!(set.columnar, converted as i64, "{set:?}");
        assert!(set.columnar_bytes > 0 && set.heap_bytes > 0, "status shows both storages' sizes: {set:?}");
    }
    let newest_columnar: String = scalar(
        &mut db,
        "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_am a ON a.oid = c.relam \
         WHERE i.inhparent = 'public.events'::regclass AND a.amname = 'columnar' ORDER BY c.relname DESC LIMIT 1",
    )
    .await;
    let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("UPDATE {newest_columnar} SET kind = 'x'")))
        .execute(&mut db)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("not supported"), "{refused}");
    exec(&mut db, "INSERT INTO events VALUES (now() - interval '5 days', 'late')").await;

    let again: i64 = scalar(&mut db, "SELECT count(*) FROM pgwarehouse.columnar_convert()").await;
    assert_eq!(again, 0, "nothing left to convert");
    assert!(fx.plan(STACK).await.is_empty(), "{:#?}", fx.plan(STACK).await.view());

    // Unset: nothing converts any more; what was converted stays, rows and all.
    let unset = STACK.replace(", columnarAfter: 3 days}", "}");
    fx.apply_ok(&unset).await;
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM pgwarehouse.columnar").await, 0);
    let jobs: i64 = scalar(&mut db, "SELECT count(*) FROM cron.job WHERE jobname = 'pgwarehouse-columnar'").await;
    assert_eq!(jobs, 0);
    assert!(partitions(&mut db, "public.events").await.iter().any(|(_, am, _)| am == "columnar"));
    assert!(fx.plan(&unset).await.is_empty());
}

#[test]
fn columnar_after_is_an_interval_shorter_than_retention() {
    let manifest = "kind: DataWarehouseStack\nmetadata: {name: w}\nspec:\n  partitions:\n  \
        - {table: public.a, column: t, interval: 1 day, retention: 7 days, columnarAfter: 7 days}\n  \
        - {table: public.b, column: t, interval: 1 day, columnarAfter: a fortnight}\n";
    let stack = pgwarehouse::template::load_manifest(manifest).unwrap();
    let errors = pgwarehouse::validate::validate(&stack).unwrap_err().to_string();
    for expected in [
        "spec.partitions[0].columnarAfter: \"7 days\" is not shorter than retention",
        "spec.partitions[1].columnarAfter: \"a fortnight\"",
    ] {
        assert!(errors.contains(expected), "{expected}\n{errors}");
    }
}
