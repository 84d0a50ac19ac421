//! The controller's side of Patroni: the shared configuration converged through the leader's
//! REST API (`PATCH /config`, restarts replicas first, then a switchover), and planned
//! switchovers asked with the annotation `pgwarehouse.dev/switchover-to: <pod>` (what
//! `pgwarehouse switchover` writes). Members are reached at the API address each publishes in
//! its pod's `status` annotation: the pod network, so an operator in the cluster.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;

use super::Settings;
use crate::api::DataWarehouseStack;
use crate::ha::{self, HaReport, Rest};
use crate::render::patroni::{self, Timing};
use crate::render::selector_labels;
use crate::validate::ValidatedStack;

pub const SWITCHOVER_TO: &str = "pgwarehouse.dev/switchover-to";

#[derive(Deserialize)]
struct PublishedApi {
    api_url: Option<String>,
}

/// The REST API of each member, as its pod publishes it.
pub async fn member_apis(client: &Client, settings: &Settings, stack: &ValidatedStack) -> Result<Vec<Rest>, String> {
    if settings.port_forward {
        return Err("Patroni's REST API is on the pod network: run the operator in the cluster to converge \
                    Patroni's configuration and to switch over"
            .into());
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), stack.namespace_or_default());
    let selector = crate::render::selector_text(&selector_labels(stack));
    let listed =
        pods.list(&ListParams::default().labels(&selector)).await.map_err(|e| super::api_error::one_line(&e))?;
    let apis: Vec<Rest> = listed
        .items
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
pub async fn converge(client: &Client, settings: &Settings, stack: &ValidatedStack) -> Result<HaReport, String> {
    let apis = member_apis(client, settings, stack).await?;
    let loop_wait = Duration::from_secs(Timing::of(&stack.spec.postgres).loop_wait.into());
    ha::converge(&apis, &patroni::dynamic_config(stack), loop_wait).await.map_err(|e| e.to_string())
}

/// The annotation's value when it asks for a switchover not yet made.
pub fn switchover_asked(stack: &DataWarehouseStack) -> Option<&String> {
    let handled = stack.status.as_ref().and_then(|s| s.switchover_handled.as_ref());
    stack.annotations().get(SWITCHOVER_TO).filter(|asked| Some(*asked) != handled)
}

/// The pod a request names (its first word); `any` lets Patroni choose the healthiest replica.
pub fn switchover_target(asked: &str) -> Option<&str> {
    asked.split_whitespace().next().filter(|target| *target != "any")
}

/// Runs the switchover `asked`; the new primary's pod.
pub async fn switchover(
    client: &Client,
    settings: &Settings,
    stack: &ValidatedStack,
    asked: &str,
) -> Result<String, String> {
    let apis = member_apis(client, settings, stack).await?;
    ha::switchover(&apis, switchover_target(asked)).await.map_err(|e| e.to_string())
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
}
