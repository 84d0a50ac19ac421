//! The Kubernetes controller: validate → render → server-side apply → wait for the database →
//! observe/plan/apply with the engine → status. Each step lives in its own module; `reconcile`
//! reads like their table of contents.

pub mod api_error;
mod bootstrap;
mod database;
mod deploy;
mod dereference;
pub mod health;
pub mod instances;
pub mod leader;
pub mod metrics;
pub mod nodes;
pub mod patroni;
pub mod rbac;
mod reconcile;
pub mod refresh_now;
pub mod rollout;
mod run;
mod server;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Recorder;

pub use dereference::stacks_using_secret;
pub use reconcile::{error_policy, reconcile};
pub use run::{RunOptions, run};

use crate::sql::EngineError;
use metrics::Metrics;

/// The field manager of every object the operator applies.
pub const FIELD_MANAGER: &str = "pgwarehouse-operator";

/// How the controller reaches databases and how often it repairs drift.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Requeue interval of a converged stack: the drift-repair timer.
    pub requeue: Duration,
    /// `host[:port]` to reach every stack's database at, instead of its Service (for an operator
    /// running outside the cluster with a port-forward).
    pub database_host_override: Option<String>,
    /// Reach databases through a port-forward via the API server (an operator running outside
    /// the cluster, where Service names do not resolve).
    pub port_forward: bool,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    /// The most one reconcile's database stage (observe, plan, apply, read the status) may take:
    /// a stream that stalls (a port-forward, a dead TCP peer) would otherwise hold the stack's
    /// reconcile forever, since a server-side statement timeout cannot end a client's wait.
    pub database_stage_limit: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            requeue: Duration::from_secs(300),
            database_host_override: None,
            port_forward: false,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(300),
            database_stage_limit: Duration::from_secs(900),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Failed reconciles in a row, by `namespace/name`, for the backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Refreshes running because the refresh-now annotation asked for them.
    pub refresh_now: refresh_now::RefreshNow,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {}", api_error::one_line(.0))]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Error {
    /// The `reason` label of the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Engine(_) => "engine",
        }
    }
}
