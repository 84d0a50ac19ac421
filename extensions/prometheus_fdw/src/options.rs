//! Server, user mapping and table options: checked by the validator at `CREATE`/`ALTER` time,
//! read once per scan. Credentials come from the current user's mapping first, then the server
//! (the seed's SQL put them there; a mapping hides them from other roles).

use std::collections::HashMap;
use std::time::Duration;

use fdw_scan::{OptionNames, OptionTarget, UnknownOption};
use http_agent::{is_http_url, parse_duration, parse_timeout, without_credentials};
use prometheus_query::Auth;

const NAMES: OptionNames = OptionNames {
    server: &["base_url", "timeout", "step", "max_points", "bearer_token", "username", "password"],
    user_mapping: &["bearer_token", "username", "password"],
    table: &["object", "max_points"],
};
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("{0}")]
    Unknown(#[from] UnknownOption),
    #[error("a server needs the option base_url")]
    NoBaseUrl,
    #[error("base_url {0:?} must be an http:// or https:// URL without credentials (put those in a user mapping)")]
    BadBaseUrl(String),
    #[error("{option} {value:?} is not a duration such as 30, 30s, 500ms, 5m or 1h")]
    BadDuration { option: &'static str, value: String },
    #[error("timeout {0:?} is not a duration of at most 10m such as 30s or 5m")]
    BadTimeout(String),
    #[error("a foreign table needs the option object 'metrics'")]
    NoObject,
    #[error("object {0:?} is not one prometheus_fdw knows: use 'metrics'")]
    UnknownObject(String),
    #[error("username and password go together")]
    HalfBasicAuth,
    #[error("max_points {0:?} is not a whole number from 1 to 1000000000")]
    BadMaxPoints(String),
}

/// `max_points`: the table's, else the server's, else the default.
pub fn max_points(server: &HashMap<String, String>, table: &HashMap<String, String>) -> Result<u64, OptionsError> {
    match table.get("max_points").or_else(|| server.get("max_points")) {
        None => Ok(prometheus_query::client::DEFAULT_MAX_POINTS),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=1_000_000_000).contains(n))
            .ok_or_else(|| OptionsError::BadMaxPoints(text.clone())),
    }
}

/// `30`, `30s`, `500ms`, `5m`, `1h`, `1d`.
fn duration(option: &'static str, value: &str) -> Result<Duration, OptionsError> {
    parse_duration(value).ok_or_else(|| OptionsError::BadDuration { option, value: value.to_string() })
}

fn base_url(value: &str) -> Result<String, OptionsError> {
    if is_http_url(value) {
        Ok(value.to_string())
    } else {
        Err(OptionsError::BadBaseUrl(without_credentials(value)))
    }
}

const CREDENTIALS: [&str; 3] = ["bearer_token", "username", "password"];

/// What a scan needs from the server and the mapping.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub base_url: String,
    pub timeout: Duration,
    pub step: Option<f64>,
    pub auth: Auth,
}

impl ServerConfig {
    pub fn read(server: &HashMap<String, String>, mapping: &HashMap<String, String>) -> Result<Self, OptionsError> {
        let base_url = base_url(server.get("base_url").ok_or(OptionsError::NoBaseUrl)?)?;
        let timeout = server
            .get("timeout")
            .map(|v| parse_timeout(v).ok_or_else(|| OptionsError::BadTimeout(v.clone())))
            .transpose()?
            .unwrap_or(DEFAULT_TIMEOUT);
        let step = server.get("step").map(|v| duration("step", v).map(|d| d.as_secs_f64())).transpose()?;
        // A mapping with any credential is used whole: the server's never fill in for it.
        let holder = if CREDENTIALS.iter().any(|k| mapping.contains_key(*k)) { mapping } else { server };
        let credential = |key: &str| holder.get(key).cloned();
        let auth = match (credential("bearer_token"), credential("username"), credential("password")) {
            (Some(token), _, _) => Auth::Bearer(token),
            (None, Some(username), Some(password)) => Auth::Basic { username, password },
            (None, None, None) => Auth::None,
            _ => return Err(OptionsError::HalfBasicAuth),
        };
        Ok(ServerConfig { base_url, timeout, step, auth })
    }
}

/// The table's `object`, which must be `metrics`.
pub fn table_object(options: &HashMap<String, String>) -> Result<(), OptionsError> {
    match options.get("object").map(String::as_str) {
        None => Err(OptionsError::NoObject),
        Some("metrics") => Ok(()),
        Some(other) => Err(OptionsError::UnknownObject(other.to_string())),
    }
}

/// The validator: every option known for where it is set, and well-formed.
pub fn validate(options: &[Option<String>], target: OptionTarget) -> Result<(), OptionsError> {
    let Some(options) = NAMES.check(options, target)? else { return Ok(()) };
    match target {
        OptionTarget::Server => {
            max_points(&options, &HashMap::new())?;
            ServerConfig::read(&options, &HashMap::new()).map(|_| ())
        }
        OptionTarget::UserMapping => {
            let halves = [options.contains_key("username"), options.contains_key("password")];
            if halves[0] != halves[1] {
                Err(OptionsError::HalfBasicAuth)
            } else {
                Ok(())
            }
        }
        _ => {
            max_points(&HashMap::new(), &options)?;
            table_object(&options)
        }
    }
}
