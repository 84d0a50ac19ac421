//! What backups add to the pod: pgBackRest's config files (ConfigMap keys), the backup agent
//! beside Postgres, the restore step before it, the repository volume, and the S3 key pair as
//! environment from the Secret (never in a rendered object's text).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, SecretKeySelector,
    Volume, VolumeMount,
};

use super::labels::metadata;
use super::volumes::{CONFIG_MOUNT, DATA_MOUNT, PGBACKREST_CONF_KEY, volume_claim};
use crate::api::S3_CREDENTIAL_KEYS;
use crate::backup::config::{Paths, S3_KEY_ENV, S3_SECRET_ENV, pgbackrest_conf};
use crate::backup::recover::REPLAY_CHECKED;
use crate::validate::{Repository, RestoreTarget, ValidatedStack};

pub const RESTORE_CONF_KEY: &str = "pgbackrest-restore.conf";
/// The restore step's container name.
pub const RESTORE_STEP: &str = "restore";
/// The repository volume's name in the pod, and where it is mounted.
const BACKUP_VOLUME: &str = "backup";
const DEFAULT_BACKUP_STORAGE: &str = "20Gi";
const REPOSITORY_MOUNT: &str = "/var/lib/pgbackrest";
/// The server's socket directory, shared with the agent (pgBackRest talks to the server there).
pub const SOCKET_VOLUME: &str = "run";
const SOCKET_MOUNT: &str = "/var/run/postgresql";
const AGENT: &str = "/usr/local/bin/pgwarehouse";

/// Where pgBackRest finds things in the pod.
pub fn backup_paths(_stack: &ValidatedStack) -> Paths {
    Paths {
        pgdata: PathBuf::from(format!("{DATA_MOUNT}/pgdata")),
        port: 5432,
        socket_dir: PathBuf::from(SOCKET_MOUNT),
        scratch: PathBuf::from("/tmp/pgbackrest"),
        volume_repository: PathBuf::from(REPOSITORY_MOUNT),
    }
}

/// The ConfigMap's pgBackRest keys: the stack's own repository, and a restore's source.
pub fn config_files(stack: &ValidatedStack) -> BTreeMap<String, String> {
    let paths = backup_paths(stack);
    let mut files = BTreeMap::new();
    if let Some(b) = &stack.backup {
        let conf = pgbackrest_conf(&stack.name, &b.repository, Some(b.retention_full), &paths, None);
        files.insert(PGBACKREST_CONF_KEY.to_string(), conf);
    }
    if let Some(r) = &stack.restore {
        files.insert(RESTORE_CONF_KEY.to_string(), pgbackrest_conf(&r.stanza, &r.repository, None, &paths, None));
    }
    files
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), ..VolumeMount::default() }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), optional: Some(false) }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The S3 key pair from its Secret, as pgBackRest reads it.
fn repository_env(repository: &Repository) -> Vec<EnvVar> {
    match repository {
        Repository::S3(s3) => vec![
            secret_env(S3_KEY_ENV, &s3.secret, S3_CREDENTIAL_KEYS[0]),
            secret_env(S3_SECRET_ENV, &s3.secret, S3_CREDENTIAL_KEYS[1]),
        ],
        Repository::Volume(_) => Vec::new(),
    }
}

/// What the Postgres container adds: the socket shared with the agent; with backups, the
/// repository (archive-push runs in it) and the key pair.
pub fn postgres_additions(stack: &ValidatedStack) -> (Vec<VolumeMount>, Vec<EnvVar>) {
    let Some(b) = &stack.backup else { return (Vec::new(), Vec::new()) };
    let mut mounts = vec![mount(SOCKET_VOLUME, SOCKET_MOUNT)];
    if matches!(b.repository, Repository::Volume(_)) {
        mounts.push(mount(BACKUP_VOLUME, REPOSITORY_MOUNT));
    }
    (mounts, repository_env(&b.repository))
}

/// The backup agent: the stack image's `pgwarehouse agent backup`.
pub fn agent(stack: &ValidatedStack, image: &str, base: &Container) -> Option<Container> {
    let b = stack.backup.as_ref()?;
    let (mut mounts, env) = postgres_additions(stack);
    mounts.extend([mount("data", DATA_MOUNT), mount("config", CONFIG_MOUNT)]);
    let args = [
        "agent",
        "backup",
        &format!("--config={CONFIG_MOUNT}/{PGBACKREST_CONF_KEY}"),
        &format!("--stanza={}", stack.name),
        &format!("--full={}", b.full),
        &format!("--differential={}", b.differential),
        &format!("--database={}", stack.database),
    ]
    .map(String::from);
    let mut args = args.to_vec();
    if stack.highly_available() {
        args.push(format!("--patroni-api=http://127.0.0.1:{}", super::patroni::API_PORT));
    }
    Some(agent_container("backup-agent", image, args, env, mounts, base))
}

/// A container running `pgwarehouse agent` from the stack image, as locked down as Postgres's.
fn agent_container(
    name: &str,
    image: &str,
    args: Vec<String>,
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
    base: &Container,
) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        command: Some(vec![AGENT.into()]),
        args: Some(args),
        env: Some(env),
        volume_mounts: Some(mounts),
        security_context: base.security_context.clone(),
        ..Container::default()
    }
}

/// The restore step of a stack bootstrapped from a repository: before Postgres first starts.
pub fn restore_step(stack: &ValidatedStack, image: &str, base: &Container) -> Option<Container> {
    let r = stack.restore.as_ref()?;
    let mut mounts = vec![mount("data", DATA_MOUNT), mount("config", CONFIG_MOUNT), mount(SOCKET_VOLUME, SOCKET_MOUNT)];
    if matches!(r.repository, Repository::Volume(_)) {
        mounts.push(VolumeMount { read_only: Some(true), ..mount("restore-source", REPOSITORY_MOUNT) });
    }
    let target = match r.target {
        RestoreTarget::Latest => "latest".to_string(),
        RestoreTarget::Time(t) => t.to_rfc3339(),
    };
    let mut env: Vec<EnvVar> =
        base.env.iter().flatten().filter(|e| e.name == "PGDATA" || e.name == "POSTGRES_PASSWORD").cloned().collect();
    env.extend(repository_env(&r.repository));
    let mut args = [
        "agent",
        "restore",
        &format!("--config={CONFIG_MOUNT}/{RESTORE_CONF_KEY}"),
        &format!("--stanza={}", r.stanza),
        &format!("--target={target}"),
    ]
    .map(String::from)
    .to_vec();
    // Recovery runs with what the stack's server will run with, where WAL replay checks it.
    let settings = super::config::settings(stack);
    for (name, _) in REPLAY_CHECKED {
        if let Some(value) = settings.get(name) {
            args.push(format!("--setting={name}={value}"));
        }
    }
    Some(agent_container(RESTORE_STEP, image, args, env, mounts, base))
}

/// The claim of a stack's volume repository: `<stack>-backup`.
fn backup_claim_name(stack_name: &str) -> String {
    format!("{stack_name}-{BACKUP_VOLUME}")
}

/// A volume repository's claim. A claim of its own rather than a StatefulSet claim template:
/// backups can be turned on for a running stack (templates are immutable), and with no owner
/// the backups outlive the stack, ready for a restore.
pub fn backup_claim(stack: &ValidatedStack) -> Option<PersistentVolumeClaim> {
    let Repository::Volume(volume) = &stack.backup.as_ref()?.repository else { return None };
    let mut meta = metadata(stack, backup_claim_name(&stack.name));
    meta.owner_references = None;
    Some(volume_claim(meta, volume.size.clone(), DEFAULT_BACKUP_STORAGE, volume.storage_class_name.clone()))
}

fn claim_volume(name: &str, claim: String, read_only: bool) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim,
            read_only: Some(read_only),
        }),
        ..Volume::default()
    }
}

/// The pod's extra volumes: the shared socket dir, the repository's claim, and a restore's
/// source (the other stack's repository claim).
pub fn volumes(stack: &ValidatedStack) -> Vec<Volume> {
    let mut volumes = Vec::new();
    if stack.backup.is_some() || stack.restore.is_some() {
        volumes.push(Volume { name: SOCKET_VOLUME.into(), empty_dir: Some(Default::default()), ..Volume::default() });
    }
    if backup_claim(stack).is_some() {
        volumes.push(claim_volume(BACKUP_VOLUME, backup_claim_name(&stack.name), false));
    }
    if let Some(r) = stack.restore.as_ref().filter(|r| matches!(r.repository, Repository::Volume(_))) {
        volumes.push(claim_volume("restore-source", backup_claim_name(&r.stanza), true));
    }
    volumes
}
