//! Server-side apply of the rendered objects: one field manager, forced, in dependency order.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FIELD_MANAGER;
use crate::render::{Objects, WorkerObjects};

/// The object as the API server holds it after the apply, status included.
async fn apply<K>(client: &Client, object: &K) -> Result<K, kube::Error>
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
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await
}

/// Applies every object; returns the StatefulSet as applied, its status as the API server last
/// recorded it (ready pods, revisions), so that nothing needs to read it again.
pub async fn apply_objects(client: &Client, objects: &Objects) -> Result<StatefulSet, kube::Error> {
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
    let statefulset = apply(client, &objects.statefulset).await?;
    if let Some(ha) = &objects.ha {
        apply(client, &ha.replicas_service).await?;
        apply(client, &ha.disruption_budget).await?;
    }
    apply_workers(client, objects.workers.as_ref()).await?;
    Ok(statefulset)
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
