//! Reading what the stack refers to: the superuser Secret (its password is generated once) and
//! the Secrets its sources and roles name.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use crate::api::{DataWarehouseStack, SecretKeyRef};
use crate::render::{
    PASSWORD_KEY, REPLICATION_PASSWORD_KEY, REWIND_PASSWORD_KEY, StackPasswords, superuser_secret_name,
};
use crate::secrets::{SecretSource, no_such_secret, random_password};
use crate::validate::ValidatedStack;

/// The passwords in the stack's Secret; each one missing (no Secret yet, or a stack that just
/// gained replicas) is generated, once.
pub async fn stack_passwords(client: &Client, stack: &ValidatedStack) -> Result<StackPasswords, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), stack.namespace_or_default());
    let existing = secrets.get_opt(&superuser_secret_name(stack)).await?;
    let read = |key: &str| {
        let value = existing.as_ref().and_then(|s| s.data.as_ref()?.get(key)).map(|b| b.0.clone());
        match value.map(String::from_utf8) {
            Some(Ok(password)) if !password.is_empty() => password,
            _ => random_password().expect("the kernel provides random bytes"),
        }
    };
    Ok(StackPasswords {
        superuser: read(PASSWORD_KEY),
        replication: read(REPLICATION_PASSWORD_KEY),
        rewind: read(REWIND_PASSWORD_KEY),
    })
}

/// The Secrets a stack names, fetched once per reconcile.
pub struct KubeSecrets(BTreeMap<String, Option<Secret>>);

impl SecretSource for KubeSecrets {
    fn read(&self, reference: &SecretKeyRef) -> Result<Option<String>, String> {
        let Some(Some(secret)) = self.0.get(&reference.name) else { return Err(no_such_secret(&reference.name)) };
        let value = secret.data.as_ref().and_then(|d| d.get(&reference.key));
        value
            .map(|bytes| {
                String::from_utf8(bytes.0.clone())
                    .map_err(|_| format!("Secret {:?} key {:?} is not UTF-8 text", reference.name, reference.key))
            })
            .transpose()
    }
}

pub async fn referenced_secrets(client: &Client, stack: &ValidatedStack) -> Result<KubeSecrets, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), stack.namespace_or_default());
    let mut found = BTreeMap::new();
    for (_, reference) in stack.secret_refs() {
        if !found.contains_key(&reference.name) {
            found.insert(reference.name.clone(), api.get_opt(&reference.name).await?);
        }
    }
    Ok(KubeSecrets(found))
}

/// The stacks to reconcile when `secret` changes: those in its namespace that read it.
pub fn stacks_using_secret(secret: &Secret, stacks: &[Arc<DataWarehouseStack>]) -> Vec<ObjectRef<DataWarehouseStack>> {
    let name = secret.name_any();
    stacks
        .iter()
        .filter(|stack| stack.namespace() == secret.namespace())
        .filter(|stack| stack.spec.secret_refs().iter().any(|(_, r)| r.name == name))
        .map(|stack| ObjectRef::from_obj(stack.as_ref()))
        .collect()
}
