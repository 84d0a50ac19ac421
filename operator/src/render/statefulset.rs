use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction,
    PersistentVolumeClaim, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::api::core::v1::{PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::backup;
use super::labels::{labels, metadata, selector_labels};
use super::volumes::{CONFIG_MOUNT, DATA_MOUNT, volume_claim};
use super::{
    CONFIG_KEY, PASSWORD_KEY, client_name, config_checksum, config_name, headless_name, superuser_secret_name,
};
use crate::api::StorageSpec;
use crate::validate::ValidatedStack;

/// The `postgres` user of the stack image (Debian's postgres packages, as in the official image).
pub const POSTGRES_UID: i64 = 999;
const DEFAULT_IMAGE: &str = "ghcr.io/pgwarehouse/stack-datawarehouse:17";
const DEFAULT_STORAGE: &str = "10Gi";
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "pgwarehouse.dev/config-checksum";

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

/// Over TCP, which the image's entrypoint opens only for the final server, once initdb and the
/// warehouse database exist. The `postgres` database, not the warehouse: a probe naming a
/// database still being created logs a FATAL line every period during first boot.
fn pg_isready(period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(
                ["pg_isready", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"].map(String::from).to_vec(),
            ),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Postgres as the stack image runs it, with the superuser Secret's password; `resources` are the
/// coordinator's or a worker's.
pub(super) fn container(stack: &ValidatedStack, resources: Option<ResourceRequirements>) -> Container {
    let postgres = &stack.spec.postgres;
    Container {
        name: "postgres".into(),
        image: Some(postgres.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into())),
        // The image's entrypoint runs initdb on first boot (creating POSTGRES_DB), then postgres.
        args: Some(["postgres", "-c", &format!("config_file={CONFIG_MOUNT}/{CONFIG_KEY}")].map(String::from).to_vec()),
        env: Some(vec![
            env("POSTGRES_USER", "postgres"),
            EnvVar {
                name: "POSTGRES_PASSWORD".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: superuser_secret_name(stack),
                        key: PASSWORD_KEY.into(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
            env("POSTGRES_DB", &stack.database),
            env("PGDATA", &format!("{DATA_MOUNT}/pgdata")),
            env("POSTGRES_INITDB_ARGS", "--auth-host=scram-sha-256 --auth-local=trust"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("postgres".into()),
            container_port: 5432,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(pg_isready(5, 3)),
        liveness_probe: Some(Probe { initial_delay_seconds: Some(30), ..pg_isready(10, 6) }),
        resources,
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount { name: "data".into(), mount_path: DATA_MOUNT.into(), ..VolumeMount::default() },
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_MOUNT.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

/// The claim template of a pod's data volume.
pub(super) fn data_claim(storage: &StorageSpec, labels: BTreeMap<String, String>) -> PersistentVolumeClaim {
    let metadata = ObjectMeta { name: Some("data".into()), labels: Some(labels), ..ObjectMeta::default() };
    volume_claim(metadata, storage.size.clone(), DEFAULT_STORAGE, storage.storage_class_name.clone())
}

/// Volumes outlive the stack unless `retainOnDelete: false`, and always outlive a scale-down.
pub(super) fn claim_retention(storage: &StorageSpec) -> StatefulSetPersistentVolumeClaimRetentionPolicy {
    StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some(if storage.retain_on_delete.unwrap_or(true) { "Retain" } else { "Delete" }.into()),
        when_scaled: Some("Retain".into()),
    }
}

/// The image's `postgres` user, no privilege escalation, the runtime's seccomp profile.
pub(super) fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(POSTGRES_UID),
        run_as_group: Some(POSTGRES_UID),
        fs_group: Some(POSTGRES_UID),
        run_as_non_root: Some(true),
        seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Pods `selector` picks land on different nodes when they can.
pub(super) fn spread_over_nodes(selector: BTreeMap<String, String>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector { match_labels: Some(selector), ..LabelSelector::default() }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..PodAffinityTerm::default()
                },
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The pod's configuration files, from the ConfigMap `name`.
pub(super) fn config_volume(name: String) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource { name, ..ConfigMapVolumeSource::default() }),
        ..Volume::default()
    }
}

/// One Postgres pod with its volume; the volume outlives the stack unless `retainOnDelete: false`.
/// With backups, the agent beside Postgres and the repository's volume; with a restore, the
/// restore step before the first start.
pub fn statefulset(stack: &ValidatedStack) -> StatefulSet {
    let mut postgres = container(stack, stack.spec.postgres.resources.clone());
    let (mounts, env) = backup::postgres_additions(stack);
    postgres.volume_mounts.get_or_insert_default().extend(mounts);
    postgres.env.get_or_insert_default().extend(env);
    let image = postgres.image.clone().unwrap_or_default();
    let agent = backup::agent(stack, &image, &postgres);
    let restore = backup::restore_step(stack, &image, &postgres);
    let mut volumes = vec![config_volume(config_name(stack))];
    volumes.extend(backup::volumes(stack));
    let mut pod_labels = labels(stack);
    pod_labels.extend(selector_labels(stack));
    let mut statefulset = StatefulSet {
        metadata: metadata(stack, client_name(stack)),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(headless_name(stack)),
            selector: LabelSelector { match_labels: Some(selector_labels(stack)), ..LabelSelector::default() },
            persistent_volume_claim_retention_policy: Some(claim_retention(&stack.spec.postgres.storage)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_CHECKSUM_ANNOTATION.to_string(),
                        config_checksum(stack),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    init_containers: restore.map(|r| vec![r]),
                    containers: std::iter::once(postgres).chain(agent).collect(),
                    security_context: Some(pod_security_context()),
                    termination_grace_period_seconds: Some(60),
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![data_claim(&stack.spec.postgres.storage, labels(stack))]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };
    if stack.highly_available() {
        super::ha::make_highly_available(stack, &mut statefulset);
    }
    statefulset
}
