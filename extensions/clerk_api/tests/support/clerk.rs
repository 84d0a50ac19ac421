//! A Clerk Backend API double on 127.0.0.1, following Clerk's documented shapes: users as a JSON
//! array, organizations and memberships as `{data, total_count}`, `limit` (1..=500, default 10)
//! and `offset`, newest first unless `order_by=+created_at`, bearer authentication, errors as
//! `{"errors": [{message, long_message, code}]}`, and 429 with `Retry-After` when throttled.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;

/// Epoch milliseconds of the first generated record; one more day per record after it.
pub const FIRST_CREATED_AT: i64 = 1_700_000_000_000;
pub const DAY_MS: i64 = 86_400_000;

/// How the double misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Every `every`-th request is a 429 with `Retry-After: retry_after`.
    Throttle {
        every: u32,
        retry_after: u64,
    },
    /// Every request is a 429.
    AlwaysThrottled,
    /// 500 with Clerk's error body.
    ServerError,
    /// 200 with a body that is not JSON.
    Malformed,
    /// An API version without the instance-wide `GET /organization_memberships` (404).
    NoInstanceMemberships,
}

#[derive(Default)]
struct State {
    users: Vec<Value>,
    organizations: Vec<Value>,
    memberships: Vec<Value>,
    mode: Option<Mode>,
    requests: u32,
    paths: Vec<String>,
}

pub struct ClerkDouble {
    pub port: u16,
    pub api_key: String,
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

/// `count` users, `user_0` oldest, with an email, a phone number and a sign-up one day apart.
pub fn users(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            let created = FIRST_CREATED_AT + i as i64 * DAY_MS;
            serde_json::json!({
                "object": "user", "id": format!("user_{i}"), "username": format!("u{i}"),
                "first_name": format!("First{i}"), "last_name": format!("Last{i}"), "gender": "",
                "primary_email_address_id": format!("idn_{i}b"),
                "email_addresses": [
                    {"object": "email_address", "id": format!("idn_{i}a"), "email_address": format!("old{i}@example.com")},
                    {"object": "email_address", "id": format!("idn_{i}b"), "email_address": format!("user{i}@example.com")}
                ],
                "phone_numbers": [{"object": "phone_number", "id": format!("idn_p{i}"), "phone_number": format!("+1555{i:07}")}],
                "banned": false, "created_at": created, "updated_at": created + 1000,
                "last_sign_in_at": if i % 2 == 0 { serde_json::json!(created + 5000) } else { Value::Null }
            })
        })
        .collect()
}

/// Organizations `org_0..`, and memberships: `members[k]` users (from `user_0`) in `org_k`.
pub fn organizations(members: &[usize]) -> (Vec<Value>, Vec<Value>) {
    let organizations: Vec<Value> = (0..members.len())
        .map(|k| {
            let created = FIRST_CREATED_AT + k as i64 * DAY_MS;
            serde_json::json!({"object": "organization", "id": format!("org_{k}"), "name": format!("Org {k}"),
                   "slug": format!("org-{k}"), "members_count": members[k], "created_at": created, "updated_at": created})
        })
        .collect();
    let memberships = members
        .iter()
        .enumerate()
        .flat_map(|(k, count)| {
            let organization = organizations[k].clone();
            (0..*count).map(move |i| {
                serde_json::json!({"object": "organization_membership", "id": format!("orgmem_{k}_{i}"),
                       "role": if i == 0 { "org:admin" } else { "org:member" },
                       "created_at": FIRST_CREATED_AT + i as i64, "updated_at": FIRST_CREATED_AT + i as i64,
                       "organization": organization.clone(),
                       "public_user_data": {"user_id": format!("user_{i}"), "identifier": format!("user{i}@example.com")}})
            })
        })
        .collect();
    (organizations, memberships)
}

impl ClerkDouble {
    pub fn start(api_key: &str, users: Vec<Value>, organizations: Vec<Value>, memberships: Vec<Value>) -> ClerkDouble {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind the Clerk double"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let state = Arc::new(Mutex::new(State { users, organizations, memberships, ..State::default() }));
        let thread = {
            let (server, state, key) = (server.clone(), state.clone(), api_key.to_string());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let (status, headers, body) = answer(&state, &key, &request);
                    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
                    for (name, value) in headers {
                        response.add_header(tiny_http::Header::from_bytes(name, value).unwrap());
                    }
                    let _ = request.respond(response);
                }
            })
        };
        ClerkDouble { port, api_key: api_key.to_string(), state, server, thread: Some(thread) }
    }

    /// Clerk's base URL, `.../v1`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        let mut state = self.state.lock().unwrap();
        state.mode = Some(mode);
    }

    /// Requests answered so far (429s included), and resets the count.
    pub fn take_requests(&self) -> (u32, Vec<String>) {
        let mut state = self.state.lock().unwrap();
        let taken = (state.requests, std::mem::take(&mut state.paths));
        state.requests = 0;
        taken
    }
}

impl Drop for ClerkDouble {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn error(status: u16, message: &str, long_message: &str, code: &str) -> (u16, Vec<(&'static str, String)>, String) {
    let body = serde_json::json!({"errors": [{"message": message, "long_message": long_message, "code": code}], "clerk_trace_id": "trace"});
    (status, vec![("Content-Type", "application/json".into())], body.to_string())
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(state: &Mutex<State>, key: &str, request: &tiny_http::Request) -> (u16, Vec<(&'static str, String)>, String) {
    let mut state = state.lock().unwrap();
    state.requests += 1;
    let (path, query) = request.url().split_once('?').unwrap_or((request.url(), ""));
    state.paths.push(request.url().to_string());
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());

    match state.mode.unwrap_or(Mode::Normal) {
        Mode::AlwaysThrottled => {
            let (s, mut h, b) = error(429, "Too many requests", "Too many requests, retry later", "too_many_requests");
            h.push(("Retry-After", "1".into()));
            return (s, h, b);
        }
        Mode::Throttle { every, retry_after } if state.requests.is_multiple_of(every) => {
            let (s, mut h, b) = error(429, "Too many requests", "Too many requests, retry later", "too_many_requests");
            h.push(("Retry-After", retry_after.to_string()));
            return (s, h, b);
        }
        Mode::ServerError => {
            return error(500, "Internal error", "Something went wrong on our side", "internal_clerk_error");
        }
        Mode::Malformed => return (200, vec![], "<html>maintenance</html>".into()),
        _ => {}
    }
    let authorized =
        request.headers().iter().any(|h| h.field.equiv("Authorization") && h.value.as_str() == format!("Bearer {key}"));
    if !authorized {
        return error(
            401,
            "Invalid authentication",
            "Unable to authenticate the request, you need to supply an active API key",
            "authentication_invalid",
        );
    }
    let limit = match param("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(l)) if (1..=500).contains(&l) => l,
        _ => return error(422, "is invalid", "limit must be an integer between 1 and 500", "form_param_value_invalid"),
    };
    let offset = match param("offset").map(|o| o.parse::<usize>()) {
        None => 0,
        Some(Ok(o)) => o,
        Some(Err(_)) => {
            return error(422, "is invalid", "offset must be a non-negative integer", "form_param_value_invalid");
        }
    };
    let page = |records: Vec<Value>| -> Vec<Value> { records.into_iter().skip(offset).take(limit).collect() };
    let paginated = |records: Vec<Value>| {
        let total = records.len();
        serde_json::json!({"data": page(records), "total_count": total}).to_string()
    };
    let ok = |body: String| (200, vec![("Content-Type", "application/json".to_string())], body);
    let not_found = || error(404, "not found", "Resource not found", "resource_not_found");
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match segments.as_slice() {
        ["users"] => {
            let ids: Vec<&String> = params.iter().filter(|(k, _)| k == "user_id").map(|(_, v)| v).collect();
            let mut users: Vec<Value> = state
                .users
                .iter()
                .filter(|u| ids.is_empty() || ids.iter().any(|id| u["id"] == id.as_str()))
                .cloned()
                .collect();
            if param("order_by").as_deref() != Some("+created_at") {
                users.reverse();
            }
            ok(Value::Array(page(users)).to_string())
        }
        ["organizations"] => {
            let mut organizations = state.organizations.clone();
            organizations.reverse();
            ok(paginated(organizations))
        }
        ["organizations", id] => match state.organizations.iter().find(|o| o["id"] == *id) {
            Some(organization) => ok(organization.to_string()),
            None => not_found(),
        },
        ["organizations", id, "memberships"] => {
            if !state.organizations.iter().any(|o| o["id"] == *id) {
                return not_found();
            }
            ok(paginated(state.memberships.iter().filter(|m| m["organization"]["id"] == *id).cloned().collect()))
        }
        ["users", id, "organization_memberships"] => {
            if !state.users.iter().any(|u| u["id"] == *id) {
                return not_found();
            }
            ok(paginated(
                state.memberships.iter().filter(|m| m["public_user_data"]["user_id"] == *id).cloned().collect(),
            ))
        }
        ["organization_memberships"] if state.mode == Some(Mode::NoInstanceMemberships) => not_found(),
        ["organization_memberships"] => ok(paginated(state.memberships.clone())),
        _ => not_found(),
    }
}
