//! A stack's Postgres pods as Patroni reports them (more than one instance): its `role` label
//! and the member state it keeps in each pod's `status` annotation (state, timeline, WAL
//! position). Read through the API server, so the status holds wherever the operator runs.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::Deserialize;

use crate::api::InstanceStatus;
use crate::render::selector_labels;
use crate::validate::ValidatedStack;

/// The member state Patroni writes into its pod's `status` annotation.
#[derive(Debug, Default, Deserialize)]
struct MemberAnnotation {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    timeline: Option<i64>,
    #[serde(default)]
    xlog_location: Option<i64>,
    #[serde(default)]
    replication_state: Option<String>,
}

/// The pods of a stack run by Patroni, and how many the spec asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Instances {
    pub wanted: u32,
    pub members: Vec<InstanceStatus>,
}

fn is_primary(role: &str) -> bool {
    matches!(role, "primary" | "master" | "standby_leader")
}

impl Instances {
    pub fn primary(&self) -> Option<&str> {
        let mut primaries = self.members.iter().filter(|m| is_primary(&m.role) && m.state == "running");
        match (primaries.next(), primaries.next()) {
            (Some(one), None) => Some(one.pod.as_str()),
            _ => None,
        }
    }

    fn streaming(&self) -> usize {
        self.members.iter().filter(|m| !is_primary(&m.role) && m.state == "streaming").count()
    }

    /// The primary and its streaming replicas, out of wanted: `3/3`.
    pub fn ready(&self) -> String {
        format!("{}/{}", self.streaming() + usize::from(self.primary().is_some()), self.wanted)
    }

    /// `HighlyAvailable`: one primary and every other wanted instance streaming from it.
    pub fn condition(&self) -> (bool, &'static str, String) {
        let replicas = self.wanted.saturating_sub(1) as usize;
        let streaming = self.streaming();
        match self.primary() {
            None => (false, "NoPrimary", format!("no pod runs as the only primary ({} pods seen)", self.members.len())),
            Some(primary) if streaming < replicas => (
                false,
                "ReplicasNotStreaming",
                format!("{primary} is primary; {streaming} of {replicas} replicas stream from it"),
            ),
            Some(primary) => (true, "Streaming", format!("{primary} is primary; {streaming} replicas stream from it")),
        }
    }
}

/// The instances as the pods tell, `<stack>-0` first.
pub fn from_pods(pods: &[Pod], wanted: u32) -> Instances {
    let mut members: Vec<(InstanceStatus, Option<i64>)> = pods
        .iter()
        .filter_map(|pod| {
            let name = pod.metadata.name.clone()?;
            let annotation: MemberAnnotation = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("status"))
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            let label = pod.metadata.labels.as_ref().and_then(|l| l.get(crate::render::patroni::ROLE_LABEL)).cloned();
            let role = label.or(annotation.role).unwrap_or_else(|| "unknown".into());
            let mut state = annotation.state.unwrap_or_else(|| "unknown".into());
            // Patroni 3 reports a streaming replica as `running` with its replication state apart.
            if !is_primary(&role) && annotation.replication_state.as_deref() == Some("streaming") {
                state = "streaming".into();
            }
            let status = InstanceStatus { pod: name, role, state, timeline: annotation.timeline, lag_bytes: None };
            Some((status, annotation.xlog_location))
        })
        .collect();
    let primary_position = members.iter().find(|(m, _)| is_primary(&m.role)).and_then(|(_, position)| *position);
    for (member, position) in &mut members {
        if !is_primary(&member.role)
            && let (Some(primary), Some(position)) = (primary_position, *position)
        {
            member.lag_bytes = Some((primary - position).max(0));
        }
    }
    let mut members: Vec<InstanceStatus> = members.into_iter().map(|(m, _)| m).collect();
    members.sort_by_key(|m| {
        let ordinal = m.pod.rsplit('-').next().and_then(|n| n.parse::<u32>().ok());
        (ordinal.unwrap_or(u32::MAX), m.pod.clone())
    });
    Instances { wanted, members }
}

/// The stack's Postgres pods, when it runs more than one instance.
pub async fn list_pods(client: &Client, stack: &ValidatedStack) -> Result<Option<Vec<Pod>>, kube::Error> {
    if !stack.highly_available() {
        return Ok(None);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), stack.namespace_or_default());
    let selector = crate::render::selector_text(&selector_labels(stack));
    Ok(Some(pods.list(&ListParams::default().labels(&selector)).await?.items))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(name: &str, role: Option<&str>, status: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: role.map(|r| [("role".to_string(), r.to_string())].into()),
                annotations: Some([("status".to_string(), status.to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn instances_come_from_patronis_labels_and_annotations_with_lag_from_wal_positions() {
        let pods = [
            pod("wh-2", Some("replica"), r#"{"state":"streaming","role":"replica","xlog_location":1000,"timeline":2}"#),
            pod("wh-0", Some("primary"), r#"{"state":"running","role":"primary","xlog_location":5096,"timeline":2}"#),
            pod(
                "wh-1",
                Some("replica"),
                r#"{"state":"running","role":"replica","xlog_location":5096,"replication_state":"streaming","timeline":2}"#,
            ),
        ];
        let instances = from_pods(&pods, 3);
        let names: Vec<&str> = instances.members.iter().map(|m| m.pod.as_str()).collect();
        assert_eq!(names, ["wh-0", "wh-1", "wh-2"]);
        assert_eq!(instances.primary(), Some("wh-0"));
        assert_eq!(instances.members[2].lag_bytes, Some(4096));
        assert_eq!(instances.members[1].state, "streaming", "Patroni 3's running + streaming");
        assert_eq!(instances.ready(), "3/3");
        assert!(instances.condition().0);
    }

    #[test]
    fn two_primaries_or_a_replica_not_streaming_is_not_highly_available() {
        let primary = r#"{"state":"running","role":"primary","xlog_location":1}"#;
        let split = from_pods(&[pod("wh-0", Some("primary"), primary), pod("wh-1", Some("primary"), primary)], 2);
        assert_eq!(split.primary(), None);
        assert_eq!(split.condition().1, "NoPrimary");
        let starting = from_pods(
            &[pod("wh-0", Some("primary"), primary), pod("wh-1", None, r#"{"state":"starting","role":"replica"}"#)],
            3,
        );
        let (ok, reason, message) = starting.condition();
        assert!(!ok);
        assert_eq!(reason, "ReplicasNotStreaming");
        assert_eq!(message, "wh-0 is primary; 0 of 2 replicas stream from it");
        assert_eq!(starting.ready(), "1/3");
    }
}
