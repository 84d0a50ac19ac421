//! The HTTP agent our FDWs' clients share. A backend keeps one agent per timeout for its whole
//! life, so its pool keeps connections alive from one scan to the next (a rescan per outer row
//! is one request, not one handshake). Statuses are answers, not errors: each client reads a
//! 4xx/5xx body for the server's own words.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

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
                ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into()
            })
            .clone()
    })
}
