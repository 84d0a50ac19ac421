use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::validate::ValidatedStack;

/// Kubernetes recommended labels.
pub fn labels(stack: &ValidatedStack) -> BTreeMap<String, String> {
    let mut labels = selector_labels(stack);
    labels.insert("app.kubernetes.io/component".into(), "database".into());
    labels.insert("app.kubernetes.io/part-of".into(), "pgwarehouse".into());
    labels.insert("app.kubernetes.io/managed-by".into(), "pgwarehouse-operator".into());
    labels
}

/// The labels that pick the stack's pods: stable for the StatefulSet's lifetime.
pub fn selector_labels(stack: &ValidatedStack) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "pgwarehouse-stack".to_string()),
        ("app.kubernetes.io/instance".to_string(), stack.name.clone()),
    ])
}

/// `labels` as a label selector's text (`k=v,k=v`), for list calls.
pub fn selector_text(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The stack as controlling owner, when it came from the API server (it then has a uid).
pub fn owner_reference(stack: &ValidatedStack) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "pgwarehouse.dev/v1alpha1".into(),
        kind: "DataWarehouseStack".into(),
        name: stack.name.clone(),
        uid: stack.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Metadata of an object the stack owns.
pub(super) fn metadata(stack: &ValidatedStack, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: stack.namespace.clone(),
        labels: Some(labels(stack)),
        owner_references: owner_reference(stack).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}
