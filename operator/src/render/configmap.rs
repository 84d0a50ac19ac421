use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::config::{postgresql_conf, settings};
use super::config_name;
use super::labels::metadata;
use crate::validate::ValidatedStack;

pub const CONFIG_KEY: &str = "postgresql.conf";

/// postgresql.conf: the same settings `pgwarehouse local` runs with.
pub fn configmap(stack: &ValidatedStack) -> ConfigMap {
    ConfigMap {
        metadata: metadata(stack, config_name(stack)),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), postgresql_conf(&settings(stack)))])),
        ..ConfigMap::default()
    }
}

/// Changes whenever postgresql.conf does; on the pod template it rolls the pod.
pub fn config_checksum(stack: &ValidatedStack) -> String {
    let digest = Sha256::digest(postgresql_conf(&settings(stack)).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
