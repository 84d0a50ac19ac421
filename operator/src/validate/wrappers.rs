//! What pgwarehouse knows of the wrappers it ships with: the extension that provides each, its
//! handler and validator, and for our own FDWs (`prometheus_fdw`, `clerk_fdw`) the options they
//! take. A misspelled option, a missing address or key, or a credential put where every login
//! role can read it is refused here, before any SQL runs.

use super::Report;
use crate::api::SourceSpec;
use crate::structure::closest;

/// How the engine creates a source's foreign data wrapper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapper {
    pub name: String,
    pub extension: String,
    /// Handler and validator, when the extension does not create the wrapper itself.
    pub functions: Option<(String, Option<String>)>,
}

/// Wrappers whose extension, handler and validator are known.
pub(super) fn known_wrapper(name: &str) -> Option<Wrapper> {
    let (extension, functions) = match name {
        "postgres_fdw" | "file_fdw" => (name, None),
        "prometheus_fdw" => (name, Some(("prometheus_fdw_handler", "prometheus_fdw_validator"))),
        "clerk_fdw" => (name, Some(("clerk_fdw_handler", "clerk_fdw_validator"))),
        _ => return None,
    };
    Some(Wrapper {
        name: name.to_string(),
        extension: extension.to_string(),
        functions: functions.map(|(h, v)| (h.to_string(), Some(v.to_string()))),
    })
}

/// The options one of our FDWs takes.
struct Contract {
    /// Server options, credentials excepted.
    server: &'static [&'static str],
    /// Credentials: in the user mapping only. Any role that can log in reads every server's
    /// options (`pg_foreign_server.srvoptions`); a mapping's options only its own user does.
    credentials: &'static [&'static str],
    /// Options that must be set, on the server or (credentials) in the mapping.
    required: &'static [&'static str],
    /// Options set together or not at all.
    together: &'static [&'static str],
    /// Accepted values of the table option `object`.
    objects: &'static [&'static str],
    /// Options whose value is an `http(s)://` URL, and those that are a duration.
    urls: &'static [&'static str],
    durations: &'static [&'static str],
}

const PROMETHEUS: Contract = Contract {
    server: &["base_url", "timeout", "step"],
    credentials: &["bearer_token", "username", "password"],
    required: &["base_url"],
    together: &["username", "password"],
    objects: &["metrics"],
    urls: &["base_url"],
    durations: &["timeout", "step"],
};

const CLERK: Contract = Contract {
    server: &["api_url", "timeout"],
    credentials: &["api_key"],
    required: &["api_key"],
    together: &[],
    objects: &["users", "organizations", "organization_memberships"],
    urls: &["api_url"],
    durations: &["timeout"],
};

fn contract(wrapper: &str) -> Option<&'static Contract> {
    match wrapper {
        "prometheus_fdw" => Some(&PROMETHEUS),
        "clerk_fdw" => Some(&CLERK),
        _ => None,
    }
}

/// `30`, `30s`, `500ms`, `5m`, `1h`: what Prometheus and our FDWs read as a duration.
/// The longest `timeout` our FDWs accept (their `http_agent::MAX_TIMEOUT`).
const MAX_TIMEOUT_MS: u64 = 600_000;

/// A duration option's milliseconds: `30`, `30s`, `500ms`, `5m`, `1h`, `1d`.
fn duration_ms(value: &str) -> Option<u64> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit_ms = match &value[digits.len()..] {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(unit_ms)
}

/// A URL as messages may show it: a `user:password@` before the host replaced. (Our FDWs'
/// `http_agent` does the same for what reaches Postgres's messages.)
fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(scheme, rest)| (scheme, rest));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_string() };
    let separator = if scheme.is_empty() { "" } else { "://" };
    format!("{scheme}{separator}<credentials>{}", &rest[at..])
}

/// Checks a source's server, mapping and table options against its wrapper's contract.
pub(super) fn check_options(report: &mut Report, path: &str, source: &SourceSpec) {
    let Some(contract) = contract(&source.wrapper) else { return };
    let wrapper = &source.wrapper;
    let mapping = source.user_mapping.as_ref();
    let server_keys =
        source.options.keys().map(|k| ("options", k)).chain(source.secret_options.keys().map(|k| ("secretOptions", k)));
    for (field, key) in server_keys {
        if contract.credentials.contains(&key.as_str()) {
            report.error(
                format!("{path}.{field}.{key}"),
                "is a credential: set it in userMapping.secretOptions, where only the mapped role can read it \
                 (every role that can log in reads server options in pg_foreign_server)",
            );
        } else if !contract.server.contains(&key.as_str()) {
            let hint = match closest(key, contract.server.iter().chain(contract.credentials).copied()) {
                Some(near) => format!("did you mean {near:?}?"),
                None => format!("it takes {}", contract.server.join(", ")),
            };
            report.error(format!("{path}.{field}.{key}"), format!("{wrapper} has no server option {key:?} ({hint})"));
        }
    }
    let mapping_keys = mapping.into_iter().flat_map(|m| {
        m.options.keys().map(|k| ("options", k)).chain(m.secret_options.keys().map(|k| ("secretOptions", k)))
    });
    for (field, key) in mapping_keys {
        if !contract.credentials.contains(&key.as_str()) {
            report.error(
                format!("{path}.userMapping.{field}.{key}"),
                format!("{wrapper} takes only {} in a user mapping", contract.credentials.join(", ")),
            );
        }
    }
    // Anywhere counts: a credential on the server is already reported as misplaced.
    let set = |key: &str| {
        source.options.contains_key(key)
            || source.secret_options.contains_key(key)
            || mapping.is_some_and(|m| m.options.contains_key(key) || m.secret_options.contains_key(key))
    };
    for key in contract.required.iter().filter(|k| !set(k)) {
        let at = if contract.credentials.contains(key) { "userMapping.secretOptions" } else { "options" };
        report.error(format!("{path}.{at}.{key}"), format!("{wrapper} needs {key}"));
    }
    if contract.together.iter().any(|k| set(k)) && !contract.together.iter().all(|k| set(k)) {
        report.error(format!("{path}.userMapping"), format!("set {} together", contract.together.join(" and ")));
    }
    for (key, value) in &source.options {
        if contract.urls.contains(&key.as_str()) {
            let shown = without_credentials(value);
            if !(value.starts_with("http://") || value.starts_with("https://")) {
                report.error(format!("{path}.options.{key}"), format!("{shown:?} is not an http:// or https:// URL"));
            } else if shown != *value {
                report.error(
                    format!("{path}.options.{key}"),
                    format!("{shown:?} carries credentials: credentials belong in the user mapping (userMapping.secretOptions)"),
                );
            }
        }
        if contract.durations.contains(&key.as_str()) {
            match duration_ms(value) {
                None => report.error(
                    format!("{path}.options.{key}"),
                    format!("{value:?} is not a duration such as 30s, 5m or 1h"),
                ),
                Some(ms) if key == "timeout" && ms > MAX_TIMEOUT_MS => report.error(
                    format!("{path}.options.{key}"),
                    format!("{value:?} is longer than the longest timeout, 10m (a scan waits at most that long)"),
                ),
                Some(_) => {}
            }
        }
    }
    for (j, table) in source.tables.iter().enumerate() {
        let table_path = format!("{path}.tables[{j}].options");
        match table.options.get("object") {
            None => report.error(
                format!("{table_path}.object"),
                format!("{wrapper} needs the object to read: one of {}", contract.objects.join(", ")),
            ),
            Some(object) if !contract.objects.contains(&object.as_str()) => report.error(
                format!("{table_path}.object"),
                format!("{object:?} is not one of {}", contract.objects.join(", ")),
            ),
            Some(_) => {}
        }
        for key in table.options.keys().filter(|k| *k != "object") {
            report.error(format!("{table_path}.{key}"), format!("{wrapper} tables take only the option object"));
        }
    }
}
