//! The seed's whole warehouse under `pgwarehouse local`: the customer-warehouse example with its
//! three sources live — the seeded control-plane database (postgres_fdw), a real Prometheus
//! (prometheus_fdw) and the Clerk API double (clerk_fdw) — converges, pg_cron's jobs fill the
//! warehouse, and the seed's three questions are answered from it.

use std::time::Instant;

use pgwarehouse::secrets::{SecretsDir, resolve};
use pgwarehouse::validate::validate;
use sqlx::{Connection, PgConnection};

#[path = "../../extensions/clerk_api/tests/support/clerk.rs"]
mod clerk;
#[path = "../../extensions/prometheus_query/tests/support/prometheus.rs"]
mod prometheus;
mod scenario;
#[path = "../../operator/tests/support/mod.rs"]
mod support;

use prometheus::{MINUTES, Prometheus};
use scenario::{Down, Steps, examples};
use support::scalar;

const CLERK_KEY: &str = "sk_test_e2e_customer_warehouse";
/// CPU seconds per second of each control-plane instance (ids 1 to 6): globex's production
/// instance (4) is the busiest, so globex is the most active customer.
const CPU_RATES: [u64; 6] = [1, 3, 1, 8, 1, 1];

fn replaced(text: String, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has {from:?}");
    text.replace(from, to)
}

/// Usage counters per instance, one sample a minute.
fn cpu_usage(start: u64) -> String {
    let mut text = "# TYPE container_cpu_usage_seconds counter\n".to_string();
    for (index, rate) in CPU_RATES.iter().enumerate() {
        for minute in 0..MINUTES {
            text.push_str(&format!(
                "container_cpu_usage_seconds_total{{instance_id=\"{}\",namespace=\"pgw\"}} {} {}\n",
                index + 1,
                minute * 60 * rate,
                start + minute * 60
            ));
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_warehouse_answers_its_three_questions() {
    let mut steps = Steps(Instant::now());
    let prometheus = Prometheus::start_with(None, &cpu_usage);
    let (organizations, memberships) = clerk::organizations(&[3, 2]);
    let clerk = clerk::ClerkDouble::start(CLERK_KEY, clerk::users(60), organizations, memberships);
    steps.done("a real Prometheus with usage counters, and the Clerk API double");

    let mut text = std::fs::read_to_string(examples().join("customer-warehouse.yaml")).unwrap();
    text = replaced(
        text,
        "options: {host: control-plane.db.internal, port: \"5432\", dbname: controlplane, sslmode: require}",
        "sameServer: true\n      options: {dbname: controlplane}",
    );
    text = replaced(text, "options: {user: warehouse_reader}", "options: {user: cp_reader}");
    text = replaced(text, "http://prometheus.monitoring.svc:9090", &prometheus.url());
    text = replaced(
        text,
        "wrapper: clerk_fdw\n",
        &format!("wrapper: clerk_fdw\n      options: {{api_url: \"{}\"}}\n", clerk.url()),
    );
    text = replaced(text, "schedule: \"*/15 * * * *\"", "schedule: \"* * * * *\"");
    text = replaced(text, "schedule: \"*/5 * * * *\"", "schedule: \"* * * * *\"");
    let stack = validate(&pgwarehouse::template::load_manifest(&text).unwrap()).unwrap();

    let dir = tempfile::Builder::new().prefix("pgw-e2e-seed-").tempdir_in("/tmp").unwrap();
    let secrets_dir = dir.path().join("secrets");
    for (name, key, value) in [
        ("control-plane", "password", "demo-reader-pw"),
        ("analyst", "password", "demo-analyst-pw"),
        ("clerk", "api-key", CLERK_KEY),
    ] {
        std::fs::create_dir_all(secrets_dir.join(name)).unwrap();
        std::fs::write(secrets_dir.join(name).join(key), value).unwrap();
    }
    let secrets = resolve(&stack, &SecretsDir(secrets_dir)).unwrap();
    let options = scenario::local_options(dir.path(), "warehouse");
    let port = options.port.unwrap();
    let _down = Down(&stack, &options);
    let (_local, password) = scenario::up_converged(&stack, &secrets, &options).await;
    steps.done("local up: the customer-warehouse example converges with all three sources");

    let url = format!("postgres://postgres:{password}@127.0.0.1:{port}/warehouse");
    let mut db = PgConnection::connect(&url).await.unwrap();
    for refresh in ["clusters", "metrics", "series"] {
        scenario::wait_for_cron_job(&mut db, &format!("pgwarehouse-refresh-{refresh}")).await;
    }
    let series: i64 = scalar(&mut db, "SELECT count(*) FROM metric_series").await;
    assert_eq!(series, 6, "one series per instance, from Prometheus");
    assert!(scalar::<i64>(&mut db, "SELECT count(*) FROM metric_values").await >= 6 * 40, "about an hour of minutes");
    steps.done("pg_cron ran the clusters, metrics and series refreshes: the warehouse is filled");

    let instances: i64 = scalar(&mut db, "SELECT count(*) FROM ingested_clusters WHERE entity_type = 'postgres'").await;
    assert_eq!(instances, 6, "how many Postgres instances are deployed");
    let most_active: String = scalar(
        &mut db,
        "WITH usage AS ( \
           SELECT (s.labels->>'instance_id')::bigint AS instance_id, max(v.value) - min(v.value) AS cpu_seconds \
           FROM metric_values v JOIN metric_series s USING (id) GROUP BY 1) \
         SELECT c.organization_name FROM usage u JOIN ingested_clusters c USING (instance_id) \
         GROUP BY 1 ORDER BY sum(u.cpu_seconds) DESC LIMIT 1",
    )
    .await;
    assert_eq!(most_active, "globex", "who is the most active customer");
    let weekly: String = scalar(
        &mut db,
        "SELECT string_agg(signups::text, ',' ORDER BY week) FROM ( \
           SELECT date_trunc('week', to_timestamp(created_at / 1000.0) AT TIME ZONE 'UTC') AS week, count(*) AS signups \
           FROM f.clerk_users GROUP BY 1) w",
    )
    .await;
    let counts: Vec<i64> = weekly.split(',').map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts.iter().sum::<i64>(), 60, "sign-ups per week: {weekly}");
    assert!(counts[1..counts.len() - 1].iter().all(|c| *c == 7), "one sign-up a day: {weekly}");
    let members: i64 = scalar(
        &mut db,
        "SELECT count(*) FROM f.clerk_memberships m JOIN f.clerk_users u USING (user_id) \
         JOIN f.clerk_organizations o USING (organization_id)",
    )
    .await;
    assert_eq!(members, 5);
    steps.done("answered: 6 instances deployed, globex most active, 7 sign-ups a week");

    let analyst_url = format!("postgres://analyst:demo-analyst-pw@127.0.0.1:{port}/warehouse");
    let mut analyst = PgConnection::connect(&analyst_url).await.unwrap();
    let visible: String = scalar(
        &mut analyst,
        "SELECT concat_ws(' ', (SELECT string_agg(array_to_string(srvoptions, ','), ';') FROM pg_foreign_server), \
                (SELECT string_agg(array_to_string(umoptions, ','), ';') FROM pg_user_mappings))",
    )
    .await;
    assert!(!visible.contains(CLERK_KEY) && !visible.contains("demo-reader-pw"), "{visible}");
    assert_eq!(scalar::<i64>(&mut analyst, "SELECT count(*) FROM f.clerk_users").await, 60);
    steps.done("the analyst reads every source and sees no credential");
}
