//! pgbackrest.conf for a stanza: the repository (S3 or a directory), where the data directory
//! and the server's socket are, retention. Credentials are not in it: pgBackRest reads them from
//! `PGBACKREST_REPO1_S3_KEY`/`_SECRET` (the pod's env, from the Secret), or locally from a
//! separate owner-only file.

use std::fmt;
use std::path::PathBuf;

use crate::api::UriStyle;
use crate::secrets::Secrets;
use crate::validate::{Repository, S3Repository};

/// Debian's path, the stack image's too.
pub const PGBACKREST: &str = "/usr/bin/pgbackrest";

/// The environment variables pgBackRest reads the S3 key pair from.
pub const S3_KEY_ENV: &str = "PGBACKREST_REPO1_S3_KEY";
pub const S3_SECRET_ENV: &str = "PGBACKREST_REPO1_S3_KEY_SECRET";

/// Where things are for pgBackRest, as the programs see them.
#[derive(Debug, Clone)]
pub struct Paths {
    pub pgdata: PathBuf,
    pub port: u16,
    pub socket_dir: PathBuf,
    /// Log and lock files.
    pub scratch: PathBuf,
    /// The repository of a volume repository (the mounted PVC, or a directory beside the data).
    pub volume_repository: PathBuf,
}

/// An S3 key pair. `Debug` shows neither part.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    /// The key pair of an S3 repository, from the resolved secrets.
    pub fn of(repository: &Repository, secrets: &Secrets) -> Option<Credentials> {
        let Repository::S3(s3) = repository else { return None };
        let [id, secret] = crate::api::S3_CREDENTIAL_KEYS
            .map(|key| secrets.get(&crate::api::SecretKeyRef { name: s3.secret.clone(), key: key.into() }).to_string());
        Some(Credentials { access_key_id: id, secret_access_key: secret })
    }

    /// Removes both values from a program's output, whatever it chose to print.
    pub fn redact(&self, text: &str) -> String {
        [&self.access_key_id, &self.secret_access_key]
            .iter()
            .filter(|v| !v.is_empty())
            .fold(text.to_string(), |t, v| t.replace(v.as_str(), "<redacted>"))
    }
}

/// `repo1-*` lines for a repository.
fn repository_lines(repository: &Repository, paths: &Paths) -> Vec<String> {
    match repository {
        Repository::Volume(_) => {
            vec!["repo1-type=posix".into(), format!("repo1-path={}", paths.volume_repository.display())]
        }
        Repository::S3(S3Repository { bucket, host, port, region, path, uri_style, verify_tls, secret: _ }) => {
            let mut lines = vec![
                "repo1-type=s3".into(),
                format!("repo1-path={path}"),
                format!("repo1-s3-bucket={bucket}"),
                format!("repo1-s3-endpoint={host}"),
                format!("repo1-s3-region={region}"),
                format!("repo1-s3-uri-style={}", if *uri_style == UriStyle::Path { "path" } else { "host" }),
                format!("repo1-storage-verify-tls={}", if *verify_tls { "y" } else { "n" }),
            ];
            lines.extend(port.map(|p| format!("repo1-storage-port={p}")));
            lines
        }
    }
}

/// The configuration of `stanza`; `retention_full` only where backups are taken (not for a
/// restore's source, whose backups belong to another stack). `credentials` only in a file
/// that its owner alone reads (the local mode's); the pod passes them in the environment.
pub fn pgbackrest_conf(
    stanza: &str,
    repository: &Repository,
    retention_full: Option<u32>,
    paths: &Paths,
    credentials: Option<&Credentials>,
) -> String {
    let mut lines = vec!["# Written by pgwarehouse; edits are overwritten.".to_string(), "[global]".into()];
    lines.extend(repository_lines(repository, paths));
    if let Some(c) = credentials {
        lines.push(format!("repo1-s3-key={}", c.access_key_id));
        lines.push(format!("repo1-s3-key-secret={}", c.secret_access_key));
    }
    lines.extend(retention_full.map(|n| format!("repo1-retention-full={n}")));
    lines.extend([
        format!("log-path={}", paths.scratch.display()),
        format!("lock-path={}", paths.scratch.display()),
        "log-level-file=off".into(),
        "log-level-console=warn".into(),
        // zstd compresses about as well as gzip at several times the speed.
        "compress-type=zst".into(),
        // Small files bundled into larger objects: a few requests per backup instead of one
        // per file (about a thousand for an empty cluster), which S3 bills and waits for.
        "repo1-bundle=y".into(),
        // The checkpoint that starts a backup is spread I/O, not a lock: queries go on.
        "start-fast=y".into(),
        "process-max=2".into(),
        format!("[{stanza}]"),
        format!("pg1-path={}", paths.pgdata.display()),
        format!("pg1-port={}", paths.port),
        format!("pg1-socket-path={}", paths.socket_dir.display()),
        "pg1-user=postgres".into(),
    ]);
    lines.join("\n") + "\n"
}

/// The server settings that archive WAL into the repository.
pub fn archive_settings(pgbackrest: &str, config: &str, stanza: &str) -> [(&'static str, String); 2] {
    [
        ("archive_mode", "on".to_string()),
        ("archive_command", format!("{pgbackrest} --config={config} --stanza={stanza} archive-push %p")),
    ]
}

/// A human name for where a repository is.
pub fn describe(repository: &Repository, paths: &Paths) -> String {
    match repository {
        Repository::Volume(_) => paths.volume_repository.display().to_string(),
        Repository::S3(s3) => format!("s3://{}{}", s3.bucket, s3.path),
    }
}
