//! `make bench`: our FDWs against their floors, both in this process on this machine.
//! - prometheus_fdw: 100 series × 1,440 points (a day at one minute) read through the foreign
//!   table, every column produced, vs fetching the same `query_range` JSON over HTTP;
//! - clerk_fdw: 5,000 users across 10 pages read through the foreign table, every column
//!   produced, vs the same 10 HTTP requests.
//!
//! Medians of 11 runs; the ratio is what counts (target <= 1.5x each floor).

#[path = "../../extensions/clerk_api/tests/support/clerk.rs"]
mod clerk;
#[path = "../../extensions/prometheus_query/tests/support/prometheus.rs"]
mod prometheus;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{Fixture, scalar};

const SERIES: usize = 100;
const POINTS: u64 = 1440;
const USERS: usize = 5000;
const CLERK_KEY: &str = "sk_test_bench";
const RUNS: usize = 11;

/// `pgw_bench{series="0".."99"}`: one sample a minute for the day before the harness's start.
fn bench_series(start: u64) -> String {
    let first = start + prometheus::MINUTES * 60 - POINTS * 60;
    let mut text = "# TYPE pgw_bench gauge\n".to_string();
    for series in 0..SERIES {
        for minute in 0..POINTS {
            text.push_str(&format!("pgw_bench{{series=\"{series}\"}} {} {}\n", minute * 7 % 1000, first + minute * 60));
        }
    }
    text
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn timed<T>(mut run: impl FnMut() -> T) -> (Duration, T) {
    let started = Instant::now();
    let out = run();
    (started.elapsed(), out)
}

fn http_get(agent: &ureq::Agent, url: &str, bearer: Option<&str>) -> usize {
    let mut request = agent.get(url);
    if let Some(token) = bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().unwrap();
    response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap().len()
}

#[tokio::main]
async fn main() {
    let prometheus = prometheus::Prometheus::start_with(None, &bench_series);
    let clerk = clerk::ClerkDouble::start(CLERK_KEY, clerk::users(USERS), Vec::new(), Vec::new());
    let fx = Fixture::start().await;
    fx.set_secret("clerk", "api-key", CLERK_KEY);
    let spec = format!(
        "sources:\n\
         - name: prom\n  wrapper: prometheus_fdw\n  options: {{base_url: \"{}\", step: 60s}}\n  tables:\n  \
         - {{name: metrics, schema: f, options: {{object: metrics}}, columns: [{{name: metric_name, type: text}}, \
           {{name: metric_labels, type: jsonb}}, {{name: metric_time, type: bigint}}, {{name: metric_value, type: float8}}]}}\n\
         - name: clerk\n  wrapper: clerk_fdw\n  options: {{api_url: \"{}\"}}\n  \
           userMapping: {{secretOptions: {{api_key: {{secretKeyRef: {{name: clerk, key: api-key}}}}}}}}\n  tables:\n  \
         - {{name: users, schema: f, options: {{object: users}}, columns: [{{name: user_id, type: text}}, \
           {{name: first_name, type: text}}, {{name: last_name, type: text}}, {{name: email, type: text}}, \
           {{name: created_at, type: bigint}}, {{name: last_sign_in_at, type: bigint}}, {{name: phone_numbers, type: text}}, \
           {{name: username, type: text}}]}}\n",
        prometheus.url(),
        clerk.url()
    );
    fx.apply_ok(&spec).await;
    let mut db = fx.warehouse().await;
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();

    let first = prometheus.start + prometheus::MINUTES * 60 - POINTS * 60;
    let last = first + (POINTS - 1) * 60;
    let floor_url = format!("{}/api/v1/query_range?query=pgw_bench&start={first}&end={last}&step=60", prometheus.url());
    let through_fdw = format!(
        "SELECT count(*) FROM (SELECT metric_name, metric_labels, metric_time, metric_value FROM f.metrics \
         WHERE metric_name = 'pgw_bench' AND metric_time BETWEEN {first} AND {last} OFFSET 0) rows"
    );
    let (mut floor, mut fdw) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (took, bytes) = timed(|| http_get(&agent, &floor_url, None));
        assert!(bytes > 1_000_000, "the floor read the whole answer");
        floor.push(took);
        let started = Instant::now();
        let rows: i64 = scalar(&mut db, &through_fdw).await;
        fdw.push(started.elapsed());
        assert_eq!(rows, (SERIES as u64 * POINTS) as i64);
    }
    let (prom_floor, prom_fdw) = (median(floor), median(fdw));
    println!(
        "prometheus_fdw: {SERIES} series x {POINTS} points: floor (query_range JSON over HTTP) {prom_floor:.2?}, \
         through the FDW {prom_fdw:.2?} = {:.2}x floor (target <= 1.5x)",
        prom_fdw.as_secs_f64() / prom_floor.as_secs_f64()
    );

    let pages: Vec<String> = (0..USERS / 500)
        .map(|page| format!("{}/users?order_by=%2Bcreated_at&limit=500&offset={}", clerk.url(), page * 500))
        .collect();
    let through_fdw = "SELECT count(*) FROM (SELECT * FROM f.users OFFSET 0) rows";
    let (mut floor, mut fdw) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        floor.push(timed(|| pages.iter().map(|url| http_get(&agent, url, Some(CLERK_KEY))).sum::<usize>()).0);
        let started = Instant::now();
        let rows: i64 = scalar(&mut db, through_fdw).await;
        fdw.push(started.elapsed());
        assert_eq!(rows, USERS as i64);
    }
    let (clerk_floor, clerk_fdw) = (median(floor), median(fdw));
    println!(
        "clerk_fdw: {USERS} users in {} pages: floor (the same GETs) {clerk_floor:.2?}, through the FDW {clerk_fdw:.2?} \
         = {:.2}x floor (target <= 1.5x)",
        pages.len(),
        clerk_fdw.as_secs_f64() / clerk_floor.as_secs_f64()
    );
}
