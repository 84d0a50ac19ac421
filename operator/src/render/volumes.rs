//! What the pod's containers share: where the data volume and the configuration are mounted,
//! and how a volume is claimed. Below both the StatefulSet and the backup parts of the pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Where the volume is mounted; PGDATA is a subdirectory so initdb finds it empty (lost+found).
pub const DATA_MOUNT: &str = "/var/lib/postgresql/data";
pub const CONFIG_MOUNT: &str = "/etc/pgwarehouse";
pub const PGBACKREST_CONF_KEY: &str = "pgbackrest.conf";

/// A ReadWriteOnce claim of `size` (`default_size` when unset).
pub(super) fn volume_claim(
    metadata: ObjectMeta,
    size: Option<String>,
    default_size: &str,
    storage_class_name: Option<String>,
) -> PersistentVolumeClaim {
    let size = size.unwrap_or_else(|| default_size.into());
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}
