//! `prometheus_fdw`: thin glue between Postgres (pgrx + supabase-wrappers) and the pure
//! [`prometheus_query`] crate. `begin_scan` wires three steps together — restrictions → one
//! request plan, the request, the answer → series — and `iter_scan` hands out one row per point,
//! each requested column filled by its name and checked type, in exactly the order Postgres
//! asked for them (any subset, any order, none for `count(*)`).

mod options;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use prometheus_query::{Bound, Client, ClientError, Op, PlanError, Series, Settings};
use supabase_wrappers::prelude::*;

use options::{OptionsError, ServerConfig};

pgrx::pg_module_magic!();

/// Seconds between the Unix epoch and Postgres's (2000-01-01).
const POSTGRES_EPOCH: f64 = 946_684_800.0;

#[derive(Debug, thiserror::Error)]
enum PrometheusFdwError {
    #[error("{0}")]
    Options(#[from] OptionsError),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error(
        "column {name} cannot be {type_name}: prometheus_fdw supplies metric_name text, metric_labels jsonb, \
         metric_time bigint, double precision or timestamptz, and metric_value double precision"
    )]
    Column { name: String, type_name: String },
}

impl From<PrometheusFdwError> for ErrorReport {
    fn from(error: PrometheusFdwError) -> Self {
        ErrorReport::new(PgSqlErrorCode::ERRCODE_FDW_ERROR, format!("prometheus_fdw: {error}"), "")
    }
}

type Result<T> = std::result::Result<T, PrometheusFdwError>;

/// What one requested column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Name,
    Labels,
    TimeSeconds,
    TimeFloat,
    TimeTimestamptz,
    Value,
}

fn output(column: &Column) -> Result<Output> {
    let t = column.type_oid;
    Ok(match column.name.as_str() {
        "metric_name" if t == pg_sys::TEXTOID || t == pg_sys::VARCHAROID => Output::Name,
        "metric_labels" if t == pg_sys::JSONBOID => Output::Labels,
        "metric_time" if t == pg_sys::INT8OID => Output::TimeSeconds,
        "metric_time" if t == pg_sys::FLOAT8OID => Output::TimeFloat,
        "metric_time" if t == pg_sys::TIMESTAMPTZOID => Output::TimeTimestamptz,
        "metric_value" if t == pg_sys::FLOAT8OID => Output::Value,
        _ => {
            let type_name = unsafe { std::ffi::CStr::from_ptr(pg_sys::format_type_be(t)) };
            return Err(PrometheusFdwError::Column {
                name: column.name.clone(),
                type_name: type_name.to_string_lossy().into_owned(),
            });
        }
    })
}

/// A restriction's value as epoch seconds, whatever the column's type.
fn seconds(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::I64(v) => Some(*v as f64),
        Cell::I32(v) => Some(f64::from(*v)),
        Cell::F64(v) => Some(*v),
        Cell::Numeric(v) => v.clone().try_into().ok(),
        Cell::Timestamptz(t) => Some(i64::from(*t) as f64 / 1e6 + POSTGRES_EPOCH),
        _ => None,
    }
}

/// A restriction with its value: a constant, or a parameter evaluated for this execution.
fn qual_cell(qual: &Qual) -> Option<Cell> {
    let value = match &qual.param {
        Some(param) => param.eval_value.lock().ok()?.clone()?,
        None => qual.value.clone(),
    };
    match value {
        Value::Cell(cell) => Some(cell),
        Value::Array(_) => None,
    }
}

/// The restrictions the request can use; Postgres re-checks all of them on the rows.
fn bounds(quals: &[Qual]) -> Vec<Bound> {
    quals
        .iter()
        .filter(|q| !q.use_or)
        .filter_map(|q| {
            let op = Op::parse(&q.operator)?;
            match (q.field.as_str(), qual_cell(q)?) {
                ("metric_name", Cell::String(name)) if op == Op::Eq => Some(Bound::Name(name)),
                ("metric_time", cell) => seconds(&cell).map(|at| Bound::Time(op, at)),
                _ => None,
            }
        })
        .collect()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

#[wrappers_fdw(
    version = "0.3.0",
    author = "pgwarehouse",
    website = "https://github.com/pgwarehouse/pgwarehouse/tree/main/extensions/prometheus_fdw",
    error_type = "PrometheusFdwError"
)]
pub(crate) struct PrometheusFdw {
    config: ServerConfig,
    outputs: Vec<(String, Output)>,
    series: Vec<Series>,
    /// The next point to hand out: (series, point).
    cursor: (usize, usize),
}

impl PrometheusFdw {
    fn cell(&self, output: Output, series: &Series, point: (f64, f64)) -> Option<Cell> {
        let (time, value) = point;
        Some(match output {
            Output::Name => Cell::String(series.name.clone()),
            Output::Labels => Cell::Json(JsonB(serde_json::Value::Object(series.labels.clone()))),
            Output::TimeSeconds => Cell::I64(time.floor() as i64),
            Output::TimeFloat => Cell::F64(time),
            Output::TimeTimestamptz => {
                let micros = ((time - POSTGRES_EPOCH) * 1e6).round() as i64;
                Cell::Timestamptz(TimestampWithTimeZone::try_from(micros).ok()?)
            }
            Output::Value => Cell::F64(value),
        })
    }
}

impl ForeignDataWrapper<PrometheusFdwError> for PrometheusFdw {
    fn new(server: ForeignServer) -> Result<Self> {
        let mapping = unsafe { options::user_mapping(server.server_oid) };
        let config = ServerConfig::read(&server.options, &mapping)?;
        Ok(PrometheusFdw { config, outputs: Vec::new(), series: Vec::new(), cursor: (0, 0) })
    }

    fn begin_scan(
        &mut self,
        quals: &[Qual],
        columns: &[Column],
        _sorts: &[Sort],
        _limit: &Option<Limit>,
        _options: &HashMap<String, String>,
    ) -> Result<()> {
        self.outputs = columns.iter().map(|c| output(c).map(|o| (c.name.clone(), o))).collect::<Result<_>>()?;
        let settings = Settings { step: self.config.step, ..Settings::default() };
        let plan = prometheus_query::plan(&bounds(quals), &settings, now())?;
        if let Some(notice) = &plan.notice {
            pgrx::notice!("{notice}");
        }
        self.series = match &plan.request {
            Some(request) => Client::new(&self.config.base_url, self.config.auth.clone(), self.config.timeout)?
                .query_range(request)?,
            None => Vec::new(),
        };
        self.cursor = (0, 0);
        Ok(())
    }

    fn iter_scan(&mut self, row: &mut Row) -> Result<Option<()>> {
        let (mut s, mut p) = self.cursor;
        while s < self.series.len() && p >= self.series[s].points.len() {
            (s, p) = (s + 1, 0);
        }
        let Some(series) = self.series.get(s) else { return Ok(None) };
        let point = series.points[p];
        for (name, output) in &self.outputs {
            row.push(name, self.cell(*output, series, point));
        }
        self.cursor = (s, p + 1);
        Ok(Some(()))
    }

    fn re_scan(&mut self) -> Result<()> {
        self.cursor = (0, 0);
        Ok(())
    }

    fn end_scan(&mut self) -> Result<()> {
        self.series = Vec::new();
        Ok(())
    }

    fn validator(options: Vec<Option<String>>, catalog: Option<pg_sys::Oid>) -> Result<()> {
        Ok(options::validate(&options, catalog)?)
    }
}
