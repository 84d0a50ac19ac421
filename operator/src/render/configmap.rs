use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::config::{postgresql_conf, settings};
use super::config_name;
use super::labels::metadata;
use super::patroni::PATRONI_KEY;
use crate::validate::ValidatedStack;

pub const CONFIG_KEY: &str = "postgresql.conf";

/// postgresql.conf: the same settings `pgwarehouse local` runs with.
pub fn configmap(stack: &ValidatedStack) -> ConfigMap {
    ConfigMap { metadata: metadata(stack, config_name(stack)), data: Some(data(stack)), ..ConfigMap::default() }
}

/// postgresql.conf (Patroni's configuration instead with more than one instance: Patroni writes
/// postgresql.conf) and, with backups, pgBackRest's config files.
fn data(stack: &ValidatedStack) -> BTreeMap<String, String> {
    let mut data = super::backup::config_files(stack);
    if stack.highly_available() {
        data.insert(PATRONI_KEY.to_string(), super::ha::patroni_yaml(stack));
    } else {
        data.insert(CONFIG_KEY.to_string(), postgresql_conf(&settings(stack)));
    }
    data
}

/// Changes whenever a config file a restart would pick up does; on the pod template it rolls
/// the pods. Under Patroni, postgresql.conf changes reach the pods through Patroni instead.
pub fn config_checksum(stack: &ValidatedStack) -> String {
    let mut data = data(stack);
    if stack.highly_available() {
        data.insert(PATRONI_KEY.to_string(), super::ha::patroni_yaml_after_bootstrap(stack));
    }
    checksum(&data)
}

/// A digest of config files, by name.
pub(super) fn checksum(data: &BTreeMap<String, String>) -> String {
    let mut digest = Sha256::new();
    for (key, text) in data {
        digest.update(key.as_bytes());
        digest.update(text.as_bytes());
    }
    digest.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
