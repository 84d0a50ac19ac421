//! Declarative refreshes against a real PostgreSQL with postgres_fdw and pg_cron: each mode,
//! incremental correctness as source rows change, deleteMissing, atomic replace under a
//! concurrent reader, overlapping runs skipped, a failing run recorded with the target
//! unchanged, plan-time checks that block one refresh and nothing else, pruning that keeps data,
//! and an empty re-plan.

mod support;

use sqlx::{Connection, PgConnection, Row};
use support::{Fixture, exec, scalar};

const STACK: &str = r#"
sources:
- name: cp
  wrapper: postgres_fdw
  options: {host: 127.0.0.1, port: "PORT", dbname: controlplane}
  userMapping:
    options: {user: cp_reader}
    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}
  importSchemas:
  - {remoteSchema: public, into: f, only: [instances, organizations, events]}
refreshes:
- name: clusters
  target: public.clusters
  query: SELECT i.id AS instance_id, i.name, o.name AS organization, i.state FROM f.instances i JOIN f.organizations o ON o.id = i.organization_id
  schedule: "*/5 * * * *"
- name: events_upsert
  target: mart.events
  query: SELECT id, account, amount, updated_at FROM f.events
  mode: upsert
  key: [id]
  incremental: {column: updated_at}
  schedule: "*/5 * * * *"
- name: events_log
  target: events_log
  query: SELECT id, amount, updated_at FROM f.events
  mode: append
  incremental: {column: updated_at}
  schedule: "@hourly"
- name: events_mirror
  target: public.events_mirror
  query: SELECT id, account, amount FROM f.events
  mode: upsert
  key: [id]
  deleteMissing: true
  schedule: "@hourly"
  timeout: 1 min
"#;

async fn setup() -> (Fixture, PgConnection, PgConnection) {
    let fx = Fixture::start().await;
    let mut cp = fx.server.connect("controlplane").await;
    exec(
        &mut cp,
        "CREATE TABLE events (id bigint PRIMARY KEY, account text NOT NULL, amount int NOT NULL, updated_at timestamptz NOT NULL); \
         INSERT INTO events SELECT g, 'acct-' || g % 3, g * 10, '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 5) g; \
         GRANT SELECT ON events TO cp_reader",
    )
    .await;
    fx.apply_ok(STACK).await;
    let db = fx.warehouse().await;
    (fx, db, cp)
}

/// Runs a refresh now: (state, inserted, updated, deleted).
async fn run(db: &mut PgConnection, name: &str) -> (String, i64, i64, i64) {
    let row = sqlx::query("SELECT state, inserted, updated, deleted, error FROM pgwarehouse.refresh($1)")
        .bind(name)
        .fetch_one(db)
        .await
        .unwrap();
    let error: Option<String> = row.get("error");
    let state: String = row.get("state");
    assert!(state != "failed" || error.is_some());
    (state, row.get("inserted"), row.get("updated"), row.get("deleted"))
}

fn ok(inserted: i64, updated: i64, deleted: i64) -> (String, i64, i64, i64) {
    ("succeeded".into(), inserted, updated, deleted)
}

const SOURCE_ROWS: &str = "SELECT string_agg(format('%s:%s:%s', id, account, amount), ',' ORDER BY id) FROM";

#[tokio::test]
async fn each_mode_fills_its_target_incrementally_and_a_second_plan_is_empty() {
    let (fx, mut db, mut cp) = setup().await;
    assert!(fx.plan(STACK).await.is_empty(), "{:#?}", fx.plan(STACK).await.view());
    let jobs: i64 = scalar(&mut db, "SELECT count(*) FROM cron.job WHERE jobname LIKE 'pgwarehouse-refresh-%'").await;
    assert_eq!(jobs, 4);
    let command: String =
        scalar(&mut db, "SELECT command FROM cron.job WHERE jobname = 'pgwarehouse-refresh-events_mirror'").await;
    assert_eq!(command, "SET statement_timeout = 60000; SELECT state FROM pgwarehouse.refresh('events_mirror')");
    // The job's command as pg_cron sends it (one simple query, two statements) runs the refresh.
    sqlx::raw_sql(sqlx::AssertSqlSafe(command)).execute(&mut db).await.unwrap();
    exec(&mut db, "RESET statement_timeout").await;
    let ran: i64 = scalar(&mut db, "SELECT count(*) FROM pgwarehouse.refresh_runs WHERE name = 'events_mirror'").await;
    assert_eq!(ran, 1);
    exec(&mut db, "TRUNCATE public.events_mirror; DELETE FROM pgwarehouse.refresh_runs").await;

    assert_eq!(run(&mut db, "clusters").await, ok(4, 0, 0));
    assert_eq!(run(&mut db, "clusters").await, ok(4, 0, 4), "replace: every row again");
    let organizations: String = scalar(&mut db, "SELECT string_agg(DISTINCT organization, ',') FROM clusters").await;
    assert_eq!(organizations, "acme,globex,initech");

    assert_eq!(run(&mut db, "events_upsert").await, ok(5, 0, 0));
    assert_eq!(run(&mut db, "events_log").await, ok(5, 0, 0));
    assert_eq!(run(&mut db, "events_mirror").await, ok(5, 0, 0));
    assert_eq!(run(&mut db, "events_upsert").await, ok(0, 0, 0), "nothing above the high-water mark");

    // Two rows change (their updated_at moves on), one is new, one is deleted at the source.
    exec(
        &mut cp,
        "UPDATE events SET amount = amount + 1, updated_at = updated_at + interval '1 day' WHERE id IN (2, 4); \
         INSERT INTO events VALUES (6, 'acct-0', 60, '2026-01-03'); DELETE FROM events WHERE id = 1",
    )
    .await;
    assert_eq!(run(&mut db, "events_upsert").await, ok(1, 2, 0));
    assert_eq!(run(&mut db, "events_log").await, ok(3, 0, 0), "append: the changed rows and the new one");
    assert_eq!(run(&mut db, "events_mirror").await, ok(1, 2, 1), "deleteMissing removes id 1");
    let source: String = scalar(&mut cp, &format!("{SOURCE_ROWS} events")).await;
    assert_eq!(scalar::<String>(&mut db, &format!("{SOURCE_ROWS} public.events_mirror")).await, source);
    let upserted: String = scalar(&mut db, &format!("{SOURCE_ROWS} mart.events WHERE id > 1")).await;
    assert_eq!(upserted, source, "the upsert has every source row (and keeps id 1: no deleteMissing)");
    let mark: String =
        scalar(&mut db, "SELECT high_water FROM pgwarehouse.refreshes WHERE name = 'events_upsert'").await;
    let newest: String = scalar(&mut cp, "SELECT max(updated_at)::text FROM events").await;
    assert_eq!(mark, newest);

    // The incremental predicate is a constant on the foreign table's column: postgres_fdw sends it.
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN VERBOSE SELECT id, account, amount, updated_at FROM (SELECT id, account, amount, updated_at FROM f.events) q \
         WHERE q.updated_at > '{mark}'::timestamp with time zone"
    )))
    .fetch_all(&mut db)
    .await
    .unwrap();
    let remote = plan.iter().find(|l| l.contains("Remote SQL")).unwrap();
    assert!(remote.contains("WHERE ((updated_at >"), "{remote}");

    let runs: i64 = scalar(&mut db, "SELECT count(*) FROM pgwarehouse.refresh_runs WHERE state = 'succeeded'").await;
    assert_eq!(runs, 9);
    assert!(fx.plan(STACK).await.is_empty(), "runs change no definition");
}

#[tokio::test]
async fn replace_is_atomic_for_readers_and_overlapping_runs_are_skipped() {
    let (fx, mut db, _cp) = setup().await;
    assert_eq!(run(&mut db, "clusters").await, ok(4, 0, 0));
    let mut refresher = fx.warehouse().await;
    let mut tx = refresher.begin().await.unwrap();
    let (state, ..): (String, i64, i64, i64) = {
        let row = sqlx::query("SELECT state, inserted, updated, deleted FROM pgwarehouse.refresh('clusters')")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2), row.get(3))
    };
    assert_eq!(state, "succeeded");
    // Mid-refresh (deleted and re-inserted, not committed): a reader sees the old rows.
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM clusters").await, 4);
    assert_eq!(run(&mut db, "clusters").await.0, "skipped", "the running refresh holds the lock");
    tx.commit().await.unwrap();
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM clusters").await, 4);
    let skipped: i64 =
        scalar(&mut db, "SELECT count(*) FROM pgwarehouse.refresh_runs WHERE name = 'clusters' AND state = 'skipped'")
            .await;
    assert_eq!(skipped, 1);
}

#[tokio::test]
async fn a_failing_run_is_recorded_and_leaves_the_target_as_it_was() {
    let (_fx, mut db, mut cp) = setup().await;
    assert_eq!(run(&mut db, "events_mirror").await, ok(5, 0, 0));
    exec(&mut cp, "REVOKE SELECT ON events FROM cp_reader").await;
    let (state, ..) = run(&mut db, "events_mirror").await;
    assert_eq!(state, "failed");
    let error: String = scalar(
        &mut db,
        "SELECT error FROM pgwarehouse.refresh_runs WHERE name = 'events_mirror' ORDER BY id DESC LIMIT 1",
    )
    .await;
    assert!(error.contains("permission denied"), "{error}");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM public.events_mirror").await, 5, "unchanged");
}

#[tokio::test]
async fn plan_time_checks_block_one_refresh_and_prune_keeps_the_data() {
    let (fx, mut db, _cp) = setup().await;
    assert_eq!(run(&mut db, "events_mirror").await, ok(5, 0, 0));
    exec(
        &mut db,
        "CREATE VIEW a_view AS SELECT 1 AS x; CREATE TABLE typed (instance_id text); \
         CREATE TABLE strict (id bigint, owner text NOT NULL); \
         CREATE ROLE someone; CREATE TABLE theirs (x int); ALTER TABLE theirs OWNER TO someone",
    )
    .await;
    let broken = format!(
        "{STACK}\
- name: no_such_column
  target: public.t1
  query: SELECT nope FROM f.instances
  schedule: '@hourly'
- name: into_a_view
  target: public.a_view
  query: SELECT 1 AS x
  schedule: '@hourly'
- name: wrong_type
  target: public.typed
  query: SELECT id AS instance_id FROM f.instances
  schedule: '@hourly'
- name: required_column
  target: public.strict
  query: SELECT id FROM f.instances
  schedule: '@hourly'
- name: not_ours
  target: public.theirs
  query: SELECT 1 AS x
  schedule: '@hourly'
- name: missing_key
  target: public.t2
  query: SELECT id FROM f.instances
  mode: upsert
  key: [instance_id]
  schedule: '@hourly'
"
    );
    let report = fx.apply(&broken).await;
    let failed: Vec<String> = report
        .failed()
        .map(|i| format!("{} {}", i.item.label(&i.name), i.message.clone().unwrap_or_default()))
        .collect();
    assert_eq!(failed.len(), 6, "{failed:#?}");
    for expected in [
        "refresh/no_such_column query: column \"nope\" does not exist",
        "refresh/into_a_view target public.a_view is not a table",
        "refresh/wrong_type column \"instance_id\": the target has type text, the query gives bigint",
        "refresh/missing_key key column \"instance_id\" is not one of the query's columns (id)",
        "refresh/required_column target public.strict column \"owner\" is NOT NULL without a default",
        "refresh/not_ours target public.theirs is owned by someone; a refresh runs as pgwarehouse_refresh (never as a \
         superuser) and writes only into tables that role owns: run ALTER TABLE \"public\".\"theirs\" OWNER TO pgwarehouse_refresh, or name another target",
    ] {
        assert!(failed.iter().any(|f| f.starts_with(expected)), "{expected}\n{failed:#?}");
    }
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM pgwarehouse.refreshes").await, 4, "the others stay");
    assert_eq!(scalar::<Option<String>>(&mut db, "SELECT to_regclass('public.t1')::text").await, None);

    let without_mirror = STACK.split("- name: events_mirror").next().unwrap().to_string();
    fx.apply_ok(&without_mirror).await;
    let left: i64 = scalar(&mut db, "SELECT count(*) FROM pgwarehouse.refreshes WHERE name = 'events_mirror'").await;
    assert_eq!(left, 0);
    let job: i64 =
        scalar(&mut db, "SELECT count(*) FROM cron.job WHERE jobname = 'pgwarehouse-refresh-events_mirror'").await;
    assert_eq!(job, 0);
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM public.events_mirror").await, 5, "the data stays");
    assert!(fx.plan(&without_mirror).await.is_empty());
}

#[test]
fn bad_refreshes_are_rejected_with_their_field_paths() {
    let fx_manifest = |refresh: &str| {
        format!(
            "apiVersion: pgwarehouse.dev/v1alpha1\nkind: DataWarehouseStack\nmetadata: {{name: t}}\nspec:\n  refreshes:\n  - {refresh}\n"
        )
    };
    let cases = [
        (
            "{name: a, target: t, query: SELECT 1, mode: upsert, schedule: '@hourly'}",
            "spec.refreshes[0].key: upsert needs the conflict key",
        ),
        (
            "{name: a, target: t, query: SELECT 1, incremental: {column: x}, schedule: '@hourly'}",
            "spec.refreshes[0].incremental: a replace reads everything",
        ),
        (
            "{name: a, target: t, query: SELECT 1, mode: upsert, key: [x], incremental: {column: x}, deleteMissing: true, schedule: '@hourly'}",
            "spec.refreshes[0].deleteMissing",
        ),
        ("{name: a, target: t, query: SELECT 1, schedule: '5 minutes'}", "spec.refreshes[0].schedule"),
        ("{name: a, target: t, query: SELECT 1, schedule: '@hourly', timeout: 'soon'}", "spec.refreshes[0].timeout"),
        ("{name: a, target: t, query: SELECT 1, mode: merge, schedule: '@hourly'}", "spec.refreshes[0].mode"),
    ];
    for (refresh, expected) in cases {
        let error = match pgwarehouse::template::load_manifest(&fx_manifest(refresh)) {
            Ok(stack) => pgwarehouse::validate::validate(&stack).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(error.contains(expected), "{refresh}: {error}");
    }
}

fn pgwarehouse(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_refresh_command_runs_them_now_and_status_shows_their_last_run() {
    let (fx, mut db, mut cp) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.yaml");
    std::fs::write(&file, fx.manifest(STACK)).unwrap();
    let (file, url) = (file.display().to_string(), fx.server.url(support::WAREHOUSE));

    let out = pgwarehouse(&["refresh", "-f", &file, "--database-url", &url, "clusters", "events_upsert"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("REFRESH") && lines.len() == 3, "{stdout}");
    assert!(lines[1].starts_with("clusters") && lines[1].contains("succeeded") && lines[1].contains(" 4 "), "{stdout}");
    assert!(lines[2].starts_with("events_upsert") && lines[2].contains("2026-01-01 00:05:00+00"), "{stdout}");

    let out = pgwarehouse(&["refresh", "-f", &file, "--database-url", &url, "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 4, "all of the stack's");
    assert_eq!(runs[1]["name"], "events_upsert");
    assert_eq!((runs[1]["inserted"].as_i64(), runs[1]["updated"].as_i64()), (Some(0), Some(0)));

    let out = pgwarehouse(&["refresh", "-f", &file, "--database-url", &url, "clusterz"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(
            "no refresh named \"clusterz\" in the stack (it has: clusters, events_upsert, events_log, events_mirror)"
        ),
        "{stderr}"
    );

    exec(&mut cp, "REVOKE SELECT ON events FROM cp_reader").await;
    let out = pgwarehouse(&["refresh", "-f", &file, "--database-url", &url, "events_mirror"]);
    assert!(!out.status.success(), "a failed refresh fails the command");
    assert!(String::from_utf8_lossy(&out.stdout).contains("permission denied"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 refresh(es) failed"));

    // A run over its timeout is cancelled, recorded as failed, and the command says so.
    let slow = format!(
        "{STACK}- {{name: slow, target: public.slow, query: 'SELECT pg_sleep(3)::text AS x', schedule: '@hourly', timeout: 500 ms}}\n"
    );
    fx.apply_ok(&slow).await;
    std::fs::write(&file, fx.manifest(&slow)).unwrap();
    let started = std::time::Instant::now();
    let out = pgwarehouse(&["refresh", "-f", &file, "--database-url", &url, "slow"]);
    assert!(!out.status.success() && started.elapsed() < std::time::Duration::from_secs(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("canceling statement due to statement timeout"));

    let status = pgwarehouse::sql::status::read_status(&mut db).await.unwrap();
    let names: Vec<&str> = status.refreshes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["clusters", "events_log", "events_mirror", "events_upsert", "slow"]);
    let mirror = &status.refreshes[2];
    assert_eq!(
        (mirror.state.as_deref(), mirror.target.as_str(), mirror.mode.as_str()),
        (Some("failed"), "public.events_mirror", "upsert")
    );
    assert!(mirror.error.as_deref().unwrap().contains("permission denied"));
    assert!(mirror.last_success.is_some(), "its earlier run in this test succeeded");
    let clusters = &status.refreshes[0];
    assert_eq!((clusters.inserted, clusters.deleted), (Some(4), Some(4)));
}

/// Refreshes over a table of the warehouse itself, for what the engine must get right whatever
/// the source: NULL keys, types without equality, session settings, overlapping runs.
const LOCAL: &str = r#"
migrations:
- name: src
  sql: |
    CREATE TABLE public.src (k1 int, k2 text, doc json, at timestamptz NOT NULL);
    INSERT INTO public.src VALUES (1, NULL, '{"a": 1}', '2026-01-01 10:00+00'), (NULL, 'x', '{"b": 2}', '2026-01-01 11:00+00'),
      (NULL, NULL, '[]', '2026-01-01 12:00+00'), (2, 'y', '{}', '2026-01-02 09:30+00');
refreshes:
- {name: nulls, target: public.by_key, query: "SELECT k1, k2, doc FROM public.src", mode: upsert, key: [k1, k2], schedule: "@daily"}
- {name: nulls_mirror, target: public.by_key_mirror, query: "SELECT k1, k2, doc FROM public.src", mode: upsert, key: [k1, k2], deleteMissing: true, schedule: "@daily"}
- {name: log, target: public.src_log, query: "SELECT k1, k2, at FROM public.src", mode: append, incremental: {column: at}, schedule: "@daily"}
"#;

#[tokio::test]
async fn null_keys_json_columns_and_session_settings_keep_every_row_exactly_once() {
    let fx = Fixture::start().await;
    fx.apply_ok(LOCAL).await;
    assert!(fx.plan(LOCAL).await.is_empty(), "{:#?}", fx.plan(LOCAL).await.view());
    let mut db = fx.warehouse().await;
    for round in 0..3 {
        let (inserted, updated) = if round == 0 { (4, 0) } else { (0, 0) };
        assert_eq!(
            run(&mut db, "nulls").await,
            ok(inserted, updated, 0),
            "round {round}: NULL keys conflict as one key"
        );
        assert_eq!(run(&mut db, "nulls_mirror").await, ok(inserted, updated, 0), "round {round}: and are not missing");
    }
    // A json column changes: compared through text, it is updated, the others are not.
    exec(&mut db, r#"UPDATE public.src SET doc = '{"b": 3}' WHERE k1 IS NULL AND k2 = 'x'"#).await;
    assert_eq!(run(&mut db, "nulls").await, ok(0, 1, 0));
    assert_eq!(run(&mut db, "nulls_mirror").await, ok(0, 1, 0));
    exec(&mut db, "DELETE FROM public.src WHERE k1 IS NULL AND k2 IS NULL").await;
    assert_eq!(run(&mut db, "nulls_mirror").await, ok(0, 0, 1), "the all-NULL key left the source");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM public.by_key_mirror").await, 3);

    // The mark, written and read under the session's DateStyle, would shift a day with DMY.
    assert_eq!(run(&mut db, "log").await, ok(3, 0, 0));
    exec(&mut db, "SET datestyle = 'SQL, DMY'").await;
    exec(&mut db, "INSERT INTO public.src VALUES (3, 'z', '{}', '2026-01-03 08:00+00')").await;
    assert_eq!(run(&mut db, "log").await, ok(1, 0, 0), "only the new row, whatever the session's DateStyle");
    exec(&mut db, "RESET datestyle").await;
    assert_eq!(run(&mut db, "log").await, ok(0, 0, 0));
    let mark: String = scalar(&mut db, "SELECT high_water FROM pgwarehouse.refreshes WHERE name = 'log'").await;
    assert_eq!(mark, "2026-01-03 08:00:00+00");
}

/// Runs of one append refresh started together, again and again while rows arrive: each row is
/// written once (a run that overlaps another is skipped, and one that follows reads its mark).
#[tokio::test(flavor = "multi_thread")]
async fn overlapping_runs_of_an_append_refresh_never_duplicate_a_row() {
    let fx = Fixture::start().await;
    fx.apply_ok(LOCAL).await;
    let mut writer = fx.warehouse().await;
    let mut runners = Vec::new();
    for _ in 0..3 {
        runners.push(fx.warehouse().await);
    }
    for i in 0..30 {
        exec(
            &mut writer,
            &format!(
                "INSERT INTO public.src VALUES ({}, 'w', '{{}}', '2026-02-01'::timestamptz + interval '{i} minutes')",
                100 + i
            ),
        )
        .await;
        let runs = runners.iter_mut().map(|db| async move {
            sqlx::query_scalar::<_, String>("SELECT state FROM pgwarehouse.refresh('log')").fetch_one(db).await.unwrap()
        });
        let states = futures::future::join_all(runs).await;
        assert!(states.iter().all(|s| s == "succeeded" || s == "skipped"), "{states:?}");
    }
    let duplicated: i64 = scalar(
        &mut writer,
        "SELECT count(*) FROM (SELECT k1, at FROM public.src_log GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .await;
    assert_eq!(duplicated, 0);
    assert_eq!(scalar::<i64>(&mut writer, "SELECT count(*) FROM public.src_log").await, 34, "every row, once");
}

#[tokio::test]
async fn a_query_the_run_could_not_resolve_is_refused_at_plan() {
    let fx = Fixture::start().await;
    let spec = LOCAL.replace("FROM public.src\", mode: append", "FROM src\", mode: append");
    let plan = fx.plan(&spec).await;
    let blocked: Vec<String> = plan.view().blocked.into_iter().map(|b| format!("{}: {}", b.item, b.error)).collect();
    assert!(
        blocked.iter().any(|b| b.starts_with("refresh/log: query: relation \"src\" does not exist")
            && b.contains("qualify names with their schema")),
        "{blocked:#?}"
    );
}

/// STACK's source, a BI role with every privilege the spec can grant on `mart`, and a refresh into it.
const ESCALATION: &str = r#"
roles:
- name: analyst
  passwordSecretRef: {name: analyst, key: password}
  grants:
  - {schema: mart, privileges: [SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER]}
refreshes:
- name: copied
  target: mart.clusters
  query: SELECT i.id, i.name FROM f.instances i
  schedule: "SCHEDULE"
"#;

/// What a BI role with every grantable privilege on a refresh target, TEMP and a schema of its
/// own does to become superuser: a trigger (and a deferred constraint trigger) in pg_temp that
/// tries every way up, a plain `SET search_path` towards its own `=` operator, and the ledger.
const ATTACK: &str = r#"
CREATE TABLE playground.attempts (who text, what text, outcome text);
GRANT USAGE ON SCHEMA playground TO PUBLIC;
GRANT ALL ON playground.attempts TO PUBLIC;
CREATE FUNCTION playground.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  RAISE LOG 'pgwarehouse-test: eq as %', current_user;
  BEGIN ALTER ROLE analyst SUPERUSER; EXCEPTION WHEN others THEN NULL; END;
  RETURN $1 OPERATOR(pg_catalog.=) $2;
END $f$;
CREATE OPERATOR playground.= (LEFTARG = text, RIGHTARG = text, FUNCTION = playground.eq);
CREATE FUNCTION pg_temp.escalate() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE attempt text;
BEGIN
  FOREACH attempt IN ARRAY ARRAY[
    'ALTER ROLE analyst SUPERUSER', 'SET ROLE postgres', 'RESET ROLE', 'SET SESSION AUTHORIZATION postgres',
    'UPDATE pgwarehouse.refreshes SET query = $q$SELECT 1$q$',
    'ALTER FUNCTION pgwarehouse.refresh_apply(text, text, text, text, text[], text, regtype, boolean, jsonb, text) SECURITY INVOKER',
    'INSERT INTO cron.job (schedule, command, username) VALUES ($q$* * * * *$q$, $q$ALTER ROLE analyst SUPERUSER$q$, $q$postgres$q$)']
  LOOP
    BEGIN
      EXECUTE attempt;
      INSERT INTO playground.attempts VALUES (current_user, TG_NAME || ': ' || attempt, 'ran');
    EXCEPTION WHEN others THEN
      INSERT INTO playground.attempts VALUES (current_user, TG_NAME || ': ' || attempt, SQLERRM);
    END;
  END LOOP;
  SET search_path = playground, pg_catalog;
  RETURN NULL;
END $f$;
CREATE TRIGGER escalate AFTER INSERT ON mart.clusters FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.escalate();
CREATE CONSTRAINT TRIGGER escalate_at_commit AFTER INSERT ON mart.clusters DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION pg_temp.escalate();
"#;

#[tokio::test]
async fn a_bi_role_with_every_grant_on_a_target_never_becomes_superuser_through_a_refresh() {
    let fx = Fixture::start().await;
    let mut db = fx.warehouse().await;
    // pg_cron 1.4 (PostgreSQL 15 here) has no seconds schedules: its next minute, then.
    let version: i32 = scalar(&mut db, "SELECT current_setting('server_version_num')::int").await;
    let schedule = if version >= 170000 { "2 seconds" } else { "* * * * *" };
    let source = STACK.split("refreshes:\n").next().unwrap();
    let spec = format!("{source}{}", ESCALATION.replace("SCHEDULE", schedule));
    fx.apply_ok(&spec).await;
    let owner: String =
        scalar(&mut db, "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'mart.clusters'::regclass")
            .await;
    assert_eq!(owner, "pgwarehouse_refresh");
    exec(&mut db, "CREATE SCHEMA playground AUTHORIZATION analyst").await;

    let analyst_url =
        fx.server.url("warehouse").replace(&format!("postgres:{}@", support::PASSWORD), "analyst:analyst-pw@");
    let mut analyst = PgConnection::connect(&analyst_url).await.unwrap();
    for (ledger, refused) in [
        ("UPDATE pgwarehouse.refreshes SET query = 'SELECT 1'", "permission denied for schema pgwarehouse"),
        (
            "INSERT INTO cron.job (schedule, command, username) VALUES ('* * * * *', 'SELECT 1', 'postgres')",
            "permission denied",
        ),
    ] {
        let error = sqlx::raw_sql(sqlx::AssertSqlSafe(ledger)).execute(&mut analyst).await.unwrap_err().to_string();
        assert!(error.contains(refused), "{ledger}: {error}");
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(ATTACK)).execute(&mut analyst).await.unwrap();

    // pg_cron's own run, as the superuser it schedules refreshes as.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while scalar::<i64>(&mut db, "SELECT count(*) FROM pgwarehouse.refresh_runs WHERE name = 'copied'").await == 0 {
        assert!(std::time::Instant::now() < deadline, "pg_cron never ran the refresh:\n{}", fx.server.log());
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    drop(analyst);
    let (state, error): (String, Option<String>) =
        sqlx::query_as("SELECT state, error FROM pgwarehouse.refresh_runs WHERE name = 'copied' ORDER BY id LIMIT 1")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((state.as_str(), error), ("succeeded", None));
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM mart.clusters").await, 4);

    let attempts: Vec<(String, String, String)> =
        sqlx::query_as("SELECT who, what, outcome FROM playground.attempts").fetch_all(&mut db).await.unwrap();
    let mut triggers: Vec<&str> = attempts.iter().map(|(_, what, _)| what.split(':').next().unwrap()).collect();
    triggers.dedup();
    assert_eq!(triggers, ["escalate", "escalate_at_commit"], "both triggers fired: {attempts:#?}");
    for (who, what, outcome) in &attempts {
        assert_eq!(who, "pgwarehouse_refresh", "{what}");
        assert_ne!(outcome, "ran", "{what} ran");
    }
    assert!(!scalar::<bool>(&mut db, "SELECT rolsuper FROM pg_roles WHERE rolname = 'analyst'").await);
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM cron.job WHERE command LIKE '%analyst%'").await, 0);
    let log = fx.server.log();
    assert!(!log.contains("pgwarehouse-test: eq as"), "the analyst's operator ran:\n{log}");
    assert!(fx.plan(&spec).await.is_empty(), "{:#?}", fx.plan(&spec).await.view());

    // Its owner (or an administrator) can make the apply function run as the caller: no run
    // goes through it then, and the next apply puts it and the role back.
    exec(
        &mut db,
        "ALTER FUNCTION pgwarehouse.refresh_apply(text, text, text, text, text[], text, regtype, boolean, jsonb, text) \
         SECURITY INVOKER; ALTER ROLE pgwarehouse_refresh LOGIN",
    )
    .await;
    let error: String = scalar(&mut db, "SELECT error FROM pgwarehouse.refresh('copied')").await;
    assert!(error.contains("is not the SECURITY DEFINER function owned by a plain pgwarehouse_refresh"), "{error}");
    assert!(!fx.plan(&spec).await.is_empty());
    fx.apply_ok(&spec).await;
    assert_eq!(run(&mut db, "copied").await, ok(4, 0, 4));
    assert!(fx.plan(&spec).await.is_empty());
}

/// A stack converged by the previous refresh API (targets owned by the superuser, no refresh
/// role grants, no apply function) is taken over by one apply: the targets handed to the
/// refresh role, the sources granted, marks kept, every refresh running.
#[tokio::test]
async fn a_stack_from_the_previous_refresh_api_is_taken_over_by_one_apply() {
    let (fx, mut db, _cp) = setup().await;
    assert_eq!(run(&mut db, "events_upsert").await, ok(5, 0, 0));
    exec(
        &mut db,
        "ALTER TABLE public.clusters OWNER TO postgres; ALTER TABLE mart.events OWNER TO postgres; \
         ALTER TABLE public.events_log OWNER TO postgres; ALTER TABLE public.events_mirror OWNER TO postgres; \
         REVOKE ALL ON ALL TABLES IN SCHEMA f FROM pgwarehouse_refresh; REVOKE USAGE ON SCHEMA f, mart FROM pgwarehouse_refresh; \
         REVOKE USAGE ON FOREIGN SERVER cp FROM pgwarehouse_refresh; \
         DROP FUNCTION pgwarehouse.refresh_apply(text, text, text, text, text[], text, regtype, boolean, jsonb, text); \
         COMMENT ON FUNCTION pgwarehouse.refresh(text) IS 'pgwarehouse refresh api 2'",
    )
    .await;
    let planned = support::statements(&fx.plan(STACK).await);
    for expected in [
        r#"ALTER TABLE "mart"."events" OWNER TO "pgwarehouse_refresh""#,
        r#"GRANT USAGE ON SCHEMA "mart" TO "pgwarehouse_refresh""#,
        r#"GRANT USAGE ON FOREIGN SERVER "cp" TO "pgwarehouse_refresh""#,
        r#"GRANT SELECT ON "f"."events" TO "pgwarehouse_refresh""#,
    ] {
        assert!(planned.iter().any(|s| s == expected), "{expected}\n{planned:#?}");
    }
    fx.apply_ok(STACK).await;
    assert!(fx.plan(STACK).await.is_empty(), "{:#?}", fx.plan(STACK).await.view());
    assert_eq!(run(&mut db, "events_upsert").await, ok(0, 0, 0), "the mark was kept");
    for name in ["clusters", "events_log", "events_mirror"] {
        assert_eq!(run(&mut db, name).await.0, "succeeded", "{name}");
    }
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class \
         WHERE oid IN ('public.clusters'::regclass, 'mart.events'::regclass, 'public.events_log'::regclass, 'public.events_mirror'::regclass)",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(owners, ["pgwarehouse_refresh"]);
}
