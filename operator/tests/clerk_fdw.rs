//! Our `clerk_fdw` (extensions/, installed by `make extensions`) in a real PostgreSQL against
//! the Clerk API double, declared through the engine like any source: every page of every
//! object in any column order, `user_id`/`organization_id` pushed to Clerk's own endpoints
//! (constants, IN lists, parameters of a reused plan), and every failure an ERROR that names
//! the request and never the key.

#[path = "../../extensions/clerk_api/tests/support/clerk.rs"]
mod clerk;
mod support;

use clerk::{ClerkDouble, DAY_MS, FIRST_CREATED_AT, Mode, organizations, users};
use sqlx::{Executor, PgConnection};
use support::{Fixture, scalar};

const KEY: &str = "sk_test_clerk_double_0123456789";

const STACK: &str = r#"
sources:
- name: clerk_server
  wrapper: clerk_fdw
  options: {api_url: "API_URL", timeout: 10s}
  userMapping:
    secretOptions: {api_key: {secretKeyRef: {name: clerk, key: api-key}}}
  tables:
  - name: clerk_users
    schema: f
    columns:
    - {name: user_id, type: text}
    - {name: first_name, type: text}
    - {name: last_name, type: text}
    - {name: email, type: text}
    - {name: gender, type: text}
    - {name: created_at, type: bigint}
    - {name: updated_at, type: bigint}
    - {name: last_sign_in_at, type: bigint}
    - {name: phone_numbers, type: text}
    - {name: username, type: text}
    options: {object: users}
  - name: users_tz
    schema: f
    columns:
    - {name: attrs, type: jsonb}
    - {name: created_at, type: timestamptz}
    - {name: phone_numbers, type: jsonb}
    - {name: user_id, type: text}
    options: {object: users}
  - name: clerk_organizations
    schema: f
    columns:
    - {name: organization_id, type: text}
    - {name: name, type: text}
    - {name: slug, type: text}
    - {name: created_at, type: bigint}
    - {name: updated_at, type: bigint}
    options: {object: organizations}
  - name: clerk_memberships
    schema: f
    columns:
    - {name: user_id, type: text}
    - {name: organization_id, type: text}
    - {name: role, type: text}
    - {name: created_at, type: bigint}
    options: {object: organization_memberships}
"#;

async fn setup(user_count: usize, members: &[usize]) -> (ClerkDouble, Fixture, PgConnection) {
    let (orgs, memberships) = organizations(members);
    let clerk = ClerkDouble::start(KEY, users(user_count), orgs, memberships);
    let fx = Fixture::start().await;
    fx.set_secret("clerk", "api-key", KEY);
    fx.apply_ok(&STACK.replace("API_URL", &clerk.url())).await;
    let db = fx.warehouse().await;
    clerk.take_requests();
    (clerk, fx, db)
}

async fn error_of(db: &mut PgConnection, sql: &str) -> String {
    db.execute(sqlx::AssertSqlSafe(sql.to_string())).await.unwrap_err().to_string()
}

#[tokio::test]
async fn every_row_of_every_object_in_any_column_order() {
    let (_clerk, _fx, mut db) = setup(1234, &[1200, 3]).await;
    let started: String = scalar(&mut db, "SELECT pg_postmaster_start_time()::text").await;
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM f.clerk_users").await, 1234);
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(DISTINCT user_id) FROM f.clerk_users").await, 1234);
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM f.clerk_memberships").await, 1203);
    assert_eq!(
        scalar::<i64>(&mut db, "SELECT count(*) FROM f.clerk_memberships WHERE organization_id = 'org_0'").await,
        1200,
        "an organization of 1,200 members: every page"
    );
    let user_7: String = scalar(
        &mut db,
        "SELECT concat_ws('|', email, phone_numbers, username, created_at, last_sign_in_at IS NULL, first_name) \
         FROM f.clerk_users WHERE user_id = 'user_7'",
    )
    .await;
    let created = FIRST_CREATED_AT + 7 * DAY_MS;
    assert_eq!(user_7, format!("user7@example.com|+15550000007|u7|{created}|t|First7"));
    let reordered: String = scalar(
        &mut db,
        "SELECT concat_ws('|', user_id, attrs->>'username', phone_numbers->>0, extract(epoch from created_at)::bigint) \
         FROM f.users_tz WHERE user_id = 'user_7'",
    )
    .await;
    assert_eq!(reordered, format!("user_7|u7|+15550000007|{}", created / 1000));
    let orgs: String =
        scalar(&mut db, "SELECT string_agg(slug || ':' || name, ',' ORDER BY slug) FROM f.clerk_organizations").await;
    assert_eq!(orgs, "org-0:Org 0,org-1:Org 1");
    let admins: i64 = scalar(
        &mut db,
        "SELECT count(*) FROM f.clerk_memberships m JOIN f.clerk_users u USING (user_id) \
         JOIN f.clerk_organizations o USING (organization_id) WHERE m.role = 'org:admin'",
    )
    .await;
    assert_eq!(admins, 2, "joins across the three objects");
    let weeks: i64 = scalar(
        &mut db,
        "SELECT count(*) FROM (SELECT date_trunc('week', to_timestamp(created_at / 1000)) FROM f.clerk_users GROUP BY 1) w",
    )
    .await;
    assert!((176..=178).contains(&weeks), "1234 daily sign-ups span about 177 weeks: {weeks}");
    let same: String = scalar(&mut db, "SELECT pg_postmaster_start_time()::text").await;
    assert_eq!(started, same, "no backend crashed and restarted the server");
}

#[tokio::test]
async fn ids_are_pushed_to_clerks_own_endpoints() {
    let (clerk, _fx, mut db) = setup(1200, &[5, 7]).await;
    let plan: Vec<String> =
        sqlx::query_scalar("EXPLAIN SELECT * FROM f.clerk_users WHERE user_id IN ('user_3', 'user_9')")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert!(plan.join("\n").contains("Pushed Down: user_id IN"), "{plan:?}");
    let found: String = scalar(
        &mut db,
        "SELECT string_agg(user_id, ',' ORDER BY user_id) FROM f.clerk_users WHERE user_id IN ('user_3', 'user_9')",
    )
    .await;
    assert_eq!(found, "user_3,user_9");
    assert_eq!(clerk.take_requests().0, 1, "one filtered request, not 3 pages");

    db.execute("SET plan_cache_mode = force_generic_plan").await.unwrap();
    db.execute("PREPARE one_user(text) AS SELECT count(*) FROM f.clerk_users WHERE user_id = $1").await.unwrap();
    db.execute("PREPARE members_of(text) AS SELECT count(*) FROM f.clerk_memberships WHERE $1 = organization_id")
        .await
        .unwrap();
    for round in 0..6 {
        let user = format!("EXECUTE one_user('user_{round}')");
        assert_eq!(scalar::<i64>(&mut db, &user).await, 1, "{user}");
        assert_eq!(scalar::<i64>(&mut db, "EXECUTE members_of('org_1')").await, 7);
    }
    let (count, paths) = clerk.take_requests();
    assert_eq!(count, 12, "{paths:?}");
    assert!(
        paths.iter().all(|p| p.contains("user_id=user_") || p.starts_with("/v1/organizations/org_1/memberships")),
        "{paths:?}"
    );
    let memberships_of_user: i64 =
        scalar(&mut db, "SELECT count(*) FROM f.clerk_memberships WHERE user_id = 'user_2'").await;
    assert_eq!(memberships_of_user, 2, "user_2 is in both organizations");
    assert_eq!(scalar::<i64>(&mut db, "SELECT count(*) FROM f.clerk_users WHERE user_id = NULL").await, 0);
}

#[tokio::test]
async fn failures_are_errors_naming_the_request_never_the_key() {
    let (clerk, fx, mut db) = setup(20, &[2]).await;
    let cases = [
        (Mode::ServerError, "GET /users: HTTP 500: Something went wrong on our side (internal_clerk_error)"),
        (Mode::Malformed, "GET /users: Clerk's answer is not the expected JSON"),
        (Mode::AlwaysThrottled, "GET /users: rate limited (HTTP 429) 6 times in a row"),
    ];
    for (mode, expected) in cases {
        clerk.set_mode(mode);
        let error = error_of(&mut db, "SELECT count(*) FROM f.clerk_users").await;
        assert!(error.contains(&format!("clerk_fdw: {expected}")), "{mode:?}: {error}");
    }
    assert_eq!(clerk.take_requests().0, 1 + 1 + 6, "bounded: five retries of a 429, none of anything else");
    support::exec(&mut db, "SET statement_timeout = '700ms'").await;
    let started = std::time::Instant::now();
    let error = error_of(&mut db, "SELECT count(*) FROM f.clerk_users").await;
    assert!(error.contains("canceling statement due to statement timeout"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "a wait on Retry-After answers cancellation");
    support::exec(&mut db, "RESET statement_timeout").await;
    clerk.take_requests();
    clerk.set_mode(Mode::Normal);

    fx.set_secret("clerk", "api-key", "sk_test_WRONG_KEY_987");
    fx.apply_ok(&STACK.replace("API_URL", &clerk.url())).await;
    let error = error_of(&mut db, "SELECT * FROM f.clerk_organizations").await;
    assert!(
        error.contains("GET /organizations: HTTP 401: Unable to authenticate the request")
            && error.contains("authentication_invalid"),
        "{error}"
    );
    fx.apply_ok(&STACK.replace("API_URL", "http://127.0.0.1:9/v1")).await;
    let error = error_of(&mut db, "SELECT * FROM f.clerk_memberships").await;
    assert!(error.contains("GET /organization_memberships: cannot reach Clerk"), "{error}");
    for secret in [KEY, "sk_test_WRONG_KEY_987"] {
        assert!(!error.contains(secret) && !fx.server.log().contains(secret), "{secret} leaked");
    }

    let scan_time = [
        (
            "CREATE FOREIGN TABLE f.bad_name (user_id text, nickname text) SERVER clerk_server OPTIONS (object 'users')",
            "SELECT * FROM f.bad_name",
            "foreign table bad_name: object users has no column nickname",
        ),
        (
            "CREATE FOREIGN TABLE f.bad_type (created_at date) SERVER clerk_server OPTIONS (object 'users')",
            "SELECT * FROM f.bad_type",
            "column created_at cannot be date; it can be bigint (Clerk's epoch milliseconds) or timestamptz",
        ),
        (
            "CREATE SERVER keyless FOREIGN DATA WRAPPER clerk_fdw; CREATE FOREIGN TABLE f.keyless (user_id text) SERVER keyless OPTIONS (object 'users')",
            "SELECT * FROM f.keyless",
            "server keyless has no api_key: create a user mapping",
        ),
    ];
    for (setup_sql, query, expected) in scan_time {
        support::exec(&mut db, setup_sql).await;
        let error = error_of(&mut db, query).await;
        assert!(error.contains(expected), "{query}: {error}");
    }
    let validator = [
        (
            "CREATE SERVER v1 FOREIGN DATA WRAPPER clerk_fdw OPTIONS (api_urll 'http://x')",
            "\"api_urll\" is not an option of a server",
        ),
        (
            "CREATE SERVER v2 FOREIGN DATA WRAPPER clerk_fdw OPTIONS (api_url 'api.clerk.com')",
            "api_url \"api.clerk.com\" must be an http:// or https:// URL",
        ),
        (
            "CREATE SERVER v3 FOREIGN DATA WRAPPER clerk_fdw OPTIONS (timeout 'soon')",
            "timeout \"soon\" is not a duration",
        ),
        (
            "CREATE SERVER v6 FOREIGN DATA WRAPPER clerk_fdw OPTIONS (timeout '1h')",
            "timeout \"1h\" is not a duration of at most 10m",
        ),
        (
            "CREATE SERVER v7 FOREIGN DATA WRAPPER clerk_fdw OPTIONS (api_url 'https://admin:hunter2@api.clerk.com')",
            "api_url \"https://<credentials>@api.clerk.com\" must be an http:// or https:// URL without credentials",
        ),
        (
            "CREATE FOREIGN TABLE f.v4 (user_id text) SERVER clerk_server OPTIONS (object 'sessions')",
            "object \"sessions\" is not one clerk_fdw knows",
        ),
        ("CREATE FOREIGN TABLE f.v5 (user_id text) SERVER clerk_server", "needs the option object"),
        ("CREATE USER MAPPING FOR CURRENT_USER SERVER keyless OPTIONS (api_key '')", "api_key must not be empty"),
        (
            "CREATE USER MAPPING FOR CURRENT_USER SERVER keyless OPTIONS (token 'x')",
            "\"token\" is not an option of a user mapping",
        ),
    ];
    for (sql, expected) in validator {
        let error = error_of(&mut db, sql).await;
        assert!(error.contains(expected), "{sql}: {error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
