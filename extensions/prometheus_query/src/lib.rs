//! Prometheus range queries for `prometheus_fdw`, with no Postgres in sight: the scan's
//! restrictions become one `query_range` request ([`plan`]), the [`client`] fetches it (auth,
//! timeout, one request per scan), and [`series`] reads the answer into series the FDW turns
//! into rows column by column, by name.

pub mod client;
pub mod plan;
pub mod series;

pub use client::{Auth, Client, ClientError};
pub use plan::{plan, Bound, Op, Plan, PlanError, RangeQuery, Settings};
pub use series::{parse_range_response, ResponseError, Series};
