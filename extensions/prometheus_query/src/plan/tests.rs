use super::*;

const NOW: f64 = 1_700_000_000.0;

fn name(q: &str) -> Bound {
    Bound::Name(q.into())
}

fn time(op: &str, at: f64) -> Bound {
    Bound::Time(Op::parse(op).unwrap(), at)
}

fn request(bounds: &[Bound]) -> RangeQuery {
    plan(bounds, &Settings::default(), NOW).unwrap().request.unwrap()
}

#[test]
fn every_bound_shape_narrows_the_range_inclusively() {
    let cases: &[(&str, Vec<Bound>, f64, f64)] = &[
        (">= and <=", vec![time(">=", 100.0), time("<=", 200.0)], 100.0, 200.0),
        ("> and < fetch the bounds too; Postgres drops them", vec![time(">", 100.0), time("<", 200.0)], 100.0, 200.0),
        ("BETWEEN arrives as >= and <=", vec![time(">=", 100.0), time("<=", 200.0)], 100.0, 200.0),
        (
            "the tightest of several bounds",
            vec![time(">", 50.0), time(">=", 100.0), time("<", 300.0), time("<=", 200.0)],
            100.0,
            200.0,
        ),
        ("equality is a one-instant range", vec![time("=", 150.5)], 150.5, 150.5),
        ("no upper bound ends now", vec![time(">=", NOW - 60.0)], NOW - 60.0, NOW),
        ("fractional seconds are kept", vec![time(">=", 100.25), time("<=", 100.75)], 100.25, 100.75),
    ];
    for (what, bounds, start, end) in cases {
        let mut with_name = vec![name("up")];
        with_name.extend(bounds.iter().cloned());
        let r = request(&with_name);
        assert_eq!((r.start, r.end), (*start, *end), "{what}");
        assert_eq!(r.query, "up", "{what}");
    }
}

#[test]
fn no_lower_bound_reads_the_default_window_and_says_so() {
    let planned = plan(&[name("up")], &Settings::default(), NOW).unwrap();
    let r = planned.request.unwrap();
    assert_eq!((r.start, r.end), (NOW - 3600.0, NOW));
    assert!(planned.notice.unwrap().contains("no lower bound on metric_time"));
    let upper_only = plan(&[name("up"), time("<", 1000.0)], &Settings::default(), NOW).unwrap();
    assert_eq!(upper_only.request.map(|r| (r.start, r.end)), Some((1000.0 - 3600.0, 1000.0)));
}

#[test]
fn the_derived_step_keeps_every_range_under_the_point_limit() {
    for range in [1.0, 59.0, 3600.0, 86_400.0, 30.0 * 86_400.0, 400.0 * 86_400.0] {
        let r = request(&[name("up"), time(">=", NOW - range), time("<=", NOW)]);
        let points = (range / r.step).floor() + 1.0;
        assert!(points <= MAX_POINTS, "{range}s: step {} gives {points} points", r.step);
        assert!(r.step >= 1.0 && r.step.fract() == 0.0, "{range}s: step {}", r.step);
    }
    assert_eq!(request(&[name("up"), time(">=", NOW - 86_400.0)]).step, 8.0, "a day at 8 s: 10,801 points");
}

#[test]
fn a_configured_step_is_used_and_one_too_fine_is_refused_before_any_request() {
    let settings = Settings { step: Some(60.0), ..Settings::default() };
    assert_eq!(plan(&[name("up"), time(">=", NOW - 86_400.0)], &settings, NOW).unwrap().request.unwrap().step, 60.0);
    let fine = Settings { step: Some(1.0), ..Settings::default() };
    let error = plan(&[name("up"), time(">=", NOW - 86_400.0)], &fine, NOW).unwrap_err();
    assert_eq!(error, PlanError::TooManyPoints { step: 1.0, range: 86_400.0, points: 86_401 });
    assert_eq!(
        plan(&[name("up")], &Settings { step: Some(0.0), ..Settings::default() }, NOW),
        Err(PlanError::BadStep(0.0))
    );
}

#[test]
fn the_metric_must_be_named_once() {
    assert_eq!(plan(&[time(">", 1.0)], &Settings::default(), NOW), Err(PlanError::NoMetric));
    assert_eq!(
        plan(&[name("a"), name("b")], &Settings::default(), NOW),
        Err(PlanError::TwoMetrics("a".into(), "b".into()))
    );
    assert!(plan(
        &[name("rate(http_requests_total[5m])"), name("rate(http_requests_total[5m])")],
        &Settings::default(),
        NOW
    )
    .is_ok());
}

#[test]
fn contradictory_bounds_fetch_nothing() {
    let planned = plan(&[name("up"), time(">", 200.0), time("<", 100.0)], &Settings::default(), NOW).unwrap();
    assert_eq!(planned.request, None);
}

#[test]
fn non_finite_bounds_are_never_sent() {
    let settings = Settings::default();
    let fetch = |bound: Bound| plan(&[name("up"), time(">=", NOW - 600.0), bound], &settings, NOW).unwrap().request;
    for (op, at) in [
        (Op::Ge, f64::NAN),
        (Op::Gt, f64::INFINITY),
        (Op::Eq, f64::NAN),
        (Op::Eq, f64::NEG_INFINITY),
        (Op::Le, f64::NEG_INFINITY),
        (Op::Lt, f64::NEG_INFINITY),
    ] {
        assert_eq!(fetch(Bound::Time(op, at)), None, "{op:?} {at}: no row can match");
    }
    let unbounded = fetch(Bound::Time(Op::Le, NOW)).unwrap();
    for (op, at) in [(Op::Le, f64::NAN), (Op::Lt, f64::INFINITY), (Op::Gt, f64::NEG_INFINITY)] {
        assert_eq!(fetch(Bound::Time(op, at)).as_ref(), Some(&unbounded), "{op:?} {at}: every row matches");
    }
    assert!(unbounded.start.is_finite() && unbounded.end.is_finite());
}
