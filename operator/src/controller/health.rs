//! Readiness that means something: `/readyz` answers 200 only once every watch of every
//! controller (stacks, the kinds it owns, Secrets) has finished its first list, and 503 with the reason while any watch fails (403, API unreachable) until a
//! permission probe passes again. A standby replica waiting for the Lease is ready: it is where
//! it should be. `/healthz` stays a liveness check of the process.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a failing watch is logged, at most.
const LOG_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Stage {
    Starting,
    Standby,
    /// Leading or running alone; `unlisted` watches have not finished their first list.
    Running {
        unlisted: usize,
    },
}

#[derive(Debug)]
struct State {
    stage: Stage,
    failing: Option<String>,
    last_logged: Option<Instant>,
}

#[derive(Debug)]
pub struct Health(Mutex<State>);

impl Default for Health {
    fn default() -> Self {
        Health(Mutex::new(State { stage: Stage::Starting, failing: None, last_logged: None }))
    }
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("health lock")
    }

    pub fn standby(&self) {
        self.state().stage = Stage::Standby;
    }

    /// Controllers are starting; each of their `watches` calls [`Health::listed`] once listed.
    pub fn running(&self, watches: usize) {
        self.state().stage = Stage::Running { unlisted: watches };
    }

    pub fn listed(&self) {
        if let Stage::Running { unlisted } = &mut self.state().stage {
            *unlisted = unlisted.saturating_sub(1);
        }
    }

    /// A watch failed; returns whether to log it now (once per [`LOG_EVERY`] while failing).
    pub fn watch_failed(&self, reason: String, now: Instant) -> bool {
        let mut state = self.state();
        state.failing = Some(reason);
        let log = state.last_logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
        if log {
            state.last_logged = Some(now);
        }
        log
    }

    pub fn is_failing(&self) -> bool {
        self.state().failing.is_some()
    }

    /// The permission probe passed: the watches can list again.
    pub fn recovered(&self) {
        let mut state = self.state();
        state.failing = None;
        state.last_logged = None;
    }

    /// `Ok` for 200, `Err(reason)` for 503.
    pub fn readiness(&self) -> Result<&'static str, String> {
        let state = self.state();
        if let Some(reason) = &state.failing {
            return Err(format!("a watch is failing: {reason}"));
        }
        match state.stage {
            Stage::Starting => Err("starting".into()),
            Stage::Standby => Ok("standby: waiting for the leader Lease"),
            Stage::Running { unlisted: 0 } => Ok("ready"),
            Stage::Running { unlisted } => Err(format!("{unlisted} watch(es) have not listed yet")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_every_watch_listed_and_unready_while_one_fails() {
        let health = Health::default();
        assert_eq!(health.readiness(), Err("starting".into()));
        health.standby();
        assert!(health.readiness().is_ok(), "a standby replica is where it should be");
        health.running(2);
        assert_eq!(health.readiness(), Err("2 watch(es) have not listed yet".into()));
        health.listed();
        health.listed();
        assert_eq!(health.readiness(), Ok("ready"));

        let start = Instant::now();
        assert!(health.watch_failed("secrets is forbidden (Forbidden, 403)".into(), start));
        assert_eq!(health.readiness(), Err("a watch is failing: secrets is forbidden (Forbidden, 403)".into()));
        assert!(!health.watch_failed("again".into(), start + Duration::from_secs(5)), "rate-limited");
        assert!(health.watch_failed("still".into(), start + Duration::from_secs(31)));
        health.recovered();
        assert_eq!(health.readiness(), Ok("ready"));
        assert!(health.watch_failed("new trouble".into(), start + Duration::from_secs(32)), "logged at once again");
    }
}
