//! `spec.backup` and `spec.bootstrap`: continuous WAL archiving and scheduled base backups with
//! pgBackRest, and a new stack started from a repository.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The keys of an S3 repository's credentials Secret: the access key id and the secret key.
pub const S3_CREDENTIAL_KEYS: [&str; 2] = ["access-key-id", "secret-access-key"];

/// Where backups go, with WAL archiving, scheduled full and differential backups and retention.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// The pgBackRest repository: exactly one of `s3` or `volume`.
    pub repository: RepositorySpec,
    /// When base backups run (cron, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<BackupScheduleSpec>,
    /// How many backups the repository keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
}

/// A pgBackRest repository: exactly one of `s3` or `volume`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySpec {
    /// An S3 (or S3-compatible) bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3RepositorySpec>,
    /// A volume of its own (a PVC beside the data volume; locally a directory beside the data dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeRepositorySpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3RepositorySpec {
    pub bucket: String,
    /// The S3 endpoint's host (and port), e.g. `s3.eu-west-1.amazonaws.com` or `minio.infra:9000`.
    pub endpoint: String,
    pub region: String,
    /// Path of the repository inside the bucket (default `/pgwarehouse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `host` (default: `bucket.endpoint`) or `path` (`endpoint/bucket`, most S3-compatible servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_style: Option<UriStyle>,
    /// Verify the endpoint's TLS certificate (default true).
    #[serde(default, rename = "verifyTLS", skip_serializing_if = "Option::is_none")]
    pub verify_tls: Option<bool>,
    /// The Secret with the keys `access-key-id` and `secret-access-key`.
    pub credentials_secret_ref: SecretNameRef,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UriStyle {
    #[default]
    Host,
    Path,
}

/// A Secret in the stack's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretNameRef {
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRepositorySpec {
    /// Size of the repository's volume, a Kubernetes quantity (default `20Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// StorageClass of the volume; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// When base backups run, in cron syntax (UTC).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleSpec {
    /// Full backups (default `0 3 * * 0`: Sundays at 03:00).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<String>,
    /// Differential backups: what changed since the last full (default `0 3 * * 1-6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Full backups kept (default 2); older ones expire with their differentials and WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<u32>,
}

/// How a new stack's database comes to be.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Start from another stack's backups instead of an empty database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSpec>,
}

/// A restore before the first start: the data volume must be empty.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// The repository the other stack backs up to (the same shape as `backup.repository`).
    pub repository: RepositorySpec,
    /// The name of the stack whose backups to restore (its pgBackRest stanza); default: this
    /// stack's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// `latest` (default: every archived transaction) or an RFC 3339 time to recover to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}
