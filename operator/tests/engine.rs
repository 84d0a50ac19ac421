//! The engine against a real PostgreSQL with real pg_cron, pg_partman and postgres_fdw.

mod support;

use pgwarehouse::sql::apply::ItemState;
use pgwarehouse::sql::plan::ItemKind;
use sqlx::{Executor, PgConnection};
use support::{Fixture, exec, scalar, statements};

const STACK: &str = r#"
template: datawarehouse
sources:
- name: control_plane
  wrapper: postgres_fdw
  options: {host: 127.0.0.1, port: "PORT", dbname: controlplane}
  userMapping:
    options: {user: cp_reader}
    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}
  tables:
  - name: organizations
    schema: cp
    columns: [{name: id, type: int8}, {name: name, type: text}]
    options: {schema_name: public, table_name: organizations}
  importSchemas:
  - {remoteSchema: public, into: f, only: [instances, queue_archive]}
migrations:
- name: 001_ingested_clusters
  sql: |
    CREATE TABLE ingested_clusters (snapshot_at timestamptz NOT NULL, organization_id bigint, instance_id bigint, instance_name text);
    CREATE FUNCTION refresh_clusters() RETURNS void LANGUAGE sql AS $$
      DELETE FROM ingested_clusters;
      INSERT INTO ingested_clusters SELECT now(), organization_id, id, name FROM f.instances;
    $$;
- name: 002_metric_values
  sql: |
    CREATE TABLE metric_values (id int8 NOT NULL, "time" int8 NOT NULL, value float8, UNIQUE (id, "time")) PARTITION BY RANGE ("time");
    CREATE INDEX ON metric_values ("time" DESC);
schedules:
- {name: update-clusters, schedule: "*/5 * * * *", command: "SELECT refresh_clusters()"}
partitions:
- {table: public.metric_values, column: time, interval: 1 day, epoch: seconds, premake: 4, retention: 30 days}
roles:
- name: analyst
  passwordSecretRef: {name: analyst, key: password}
  grants: [{schema: public, privileges: [SELECT]}, {schema: f, privileges: [SELECT]}]
"#;

#[tokio::test]
async fn converges_from_empty_and_the_second_apply_does_nothing() {
    let fx = Fixture::start().await;
    let first = fx.apply_ok(STACK).await;
    assert!(first.statements > 10, "{first:#?}");

    let mut db = fx.warehouse().await;
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM cp.organizations").await, 3);
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM f.instances").await, 4);
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM f.queue_archive").await, 2);
    assert_eq!(scalar::<String>(&mut db, "SELECT srvname::text FROM pg_foreign_server").await, "control_plane");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM pgwarehouse.migrations").await, 2);
    let job: (String, String, String, bool) =
        sqlx::query_as("SELECT schedule, command, database, active FROM cron.job WHERE jobname = 'update-clusters'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(job, ("*/5 * * * *".into(), "SELECT refresh_clusters()".into(), "warehouse".into(), true));
    assert_eq!(
        scalar::<i64>(&mut db, "SELECT count(*) FROM cron.job WHERE jobname = 'pgwarehouse-partman-maintenance'").await,
        1
    );
    exec(&mut db, "SELECT refresh_clusters()").await;
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM ingested_clusters").await, 4);

    let second_plan = fx.plan(STACK).await;
    assert!(second_plan.is_empty(), "second plan: {:#?}", statements(&second_plan));
    let second = fx.apply_ok(STACK).await;
    assert_eq!(second.statements, 0);
    assert_eq!(second.round_trips, pgwarehouse::sql::OBSERVE_ROUND_TRIPS);
    assert!(second.items.iter().all(|i| i.state == ItemState::Converged), "{second:#?}");
}

#[tokio::test]
async fn drift_made_by_hand_is_repaired() {
    let fx = Fixture::start().await;
    fx.apply_ok(STACK).await;
    let mut db = fx.warehouse().await;
    exec(&mut db, "DROP FOREIGN TABLE cp.organizations").await;
    exec(&mut db, "DROP FOREIGN TABLE f.queue_archive").await;
    exec(&mut db, "ALTER SERVER control_plane OPTIONS (SET host 'localhost', SET fetch_size '10', ADD batch_size '5')")
        .await;
    exec(&mut db, "SELECT cron.unschedule('update-clusters')").await;

    let plan = fx.plan(STACK).await;
    let sql = statements(&plan);
    assert!(sql.iter().any(|s| s.starts_with(r#"CREATE FOREIGN TABLE "cp"."organizations""#)), "{sql:#?}");
    assert!(sql.iter().any(|s| s.contains(r#"LIMIT TO ("queue_archive")"#)), "{sql:#?}");
    assert!(
        sql.contains(
            &r#"ALTER SERVER "control_plane" OPTIONS (SET "fetch_size" '10000', SET "host" '127.0.0.1', DROP "batch_size")"#
                .to_string()
        ),
        "{sql:#?}"
    );
    assert!(sql.iter().any(|s| s.starts_with("SELECT cron.schedule('update-clusters'")), "{sql:#?}");

    fx.apply_ok(STACK).await;
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM cp.organizations").await, 3);
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM f.queue_archive").await, 2);
    assert_eq!(
        scalar::<Vec<String>>(
            &mut db,
            "SELECT srvoptions::text[] FROM pg_foreign_server WHERE srvname = 'control_plane'"
        )
        .await,
        vec![
            "dbname=controlplane".to_string(),
            "fetch_size=10000".into(),
            "host=127.0.0.1".into(),
            format!("port={}", fx.server.port)
        ]
    );
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM cron.job WHERE jobname = 'update-clusters'").await, 1);
    assert!(fx.plan(STACK).await.is_empty());
}

#[tokio::test]
async fn pruning_removes_only_what_the_engine_made_and_keeps_local_data() {
    let fx = Fixture::start().await;
    fx.apply_ok(STACK).await;
    let mut db = fx.warehouse().await;
    exec(&mut db, "SELECT refresh_clusters()").await;
    exec(&mut db, "INSERT INTO metric_values VALUES (1, extract(epoch from now())::int8, 1.5)").await;
    // Made by hand: must survive the prune.
    exec(&mut db, "CREATE SERVER by_hand FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'controlplane')").await;
    exec(&mut db, "CREATE FOREIGN TABLE f.by_hand (id int) SERVER by_hand OPTIONS (table_name 'organizations')").await;

    let (without_parts, _) = STACK.split_once("sources:").unwrap();
    let (_, rest) = STACK.split_once("migrations:").unwrap();
    let (migrations, _) = rest.split_once("schedules:").unwrap();
    let smaller = format!("{without_parts}migrations:{migrations}");
    let report = fx.apply_ok(&smaller).await;
    let changed: Vec<_> =
        report.items.iter().filter(|i| i.state == ItemState::Changed).map(|i| (i.item, i.name.as_str())).collect();
    assert!(changed.contains(&(ItemKind::Source, "control_plane")), "{changed:?}");

    assert_eq!(
        scalar::<i64>(&mut db, "SELECT count(*) FROM pg_foreign_server WHERE srvname = 'control_plane'").await,
        0,
        "server pruned"
    );
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM pg_foreign_server WHERE srvname = 'by_hand'").await, 1);
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM cron.job").await, 0, "jobs unscheduled");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM partman.part_config").await, 0, "partition set released");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM ingested_clusters").await, 4, "local data kept");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM metric_values").await, 1, "partitioned data kept");
    assert_eq!(
        scalar::<i64>(&mut db, "SELECT count(*) FROM pg_roles WHERE rolname = 'analyst'").await,
        0,
        "role made by us dropped"
    );
    assert!(fx.plan(&smaller).await.is_empty());
}

#[tokio::test]
async fn pruning_a_server_stops_at_a_users_view_on_it() {
    let fx = Fixture::start().await;
    fx.apply_ok(STACK).await;
    let mut db = fx.warehouse().await;
    exec(&mut db, "CREATE VIEW org_names AS SELECT name FROM cp.organizations").await;
    let (head, _) = STACK.split_once("sources:").unwrap();
    let report = fx.apply(head).await;
    let source = report.items.iter().find(|i| i.item == ItemKind::Source).unwrap();
    assert_eq!(source.state, ItemState::Failed);
    assert!(source.message.as_deref().unwrap().contains("depend on it"), "{source:#?}");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM org_names").await, 3, "the view and its table stand");
}

#[tokio::test]
async fn a_rotated_secret_is_applied_and_never_shown() {
    let fx = Fixture::start().await;
    fx.apply_ok(STACK).await;
    let mut admin = fx.server.connect("postgres").await;
    exec(&mut admin, "ALTER ROLE cp_reader PASSWORD 'rotated-pw'").await;
    fx.set_secret("cp", "password", "rotated-pw");

    let plan = fx.plan(STACK).await;
    let sql = statements(&plan);
    assert_eq!(sql, [r#"ALTER USER MAPPING FOR PUBLIC SERVER "control_plane" OPTIONS (SET "password" '<redacted>')"#],);
    assert!(!serde_json::to_string(&plan.view()).unwrap().contains("rotated-pw"));
    fx.apply_ok(STACK).await;
    let mut db = fx.warehouse().await;
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM f.instances").await, 4, "queries use the new password");
}

#[tokio::test]
async fn a_wrong_password_fails_its_source_only_and_is_not_reported() {
    let fx = Fixture::start().await;
    fx.set_secret("bad", "password", "wrong-secret-value");
    let spec = STACK.replace(
        "migrations:",
        "- name: broken\n  wrapper: postgres_fdw\n  options: {host: 127.0.0.1, port: \"PORT\", dbname: controlplane}\n  userMapping:\n    options: {user: cp_reader}\n    secretOptions: {password: {secretKeyRef: {name: bad, key: password}}}\n  importSchemas: [{remoteSchema: public, into: broken}]\nmigrations:",
    );
    let report = fx.apply(&spec).await;
    let broken = report.items.iter().find(|i| i.name == "broken").unwrap();
    assert_eq!(broken.state, ItemState::Failed);
    let message = broken.message.as_deref().unwrap();
    assert!(message.contains("password authentication failed"), "{message}");
    assert!(!message.contains("wrong-secret-value"));
    assert_eq!(report.failed().count(), 1, "{report:#?}");
    let mut db = fx.warehouse().await;
    assert_eq!(
        scalar::<i64>(&mut db, "SELECT count(*) FROM pg_foreign_server WHERE srvname = 'broken'").await,
        0,
        "rolled back"
    );
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM f.instances").await, 4, "the other source converged");
    assert!(!fx.server.log().contains("wrong-secret-value"), "the server log holds the secret");
}

/// The first source to need schema `shared` cannot connect (its unit rolls back, schema and
/// all); the next source's tables in `shared` and a role granted on it converge all the same.
#[tokio::test]
async fn a_failed_source_does_not_take_a_shared_schema_down_with_it() {
    let fx = Fixture::start().await;
    let spec = r#"
sources:
- name: unreachable
  wrapper: postgres_fdw
  options: {host: 127.0.0.1, port: "1", dbname: controlplane}
  userMapping:
    options: {user: cp_reader}
    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}
  importSchemas: [{remoteSchema: public, into: shared, only: [organizations]}]
- name: reachable
  wrapper: postgres_fdw
  options: {host: 127.0.0.1, port: "PORT", dbname: controlplane}
  userMapping:
    options: {user: cp_reader}
    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}
  tables:
  - {name: instances, schema: shared, columns: [{name: id, type: int8}], options: {schema_name: public, table_name: instances}}
roles:
- {name: analyst, passwordSecretRef: {name: analyst, key: password}, grants: [{schema: shared, privileges: [SELECT]}]}
"#;
    let report = fx.apply(spec).await;
    let failed: Vec<String> = report.failed().map(|i| i.item.label(&i.name)).collect();
    assert_eq!(failed, ["source/unreachable"], "{report:#?}");
    let mut db = fx.warehouse().await;
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM shared.instances").await, 4);
    let granted: bool = scalar(&mut db, "SELECT has_table_privilege('analyst', 'shared.instances', 'SELECT')").await;
    assert!(granted, "the role's grant on the shared schema converged");
    let again = fx.apply(spec).await;
    assert_eq!(again.failed().count(), 1);
    let repeated: Vec<String> =
        fx.plan(spec).await.changes().filter(|(u, _)| u.name == "reachable").map(|(_, c)| c.sql.to_string()).collect();
    // (The role grants on `shared` again while the failing source keeps trying to fill it, so
    // that its tables are covered in the run where it succeeds.)
    assert!(repeated.is_empty(), "the converged source plans nothing more: {repeated:#?}");
}

#[tokio::test]
async fn partman_makes_daily_partitions_and_retention_drops_old_ones() {
    let fx = Fixture::start().await;
    fx.apply_ok(STACK).await;
    let mut db = fx.warehouse().await;
    let children = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.metric_values'::regclass";
    let before: i64 = scalar(&mut db, children).await;
    assert!(before >= 5, "premake 4 + current (+ default): {before}");
    let config: (String, Option<String>, bool) =
        sqlx::query_as("SELECT partition_interval, retention, retention_keep_table FROM partman.part_config")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((config.1.as_deref(), config.2), (Some("30 days"), false));

    // Partitions start at midnight; partman takes the given time as the start as it is.
    let old_day = "date_trunc('day', now() - interval '40 days')";
    exec(&mut db, &format!("SELECT partman.create_partition_time('public.metric_values', ARRAY[{old_day}])")).await;
    let rows = format!(
        "INSERT INTO metric_values VALUES (1, extract(epoch from {old_day} + interval '1 hour')::int8, 1), \
         (1, extract(epoch from now())::int8, 2)"
    );
    exec(&mut db, &rows).await;
    assert_eq!(scalar::<i64>(&mut db, children).await, before + 1);
    exec(&mut db, "CALL partman.run_maintenance_proc()").await;
    assert_eq!(scalar::<i64>(&mut db, children).await, before, "the 40-day-old partition is dropped");
    assert_eq!(scalar::<f64>(&mut db, "SELECT sum(value) FROM metric_values").await, 2.0, "recent data stays");

    let longer = STACK.replace("retention: 30 days", "retention: 45 days");
    assert_eq!(
        statements(&fx.plan(&longer).await),
        [
            "UPDATE \"partman\".\"part_config\" SET premake = '4'::int, retention = NULLIF('45 days', ''), retention_keep_table = 'false'::boolean WHERE parent_table = 'public.metric_values'"
        ]
    );
}

#[tokio::test]
async fn migrations_run_once_and_a_changed_one_is_refused() {
    let fx = Fixture::start().await;
    let spec = "migrations:\n- {name: m1, sql: 'CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);'}\n- {name: m2, sql: 'INSERT INTO counter VALUES (2)'}\n";
    fx.apply_ok(spec).await;
    fx.apply_ok(spec).await;
    let mut db = fx.warehouse().await;
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM counter").await, 2);

    let changed = spec
        .replace("VALUES (1)", "VALUES (10)")
        .replace("- {name: m2", "- {name: m3, sql: 'INSERT INTO counter VALUES (3)'}\n- {name: m2");
    let report = fx.apply(&changed).await;
    let m1 = report.items.iter().find(|i| i.name == "m1").unwrap();
    assert_eq!(m1.state, ItemState::Failed);
    assert!(m1.message.as_deref().unwrap().contains("changed after it was applied"), "{m1:?}");
    let m3 = report.items.iter().find(|i| i.name == "m3").unwrap();
    assert_eq!(m3.state, ItemState::Failed, "held back behind the refused one");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM counter").await, 2);

    let broken = spec.replace("- {name: m2", "- {name: m1b, sql: 'INSERT INTO nowhere VALUES (1)'}\n- {name: m2b, sql: 'INSERT INTO counter VALUES (5)'}\n- {name: m2");
    let report = fx.apply(&broken).await;
    assert_eq!(report.failed().count(), 2, "m1b fails, m2b waits behind it: {report:#?}");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM pgwarehouse.migrations").await, 2);
}

#[tokio::test]
async fn the_read_only_role_can_select_and_cannot_write() {
    let fx = Fixture::start().await;
    fx.apply_ok(STACK).await;
    let url = format!("postgres://analyst:analyst-pw@127.0.0.1:{}/warehouse", fx.server.port);
    let mut analyst = <PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    exec(&mut fx.warehouse().await, "SELECT refresh_clusters()").await;
    assert_eq!(scalar::<i64>(&mut analyst, "SELECT count(*) FROM ingested_clusters").await, 4);
    assert_eq!(scalar::<i64>(&mut analyst, "SELECT count(*) FROM f.instances").await, 4);
    let denied = analyst.execute("INSERT INTO ingested_clusters (snapshot_at) VALUES (now())").await.unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    // A table a later migration makes is covered by the default privileges.
    let later = STACK.replace("schedules:", "- {name: 003_later, sql: 'CREATE TABLE later (x int)'}\nschedules:");
    fx.apply_ok(&later).await;
    assert_eq!(scalar::<i64>(&mut analyst, "SELECT count(*) FROM later").await, 0);
    assert!(fx.plan(&later).await.is_empty());

    fx.set_secret("analyst", "password", "new-analyst-pw");
    assert_eq!(statements(&fx.plan(&later).await), [r#"ALTER ROLE "analyst" PASSWORD '<redacted>'"#]);
}

#[tokio::test]
async fn the_bi_role_reads_no_secret_in_any_catalog_it_can_see() {
    let fx = Fixture::start().await;
    fx.apply_ok(STACK).await;
    let url = format!("postgres://analyst:analyst-pw@127.0.0.1:{}/warehouse", fx.server.port);
    let mut analyst = <PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    // Everything a login role can read about servers, mappings and roles, as text.
    let readable: String = scalar(
        &mut analyst,
        "SELECT concat_ws(' | ', \
           (SELECT string_agg(srvname || coalesce(array_to_string(srvoptions, ','), ''), ';') FROM pg_foreign_server), \
           (SELECT string_agg(srvname || coalesce(array_to_string(umoptions, ','), '<hidden>'), ';') FROM pg_user_mappings), \
           (SELECT string_agg(rolname || coalesce(rolpassword, ''), ';') FROM pg_roles), \
           (SELECT string_agg(coalesce(array_to_string(ftoptions, ','), ''), ';') FROM pg_foreign_table))",
    )
    .await;
    assert!(readable.contains("control_plane<hidden>"), "the mapping's options are hidden: {readable}");
    for secret in [support::CP_READER_PASSWORD, "analyst-pw"] {
        assert!(!readable.contains(secret), "{secret} is readable by the BI role: {readable}");
    }
    for query in ["SELECT * FROM pg_user_mapping", "SELECT * FROM pg_authid"] {
        let denied = analyst.execute(query).await.unwrap_err();
        assert!(denied.to_string().contains("permission denied"), "{query}: {denied}");
    }
}

#[tokio::test]
async fn hostile_names_and_values_round_trip_as_data() {
    let fx = Fixture::start().await;
    let spec = r#"
sources:
- name: 'we"ird; DROP SCHEMA public; --'
  wrapper: postgres_fdw
  options: {host: 127.0.0.1, dbname: "it's \"x\"; -- \\ $$"}
  tables:
  - name: "t'; DROP TABLE x; --"
    schema: "s\"q"
    columns: [{name: "c\"1", type: text}]
    options: {table_name: "a'b"}
schedules:
- {name: "job'; --", schedule: "0 3 * * *", command: "SELECT 'x''; --'"}
"#;
    fx.apply_ok(spec).await;
    let mut db = fx.warehouse().await;
    assert_eq!(
        scalar::<String>(&mut db, "SELECT srvname::text FROM pg_foreign_server").await,
        r#"we"ird; DROP SCHEMA public; --"#
    );
    assert_eq!(
        scalar::<Vec<String>>(&mut db, "SELECT srvoptions::text[] FROM pg_foreign_server").await,
        [r#"dbname=it's "x"; -- \ $$"#, "fetch_size=10000", "host=127.0.0.1"]
    );
    assert_eq!(
        scalar::<String>(&mut db, "SELECT relname::text FROM pg_class c JOIN pg_foreign_table f ON f.ftrelid = c.oid")
            .await,
        "t'; DROP TABLE x; --"
    );
    assert_eq!(scalar::<String>(&mut db, "SELECT command FROM cron.job").await, "SELECT 'x''; --'");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'public'").await, 1);
    assert!(fx.plan(spec).await.is_empty());
}

#[tokio::test]
async fn a_partition_on_a_missing_column_fails_alone() {
    let fx = Fixture::start().await;
    let spec = STACK.replace("column: time,", "column: tme,");
    let report = fx.apply(&spec).await;
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 1, "{report:#?}");
    assert_eq!(failed[0].item, ItemKind::Partition);
    // Once the table exists the plan itself names the problem.
    let plan = fx.plan(&spec).await;
    let blocked = &plan.view().blocked;
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].error, r#"table public.metric_values has no column "tme""#);
    let mut db = fx.warehouse().await;
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM cron.job WHERE jobname = 'update-clusters'").await, 1);
}

#[tokio::test]
async fn versions_decide_what_is_possible() {
    let fx = Fixture::start().await;
    let spec = "schedules:\n- {name: fast, schedule: 30 seconds, command: SELECT 1}\n";
    let report = fx.apply(spec).await;
    let mut db = fx.warehouse().await;
    let version: String = scalar(&mut db, "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'").await;
    let fast = report.items.iter().find(|i| i.name == "fast").unwrap();
    if version.as_str() < "1.5" {
        assert_eq!(fast.state, ItemState::Failed);
        assert!(fast.message.as_deref().unwrap().contains("needs pg_cron 1.5"), "{fast:?}");
    } else {
        assert_eq!(fast.state, ItemState::Changed, "{fast:?}");
        assert_eq!(
            scalar::<String>(&mut db, "SELECT schedule FROM cron.job WHERE jobname = 'fast'").await,
            "30 seconds"
        );
    }
}

#[tokio::test]
async fn pg_cron_loaded_for_another_database_is_a_clear_error() {
    let fx = Fixture::start().await;
    let (stack, secrets) = fx.load("schedules:\n- {name: j, schedule: '@hourly', command: SELECT 1}\n");
    let mut other = fx.server.connect("controlplane").await;
    let observed = pgwarehouse::sql::observe::observe(&mut other, &stack).await.unwrap();
    let error = pgwarehouse::sql::plan::plan(&stack, &observed, &secrets).unwrap_err().to_string();
    assert!(error.contains("cron.database_name = 'controlplane'"), "{error}");
}
