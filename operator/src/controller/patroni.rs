//! The controller's side of Patroni: the shared configuration converged through the leader's
//! REST API (`PATCH /config`, restarts replicas first, then a switchover), and planned
//! switchovers asked with the annotation `pgwarehouse.dev/switchover-to: <pod>` (what
//! `pgwarehouse switchover` writes). Members are reached at the API address each publishes in
//! its pod's `status` annotation: the pod network, so an operator in the cluster.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;

use super::Settings;
use crate::api::DataWarehouseStack;
use crate::ha::{self, HaReport, Rest};
use crate::render::patroni::{self, Timing};
use crate::validate::ValidatedStack;

pub const SWITCHOVER_TO: &str = "pgwarehouse.dev/switchover-to";

#[derive(Deserialize)]
struct PublishedApi {
    api_url: Option<String>,
}

/// The REST API of each member, as the stack's `pods` publish it.
pub fn member_apis(settings: &Settings, pods: &[Pod]) -> Result<Vec<Rest>, String> {
    if settings.port_forward {
        return Err("Patroni's REST API is on the pod network: run the operator in the cluster to converge \
                    Patroni's configuration and to switch over"
            .into());
    }
    let apis: Vec<Rest> = pods
        .iter()
        .filter_map(|pod| pod.annotations().get("status"))
        .filter_map(|text| serde_json::from_str::<PublishedApi>(text).ok()?.api_url)
        .map(|url| Rest::new(url.strip_suffix("/patroni").unwrap_or(&url)))
        .collect();
    if apis.is_empty() {
        return Err("no pod publishes Patroni's API yet".into());
    }
    Ok(apis)
}

/// Brings the shared configuration to the spec's, through the leader.
pub async fn converge(apis: &[Rest], stack: &ValidatedStack) -> Result<HaReport, String> {
    let loop_wait = Duration::from_secs(Timing::of(&stack.spec.postgres).loop_wait.into());
    ha::converge(apis, &patroni::dynamic_config(stack), loop_wait).await.map_err(|e| e.to_string())
}

/// The annotation's value when it asks for a switchover not yet made.
pub fn switchover_asked(stack: &DataWarehouseStack) -> Option<&String> {
    let handled = stack.status.as_ref().and_then(|s| s.switchover_handled.as_ref());
    stack.annotations().get(SWITCHOVER_TO).filter(|asked| Some(*asked) != handled)
}

/// Whether this reconcile acts on a switchover request, from the stack as the API server holds it.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// Recorded as begun before anything is done: it is this reconcile's to make.
    Ours,
    /// Already answered (the watch cache this reconcile started from had not seen it yet), or
    /// begun by an operator that stopped before answering it; with the answer to record.
    Answered { error: Option<String> },
}

/// What the stack's current status says of the request `asked`: none when nothing has been done
/// about it yet.
pub fn answered(fresh: &DataWarehouseStack, asked: &str) -> Option<Claim> {
    let status = fresh.status.as_ref()?;
    if status.switchover_handled.as_deref() == Some(asked) {
        return Some(Claim::Answered { error: status.switchover_error.clone() });
    }
    (status.switchover_started.as_deref() == Some(asked)).then(|| Claim::Answered {
        error: Some(
            "the operator stopped while making this switchover: see status.primary, and ask again if \
                     it is still wanted"
                .into(),
        ),
    })
}

/// Records the request `asked` as begun before it is acted on. A reconcile starts from the watch
/// cache, which may not hold the status the previous one wrote moments ago, and an operator may
/// restart mid-switchover: reading the status afresh and recording the request first means no
/// request is made twice.
pub async fn claim_switchover(client: &Client, stack: &DataWarehouseStack, asked: &str) -> Result<Claim, kube::Error> {
    let api: Api<DataWarehouseStack> = Api::namespaced(client.clone(), &stack.namespace().unwrap_or_default());
    let fresh = api.get_status(&stack.name_any()).await?;
    if let Some(answer) = answered(&fresh, asked) {
        return Ok(answer);
    }
    let patch = serde_json::json!({"status": {"switchoverStarted": asked}});
    api.patch_status(&stack.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(Claim::Ours)
}

/// The pod a request names (its first word); `any` lets Patroni choose the healthiest replica.
pub fn switchover_target(asked: &str) -> Option<&str> {
    asked.split_whitespace().next().filter(|target| *target != "any")
}

/// Runs the switchover `asked`; the new primary's pod.
pub async fn switchover(apis: &[Rest], asked: &str) -> Result<String, String> {
    ha::switchover(apis, switchover_target(asked)).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_a_pod_or_any_and_may_carry_a_request_time() {
        assert_eq!(switchover_target("wh-2"), Some("wh-2"));
        assert_eq!(switchover_target("wh-2 2026-12-05T10:00:00Z"), Some("wh-2"));
        assert_eq!(switchover_target("any 2026-12-05T10:00:00Z"), None);
    }

    #[test]
    fn a_request_is_acted_on_once() {
        let mut stack = DataWarehouseStack::new("wh", Default::default());
        assert_eq!(switchover_asked(&stack), None);
        stack.metadata.annotations = Some([(SWITCHOVER_TO.to_string(), "wh-1 t1".to_string())].into());
        assert_eq!(switchover_asked(&stack).map(String::as_str), Some("wh-1 t1"));
        stack.status = Some(crate::api::DataWarehouseStackStatus {
            switchover_handled: Some("wh-1 t1".into()),
            ..Default::default()
        });
        assert_eq!(switchover_asked(&stack), None);
    }

    #[test]
    fn a_request_begun_or_answered_is_not_made_again() {
        let stack = |handled: Option<&str>, error: Option<&str>, started: Option<&str>| {
            let mut stack = DataWarehouseStack::new("wh", Default::default());
            stack.status = Some(crate::api::DataWarehouseStackStatus {
                switchover_handled: handled.map(String::from),
                switchover_error: error.map(String::from),
                switchover_started: started.map(String::from),
                ..Default::default()
            });
            stack
        };
        assert_eq!(answered(&stack(None, None, None), "wh-1 t2"), None, "new");
        assert_eq!(answered(&stack(Some("wh-1 t1"), Some("refused"), Some("wh-1 t1")), "wh-1 t2"), None);
        let made = answered(&stack(Some("wh-1 t2"), Some("refused"), Some("wh-1 t2")), "wh-1 t2");
        assert_eq!(made, Some(Claim::Answered { error: Some("refused".into()) }), "the first answer stands");
        let Some(Claim::Answered { error: Some(interrupted) }) =
            answered(&stack(None, None, Some("wh-1 t2")), "wh-1 t2")
        else {
            panic!("begun and never answered");
        };
        assert!(interrupted.contains("ask again"), "{interrupted}");
    }
}
