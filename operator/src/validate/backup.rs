//! `spec.backup` and `spec.bootstrap.restore`: one repository kind each, cron schedules, a
//! restore target that can exist. Every value here reaches pgbackrest.conf, so each is one line
//! of a known alphabet.

use chrono::{DateTime, Utc};

use super::{Report, is_dns1123_label, parse_schedule};
use crate::api::{BackupSpec, RepositorySpec, RestoreSpec, S3RepositorySpec, UriStyle, VolumeRepositorySpec};

pub const DEFAULT_FULL_SCHEDULE: &str = "0 3 * * 0";
pub const DEFAULT_DIFFERENTIAL_SCHEDULE: &str = "0 3 * * 1-6";
pub const DEFAULT_RETENTION_FULL: u32 = 2;
pub const DEFAULT_S3_PATH: &str = "/pgwarehouse";

/// A repository with its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub enum Repository {
    S3(S3Repository),
    Volume(VolumeRepositorySpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct S3Repository {
    pub bucket: String,
    pub host: String,
    pub port: Option<u16>,
    pub region: String,
    pub path: String,
    pub uri_style: UriStyle,
    pub verify_tls: bool,
    /// The Secret with `access-key-id` and `secret-access-key`.
    pub secret: String,
}

#[derive(Debug, Clone)]
pub struct ValidatedBackup {
    pub repository: Repository,
    pub full: String,
    pub differential: String,
    pub retention_full: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Every transaction the repository holds.
    Latest,
    Time(DateTime<Utc>),
}

#[derive(Debug, Clone)]
pub struct ValidatedRestore {
    pub repository: Repository,
    /// The pgBackRest stanza: the name of the stack that wrote the backups.
    pub stanza: String,
    pub target: RestoreTarget,
}

pub(super) fn backup(report: &mut Report, spec: &BackupSpec) -> Option<ValidatedBackup> {
    let repository = repository(report, "spec.backup.repository", &spec.repository);
    let schedule = spec.schedule.clone().unwrap_or_default();
    let mut cron = |field: &str, value: Option<String>, default: &str| {
        let text = value.unwrap_or_else(|| default.to_string());
        match parse_schedule(&text) {
            Ok(super::Schedule::Cron) => Some(text),
            Ok(super::Schedule::Seconds(_)) => {
                report.error(format!("spec.backup.schedule.{field}"), format!("{text:?}: write a cron expression"));
                None
            }
            Err(message) => {
                report.error(format!("spec.backup.schedule.{field}"), message);
                None
            }
        }
    };
    let full = cron("full", schedule.full, DEFAULT_FULL_SCHEDULE);
    let differential = cron("differential", schedule.differential, DEFAULT_DIFFERENTIAL_SCHEDULE);
    let retention_full = spec.retention.as_ref().and_then(|r| r.full).unwrap_or(DEFAULT_RETENTION_FULL);
    if !(1..=9_999_999).contains(&retention_full) {
        report.error("spec.backup.retention.full", "keep at least one full backup");
    }
    Some(ValidatedBackup { repository: repository?, full: full?, differential: differential?, retention_full })
}

pub(super) fn restore(
    report: &mut Report,
    spec: &RestoreSpec,
    stack_name: &str,
    now: DateTime<Utc>,
) -> Option<ValidatedRestore> {
    let path = "spec.bootstrap.restore";
    let repository = repository(report, &format!("{path}.repository"), &spec.repository);
    let stanza = spec.stack.clone().unwrap_or_else(|| stack_name.to_string());
    if !is_dns1123_label(&stanza) {
        report.error(format!("{path}.stack"), format!("{stanza:?} is not a stack name"));
    }
    let target = match spec.target.as_deref().unwrap_or("latest") {
        "latest" => Some(RestoreTarget::Latest),
        text => parse_target(text, now).map_err(|message| report.error(format!("{path}.target"), message)).ok(),
    };
    Some(ValidatedRestore { repository: repository?, stanza, target: target? })
}

/// `latest` or an RFC 3339 time that is not in the future.
pub fn parse_target(text: &str, now: DateTime<Utc>) -> Result<RestoreTarget, String> {
    if text == "latest" {
        return Ok(RestoreTarget::Latest);
    }
    let time = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("{text:?} is neither `latest` nor an RFC 3339 time such as 2026-11-25T14:30:00Z: {e}"))?
        .to_utc();
    if time > now {
        return Err(format!("{text:?} is in the future: nothing has been archived for it yet"));
    }
    Ok(RestoreTarget::Time(time))
}

fn repository(report: &mut Report, path: &str, spec: &RepositorySpec) -> Option<Repository> {
    match (&spec.s3, &spec.volume) {
        (Some(s3), None) => s3_repository(report, &format!("{path}.s3"), s3).map(Repository::S3),
        (None, Some(volume)) => {
            for (field, value) in [("size", &volume.size), ("storageClassName", &volume.storage_class_name)] {
                if value.as_deref().is_some_and(|v| v.is_empty() || !v.chars().all(plain)) {
                    report.error(format!("{path}.volume.{field}"), "must be a Kubernetes quantity or name");
                }
            }
            Some(Repository::Volume(volume.clone()))
        }
        (Some(_), Some(_)) => {
            report.error(path, "set one of `s3` or `volume`, not both");
            None
        }
        (None, None) => {
            report.error(path, "set one of `s3` or `volume`");
            None
        }
    }
}

/// Letters, digits and `-._`: what bucket names, regions, hosts and quantities are made of.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._".contains(c)
}

fn s3_repository(report: &mut Report, path: &str, s3: &S3RepositorySpec) -> Option<S3Repository> {
    let errors = report.0.len();
    let bucket_ok = (3..=63).contains(&s3.bucket.len())
        && s3.bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !bucket_ok {
        report.error(format!("{path}.bucket"), format!("{:?} is not an S3 bucket name", s3.bucket));
    }
    let endpoint = s3.endpoint.trim_start_matches("https://");
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map(Some).unwrap_or_else(|_| Some(0))),
        None => (endpoint, None),
    };
    if host.is_empty() || !host.chars().all(plain) || port == Some(0) {
        report.error(
            format!("{path}.endpoint"),
            format!("{:?}: write the endpoint's host and optional port (s3.amazonaws.com, minio:9000)", s3.endpoint),
        );
    }
    if s3.region.is_empty() || !s3.region.chars().all(plain) {
        report.error(format!("{path}.region"), format!("{:?} is not a region name", s3.region));
    }
    let repo_path = s3.path.clone().unwrap_or_else(|| DEFAULT_S3_PATH.to_string());
    if !repo_path.starts_with('/') || !repo_path.chars().all(|c| plain(c) || c == '/') {
        report.error(format!("{path}.path"), format!("{repo_path:?}: an absolute path of letters, digits, -._/"));
    }
    let secret = &s3.credentials_secret_ref.name;
    if secret.is_empty() || secret.len() > 253 || !secret.split('.').all(is_dns1123_label) {
        report.error(format!("{path}.credentialsSecretRef.name"), format!("{secret:?} is not a Secret name"));
    }
    (report.0.len() == errors).then(|| S3Repository {
        bucket: s3.bucket.clone(),
        host: host.to_string(),
        port,
        region: s3.region.clone(),
        path: repo_path,
        uri_style: s3.uri_style.unwrap_or_default(),
        verify_tls: s3.verify_tls.unwrap_or(true),
        secret: secret.clone(),
    })
}
