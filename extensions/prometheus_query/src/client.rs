//! The HTTP side: one `query_range` request per scan, with the server's timeout and the
//! mapping's credentials (bearer token or basic auth). Errors name the URL path and carry
//! Prometheus's message, never a credential.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::plan::RangeQuery;
use crate::series::{parse_range_response, parse_range_stream, ResponseError, Series};

const QUERY_RANGE: &str = "/api/v1/query_range";
/// An error answer is read for its message up to this size.
const MAX_ERROR_BODY: u64 = 1024 * 1024;
/// Points (series × steps) one request may return unless `max_points` says otherwise.
pub const DEFAULT_MAX_POINTS: u64 = 10_000_000;

#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Bearer(String),
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Bearer(_) => "Bearer(<redacted>)",
            Auth::Basic { .. } => "Basic(<redacted>)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("base_url {0:?} must start with http:// or https:// and hold no credentials")]
    BadBaseUrl(String),
    #[error("GET {path}: cannot reach Prometheus: {cause}")]
    Unreachable { path: String, cause: String },
    #[error("GET {path}: HTTP {status}: {message}")]
    Http { path: String, status: u16, message: String },
    #[error("GET {path}: {error}")]
    Response { path: String, error: ResponseError },
    #[error(
        "the answer holds more than {max} points (series × steps, the max_points option): narrow metric_time, \
         raise step, select fewer series in the PromQL, or raise max_points on the server or the foreign table"
    )]
    TooManyPoints { max: u64 },
}

#[derive(Debug)]
pub struct Client {
    base_url: String,
    auth: Auth,
    agent: ureq::Agent,
    max_points: u64,
}

impl Client {
    pub fn new(base_url: &str, auth: Auth, timeout: Duration) -> Result<Client, ClientError> {
        if !http_agent::is_http_url(base_url) {
            return Err(ClientError::BadBaseUrl(base_url.to_string()));
        }
        Ok(Client {
            base_url: base_url.trim_end_matches('/').to_string(),
            auth,
            agent: http_agent::agent(timeout),
            max_points: DEFAULT_MAX_POINTS,
        })
    }

    /// An answer of more points than `max` ends with [`ClientError::TooManyPoints`].
    pub fn with_max_points(mut self, max: u64) -> Client {
        self.max_points = max;
        self
    }

    /// Evaluates `query` over its range: every series, every point.
    pub fn query_range(&self, query: &RangeQuery) -> Result<Vec<Series>, ClientError> {
        let mut series = Vec::new();
        self.query_range_each(
            query,
            &mut |one| {
                series.push(one);
                true
            },
            &|| true,
        )?;
        Ok(series)
    }

    /// [`Client::query_range`] reading the answer as it arrives and handing each series to
    /// `each` as soon as it is read; `each` returns `false` to stop early, and `wanted`, asked
    /// between reads, stops the reading when it says no.
    pub fn query_range_each(
        &self,
        query: &RangeQuery,
        each: &mut dyn FnMut(Series) -> bool,
        wanted: &dyn Fn() -> bool,
    ) -> Result<(), ClientError> {
        let path = QUERY_RANGE.to_string();
        let mut request = self
            .agent
            .get(format!("{}{QUERY_RANGE}", self.base_url))
            .query("query", &query.query)
            .query("start", format_seconds(query.start))
            .query("end", format_seconds(query.end))
            .query("step", format_seconds(query.step));
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(token) => request = request.header("Authorization", format!("Bearer {token}")),
            Auth::Basic { username, password } => {
                let encoded = STANDARD.encode(format!("{username}:{password}"));
                request = request.header("Authorization", format!("Basic {encoded}"));
            }
        }
        let unreachable = |e: ureq::Error| ClientError::Unreachable { path: path.clone(), cause: e.to_string() };
        let mut response = request.call().map_err(unreachable)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            let mut points = 0u64;
            let mut over = false;
            let parsed =
                parse_range_stream(WhileWanted { body: response.body_mut().as_reader(), wanted }, &mut |one| {
                    points += one.points.len() as u64;
                    over = points > self.max_points;
                    !over && each(one)
                });
            if over {
                return Err(ClientError::TooManyPoints { max: self.max_points });
            }
            return parsed.map_err(|error| ClientError::Response { path, error });
        }
        let body = response.body_mut().with_config().limit(MAX_ERROR_BODY).read_to_vec().map_err(unreachable)?;
        match parse_range_response(&body) {
            // Prometheus explains a 4xx/5xx in the same JSON envelope; other proxies do not.
            Err(error @ ResponseError::Prometheus { .. }) => Err(ClientError::Response { path, error }),
            _ => {
                let text = String::from_utf8_lossy(&body);
                let message = text.trim().chars().take(300).collect::<String>();
                Err(ClientError::Http { path, status, message })
            }
        }
    }
}

/// The answer's body until the scan no longer wants it.
struct WhileWanted<'w, R> {
    body: R,
    wanted: &'w dyn Fn() -> bool,
}

impl<R: std::io::Read> std::io::Read for WhileWanted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !(self.wanted)() {
            return Err(std::io::Error::other("the scan stopped reading"));
        }
        self.body.read(buf)
    }
}

/// Seconds as Prometheus reads them, fraction kept (`1700000000.125`).
fn format_seconds(seconds: f64) -> String {
    let text = format!("{seconds:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_must_be_http_and_carry_no_credentials() {
        for bad in ["prometheus:9090", "ftp://p", "http://", "http://user:pw@p:9090"] {
            assert!(
                matches!(Client::new(bad, Auth::None, Duration::from_secs(1)), Err(ClientError::BadBaseUrl(_))),
                "{bad}"
            );
        }
        assert!(Client::new("https://p.example:9090/prom/", Auth::None, Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn credentials_never_print() {
        let auth = Auth::Basic { username: "u".into(), password: "hunter2".into() };
        assert_eq!(format!("{auth:?} {:?}", Auth::Bearer("tok-123".into())), "Basic(<redacted>) Bearer(<redacted>)");
    }

    #[test]
    fn seconds_keep_their_fraction_and_drop_trailing_zeros() {
        assert_eq!(format_seconds(1_700_000_000.125), "1700000000.125");
        assert_eq!(format_seconds(1_700_000_000.0), "1700000000");
        assert_eq!(format_seconds(8.0), "8");
    }

    #[test]
    fn an_unreachable_server_is_one_error_naming_the_path() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = Client::new(
            &format!("http://127.0.0.1:{port}"),
            Auth::Bearer("secret-token".into()),
            Duration::from_secs(2),
        )
        .unwrap();
        let query = RangeQuery { query: "up".into(), start: 0.0, end: 1.0, step: 1.0 };
        let error = client.query_range(&query).unwrap_err().to_string();
        assert!(error.starts_with("GET /api/v1/query_range: cannot reach Prometheus:"), "{error}");
        assert!(!error.contains("secret-token"));
    }
}
