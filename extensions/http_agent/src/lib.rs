//! What our FDWs' HTTP clients share: the agent, the check of a base URL and of a duration
//! option. A backend keeps one agent per timeout for its whole life, so its pool keeps
//! connections alive from one scan to the next (a rescan per outer row is one request, not one
//! handshake). Statuses are answers, not errors: each client reads a 4xx/5xx body for the
//! server's own words.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

thread_local! {
    static AGENTS: RefCell<HashMap<Duration, ureq::Agent>> = RefCell::default();
}

/// The agent with this overall timeout per request.
pub fn agent(timeout: Duration) -> ureq::Agent {
    AGENTS.with(|agents| {
        agents
            .borrow_mut()
            .entry(timeout)
            .or_insert_with(|| {
                let config =
                    ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build();
                ureq::Agent::with_parts(config, DefaultConnector::default(), ResolveOnThisThread::default())
            })
            .clone()
    })
}

/// Name resolution on the thread making the request. Our requests already run on a reader
/// thread of their own, which the backend stops and waits for; ureq's resolver would start one
/// more thread per new connection to time the lookup out.
#[derive(Debug, Default)]
struct ResolveOnThisThread(DefaultResolver);

impl Resolver for ResolveOnThisThread {
    fn resolve(&self, uri: &Uri, config: &Config, _timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        self.0.resolve(uri, config, NextTimeout::default())
    }
}

/// An `http://` or `https://` URL with a host and no `user:password@` (credentials belong in a
/// user mapping, where other roles cannot read them).
pub fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|rest| !rest.is_empty() && !rest.split('/').next().unwrap_or_default().contains('@'))
}

/// The URL as messages may show it: any `user:password@` before the host replaced, so a
/// credential pasted into a URL never reaches an ERROR, the client or the server log.
pub fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(scheme, rest)| (scheme, rest));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_string() };
    let separator = if scheme.is_empty() { "" } else { "://" };
    format!("{scheme}{separator}<credentials>{}", &rest[at..])
}

/// The longest a server's `timeout` may be: a scan waits at most this long for an answer, and a
/// reader thread lives at most this long after its scan ended.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// A `timeout` option: a duration of at most [`MAX_TIMEOUT`].
pub fn parse_timeout(text: &str) -> Option<Duration> {
    parse_duration(text).filter(|d| *d <= MAX_TIMEOUT)
}

/// `30`, `30s`, `500ms`, `5m`, `1h`, `1d`; none for anything else, zero included.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let amount: u32 = digits.parse().ok()?;
    let unit = match &text[digits.len()..] {
        "ms" => Duration::from_millis(1),
        "" | "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        _ => return None,
    };
    unit.checked_mul(amount).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_stay_in_a_shown_url() {
        assert_eq!(without_credentials("https://admin:hunter2@prom:9090/x"), "https://<credentials>@prom:9090/x");
        assert_eq!(without_credentials("admin:hunter2@prom"), "<credentials>@prom");
        assert_eq!(without_credentials("http://u:p@ss@h/a@b"), "http://<credentials>@h/a@b");
        assert_eq!(
            without_credentials("http://prom:9090/a@b"),
            "http://prom:9090/a@b",
            "an @ in the path is no userinfo"
        );
    }

    #[test]
    fn timeouts_are_capped_at_ten_minutes() {
        assert_eq!(parse_timeout("10m"), Some(MAX_TIMEOUT));
        assert_eq!(parse_timeout("601s"), None);
        assert_eq!(parse_timeout("2d"), None);
    }

    #[test]
    fn durations_and_urls() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        for bad in ["0", "soon", "5 minutes", "-1s", "1w", ""] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert!(is_http_url("https://api.clerk.com/v1") && is_http_url("http://p:9090"));
        for bad in ["api.clerk.com", "ftp://x", "http://", "http://user:pw@p:9090"] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }
}
