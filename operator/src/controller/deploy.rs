//! Server-side apply of the rendered objects: one field manager, forced, in dependency order.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FIELD_MANAGER;
use crate::render::{Objects, WorkerObjects};

async fn apply<K>(client: &Client, object: &K) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let meta = object.meta();
    let api: Api<K> = Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or("default"));
    let name = meta.name.as_deref().unwrap_or_default();
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?;
    Ok(())
}

pub async fn apply_objects(client: &Client, objects: &Objects) -> Result<(), kube::Error> {
    if let Some(ha) = &objects.ha {
        apply(client, &ha.service_account).await?;
        apply(client, &ha.role).await?;
        apply(client, &ha.role_binding).await?;
    }
    apply(client, &objects.secret).await?;
    apply(client, &objects.configmap).await?;
    apply(client, &objects.headless).await?;
    apply(client, &objects.client).await?;
    if let Some(claim) = &objects.backup_claim {
        apply(client, claim).await?;
    }
    if objects.ha.is_some() {
        switch_to_on_delete(client, &objects.statefulset).await?;
    }
    apply(client, &objects.statefulset).await?;
    if let Some(ha) = &objects.ha {
        apply(client, &ha.replicas_service).await?;
        apply(client, &ha.disruption_budget).await?;
    }
    apply_workers(client, objects.workers.as_ref()).await
}

/// A distributed stack's worker objects (none on one node).
pub async fn apply_workers(client: &Client, workers: Option<&WorkerObjects>) -> Result<(), kube::Error> {
    if let Some(workers) = workers {
        apply(client, &workers.configmap).await?;
        apply(client, &workers.service).await?;
        apply(client, &workers.statefulset).await?;
    }
    Ok(())
}

/// A StatefulSet that rolled its own pods (a stack that had one instance) keeps the API server's
/// defaulted `rollingUpdate`, which no apply owns and which `OnDelete` forbids: it is removed with
/// the strategy's change, once.
async fn switch_to_on_delete(client: &Client, statefulset: &StatefulSet) -> Result<(), kube::Error> {
    let meta = &statefulset.metadata;
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or("default"));
    let name = meta.name.as_deref().unwrap_or_default();
    let live = api.get_opt(name).await?;
    let strategy = live.and_then(|s| s.spec?.update_strategy?.type_);
    if strategy.is_some_and(|t| t != "OnDelete") {
        let patch = serde_json::json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(())
}
