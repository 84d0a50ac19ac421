//! The HTTP side: bearer-authenticated GETs, every page of a listing, 429s waited out as Clerk's
//! `Retry-After` asks within [`Limits`], and every other failure one error naming the request
//! path with Clerk's own message — never the key.

use std::time::Duration;

use serde_json::Value;

use crate::{Filter, Object};

/// Clerk's production Backend API.
pub const DEFAULT_API_URL: &str = "https://api.clerk.com/v1";
/// Clerk's largest page.
const PAGE_SIZE: usize = 500;
/// `user_id` values per `GET /users` request.
const IDS_PER_REQUEST: usize = 100;
/// An answer larger than this is refused rather than buffered.
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// Bounds on one scan's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Per request.
    pub timeout: Duration,
    /// 429 answers retried per request.
    pub max_retries: u32,
    /// Total time spent waiting on 429s.
    pub max_wait: Duration,
    /// Requests, retries included (1,000,000 users is 2,000 pages).
    pub max_requests: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            max_retries: 5,
            max_wait: Duration::from_secs(60),
            max_requests: 4000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClerkError {
    #[error("api_url {0:?} must be an http:// or https:// URL")]
    BadApiUrl(String),
    #[error("GET {path}: cannot reach Clerk: {cause}")]
    Unreachable { path: String, cause: String },
    #[error("GET {path}: HTTP {status}: {message}")]
    Http { path: String, status: u16, message: String },
    #[error("GET {path}: rate limited (HTTP 429) {attempts} times in a row, {waited_secs}s waited in this scan; giving up: {message}")]
    RateLimited { path: String, attempts: u32, waited_secs: u64, message: String },
    #[error("GET {path}: Clerk's answer is not the expected JSON: {cause}")]
    Malformed { path: String, cause: String },
    #[error("a scan may make at most {0} requests to Clerk; narrow it with WHERE user_id = or organization_id =")]
    TooManyRequests(u32),
}

/// How a listing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paged {
    /// Every page was read.
    Done,
    /// The reader asked to stop.
    Stopped,
    /// The listing does not exist (404), where that means no records.
    Missing,
}

pub struct Client {
    base_url: String,
    api_key: String,
    agent: ureq::Agent,
    limits: Limits,
    requests: u32,
    waited: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base_url", &self.base_url).field("api_key", &"<redacted>").finish()
    }
}

/// Clerk ids are `prefix_base62`; anything else names no object, so no request is made for it.
fn is_clerk_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn distinct(ids: &[String]) -> Vec<&str> {
    let mut seen = std::collections::BTreeSet::new();
    ids.iter().map(String::as_str).filter(|id| is_clerk_id(id) && seen.insert(*id)).collect()
}

impl Client {
    pub fn new(api_url: &str, api_key: &str, limits: Limits) -> Result<Client, ClerkError> {
        if !http_agent::is_http_url(api_url) {
            return Err(ClerkError::BadApiUrl(api_url.to_string()));
        }
        Ok(Client {
            base_url: api_url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            agent: http_agent::agent(limits.timeout),
            limits,
            requests: 0,
            waited: Duration::ZERO,
        })
    }

    /// Requests made so far, retries included.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// Every record of `object` that `filter` lets through.
    pub fn list(&mut self, object: Object, filter: &Filter) -> Result<Vec<Value>, ClerkError> {
        let mut records = Vec::new();
        self.list_each(object, filter, &mut |page| {
            records.extend(page);
            true
        })?;
        Ok(records)
    }

    /// [`Client::list`] handing each page to `each` as soon as it is read; `each` returns
    /// `false` to stop (no further request is made).
    pub fn list_each(
        &mut self,
        object: Object,
        filter: &Filter,
        each: &mut dyn FnMut(Vec<Value>) -> bool,
    ) -> Result<(), ClerkError> {
        match (object, &filter.user_ids, &filter.organization_ids) {
            (Object::Users, Some(ids), _) => {
                for chunk in distinct(ids).chunks(IDS_PER_REQUEST) {
                    let query: Vec<(&str, &str)> = chunk.iter().map(|id| ("user_id", *id)).collect();
                    if self.pages("/users", &query, false, each)? == Paged::Stopped {
                        break;
                    }
                }
            }
            (Object::Users, None, _) => {
                self.pages("/users", &[("order_by", "+created_at")], false, each)?;
            }
            (Object::Organizations, _, Some(ids)) => {
                for id in distinct(ids) {
                    if let Some(organization) = self.get(&format!("/organizations/{id}"), &[], true)? {
                        if !each(vec![organization]) {
                            break;
                        }
                    }
                }
            }
            (Object::Organizations, _, None) => {
                self.pages("/organizations", &[], false, each)?;
            }
            (Object::OrganizationMemberships, _, Some(ids)) => {
                for id in distinct(ids) {
                    if self.pages(&format!("/organizations/{id}/memberships"), &[], true, each)? == Paged::Stopped {
                        break;
                    }
                }
            }
            (Object::OrganizationMemberships, Some(ids), None) => {
                for id in distinct(ids) {
                    if self.pages(&format!("/users/{id}/organization_memberships"), &[], true, each)? == Paged::Stopped
                    {
                        break;
                    }
                }
            }
            (Object::OrganizationMemberships, None, None) => {
                // The instance-wide listing; an API without it (404) is read organization by organization.
                if self.pages("/organization_memberships", &[], true, each)? == Paged::Missing {
                    let mut ids = Vec::new();
                    self.pages("/organizations", &[], false, &mut |page| {
                        ids.extend(page.iter().filter_map(|o| Some(o.get("id")?.as_str()?.to_string())));
                        true
                    })?;
                    for id in distinct(&ids) {
                        if self.pages(&format!("/organizations/{id}/memberships"), &[], true, each)? == Paged::Stopped {
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Every page of a listing (users come as a JSON array, the rest as `{data, total_count}`).
    fn pages(
        &mut self,
        path: &str,
        query: &[(&str, &str)],
        missing_is_empty: bool,
        each: &mut dyn FnMut(Vec<Value>) -> bool,
    ) -> Result<Paged, ClerkError> {
        let mut offset = 0usize;
        loop {
            let (limit, offset_text) = (PAGE_SIZE.to_string(), offset.to_string());
            let mut paged = query.to_vec();
            paged.extend([("limit", limit.as_str()), ("offset", offset_text.as_str())]);
            let Some(body) = self.get(path, &paged, missing_is_empty)? else {
                return Ok(if offset == 0 { Paged::Missing } else { Paged::Done });
            };
            let malformed = |cause: &str| ClerkError::Malformed { path: path.to_string(), cause: cause.to_string() };
            let (page, total) = match body {
                Value::Array(page) => (page, None),
                Value::Object(mut envelope) => {
                    let total = envelope.get("total_count").and_then(Value::as_u64);
                    match envelope.remove("data") {
                        Some(Value::Array(page)) => (page, total),
                        _ => return Err(malformed("no data array")),
                    }
                }
                _ => return Err(malformed("neither an array nor {data, total_count}")),
            };
            let received = page.len();
            offset += received;
            if received > 0 && !each(page) {
                return Ok(Paged::Stopped);
            }
            let done = match total {
                Some(total) => offset as u64 >= total || received == 0,
                None => received < PAGE_SIZE,
            };
            if done {
                return Ok(Paged::Done);
            }
        }
    }

    /// One GET, 429s retried; `None` for a 404 when `missing_is_none`.
    fn get(&mut self, path: &str, query: &[(&str, &str)], missing_is_none: bool) -> Result<Option<Value>, ClerkError> {
        let mut attempts = 0;
        loop {
            if self.requests >= self.limits.max_requests {
                return Err(ClerkError::TooManyRequests(self.limits.max_requests));
            }
            self.requests += 1;
            let mut request = self
                .agent
                .get(format!("{}{path}", self.base_url))
                .header("Authorization", format!("Bearer {}", self.api_key))
                .header("Accept", "application/json");
            for (key, value) in query {
                request = request.query(*key, *value);
            }
            let unreachable = |e: ureq::Error| ClerkError::Unreachable { path: path.to_string(), cause: e.to_string() };
            let mut response = request.call().map_err(unreachable)?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = response.body_mut().with_config().limit(MAX_BODY).read_to_vec().map_err(unreachable)?;
            match status {
                200..=299 => {
                    return serde_json::from_slice(&body)
                        .map(Some)
                        .map_err(|e| ClerkError::Malformed { path: path.to_string(), cause: e.to_string() });
                }
                404 if missing_is_none => return Ok(None),
                429 => {
                    attempts += 1;
                    let wait = Duration::from_secs(retry_after.unwrap_or(1).max(1));
                    if attempts > self.limits.max_retries || self.waited + wait > self.limits.max_wait {
                        return Err(ClerkError::RateLimited {
                            path: path.to_string(),
                            attempts,
                            waited_secs: self.waited.as_secs(),
                            message: clerk_message(&body),
                        });
                    }
                    std::thread::sleep(wait);
                    self.waited += wait;
                }
                _ => return Err(ClerkError::Http { path: path.to_string(), status, message: clerk_message(&body) }),
            }
        }
    }
}

/// Clerk explains a failure as `{"errors": [{"message", "long_message", "code"}]}`; other
/// proxies do not, so their text (shortened) is the message.
fn clerk_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let first = parsed.as_ref().and_then(|v| v.get("errors")?.as_array()?.first().cloned());
    match first {
        Some(error) => {
            let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
            let message = text("long_message").or_else(|| text("message")).unwrap_or_default();
            match text("code") {
                Some(code) => format!("{message} ({code})"),
                None => message,
            }
        }
        None => String::from_utf8_lossy(body).trim().chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clerk_errors_read_as_their_long_message_and_code() {
        let body = br#"{"errors":[{"message":"Invalid authentication","long_message":"Unable to authenticate the request, you need to supply an active API key","code":"authentication_invalid"}],"clerk_trace_id":"t"}"#;
        assert_eq!(
            clerk_message(body),
            "Unable to authenticate the request, you need to supply an active API key (authentication_invalid)"
        );
        assert_eq!(clerk_message(b"<html>502 Bad Gateway</html>"), "<html>502 Bad Gateway</html>");
    }

    #[test]
    fn ids_that_no_clerk_object_has_are_not_requested() {
        let ids = ["user_1", "user_1", "../admin", "", "user_2"].map(String::from);
        assert_eq!(distinct(&ids), ["user_1", "user_2"]);
    }

    #[test]
    fn the_key_never_prints() {
        let client = Client::new("http://127.0.0.1:1/v1", "sk_live_secret", Limits::default()).unwrap();
        assert!(!format!("{client:?}").contains("sk_live_secret"));
        assert!(matches!(Client::new("api.clerk.com", "k", Limits::default()), Err(ClerkError::BadApiUrl(_))));
    }
}
