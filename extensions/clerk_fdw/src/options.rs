//! Server, user mapping and table options: checked by the validator at `CREATE`/`ALTER` time,
//! read when a scan opens. `api_key` comes from the current user's mapping first, then the
//! server (the seed's SQL put it there; a mapping hides it from other roles).

use std::collections::HashMap;
use std::time::Duration;

use clerk_api::{Object, DEFAULT_API_URL};
use fdw_scan::{OptionNames, OptionTarget, UnknownOption};
use http_agent::{is_http_url, parse_timeout, without_credentials};

const NAMES: OptionNames =
    OptionNames { server: &["api_url", "api_key", "timeout"], user_mapping: &["api_key"], table: &["object"] };
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("{0}")]
    Unknown(#[from] UnknownOption),
    #[error("server {0} has no api_key: create a user mapping with OPTIONS (api_key '...')")]
    NoApiKey(String),
    #[error("api_key must not be empty")]
    EmptyApiKey,
    #[error(
        "api_url {0:?} must be an http:// or https:// URL without credentials (the API key belongs in a user mapping)"
    )]
    BadApiUrl(String),
    #[error("timeout {0:?} is not a duration of at most 10m such as 30, 30s, 500ms or 5m")]
    BadTimeout(String),
    #[error("a foreign table needs the option object ({})", Object::NAMES)]
    NoObject,
    #[error("object {0:?} is not one clerk_fdw knows: use one of {names}", names = Object::NAMES)]
    UnknownObject(String),
}

/// What a scan needs from the server and the mapping.
#[derive(Clone)]
pub struct ServerConfig {
    pub api_url: String,
    pub api_key: String,
    pub timeout: Duration,
}

impl ServerConfig {
    pub fn read(
        server_name: &str,
        server: &HashMap<String, String>,
        mapping: &HashMap<String, String>,
    ) -> Result<Self, OptionsError> {
        let (api_url, timeout) = server_settings(server)?;
        let api_key = mapping
            .get("api_key")
            .or_else(|| server.get("api_key"))
            .ok_or_else(|| OptionsError::NoApiKey(server_name.to_string()))?;
        if api_key.is_empty() {
            return Err(OptionsError::EmptyApiKey);
        }
        Ok(ServerConfig { api_url, api_key: api_key.clone(), timeout })
    }
}

fn server_settings(server: &HashMap<String, String>) -> Result<(String, Duration), OptionsError> {
    let api_url = server.get("api_url").map_or(DEFAULT_API_URL, String::as_str);
    if !is_http_url(api_url) {
        return Err(OptionsError::BadApiUrl(without_credentials(api_url)));
    }
    let timeout = server
        .get("timeout")
        .map(|v| parse_timeout(v).ok_or_else(|| OptionsError::BadTimeout(v.clone())))
        .transpose()?
        .unwrap_or(DEFAULT_TIMEOUT);
    Ok((api_url.to_string(), timeout))
}

/// The table's `object`.
pub fn table_object(options: &HashMap<String, String>) -> Result<Object, OptionsError> {
    let name = options.get("object").ok_or(OptionsError::NoObject)?;
    Object::parse(name).ok_or_else(|| OptionsError::UnknownObject(name.clone()))
}

/// The validator: every option known for where it is set, and well-formed.
pub fn validate(options: &[Option<String>], target: OptionTarget) -> Result<(), OptionsError> {
    let Some(options) = NAMES.check(options, target)? else { return Ok(()) };
    if options.get("api_key").is_some_and(String::is_empty) {
        return Err(OptionsError::EmptyApiKey);
    }
    match target {
        OptionTarget::Server => server_settings(&options).map(|_| ()),
        OptionTarget::Table => table_object(&options).map(|_| ()),
        _ => Ok(()),
    }
}
