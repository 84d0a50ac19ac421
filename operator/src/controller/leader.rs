//! Leader election on a `coordination.k8s.io` Lease, in client-go's manner: a standby looks at
//! the Lease every second and takes it once it is free or expired; the leader renews it well
//! before it expires and releases it when it stops, so the next replica leads within a second of
//! a clean shutdown (a killed leader is replaced once its Lease expires). Every write carries the
//! Lease's `resourceVersion`, so two replicas racing for it cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use super::api_error::one_line;

#[derive(Debug, Clone)]
pub struct Timing {
    /// How long a Lease holds without renewal.
    pub duration: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How often a standby looks at the Lease.
    pub retry_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(1),
        }
    }
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

/// Why [`Elector::hold`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    Stopped,
    /// Another replica holds the Lease, or renewals failed until it expired.
    Lost,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: Timing) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours = previous.and_then(|s| s.holder_identity.as_deref()) == Some(self.identity.as_str());
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.duration.as_secs() as i32),
            acquire_time: if ours { previous.and_then(|s| s.acquire_time.clone()) } else { Some(MicroTime(now)) },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours || previous.is_none() { transitions } else { transitions + 1 }),
            ..previous.cloned().unwrap_or_default()
        }
    }

    /// One attempt: takes or renews the Lease when it is free, expired or ours. `Ok(true)` when
    /// this replica holds it afterwards; a lost race is `Ok(false)`.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let result = match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                    spec: Some(self.spec(None, now)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                if held_by_another(&spec, &self.identity, now) {
                    return Ok(false);
                }
                let taken = Lease { spec: Some(self.spec(Some(&spec), now)), ..lease };
                self.api.replace(&self.name, &PostParams::default(), &taken).await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads (`true`) or `stop` fires (`false`).
    pub async fn acquire(&self, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            match self.try_lead().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %one_line(&e), lease = %self.name, "cannot read or take the leader Lease")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry_every) => {}
                _ = stop.wait_for(|stopped| *stopped) => return false,
            }
        }
    }

    /// Renews the Lease until `stop` fires or it is lost.
    pub async fn hold(&self, stop: &mut watch::Receiver<bool>) -> Held {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.timing.renew_every) => {}
                _ = stop.wait_for(|stopped| *stopped) => return Held::Stopped,
            }
            match self.try_lead().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => return Held::Lost,
                Err(e) => {
                    tracing::warn!(error = %one_line(&e), "cannot renew the leader Lease");
                    // Stop leading before the Lease can expire under us and another replica lead too.
                    if last_renewed.elapsed() + self.timing.renew_every >= self.timing.duration {
                        return Held::Lost;
                    }
                }
            }
        }
    }

    /// Gives the Lease up if this replica holds it, so that a standby takes it at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let released = LeaseSpec { holder_identity: None, acquire_time: None, renew_time: None, ..spec };
        self.api.replace(&self.name, &PostParams::default(), &Lease { spec: Some(released), ..lease }).await?;
        Ok(())
    }
}

fn held_by_another(spec: &LeaseSpec, identity: &str, now: Timestamp) -> bool {
    let Some(holder) = spec.holder_identity.as_deref().filter(|h| !h.is_empty()) else { return false };
    if holder == identity {
        return false;
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(15).into());
    renewed.is_some_and(|at| at.checked_add(duration).is_ok_and(|expiry| expiry > now))
}

#[cfg(test)]
mod tests;
