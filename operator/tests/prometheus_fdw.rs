//! Our `prometheus_fdw` (extensions/, installed by `make extensions`) in a real PostgreSQL,
//! against a real Prometheus with known series, declared through the engine like any source:
//! every column order and subset, every bound shape (either side, constants, parameters,
//! `now()`-relative expressions), plans reused by prepared statements and PL/pgSQL, rescans,
//! joins, CTEs and LIMIT, bad columns and options — and the backend never crashes.

#[path = "../../extensions/prometheus_query/tests/support/prometheus.rs"]
mod prometheus;
mod support;

use std::collections::BTreeSet;

use prometheus::{Prometheus, SERIES};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection, Row};
use support::{Fixture, scalar};

const STACK: &str = r#"
sources:
- name: prom
  wrapper: prometheus_fdw
  options: {base_url: "BASE_URL", step: 60s}
  tables:
  - name: metrics
    schema: f
    columns:
    - {name: metric_name, type: text}
    - {name: metric_labels, type: jsonb}
    - {name: metric_time, type: bigint}
    - {name: metric_value, type: float8}
    options: {object: metrics}
  - name: metrics_tz
    schema: f
    columns:
    - {name: metric_value, type: float8}
    - {name: metric_time, type: timestamptz}
    - {name: metric_name, type: text}
    options: {object: metrics}
"#;

async fn setup(prometheus: &Prometheus) -> (Fixture, PgConnection) {
    let fx = Fixture::start().await;
    fx.apply_ok(&STACK.replace("BASE_URL", &prometheus.url())).await;
    let db = fx.warehouse().await;
    (fx, db)
}

/// `WHERE` for minutes `from..=to` of the known series.
fn window(prometheus: &Prometheus, from: u64, to: u64) -> String {
    let (s, e) = (prometheus.start + from * 60, prometheus.start + to * 60);
    format!("metric_name = '{SERIES}' AND metric_time BETWEEN {s} AND {e}")
}

/// The error `sql` fails with.
async fn error_of(db: &mut PgConnection, sql: &str) -> String {
    db.execute(sqlx::AssertSqlSafe(sql.to_string())).await.unwrap_err().to_string()
}

async fn rows_as_json(db: &mut PgConnection, select: &str) -> Vec<Value> {
    let sql = format!("SELECT coalesce(json_agg(x), '[]')::text FROM ({select}) x");
    let text: String = scalar(db, &sql).await;
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

#[tokio::test]
async fn any_columns_in_any_order_give_the_right_rows() {
    let prometheus = Prometheus::start(None);
    let (fx, mut db) = setup(&prometheus).await;
    let started: String = scalar(&mut db, "SELECT pg_postmaster_start_time()::text").await;
    let all = ["metric_name", "metric_labels", "metric_time", "metric_value"];
    // Every ordered selection of 1 to 4 columns: 64 queries.
    let mut selections: Vec<Vec<&str>> = all.iter().map(|c| vec![*c]).collect();
    for _ in 1..4 {
        let longer: Vec<Vec<&str>> = selections
            .iter()
            .flat_map(|s| all.iter().filter(|c| !s.contains(c)).map(move |c| [s.clone(), vec![*c]].concat()))
            .collect();
        selections.extend(longer.into_iter().filter(|s| s.len() <= 4));
        selections.sort();
        selections.dedup();
    }
    assert_eq!(selections.len(), 64);
    let where_ = window(&prometheus, 10, 20);
    for columns in &selections {
        let rows = rows_as_json(&mut db, &format!("SELECT {} FROM f.metrics WHERE {where_}", columns.join(", "))).await;
        assert_eq!(rows.len(), 22, "{columns:?}: two series, eleven minutes");
        let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), columns.len(), "{columns:?}");
        if columns.contains(&"metric_time") && columns.contains(&"metric_value") && columns.contains(&"metric_labels") {
            let found: BTreeSet<(String, i64, i64)> = rows
                .iter()
                .map(|r| {
                    (
                        r["metric_labels"]["instance"].as_str().unwrap().to_string(),
                        r["metric_time"].as_i64().unwrap(),
                        r["metric_value"].as_f64().unwrap() as i64,
                    )
                })
                .collect();
            let expected: BTreeSet<(String, i64, i64)> = (10..=20)
                .flat_map(|m| {
                    [("a", 1), ("b", 10)]
                        .map(|(i, f)| (i.to_string(), (prometheus.start + m * 60) as i64, (m * f) as i64))
                })
                .collect();
            assert_eq!(found, expected, "{columns:?}");
        }
    }
    assert_eq!(scalar::<i64>(&mut db, &format!("SELECT count(*) FROM f.metrics WHERE {where_}")).await, 22);
    let other_order = rows_as_json(&mut db, &format!("SELECT * FROM f.metrics_tz WHERE metric_name = '{SERIES}' AND metric_time >= to_timestamp({}) AND metric_time <= to_timestamp({})", prometheus.start + 600, prometheus.start + 660)).await;
    assert_eq!(other_order.len(), 4, "a table declaring the columns in another order, time as timestamptz");
    let same: String = scalar(&mut db, "SELECT pg_postmaster_start_time()::text").await;
    assert_eq!(started, same, "no backend crashed and restarted the server");
    drop(fx);
}

#[tokio::test]
async fn every_bound_shape_is_pushed_and_inclusive_bounds_keep_their_samples() {
    let prometheus = Prometheus::start(None);
    let (_fx, mut db) = setup(&prometheus).await;
    let (s, e) = (prometheus.start + 600, prometheus.start + 1200);
    let count = |bounds: String| format!("SELECT count(*) FROM f.metrics WHERE metric_name = '{SERIES}' AND {bounds}");
    let cases = [
        (format!("metric_time >= {s} AND metric_time <= {e}"), 22),
        (format!("metric_time > {s} AND metric_time < {e}"), 18),
        (format!("metric_time BETWEEN {s} AND {e}"), 22),
        (format!("metric_time = {s}"), 2),
        (format!("metric_time >= {s}::int AND metric_time <= {e}::numeric"), 22),
        (format!("metric_time > {e} AND metric_time < {s}"), 0),
    ];
    for (bounds, expected) in cases {
        assert_eq!(scalar::<i64>(&mut db, &count(bounds.clone())).await, expected, "{bounds}");
    }
    // Any PromQL as the name: every row's metric_name is the expression asked for (so the
    // restriction holds on each row), the series' own name stays in its labels.
    let selector = format!("{SERIES}{{instance=\"a\"}}");
    let rows = rows_as_json(
        &mut db,
        &format!("SELECT metric_name, metric_labels FROM f.metrics WHERE metric_name = '{selector}' AND metric_time BETWEEN {s} AND {e}"),
    )
    .await;
    assert_eq!(rows.len(), 11, "{selector}");
    for row in rows {
        assert_eq!(
            (row["metric_name"].as_str(), row["metric_labels"]["__name__"].as_str()),
            (Some(selector.as_str()), Some(SERIES))
        );
    }
    // Without a step option, the step is derived from the range: 10 minutes at 1 s, 601 points a series.
    support::exec(
        &mut db,
        &format!(
            "CREATE SERVER prom_auto FOREIGN DATA WRAPPER prometheus_fdw OPTIONS (base_url '{}')",
            prometheus.url()
        ),
    )
    .await;
    support::exec(
        &mut db,
        "CREATE FOREIGN TABLE f.auto (metric_time bigint) SERVER prom_auto OPTIONS (object 'metrics')",
    )
    .await;
    support::exec(&mut db, "CREATE USER MAPPING FOR CURRENT_USER SERVER prom_auto").await;
    let auto =
        format!("SELECT count(*) FROM f.auto WHERE metric_name = '{SERIES}' AND metric_time BETWEEN {s} AND {e}");
    let error = error_of(&mut db, &auto).await;
    assert!(error.contains("column \"metric_name\" does not exist"), "{error}");
    support::exec(&mut db, "ALTER FOREIGN TABLE f.auto ADD COLUMN metric_name text").await;
    assert_eq!(scalar::<i64>(&mut db, &auto).await, 2 * 601);
    // Parameters of the cells' own types are pushed down too.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM f.metrics WHERE metric_name = $1 AND metric_time >= $2 AND metric_time <= $3",
    )
    .bind(SERIES)
    .bind(s as i64)
    .bind(e as i64)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(n, 22);
    let (from, to): (String, String) = (
        scalar(&mut db, &format!("SELECT to_timestamp({s})::text")).await,
        scalar(&mut db, &format!("SELECT to_timestamp({e})::text")).await,
    );
    let literal = format!(
        "SELECT count(*) FROM f.metrics_tz WHERE metric_name = '{SERIES}' AND metric_time BETWEEN '{from}' AND '{to}'"
    );
    assert_eq!(scalar::<i64>(&mut db, &literal).await, 22, "timestamptz bounds");
}

#[tokio::test]
async fn joins_subqueries_ctes_and_limit_work() {
    let prometheus = Prometheus::start(None);
    let (_fx, mut db) = setup(&prometheus).await;
    let where_ = window(&prometheus, 0, 59);
    db.execute("CREATE TABLE instances (name text PRIMARY KEY, owner text); INSERT INTO instances VALUES ('a', 'acme'), ('b', 'globex')").await.unwrap();
    let busiest: String = scalar(
        &mut db,
        &format!(
            "WITH usage AS (SELECT metric_labels->>'instance' AS instance, max(metric_value) AS peak FROM f.metrics WHERE {where_} GROUP BY 1) \
             SELECT i.owner FROM usage u JOIN instances i ON i.name = u.instance ORDER BY u.peak DESC LIMIT 1"
        ),
    )
    .await;
    assert_eq!(busiest, "globex");
    let limited: i64 =
        scalar(&mut db, &format!("SELECT count(*) FROM (SELECT metric_value FROM f.metrics WHERE {where_} LIMIT 3) x"))
            .await;
    assert_eq!(limited, 3);
    let nested: i64 = scalar(&mut db, &format!("SELECT count(*) FROM instances WHERE name IN (SELECT metric_labels->>'instance' FROM f.metrics WHERE {where_})")).await;
    assert_eq!(nested, 2);
    let no_lower_bound: i64 =
        scalar(&mut db, &format!("SELECT count(*) FROM f.metrics WHERE metric_name = '{SERIES}'")).await;
    assert!(no_lower_bound > 0, "the last hour by default, never a silent empty result");
}

#[tokio::test]
async fn bad_columns_options_and_queries_are_clear_errors() {
    let prometheus = Prometheus::start(None);
    let (fx, mut db) = setup(&prometheus).await;
    let errors = [
        (
            "CREATE FOREIGN TABLE f.bad_type (metric_value text) SERVER prom OPTIONS (object 'metrics')".to_string(),
            "SELECT * FROM f.bad_type".to_string(),
            "column metric_value of foreign table bad_type cannot be text",
        ),
        (
            "CREATE FOREIGN TABLE f.bad_name (cpu float8) SERVER prom OPTIONS (object 'metrics')".to_string(),
            "SELECT * FROM f.bad_name".to_string(),
            "column cpu of foreign table bad_name cannot be double precision",
        ),
        (
            "SELECT 1".to_string(),
            "SELECT count(*) FROM f.metrics WHERE metric_time > 0".to_string(),
            "needs the metric to read",
        ),
        (
            "SELECT 1".to_string(),
            format!("SELECT count(*) FROM f.metrics WHERE metric_name = 'sum(' AND metric_time > {}", prometheus.start),
            "Prometheus answered bad_data",
        ),
    ];
    for (setup_sql, query, expected) in errors {
        support::exec(&mut db, &setup_sql).await;
        let error = error_of(&mut db, &query).await;
        assert!(error.contains(expected), "{query}: {error}");
    }
    let validator = [
        ("CREATE SERVER s1 FOREIGN DATA WRAPPER prometheus_fdw", "a server needs the option base_url"),
        (
            "CREATE SERVER s2 FOREIGN DATA WRAPPER prometheus_fdw OPTIONS (base_url 'http://x', regoin 'eu')",
            "\"regoin\" is not an option of a server",
        ),
        (
            "CREATE SERVER s3 FOREIGN DATA WRAPPER prometheus_fdw OPTIONS (base_url 'x:9090')",
            "must be an http:// or https:// URL",
        ),
        (
            "CREATE SERVER s4 FOREIGN DATA WRAPPER prometheus_fdw OPTIONS (base_url 'http://x', step 'fortnight')",
            "step \"fortnight\" is not a duration",
        ),
        (
            "CREATE SERVER s5 FOREIGN DATA WRAPPER prometheus_fdw OPTIONS (base_url 'http://x', timeout '2d')",
            "timeout \"2d\" is not a duration of at most 10m",
        ),
        (
            "CREATE SERVER s6 FOREIGN DATA WRAPPER prometheus_fdw OPTIONS (base_url 'http://u:p4ss@127.0.0.1:1')",
            "base_url \"http://<credentials>@127.0.0.1:1\" must be an http:// or https:// URL without credentials",
        ),
        (
            "CREATE FOREIGN TABLE f.t1 (metric_name text) SERVER prom OPTIONS (object 'logs')",
            "object \"logs\" is not one prometheus_fdw knows",
        ),
        ("CREATE FOREIGN TABLE f.t2 (metric_name text) SERVER prom", "needs the option object 'metrics'"),
        (
            "CREATE USER MAPPING FOR CURRENT_USER SERVER prom OPTIONS (username 'u')",
            "username and password go together",
        ),
    ];
    for (sql, expected) in validator {
        let error = error_of(&mut db, sql).await;
        assert!(error.contains(expected), "{sql}: {error}");
    }
    let log = fx.server.log();
    assert!(log.contains("without credentials"), "the refusal is logged:\n{log}");
    assert!(!log.contains("p4ss"), "the refused statement is not:\n{log}");
    assert_eq!(scalar::<i32>(&mut db, "SELECT 1").await, 1, "the session survived every error");
    drop(fx);
}

#[tokio::test]
async fn credentials_come_from_the_user_mapping_and_never_show_in_errors() {
    let prometheus = Prometheus::start(Some(("reader", "prom-s3cret")));
    let fx = Fixture::start().await;
    fx.set_secret("prom", "password", "prom-s3cret");
    let stack = STACK.replace("BASE_URL", &prometheus.url()).replace(
        "  options: {base_url:",
        "  userMapping:\n    options: {username: reader}\n    secretOptions: {password: {secretKeyRef: {name: prom, key: password}}}\n  options: {base_url:",
    );
    fx.apply_ok(&stack).await;
    let mut db = fx.warehouse().await;
    let where_ = window(&prometheus, 0, 9);
    assert_eq!(scalar::<i64>(&mut db, &format!("SELECT count(*) FROM f.metrics WHERE {where_}")).await, 20);
    let analyst_url = format!("postgres://analyst:analyst-pw@127.0.0.1:{}/warehouse", fx.server.port);
    fx.apply_ok(&format!("{stack}roles: [{{name: analyst, passwordSecretRef: {{name: analyst, key: password}}, grants: [{{schema: f, privileges: [SELECT]}}]}}]\n")).await;
    let mut analyst = PgConnection::connect(&analyst_url).await.unwrap();
    assert_eq!(
        scalar::<i64>(&mut analyst, &format!("SELECT count(*) FROM f.metrics WHERE {where_}")).await,
        20,
        "the BI role reads through the PUBLIC mapping"
    );
    let options: String = scalar(
        &mut analyst,
        "SELECT coalesce(string_agg(array_to_string(srvoptions, ','), ';'), '') FROM pg_foreign_server",
    )
    .await;
    assert!(!options.contains("prom-s3cret"), "{options}");

    fx.set_secret("prom", "password", "wrong-prom-pw");
    fx.apply_ok(&stack).await;
    let error = error_of(&mut db, &format!("SELECT count(*) FROM f.metrics WHERE {where_}")).await;
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(!error.contains("wrong-prom-pw") && !fx.server.log().contains("wrong-prom-pw"), "{error}");
    let row = sqlx::query("SELECT 1 AS one").fetch_one(&mut db).await.unwrap();
    assert_eq!(row.get::<i32, _>("one"), 1);

    // A mapping with credentials is used whole: a (stale) token on the server never beats it.
    fx.set_secret("prom", "password", "prom-s3cret");
    fx.apply_ok(&format!("{stack}roles: [{{name: analyst, passwordSecretRef: {{name: analyst, key: password}}, grants: [{{schema: f, privileges: [SELECT]}}]}}]\n")).await;
    support::exec(&mut db, "ALTER SERVER prom OPTIONS (ADD bearer_token 'stale-token')").await;
    let count = format!("SELECT count(*) FROM f.metrics WHERE {where_}");
    assert_eq!(scalar::<i64>(&mut db, &count).await, 20, "basic auth from the mapping, not the server's token");
    support::exec(&mut db, "ALTER SERVER prom OPTIONS (DROP bearer_token)").await;

    // Through a view, the view owner's mapping is used (as postgres_fdw does): the BI role has
    // none of its own once only the owner holds one.
    support::exec(
        &mut db,
        "DROP USER MAPPING FOR PUBLIC SERVER prom;          CREATE USER MAPPING FOR postgres SERVER prom OPTIONS (username 'reader', password 'prom-s3cret');          CREATE VIEW public.metrics_view AS SELECT * FROM f.metrics; GRANT SELECT ON public.metrics_view TO analyst",
    )
    .await;
    // The role was pruned and made again by the applies above: a new session.
    let mut analyst = PgConnection::connect(&analyst_url).await.unwrap();
    let through_view = format!("SELECT count(*) FROM public.metrics_view WHERE {where_}");
    assert_eq!(scalar::<i64>(&mut analyst, &through_view).await, 20, "the view owner's mapping");
    let direct = error_of(&mut analyst, &count).await;
    assert!(direct.contains("HTTP 401"), "without a mapping of its own the BI role has no credentials: {direct}");
}

#[tokio::test]
async fn reused_plans_commuted_bounds_and_expressions_give_the_right_rows() {
    let prometheus = Prometheus::start(None);
    let (_fx, mut db) = setup(&prometheus).await;
    let started: String = scalar(&mut db, "SELECT pg_postmaster_start_time()::text").await;
    let minute = |m: u64| prometheus.start + m * 60;
    let name = format!("metric_name = '{SERIES}'");

    // Constant on the left: handed over commuted, so `s <= metric_time` is a lower bound.
    let commuted =
        format!("{} <= metric_time AND {} >= metric_time AND '{SERIES}' = metric_name", minute(10), minute(20));
    assert_eq!(scalar::<i64>(&mut db, &format!("SELECT count(*) FROM f.metrics WHERE {commuted}")).await, 22);
    let plan: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN VERBOSE SELECT * FROM f.metrics WHERE {commuted}")))
            .fetch_all(&mut db)
            .await
            .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("Pushed Down: metric_time >=, metric_time <=, metric_name ="), "{plan}");

    // Expressions evaluated when the scan starts: the seed's own epoch arithmetic, now()-relative
    // intervals and to_timestamp() of a parameter.
    let age = scalar::<f64>(&mut db, &format!("SELECT (extract(epoch from now()) - {})::float8", minute(30)))
        .await
        .ceil() as i64;
    // Prometheus evaluates the range from its start, one step apart: the first row is within a
    // step of the bound, not the default hour before now.
    let seed_shape = format!(
        "SELECT min(metric_time)::float8 FROM f.metrics WHERE {name} AND metric_time > extract(epoch from now() - interval '{age} seconds')::bigint"
    );
    let relative = format!(
        "SELECT extract(epoch from min(metric_time))::float8 FROM f.metrics_tz WHERE {name} AND metric_time >= now() - make_interval(secs => {age})"
    );
    for sql in [seed_shape, relative] {
        let first = scalar::<f64>(&mut db, &sql).await;
        let bound = minute(30) as f64;
        assert!(first > bound - 1.0 && first <= bound + 61.0, "{sql}: first row at {first}, bound {bound}");
    }
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM f.metrics_tz WHERE metric_name = $1 AND metric_time BETWEEN to_timestamp($2) AND to_timestamp($3)",
    )
    .bind(SERIES)
    .bind(minute(5) as f64)
    .bind(minute(14) as f64)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(n, 20, "to_timestamp($n) bounds");

    // One generic plan executed many times with int, bigint and timestamptz parameters.
    support::exec(&mut db, "SET plan_cache_mode = force_generic_plan").await;
    support::exec(&mut db, &format!("PREPARE by_bigint(bigint, bigint) AS SELECT count(*) FROM f.metrics WHERE {name} AND metric_time BETWEEN $1 AND $2")).await;
    support::exec(&mut db, &format!("PREPARE by_int(int, int) AS SELECT count(*) FROM f.metrics WHERE {name} AND $1 <= metric_time AND metric_time <= $2")).await;
    support::exec(&mut db, &format!("PREPARE by_time(timestamptz, timestamptz) AS SELECT count(*) FROM f.metrics_tz WHERE {name} AND metric_time >= $1 AND metric_time < $2")).await;
    support::exec(
        &mut db,
        &format!(
            "PREPARE fixed AS SELECT count(*) FROM f.metrics WHERE {name} AND metric_time BETWEEN {} AND {}",
            minute(0),
            minute(9)
        ),
    )
    .await;
    for round in 0..12u64 {
        let (from, to) = (round * 7 % 100, round * 7 % 100 + round);
        let points = 2 * (round + 1) as i64;
        for statement in ["by_bigint", "by_int"] {
            let sql = format!("EXECUTE {statement}({}, {})", minute(from), minute(to));
            assert_eq!(scalar::<i64>(&mut db, &sql).await, points, "{sql}");
        }
        let sql = format!("EXECUTE by_time(to_timestamp({}), to_timestamp({}))", minute(from), minute(to));
        assert_eq!(scalar::<i64>(&mut db, &sql).await, points - 2, "{sql}: the upper bound is exclusive");
        assert_eq!(scalar::<i64>(&mut db, "EXECUTE fixed").await, 20);
    }

    // A PL/pgSQL function's cached plan, called again and again.
    support::exec(
        &mut db,
        &format!(
            "CREATE FUNCTION points_between(a bigint, b bigint) RETURNS bigint LANGUAGE plpgsql AS $$ \
             BEGIN RETURN (SELECT count(*) FROM f.metrics WHERE {name} AND metric_time BETWEEN a AND b); END $$"
        ),
    )
    .await;
    let calls = format!(
        "SELECT sum(points_between({} + m * 60, {} + m * 60 + 240))::bigint FROM generate_series(0, 19) m",
        prometheus.start, prometheus.start
    );
    assert_eq!(scalar::<i64>(&mut db, &calls).await, 20 * 10, "five minutes of two series, twenty calls");

    // A correlated subquery rescans the foreign table with a new parameter per outer row.
    let correlated = format!(
        "SELECT count(*) FROM generate_series(0, 29) m \
         WHERE (SELECT count(*) FROM f.metrics WHERE {name} AND metric_time = {} + m * 60) = 2",
        prometheus.start
    );
    assert_eq!(scalar::<i64>(&mut db, &correlated).await, 30);

    let same: String = scalar(&mut db, "SELECT pg_postmaster_start_time()::text").await;
    assert_eq!(started, same, "no backend crashed and restarted the server");
}

#[tokio::test]
async fn a_scan_waiting_on_a_silent_prometheus_is_cancelled_by_statement_timeout() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let fx = Fixture::start().await;
    fx.apply_ok(&STACK.replace("BASE_URL", &url).replace("step: 60s", "step: 60s, timeout: 60s")).await;
    let mut db = fx.warehouse().await;
    support::exec(&mut db, "SET statement_timeout = '700ms'").await;
    let started = std::time::Instant::now();
    let error = error_of(&mut db, &format!("SELECT count(*) FROM f.metrics WHERE metric_name = '{SERIES}'")).await;
    assert!(error.contains("canceling statement due to statement timeout"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "cancelled, not left to the 60 s timeout");
    assert_eq!(scalar::<i32>(&mut db, "SELECT 1").await, 1, "the session is usable after the cancel");
}

/// Pushed values that raise an ERROR while they are evaluated (a subquery of two rows; a
/// statement timeout inside an initplan): each is a clean ERROR in a session that goes on, the
/// postmaster never restarts, and the backend's memory stays flat over 100 of them.
#[tokio::test]
async fn a_pushed_value_that_errors_is_a_clean_error_every_time() {
    let prometheus = Prometheus::start(None);
    let (fx, mut db) = setup(&prometheus).await;
    let started: String = scalar(&mut db, "SELECT pg_postmaster_start_time()::text").await;
    let pid: i32 = scalar(&mut db, "SELECT pg_backend_pid()").await;
    let rss_kb = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .parse::<u64>()
            .unwrap()
    };
    let two_rows = "SELECT count(*) FROM f.metrics WHERE metric_name = (SELECT x FROM (VALUES ('a'), ('b')) v(x))";
    let mut after_warm_up = 0;
    for round in 0..100 {
        let error = error_of(&mut db, two_rows).await;
        assert!(error.contains("more than one row returned by a subquery"), "round {round}: {error}");
        if round == 9 {
            after_warm_up = rss_kb();
        }
    }
    let grown = rss_kb().saturating_sub(after_warm_up);
    assert!(grown < 8 * 1024, "the backend grew {grown} kB over 90 failing scans");
    support::exec(&mut db, "SET statement_timeout = '200ms'").await;
    for _ in 0..5 {
        let error =
            error_of(&mut db, "SELECT count(*) FROM f.metrics WHERE metric_name = (SELECT 'x' FROM pg_sleep(5))").await;
        assert!(error.contains("canceling statement due to statement timeout"), "{error}");
    }
    support::exec(&mut db, "RESET statement_timeout").await;
    assert_eq!(scalar::<i32>(&mut db, "SELECT 1").await, 1, "the session goes on");
    let same: String = scalar(&mut db, "SELECT pg_postmaster_start_time()::text").await;
    assert_eq!(started, same, "no backend crashed and restarted the server");
    drop(fx);
}

/// Bounds no row can meet (`>= 'NaN'`, `>= 'infinity'`, `<= '-infinity'`, `= 'NaN'`) give no
/// rows and send nothing: the server here never answers, so a request would hit the timeout.
#[tokio::test]
async fn non_finite_bounds_give_no_rows_without_a_request() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let fx = Fixture::start().await;
    let stack = STACK.replace("BASE_URL", &url).replace("type: bigint}", "type: float8}");
    fx.apply_ok(&stack).await;
    let mut db = fx.warehouse().await;
    support::exec(&mut db, "SET statement_timeout = '5s'").await;
    for (table, bound) in [
        ("metrics", "metric_time >= 'NaN'::float8"),
        ("metrics", "metric_time = 'NaN'::float8"),
        ("metrics", "metric_time > 'Infinity'::float8"),
        ("metrics", "metric_time <= '-Infinity'::float8"),
        ("metrics_tz", "metric_time >= 'infinity'::timestamptz"),
        ("metrics_tz", "metric_time < '-infinity'::timestamptz"),
        ("metrics_tz", "metric_time BETWEEN now() - interval '1 hour' AND '-infinity'"),
    ] {
        let sql = format!("SELECT count(*) FROM f.{table} WHERE metric_name = '{SERIES}' AND {bound}");
        assert_eq!(scalar::<i64>(&mut db, &sql).await, 0, "{bound}");
    }
}

/// A LATERAL scan rescanned 2,000 times, each with other bounds, over an answer of 500 series:
/// each rescan stops and joins the previous reader, so the backend never has more than one
/// reader thread; answers stream, so its peak memory stays small; a cap below an answer ends
/// the query with the cap's ERROR; the postmaster never restarts.
#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_rescans_keep_one_reader_thread_and_bounded_memory() {
    let prometheus = Prometheus::start_with(None, &|start| {
        let mut text = "# HELP pgw_wide Many series.\n# TYPE pgw_wide gauge\n".to_string();
        for series in 0..500 {
            for minute in 0..prometheus::MINUTES {
                text.push_str(&format!("pgw_wide{{n=\"{series}\"}} {minute} {}\n", start + minute * 60));
            }
        }
        text
    });
    let (_fx, mut db) = setup(&prometheus).await;
    let started: String = scalar(&mut db, "SELECT pg_postmaster_start_time()::text").await;
    let pid: i32 = scalar(&mut db, "SELECT pg_backend_pid()").await;
    let status = move |field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix(field)).unwrap();
        line.trim().trim_end_matches(" kB").parse().unwrap()
    };
    let before_kb = status("VmHWM:");
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count());
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            most
        })
    };
    let lateral = format!(
        "SELECT count(*) FROM generate_series(1, 2000) g, LATERAL (SELECT metric_value FROM f.metrics \
         WHERE metric_name = 'pgw_wide' AND metric_time BETWEEN {start} + (g % 60) * 60 AND {start} + (g % 60) * 60 + 3600 \
         LIMIT 1) m",
        start = prometheus.start
    );
    let rows: i64 = scalar(&mut db, &lateral).await;
    assert_eq!(rows, 2000);
    support::exec(&mut db, "ALTER FOREIGN TABLE f.metrics OPTIONS (ADD max_points '5000')").await;
    let error = error_of(&mut db, &lateral.replace("LIMIT 1", "")).await;
    assert!(error.contains("more than 5000 points") && error.contains("max_points"), "{error}");
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let most_threads = sampler.join().unwrap();
    let grown_kb = status("VmHWM:").saturating_sub(before_kb);
    eprintln!("2,000 rescans: at most {most_threads} threads in the backend; peak RSS grew {grown_kb} kB");
    assert!(most_threads <= 2, "the backend and at most one reader thread: {most_threads}");
    assert!(grown_kb < 64 * 1024, "peak RSS grew {grown_kb} kB");
    let same: String = scalar(&mut db, "SELECT pg_postmaster_start_time()::text").await;
    assert_eq!(started, same, "the postmaster never restarted");
}
