//! Rolling a stack of several instances onto a new pod template (an image, a resource, a
//! Patroni setting a restart picks up). Its StatefulSet uses `OnDelete`, so pods change only when
//! the operator replaces them: the replicas first, one at a time and only while every other
//! member streams, then a switchover to an updated replica, and the old primary's pod last.
//! Pods are evicted (the PodDisruptionBudget has its say), never deleted.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, EvictParams};

use super::instances::Instances;
use crate::ha::Rest;
use crate::validate::ValidatedStack;

const REVISION_LABEL: &str = "controller-revision-hash";

/// The next step of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Every pod runs the current template.
    Done,
    /// A pod is being replaced or a member does not stream yet: nothing more until it does.
    Wait(String),
    /// Replace this replica's pod.
    Replace(String),
    /// Only the primary runs the old template: hand its role to an updated replica, then replace it.
    SwitchOverThenReplace(String),
}

/// What to do next, from each pod's template revision and Patroni's account of the members.
pub fn next_step(revision: &str, pods: &[(String, Option<String>)], instances: &Instances) -> Step {
    let outdated: Vec<&str> =
        pods.iter().filter(|(_, r)| r.as_deref() != Some(revision)).map(|(name, _)| name.as_str()).collect();
    if outdated.is_empty() && pods.len() >= instances.wanted as usize {
        return Step::Done;
    }
    let (highly_available, _, why) = instances.condition();
    if !highly_available || pods.len() < instances.wanted as usize {
        return Step::Wait(why);
    }
    let primary = instances.primary().unwrap_or_default();
    match outdated.iter().find(|p| **p != primary) {
        Some(replica) => Step::Replace(replica.to_string()),
        None => Step::SwitchOverThenReplace(primary.to_string()),
    }
}

/// The template revision pods should run, once the StatefulSet controller has seen the latest
/// template (until then its revisions describe the previous one).
pub fn wanted_revision(statefulset: &StatefulSet) -> Option<&str> {
    let status = statefulset.status.as_ref()?;
    if status.observed_generation < statefulset.metadata.generation {
        return None;
    }
    status.update_revision.as_deref()
}

/// Takes the rollout's next step for the stack's `pods` (as listed once by this reconcile), with
/// Patroni's API when the operator reaches it; what it did, for the log.
pub async fn roll(
    client: &Client,
    stack: &ValidatedStack,
    statefulset: &StatefulSet,
    pods: &[Pod],
    instances: &Instances,
    apis: Option<&[Rest]>,
) -> Result<Step, String> {
    let Some(revision) = wanted_revision(statefulset) else {
        return Ok(Step::Wait("the StatefulSet controller has not yet seen the latest template".into()));
    };
    let pods: Vec<(String, Option<String>)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let revision = p.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).cloned();
            Some((p.metadata.name.clone()?, revision))
        })
        .collect();
    let step = next_step(revision, &pods, instances);
    let evict = |pod: &str| {
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), stack.namespace_or_default());
        let pod = pod.to_string();
        async move { pods_api.evict(&pod, &EvictParams::default()).await.map_err(|e| super::api_error::one_line(&e)) }
    };
    match &step {
        Step::Replace(pod) => {
            evict(pod).await?;
        }
        Step::SwitchOverThenReplace(pod) => {
            // Without Patroni's API (an operator outside the cluster), the primary's own shutdown
            // hands the lock over: slower, but no write is lost with synchronous replication.
            if let Some(apis) = apis {
                crate::ha::switchover(apis, None).await.map_err(|e| e.to_string())?;
            }
            evict(pod).await?;
        }
        Step::Done | Step::Wait(_) => {}
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InstanceStatus;

    fn instances(primary: &str, streaming: &[&str]) -> Instances {
        let member = |pod: &str, role: &str, state: &str| InstanceStatus {
            pod: pod.into(),
            role: role.into(),
            state: state.into(),
            ..Default::default()
        };
        let mut members = vec![member(primary, "primary", "running")];
        members.extend(streaming.iter().map(|p| member(p, "replica", "streaming")));
        Instances { wanted: 3, members }
    }

    fn pods(revisions: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        revisions.iter().map(|(p, r)| (p.to_string(), Some(r.to_string()))).collect()
    }

    #[test]
    fn replicas_go_first_one_at_a_time_then_a_switchover_before_the_primary() {
        let all = instances("wh-1", &["wh-0", "wh-2"]);
        let old = pods(&[("wh-0", "a"), ("wh-1", "a"), ("wh-2", "a")]);
        assert_eq!(next_step("b", &old, &all), Step::Replace("wh-0".into()));
        let one_done = pods(&[("wh-0", "b"), ("wh-1", "a"), ("wh-2", "a")]);
        assert_eq!(next_step("b", &one_done, &all), Step::Replace("wh-2".into()));
        let replicas_done = pods(&[("wh-0", "b"), ("wh-1", "a"), ("wh-2", "b")]);
        assert_eq!(next_step("b", &replicas_done, &all), Step::SwitchOverThenReplace("wh-1".into()));
        let done = pods(&[("wh-0", "b"), ("wh-1", "b"), ("wh-2", "b")]);
        assert_eq!(next_step("b", &done, &all), Step::Done);
    }

    #[test]
    fn the_revision_waits_for_the_statefulset_controller_to_see_the_latest_template() {
        let statefulset = |generation: i64, observed: i64| StatefulSet {
            metadata: kube::api::ObjectMeta { generation: Some(generation), ..Default::default() },
            status: Some(k8s_openapi::api::apps::v1::StatefulSetStatus {
                observed_generation: Some(observed),
                update_revision: Some("w-5d4f".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(wanted_revision(&statefulset(4, 4)), Some("w-5d4f"));
        assert_eq!(wanted_revision(&statefulset(5, 4)), None, "the revision describes the previous template");
        assert_eq!(wanted_revision(&StatefulSet::default()), None);
    }

    #[test]
    fn nothing_more_is_replaced_while_a_member_does_not_stream_or_a_pod_is_missing() {
        let catching_up = instances("wh-1", &["wh-2"]);
        let old = pods(&[("wh-0", "b"), ("wh-1", "a"), ("wh-2", "a")]);
        assert!(matches!(next_step("b", &old, &catching_up), Step::Wait(_)));
        let all = instances("wh-1", &["wh-0", "wh-2"]);
        let recreating = pods(&[("wh-1", "a"), ("wh-2", "a")]);
        assert!(matches!(next_step("b", &recreating, &all), Step::Wait(_)));
    }
}
