//! Patroni's REST API, the way the operator drives the members: the cluster's state
//! (`GET /cluster`), the shared configuration (`GET`/`PATCH /config`), restarts and switchovers.
//! Calls are blocking (ureq) and run off the async runtime's threads.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, thiserror::Error)]
#[error("Patroni at {url}: {message}")]
pub struct RestError {
    pub url: String,
    pub message: String,
}

/// A member as `GET /cluster` lists it. Patroni 3 calls the primary `leader` with state
/// `running`; Patroni 4 a streaming replica's state `streaming`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClusterMember {
    pub name: String,
    pub role: String,
    pub state: String,
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Bytes of WAL behind the primary; Patroni writes `"unknown"` when it cannot tell.
    #[serde(default)]
    pub lag: Option<Value>,
    #[serde(default)]
    pub pending_restart: bool,
}

impl ClusterMember {
    pub fn is_primary(&self) -> bool {
        matches!(self.role.as_str(), "leader" | "master" | "primary" | "standby_leader")
    }

    /// A replica whose Postgres runs; whether it streams only the primary can tell
    /// ([`Rest::replication`]).
    pub fn is_running_replica(&self) -> bool {
        !self.is_primary() && matches!(self.state.as_str(), "streaming" | "running")
    }

    pub fn lag_bytes(&self) -> Option<u64> {
        self.lag.as_ref().and_then(Value::as_u64)
    }
}

/// A standby connected to the primary, as `GET /patroni` on the primary lists it
/// (pg_stat_replication's row).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Replication {
    pub application_name: String,
    pub state: String,
    #[serde(default)]
    pub sync_state: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct PatroniAnswer {
    #[serde(default)]
    replication: Vec<Replication>,
}

#[derive(Debug, Clone, Deserialize)]
struct ClusterAnswer {
    #[serde(default)]
    members: Vec<ClusterMember>,
}

/// One member's REST API, `http://host:port`.
#[derive(Debug, Clone)]
pub struct Rest {
    pub base: String,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into()
}

/// Switchovers and restarts answer once done: they get longer than state reads.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const ACTION_TIMEOUT: Duration = Duration::from_secs(120);

impl Rest {
    pub fn new(base: impl Into<String>) -> Rest {
        Rest { base: base.into().trim_end_matches('/').to_string() }
    }

    async fn call(&self, method: &'static str, path: &str, body: Option<Value>) -> Result<String, RestError> {
        let url = format!("{}{path}", self.base);
        let timeout = if method == "GET" { READ_TIMEOUT } else { ACTION_TIMEOUT };
        let (task_url, path) = (url.clone(), path.to_string());
        let answer = tokio::task::spawn_blocking(move || {
            let agent = agent(timeout);
            let response = match (method, body) {
                ("GET", _) => agent.get(&task_url).call(),
                ("PATCH", Some(body)) => {
                    agent.patch(&task_url).header("Content-Type", "application/json").send(body.to_string())
                }
                (_, body) => agent
                    .post(&task_url)
                    .header("Content-Type", "application/json")
                    .send(body.unwrap_or(Value::Null).to_string()),
            };
            let mut response = response.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
            if (200..300).contains(&status) {
                Ok(text)
            } else {
                Err(format!("{method} {path}: {status} {}", text.trim()))
            }
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        answer.map_err(|message| RestError { url, message })
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, text: &str) -> Result<T, RestError> {
        serde_json::from_str(text).map_err(|e| RestError { url: self.base.clone(), message: e.to_string() })
    }

    /// Every member as this one knows them (from the lock store).
    pub async fn cluster(&self) -> Result<Vec<ClusterMember>, RestError> {
        Ok(self.parse::<ClusterAnswer>(&self.call("GET", "/cluster", None).await?)?.members)
    }

    /// The standbys connected to this member (a primary), from its pg_stat_replication.
    pub async fn replication(&self) -> Result<Vec<Replication>, RestError> {
        Ok(self.parse::<PatroniAnswer>(&self.call("GET", "/patroni", None).await?)?.replication)
    }

    /// Whether this member holds the leader lock with its Postgres running (`GET /primary`
    /// answers 200 there and 503 anywhere else).
    pub async fn is_primary(&self) -> Result<bool, RestError> {
        match self.call("GET", "/primary", None).await {
            Ok(_) => Ok(true),
            Err(e) if e.message.starts_with("GET /primary: ") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The configuration every member shares.
    pub async fn config(&self) -> Result<Value, RestError> {
        self.parse(&self.call("GET", "/config", None).await?)
    }

    /// Merges `patch` into the shared configuration (`null` removes a key).
    pub async fn patch_config(&self, patch: &Value) -> Result<(), RestError> {
        self.call("PATCH", "/config", Some(patch.clone())).await.map(drop)
    }

    /// Restarts this member's Postgres when a changed setting waits for it; returns once up.
    pub async fn restart_pending(&self) -> Result<(), RestError> {
        self.call("POST", "/restart", Some(serde_json::json!({"restart_pending": true}))).await.map(drop)
    }

    /// Restarts this member's Postgres whether or not a setting waits for it; returns once up.
    pub async fn restart(&self) -> Result<(), RestError> {
        self.call("POST", "/restart", Some(serde_json::json!({}))).await.map(drop)
    }

    /// Hands the primary role from `leader` to `candidate` (any healthy replica when none);
    /// returns once the candidate is the primary.
    pub async fn switchover(&self, leader: &str, candidate: Option<&str>) -> Result<String, RestError> {
        let mut body = serde_json::json!({"leader": leader});
        if let Some(candidate) = candidate {
            body["candidate"] = serde_json::json!(candidate);
        }
        self.call("POST", "/switchover", Some(body)).await
    }
}

/// The first answer to `GET /cluster` among `members`' APIs (any member knows the whole cluster).
pub async fn cluster_from_any(members: &[Rest]) -> Result<Vec<ClusterMember>, RestError> {
    let mut last = RestError { url: String::new(), message: "no member to ask".into() };
    for member in members {
        match member.cluster().await {
            Ok(cluster) => return Ok(cluster),
            Err(e) => last = e,
        }
    }
    Err(last)
}
