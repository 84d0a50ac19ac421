//! The client against a real Prometheus with known series: exact points, inclusive bounds,
//! fractional times, auth, and Prometheus's own errors.

mod support;

use std::time::Duration;

use prometheus_query::{Auth, Client, ClientError, RangeQuery};
use support::prometheus::{Prometheus, MINUTES, SERIES};

fn query(prometheus: &Prometheus, from_minute: u64, to_minute: u64, step: f64) -> RangeQuery {
    RangeQuery {
        query: SERIES.into(),
        start: (prometheus.start + from_minute * 60) as f64,
        end: (prometheus.start + to_minute * 60) as f64,
        step,
    }
}

#[test]
fn known_series_come_back_point_for_point_with_samples_at_both_bounds() {
    let prometheus = Prometheus::start(None);
    let client = Client::new(&prometheus.url(), Auth::None, Duration::from_secs(10)).unwrap();
    let mut series = client.query_range(&query(&prometheus, 10, 20, 60.0)).unwrap();
    series.sort_by(|a, b| a.labels["instance"].as_str().cmp(&b.labels["instance"].as_str()));
    assert_eq!(series.len(), 2);
    assert_eq!(
        series[0].labels,
        serde_json::json!({"__name__": SERIES, "instance": "a", "job": "pgw"}).as_object().unwrap().clone()
    );
    let expected: Vec<(f64, f64)> = (10..=20).map(|m| ((prometheus.start + m * 60) as f64, m as f64)).collect();
    assert_eq!(series[0].points, expected, "both bounds included, one point a minute");
    assert_eq!(series[1].points.last(), Some(&((prometheus.start + 1200) as f64, 200.0)));

    let fractional = RangeQuery {
        start: prometheus.start as f64 + 600.5,
        end: prometheus.start as f64 + 660.5,
        ..query(&prometheus, 0, 0, 30.0)
    };
    let times: Vec<f64> = client.query_range(&fractional).unwrap()[0].points.iter().map(|p| p.0).collect();
    let base = prometheus.start as f64;
    assert_eq!(times, [base + 600.5, base + 630.5, base + 660.5], "fractional evaluation times are kept");

    let expression = RangeQuery { query: format!("sum({SERIES})"), ..query(&prometheus, 5, 5, 60.0) };
    let summed = client.query_range(&expression).unwrap();
    assert_eq!((summed[0].labels.len(), summed[0].points[0].1), (0, 55.0), "an expression's series has no name");
    assert_eq!(
        client.query_range(&query(&prometheus, MINUTES + 30, MINUTES + 40, 60.0)).unwrap().len(),
        0,
        "past the data"
    );
}

#[test]
fn prometheus_errors_are_returned_in_its_own_words() {
    let prometheus = Prometheus::start(None);
    let client = Client::new(&prometheus.url(), Auth::None, Duration::from_secs(10)).unwrap();
    let bad = RangeQuery { query: "sum(".into(), ..query(&prometheus, 0, 1, 60.0) };
    let error = client.query_range(&bad).unwrap_err().to_string();
    assert!(error.starts_with("GET /api/v1/query_range: Prometheus answered bad_data:"), "{error}");
    let too_fine = query(&prometheus, 0, MINUTES, 0.5);
    let error = client.query_range(&too_fine).unwrap_err().to_string();
    assert!(error.contains("exceeded maximum resolution of 11,000 points"), "{error}");
}

#[test]
fn basic_auth_is_sent_and_a_refusal_is_an_error_without_the_password() {
    let prometheus = Prometheus::start(Some(("reader", "s3cret-pw")));
    let q = query(&prometheus, 0, 1, 60.0);
    let anonymous = Client::new(&prometheus.url(), Auth::None, Duration::from_secs(10)).unwrap();
    assert!(matches!(anonymous.query_range(&q), Err(ClientError::Http { status: 401, .. })));
    let wrong = Auth::Basic { username: "reader".into(), password: "wrong-pw".into() };
    let error = Client::new(&prometheus.url(), wrong, Duration::from_secs(10)).unwrap().query_range(&q).unwrap_err();
    assert!(
        matches!(error, ClientError::Http { status: 401, .. }) && !error.to_string().contains("wrong-pw"),
        "{error}"
    );
    let right = Auth::Basic { username: "reader".into(), password: "s3cret-pw".into() };
    let client = Client::new(&prometheus.url(), right, Duration::from_secs(10)).unwrap();
    assert_eq!(client.query_range(&q).unwrap().len(), 2);
}

#[test]
fn an_answer_past_max_points_ends_with_the_caps_error_and_an_unwanted_one_stops() {
    let prometheus = Prometheus::start(None);
    let client = Client::new(&prometheus.url(), Auth::None, Duration::from_secs(10)).unwrap();
    // Two series of 21 points each: 42.
    let asked = query(&prometheus, 0, 20, 60.0);
    assert_eq!(client.query_range(&asked).unwrap().iter().map(|s| s.points.len()).sum::<usize>(), 42);
    let capped = Client::new(&prometheus.url(), Auth::None, Duration::from_secs(10)).unwrap().with_max_points(41);
    let error = capped.query_range(&asked).unwrap_err();
    assert_eq!(error, ClientError::TooManyPoints { max: 41 });
    assert!(error.to_string().contains("raise max_points on the server or the foreign table"), "{error}");
    assert_eq!(
        client.with_max_points(42).query_range(&asked).unwrap().len(),
        2,
        "the cap is a maximum, reached exactly"
    );

    let unwanted = Client::new(&prometheus.url(), Auth::None, Duration::from_secs(10)).unwrap();
    let mut handed = 0;
    let error = unwanted.query_range_each(
        &asked,
        &mut |_| {
            handed += 1;
            true
        },
        &|| false,
    );
    assert!(error.is_err() && handed == 0, "{error:?}");
}
