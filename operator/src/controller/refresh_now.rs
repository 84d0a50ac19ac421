//! The refreshes a `pgwarehouse.dev/refresh-now` annotation asks for run in a task of their own,
//! on a connection of their own, at most one task per stack: a reconcile starts them and returns,
//! so drift repair and Secret rotation of every stack go on while long refreshes run. Each run
//! records its outcome in the run log, which the status shows.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sqlx::PgConnection;

use crate::validate::ValidatedStack;

/// The stacks (`namespace/name`) whose asked-for refreshes are running.
#[derive(Debug, Default)]
pub struct RefreshNow(Arc<Mutex<HashSet<String>>>);

impl RefreshNow {
    fn running_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().expect("refresh-now lock")
    }

    pub fn running(&self, stack: &str) -> bool {
        self.running_set().contains(stack)
    }

    /// Runs every refresh of `stack` on `conn` in the background; false (and nothing started)
    /// while an earlier run of the same stack is still going.
    pub fn start(&self, key: String, mut conn: PgConnection, stack: ValidatedStack) -> bool {
        if !self.running_set().insert(key.clone()) {
            return false;
        }
        let running = self.0.clone();
        tokio::spawn(async move {
            match crate::sql::refresh::run_now(&mut conn, &stack, &[]).await {
                Ok(runs) => tracing::info!(stack = %key, refreshes = runs.len(), "refresh-now done"),
                Err(error) => tracing::warn!(stack = %key, %error, "refresh-now"),
            }
            running.lock().expect("refresh-now lock").remove(&key);
        });
        true
    }
}
