//! `prometheus_fdw`: Prometheus as a foreign table. Thin glue between the shared scan layer
//! ([`fdw_scan`]) and the pure [`prometheus_query`] crate: the scan's restrictions become one
//! request plan, the request is made when the scan starts, and each point becomes a row whose
//! columns are filled by name (any subset, any order, none for `count(*)`).

mod options;

use pgrx::prelude::*;
use pgrx::{IntoDatum, JsonB};
use prometheus_query::{Bound, Client, ClientError, PlanError, RangeQuery, Series, Settings};

use fdw_scan::{ForeignSource, Op, Qual, Reader, ReaderFailed, Row, Table, Value};
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
    #[error("{0}")]
    Reader(#[from] ReaderFailed),
    #[error(
        "column {name} of foreign table {table} cannot be {type_name}: prometheus_fdw supplies metric_name text, \
         metric_labels jsonb, metric_time bigint, double precision or timestamptz, and metric_value double precision"
    )]
    Column { table: String, name: String, type_name: String },
}

/// What one column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Name,
    Labels,
    TimeSeconds,
    TimeFloat,
    TimeTimestamptz,
    Value,
}

fn output(table: &str, column: &fdw_scan::Column) -> Result<Output, PrometheusFdwError> {
    let t = column.type_oid;
    Ok(match column.name.as_str() {
        "metric_name" if t == pg_sys::TEXTOID || t == pg_sys::VARCHAROID => Output::Name,
        "metric_labels" if t == pg_sys::JSONBOID => Output::Labels,
        "metric_time" if t == pg_sys::INT8OID => Output::TimeSeconds,
        "metric_time" if t == pg_sys::FLOAT8OID => Output::TimeFloat,
        "metric_time" if t == pg_sys::TIMESTAMPTZOID => Output::TimeTimestamptz,
        "metric_value" if t == pg_sys::FLOAT8OID => Output::Value,
        _ => {
            return Err(PrometheusFdwError::Column {
                table: table.to_string(),
                name: column.name.clone(),
                type_name: fdw_scan::type_name(t),
            })
        }
    })
}

/// The restrictions as the request plan reads them; `None` when one compares with NULL (no
/// row can match).
fn bounds(quals: &[Qual]) -> Option<Vec<Bound>> {
    let mut bounds = Vec::new();
    for qual in quals {
        let op = match qual.op {
            Op::Eq => prometheus_query::Op::Eq,
            Op::Lt => prometheus_query::Op::Lt,
            Op::Le => prometheus_query::Op::Le,
            Op::Gt => prometheus_query::Op::Gt,
            Op::Ge => prometheus_query::Op::Ge,
            Op::In => continue,
        };
        match (qual.column.as_str(), &qual.value) {
            (_, Value::Null) => return None,
            ("metric_name", Value::Text(name)) => bounds.push(Bound::Name(name.clone())),
            ("metric_time", Value::Number(at) | Value::Time(at)) => bounds.push(Bound::Time(op, *at)),
            _ => {}
        }
    }
    Some(bounds)
}

fn now() -> f64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// Points of an answer kept for a rescan asking the same (16 bytes each); past this, the answer
/// is only streamed and a rescan asks again.
const REUSABLE_POINTS: usize = 1_000_000;

/// The last request and its answer. Series arrive from a reader thread while rows are already
/// being returned; those read are kept, for a rescan asking the same, while they fit
/// [`REUSABLE_POINTS`], else only the one being returned is.
struct Fetched {
    request: RangeQuery,
    series: Vec<Series>,
    kept_points: usize,
    reusable: bool,
    arriving: Reader<Series, PrometheusFdwError>,
}

struct PrometheusScan {
    config: ServerConfig,
    max_points: u64,
    outputs: Vec<(usize, Output)>,
    fetched: Option<Fetched>,
    /// The PromQL asked for, every row's `metric_name` (so `metric_name = '<expression>'` holds
    /// for each row whatever the series' own `__name__`), as a datum built once.
    name_datum: Option<pg_sys::Datum>,
    /// Per series, its labels as a datum, built once and shared by its points.
    labels_datums: Vec<Option<pg_sys::Datum>>,
    /// The next point to hand out: (series, point).
    cursor: (usize, usize),
}

impl ForeignSource for PrometheusScan {
    const NAME: &'static str = "prometheus_fdw";
    type Error = PrometheusFdwError;

    fn pushable(column: &str, op: Op) -> bool {
        matches!((column, op), ("metric_name", Op::Eq) | ("metric_time", Op::Eq | Op::Lt | Op::Le | Op::Gt | Op::Ge))
    }

    fn exact(column: &str, op: Op) -> bool {
        (column, op) == ("metric_name", Op::Eq)
    }

    fn open(table: &Table) -> Result<Self, PrometheusFdwError> {
        options::table_object(&table.options)?;
        let config = ServerConfig::read(&table.server, &table.mapping)?;
        let max_points = options::max_points(&table.server, &table.options)?;
        let mut outputs = Vec::new();
        for column in &table.columns {
            let output = output(&table.name, column)?;
            if column.wanted {
                outputs.push((column.index, output));
            }
        }
        Ok(PrometheusScan {
            config,
            max_points,
            outputs,
            fetched: None,
            name_datum: None,
            labels_datums: Vec::new(),
            cursor: (0, 0),
        })
    }

    fn start(&mut self, quals: &[Qual]) -> Result<(), PrometheusFdwError> {
        self.cursor = (0, 0);
        self.name_datum = None;
        self.labels_datums.clear();
        let Some(bounds) = bounds(quals) else {
            self.stop_reading();
            return Ok(());
        };
        let settings = Settings { step: self.config.step, ..Settings::default() };
        let plan = prometheus_query::plan(&bounds, &settings, now())?;
        if let Some(notice) = &plan.notice {
            pgrx::notice!("{notice}");
        }
        let Some(request) = plan.request else {
            self.stop_reading();
            return Ok(());
        };
        if self.fetched.as_ref().is_some_and(|fetched| fetched.reusable && fetched.request == request) {
            return Ok(());
        }
        self.stop_reading();
        let client = Client::new(&self.config.base_url, self.config.auth.clone(), self.config.timeout)?
            .with_max_points(self.max_points);
        let asked = request.clone();
        let arriving = Reader::start(move |each, wanted| Ok(client.query_range_each(&asked, each, wanted)?))?;
        self.fetched = Some(Fetched { request, series: Vec::new(), kept_points: 0, reusable: true, arriving });
        Ok(())
    }

    fn next(&mut self, row: &mut Row) -> Result<bool, PrometheusFdwError> {
        let Some(fetched) = &mut self.fetched else { return Ok(false) };
        let (mut s, mut p) = self.cursor;
        loop {
            match fetched.series.get(s).map(|series| series.points.len()) {
                Some(points) if p < points => break,
                Some(_) => (s, p) = (s + 1, 0),
                None => match fetched.arriving.receive()? {
                    Some(series) => {
                        fetched.kept_points += series.points.len();
                        if fetched.reusable && fetched.kept_points > REUSABLE_POINTS {
                            fetched.reusable = false;
                        }
                        if !fetched.reusable {
                            fetched.series.clear();
                            self.labels_datums.clear();
                            s = 0;
                        }
                        fetched.series.push(series);
                    }
                    None => return Ok(false),
                },
            }
        }
        let (request, current) = (&fetched.request, &fetched.series[s]);
        self.cursor = (s, p + 1);
        if self.labels_datums.len() <= s {
            self.labels_datums.resize(s + 1, None);
        }
        let name = *self
            .name_datum
            .get_or_insert_with(|| row.keep(|| request.query.as_str().into_datum().expect("text is never NULL")));
        let labels = *self.labels_datums[s].get_or_insert_with(|| {
            row.keep(|| {
                JsonB(serde_json::Value::Object(current.labels.clone())).into_datum().expect("jsonb is never NULL")
            })
        });
        let (time, value) = current.points[p];
        for &(index, output) in &self.outputs {
            let datum = match output {
                Output::Name => Some(name),
                Output::Labels => Some(labels),
                Output::TimeSeconds => (time.floor() as i64).into_datum(),
                Output::TimeFloat => time.into_datum(),
                Output::TimeTimestamptz => {
                    let micros = ((time - POSTGRES_EPOCH) * 1e6).round() as i64;
                    TimestampWithTimeZone::try_from(micros).ok().into_datum()
                }
                Output::Value => value.into_datum(),
            };
            row.set(index, datum);
        }
        Ok(true)
    }

    fn end(&mut self) {
        self.stop_reading();
        self.name_datum = None;
        self.labels_datums = Vec::new();
    }
}

impl PrometheusScan {
    /// One reader thread per scan: the previous one has ended before another starts.
    fn stop_reading(&mut self) {
        if let Some(mut fetched) = self.fetched.take() {
            fetched.arriving.stop();
        }
    }
}

#[pg_extern(create_or_replace)]
fn prometheus_fdw_handler() -> PgBox<pg_sys::FdwRoutine> {
    fdw_scan::routine::<PrometheusScan>().into_pg_boxed()
}

#[pg_extern(create_or_replace)]
fn prometheus_fdw_validator(options: Vec<Option<String>>, catalog: Option<pg_sys::Oid>) {
    if let Err(error) = options::validate(&options, fdw_scan::validator_target(catalog)) {
        fdw_scan::raise::<PrometheusScan>(error);
    }
}

// The statement a validator refuses can hold a credential (a URL's `user:password@`, a mapping's
// password): Postgres would log it under the ERROR. Set for the call, the setting keeps it out;
// a SUSET setting needs the superuser's rights, which the function has only for this call.
pgrx::extension_sql!(
    "ALTER FUNCTION prometheus_fdw_validator(text[], oid) SECURITY DEFINER \
     SET search_path = pg_catalog, pg_temp SET log_min_error_statement = panic;",
    name = "validator_keeps_statements_out_of_the_log",
    requires = [prometheus_fdw_validator]
);
