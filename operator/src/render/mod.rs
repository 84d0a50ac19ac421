//! Pure renderers: what runs a validated stack in Kubernetes, one file per object. They take a
//! [`ValidatedStack`] (an unchecked spec cannot reach them) and return objects; applying them is
//! the controller's business.

mod backup;
pub mod config;
mod configmap;
mod ha;
mod labels;
pub mod patroni;
mod secret;
mod services;
mod statefulset;
mod volumes;
mod workers;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};

pub use backup::{RESTORE_STEP, backup_paths};
pub use configmap::{CONFIG_KEY, config_checksum, configmap};
pub use ha::{HaObjects, ha_objects, patroni_name, patroni_rules, replicas_service_name, role_selector};
pub use labels::{labels, owner_reference, selector_labels, selector_text};
pub use secret::{
    PASSWORD_KEY, REPLICATION_PASSWORD_KEY, REWIND_PASSWORD_KEY, StackPasswords, USERNAME_KEY, superuser_secret,
};
pub use services::{client_service, headless_service};
pub use statefulset::{POSTGRES_UID, statefulset};
pub use volumes::DATA_MOUNT;
pub use workers::{
    WorkerObjects, coordinator_host, worker_host, worker_objects, worker_selector_labels, worker_statefulset_name,
    workers_service_name,
};

use crate::validate::ValidatedStack;

/// Names of the objects a stack owns, derived from its name.
pub fn superuser_secret_name(stack: &ValidatedStack) -> String {
    format!("{}-superuser", stack.name)
}

pub fn config_name(stack: &ValidatedStack) -> String {
    format!("{}-config", stack.name)
}

pub fn headless_name(stack: &ValidatedStack) -> String {
    format!("{}-headless", stack.name)
}

/// The client Service, the StatefulSet and the database host share the stack's name.
pub fn client_name(stack: &ValidatedStack) -> String {
    stack.name.clone()
}

/// Everything a stack runs on, in apply order.
#[derive(Debug, Clone)]
pub struct Objects {
    pub secret: Secret,
    pub configmap: ConfigMap,
    pub headless: Service,
    pub client: Service,
    /// A volume repository's claim.
    pub backup_claim: Option<PersistentVolumeClaim>,
    pub statefulset: StatefulSet,
    /// A distributed stack's Citus workers.
    pub workers: Option<WorkerObjects>,
    /// A stack of more than one instance: Patroni's account and role, the replicas' Service, the
    /// disruption budget.
    pub ha: Option<HaObjects>,
}

/// Renders every object as the spec asks; `passwords` are the existing Secret's, or new ones.
pub fn objects(stack: &ValidatedStack, passwords: &StackPasswords) -> Objects {
    Objects {
        secret: superuser_secret(stack, passwords),
        configmap: configmap(stack),
        headless: headless_service(stack),
        client: client_service(stack),
        backup_claim: backup::backup_claim(stack),
        statefulset: statefulset(stack),
        workers: worker_objects(stack, wanted_workers(stack)),
        ha: ha_objects(stack),
    }
}

/// The worker pods the spec asks for (0 on one node).
pub fn wanted_workers(stack: &ValidatedStack) -> u32 {
    stack.spec.distributed.as_ref().map_or(0, |d| d.workers)
}

impl Objects {
    /// Every object as multi-document YAML.
    pub fn to_yaml(&self) -> String {
        let docs = [
            self.ha.as_ref().map(|h| serde_saphyr::to_string(&h.service_account)),
            self.ha.as_ref().map(|h| serde_saphyr::to_string(&h.role)),
            self.ha.as_ref().map(|h| serde_saphyr::to_string(&h.role_binding)),
            Some(serde_saphyr::to_string(&self.secret)),
            Some(serde_saphyr::to_string(&self.configmap)),
            Some(serde_saphyr::to_string(&self.headless)),
            Some(serde_saphyr::to_string(&self.client)),
            self.ha.as_ref().map(|h| serde_saphyr::to_string(&h.replicas_service)),
            self.backup_claim.as_ref().map(serde_saphyr::to_string),
            Some(serde_saphyr::to_string(&self.statefulset)),
            self.ha.as_ref().map(|h| serde_saphyr::to_string(&h.disruption_budget)),
            self.workers.as_ref().map(|w| serde_saphyr::to_string(&w.configmap)),
            self.workers.as_ref().map(|w| serde_saphyr::to_string(&w.service)),
            self.workers.as_ref().map(|w| serde_saphyr::to_string(&w.statefulset)),
        ];
        docs.into_iter().flatten().map(|d| format!("---\n{}", d.expect("objects serialize"))).collect()
    }
}

#[cfg(test)]
mod tests;
