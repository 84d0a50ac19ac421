//! The Citus workers of a distributed stack (`spec.distributed`): a second StatefulSet
//! `<stack>-worker` behind the headless Service `<stack>-workers`, with the coordinator's image,
//! superuser Secret and hardening, its own postgresql.conf (no WAL archiving: backups cover the
//! coordinator) and its own volumes, retained like the coordinator's. The coordinator reaches
//! worker N at `<stack>-worker-N.<stack>-workers.<namespace>.svc`, a name that outlives the pod.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::config::{postgresql_conf, worker_settings};
use super::configmap::checksum;
use super::labels::{labels, metadata};
use super::services::headless_service_selecting;
use super::statefulset::{
    CONFIG_CHECKSUM_ANNOTATION, claim_retention, config_volume, container, data_claim, pod_security_context,
    spread_over_nodes,
};
use super::{CONFIG_KEY, headless_name};
use crate::api::StorageSpec;
use crate::validate::ValidatedStack;

/// What the workers run on, in apply order.
#[derive(Debug, Clone)]
pub struct WorkerObjects {
    pub configmap: ConfigMap,
    pub service: Service,
    pub statefulset: StatefulSet,
}

pub fn worker_statefulset_name(stack: &ValidatedStack) -> String {
    format!("{}-worker", stack.name)
}

pub fn workers_service_name(stack: &ValidatedStack) -> String {
    format!("{}-workers", stack.name)
}

fn worker_config_name(stack: &ValidatedStack) -> String {
    format!("{}-worker-config", stack.name)
}

/// Worker `index`'s stable DNS name.
pub fn worker_host(stack: &ValidatedStack, index: u32) -> String {
    format!(
        "{}-{index}.{}.{}.svc",
        worker_statefulset_name(stack),
        workers_service_name(stack),
        stack.namespace_or_default()
    )
}

/// The coordinator's stable DNS name, as the workers reach it.
pub fn coordinator_host(stack: &ValidatedStack) -> String {
    format!("{}-0.{}.{}.svc", stack.name, headless_name(stack), stack.namespace_or_default())
}

/// Picks the workers' pods and never the coordinator's (whose selector names `pgwarehouse-stack`).
pub fn worker_selector_labels(stack: &ValidatedStack) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "pgwarehouse-worker".to_string()),
        ("app.kubernetes.io/instance".to_string(), stack.name.clone()),
    ])
}

fn worker_labels(stack: &ValidatedStack) -> BTreeMap<String, String> {
    let mut labels = labels(stack);
    labels.extend(worker_selector_labels(stack));
    labels.insert("app.kubernetes.io/component".into(), "worker".into());
    labels
}

fn worker_metadata(stack: &ValidatedStack, name: String) -> ObjectMeta {
    ObjectMeta { labels: Some(worker_labels(stack)), ..metadata(stack, name) }
}

/// A worker's volume: `spec.distributed.storage`, each field defaulting to the stack's.
fn worker_storage(stack: &ValidatedStack) -> StorageSpec {
    let stack_storage = &stack.spec.postgres.storage;
    let own = stack.spec.distributed.as_ref().and_then(|d| d.storage.clone()).unwrap_or_default();
    StorageSpec {
        size: own.size.or_else(|| stack_storage.size.clone()),
        storage_class_name: own.storage_class_name.or_else(|| stack_storage.storage_class_name.clone()),
        retain_on_delete: own.retain_on_delete.or(stack_storage.retain_on_delete),
    }
}

fn config_data(stack: &ValidatedStack) -> BTreeMap<String, String> {
    BTreeMap::from([(CONFIG_KEY.to_string(), postgresql_conf(&worker_settings(stack)))])
}

/// The workers' objects with `replicas` pods; none for a stack on one node.
pub fn worker_objects(stack: &ValidatedStack, replicas: u32) -> Option<WorkerObjects> {
    stack.spec.distributed.as_ref()?;
    let data = config_data(stack);
    let configmap = ConfigMap {
        metadata: worker_metadata(stack, worker_config_name(stack)),
        data: Some(data.clone()),
        ..ConfigMap::default()
    };
    let service =
        headless_service_selecting(worker_metadata(stack, workers_service_name(stack)), worker_selector_labels(stack));
    Some(WorkerObjects { configmap, service, statefulset: worker_statefulset(stack, replicas, &data) })
}

/// Workers are alike and independent: they start together, and spread over nodes when they can.
fn worker_statefulset(stack: &ValidatedStack, replicas: u32, config: &BTreeMap<String, String>) -> StatefulSet {
    let resources = stack
        .spec
        .distributed
        .as_ref()
        .and_then(|d| d.resources.clone())
        .or_else(|| stack.spec.postgres.resources.clone());
    let storage = worker_storage(stack);
    StatefulSet {
        metadata: worker_metadata(stack, worker_statefulset_name(stack)),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            service_name: Some(workers_service_name(stack)),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector { match_labels: Some(worker_selector_labels(stack)), ..LabelSelector::default() },
            persistent_volume_claim_retention_policy: Some(claim_retention(&storage)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(worker_labels(stack)),
                    annotations: Some(BTreeMap::from([(CONFIG_CHECKSUM_ANNOTATION.to_string(), checksum(config))])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(stack, resources)],
                    affinity: Some(spread_over_nodes(worker_selector_labels(stack))),
                    security_context: Some(pod_security_context()),
                    termination_grace_period_seconds: Some(60),
                    volumes: Some(vec![config_volume(worker_config_name(stack))]),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![data_claim(&storage, worker_labels(stack))]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
