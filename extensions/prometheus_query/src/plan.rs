//! From the scan's restrictions to one `query_range` request.
//!
//! `metric_name = '<PromQL>'` names what to evaluate (any expression). Bounds on `metric_time`
//! (`>`, `>=`, `<`, `<=`, `BETWEEN`, constants, parameters, `now()`-relative values, all already
//! evaluated to epoch seconds by the caller) narrow the range; Postgres re-checks every
//! restriction on the rows, so an exclusive bound may be fetched inclusively. Without a lower
//! bound the range is the last [`Settings::default_window`] seconds, and the plan says so.

/// Prometheus refuses a range query of more points than this per series.
pub const MAX_POINTS: f64 = 11_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn parse(operator: &str) -> Option<Op> {
        Some(match operator {
            "=" => Op::Eq,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }
}

/// One restriction of the scan, its value already read by the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// `metric_name = '<PromQL>'`.
    Name(String),
    /// `metric_time <op> <epoch seconds>`.
    Time(Op, f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Seconds between evaluations; derived from the range when unset.
    pub step: Option<f64>,
    /// The range, ending now, of a scan with no lower time bound.
    pub default_window: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { step: None, default_window: 3600.0 }
    }
}

/// One `GET /api/v1/query_range`.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    pub query: String,
    pub start: f64,
    pub end: f64,
    pub step: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `None` when the bounds leave nothing to fetch (e.g. `metric_time < 10 AND metric_time > 20`).
    pub request: Option<RangeQuery>,
    /// What the user should know about the plan (the default window).
    pub notice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("prometheus_fdw needs the metric to read: add WHERE metric_name = '<metric or PromQL expression>'")]
    NoMetric,
    #[error("prometheus_fdw reads one metric per scan; the query names {0:?} and {1:?}")]
    TwoMetrics(String, String),
    #[error(
        "step {step}s over {range}s would be {points} points per series, above Prometheus's limit of 11000; \
         raise the server's step option or narrow metric_time"
    )]
    TooManyPoints { step: f64, range: f64, points: u64 },
    #[error("step must be a positive number of seconds, not {0}")]
    BadStep(f64),
}

pub fn plan(bounds: &[Bound], settings: &Settings, now: f64) -> Result<Plan, PlanError> {
    let mut query: Option<&str> = None;
    let (mut start, mut end): (Option<f64>, Option<f64>) = (None, None);
    let mut nothing = false;
    for bound in bounds {
        match bound {
            // Never sent: NaN sorts above every number in Postgres, as +infinity does, so such a
            // bound either holds for every row (no bound) or for none.
            Bound::Time(op, at) if !at.is_finite() => {
                let above_all = at.is_nan() || *at > 0.0;
                nothing |= match op {
                    Op::Eq => true,
                    Op::Gt | Op::Ge => above_all,
                    Op::Lt | Op::Le => !above_all,
                };
            }
            Bound::Name(name) => match query {
                Some(existing) if existing != name => return Err(PlanError::TwoMetrics(existing.into(), name.clone())),
                _ => query = Some(name),
            },
            Bound::Time(op, at) => {
                let raise = |current: Option<f64>| Some(current.map_or(*at, |c| c.max(*at)));
                let lower = |current: Option<f64>| Some(current.map_or(*at, |c| c.min(*at)));
                match op {
                    Op::Gt | Op::Ge => start = raise(start),
                    Op::Lt | Op::Le => end = lower(end),
                    Op::Eq => {
                        start = raise(start);
                        end = lower(end);
                    }
                }
            }
        }
    }
    let query = query.ok_or(PlanError::NoMetric)?;
    let end = end.unwrap_or(now);
    let (start, notice) = match start {
        Some(start) => (start, None),
        None => {
            let start = end - settings.default_window;
            let notice = format!(
                "prometheus_fdw: no lower bound on metric_time; reading the {} seconds up to {end}",
                settings.default_window
            );
            (start, Some(notice))
        }
    };
    if nothing || start > end {
        return Ok(Plan { request: None, notice });
    }
    let range = end - start;
    let step = match settings.step {
        Some(step) if step.is_nan() || step <= 0.0 => return Err(PlanError::BadStep(step)),
        Some(step) => {
            let points = (range / step).floor() + 1.0;
            if points > MAX_POINTS {
                return Err(PlanError::TooManyPoints { step, range, points: points as u64 });
            }
            step
        }
        // The smallest whole number of seconds that keeps the range under the limit.
        None => (range / (MAX_POINTS - 1.0)).ceil().max(1.0),
    };
    Ok(Plan { request: Some(RangeQuery { query: query.to_string(), start, end, step }), notice })
}

#[cfg(test)]
mod tests;
