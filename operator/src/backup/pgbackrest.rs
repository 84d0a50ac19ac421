//! Running pgbackrest: as the user that owns the cluster, with a stanza's config file, its
//! output scrubbed of the repository's credentials before it can reach an error or a log.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::config::PGBACKREST;
use super::{Credentials, RepositoryInfo};
use crate::local::cluster::Binaries;
use crate::validate::RestoreTarget;

#[derive(Debug, thiserror::Error)]
pub enum PgBackRestError {
    #[error("pgbackrest is not installed ({0} is missing): install Debian's pgbackrest package")]
    Missing(String),
    #[error("pgbackrest {command} failed: {output}")]
    Failed { command: String, output: String },
    #[error("{0}")]
    Info(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackupKind {
    Full,
    #[value(name = "diff")]
    Differential,
}

impl BackupKind {
    pub fn as_pgbackrest(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Differential => "diff",
        }
    }
}

/// pgbackrest for one stanza and config file.
#[derive(Debug, Clone)]
pub struct PgBackRest {
    pub binaries: Binaries,
    pub exe: PathBuf,
    /// The config file, as the programs see it.
    pub config: PathBuf,
    pub stanza: String,
    /// Only to scrub output; the values reach pgbackrest through its config file or environment.
    pub credentials: Option<Credentials>,
}

impl PgBackRest {
    pub fn new(binaries: Binaries, config: PathBuf, stanza: &str, credentials: Option<Credentials>) -> PgBackRest {
        PgBackRest { binaries, exe: PathBuf::from(PGBACKREST), config, stanza: stanza.to_string(), credentials }
    }

    pub fn require(&self) -> Result<(), PgBackRestError> {
        let on_host = self.binaries.on_host(&self.exe);
        if on_host.exists() { Ok(()) } else { Err(PgBackRestError::Missing(on_host.display().to_string())) }
    }

    fn run(&self, command: &str, args: &[&str]) -> Result<String, PgBackRestError> {
        self.require()?;
        let out = self
            .binaries
            .command_at(&self.exe)
            .arg(format!("--config={}", self.config.display()))
            .arg(format!("--stanza={}", self.stanza))
            .args(args)
            .arg(command)
            .output()
            .map_err(|e| PgBackRestError::Failed { command: command.into(), output: e.to_string() })?;
        let scrub = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes).to_string();
            self.credentials.as_ref().map(|c| c.redact(&text)).unwrap_or(text)
        };
        if out.status.success() {
            Ok(scrub(&out.stdout))
        } else {
            let output = format!("{}{}", scrub(&out.stdout), scrub(&out.stderr)).trim().to_string();
            Err(PgBackRestError::Failed { command: command.into(), output })
        }
    }

    /// Creates the stanza in the repository, or checks that it fits this server (idempotent).
    pub fn stanza_create(&self) -> Result<(), PgBackRestError> {
        self.run("stanza-create", &[]).map(drop)
    }

    /// A backup now; expiry by retention follows it. Returns how long it took.
    pub fn backup(&self, kind: BackupKind) -> Result<std::time::Duration, PgBackRestError> {
        let started = Instant::now();
        self.run("backup", &[&format!("--type={}", kind.as_pgbackrest())])?;
        Ok(started.elapsed())
    }

    pub fn info(&self) -> Result<RepositoryInfo, PgBackRestError> {
        let json = self.run("info", &["--output=json"])?;
        RepositoryInfo::from_json(&json).map_err(PgBackRestError::Info)
    }

    /// Restores into `pgdata` (empty or missing) for recovery to `target` at the next start.
    pub fn restore(&self, pgdata: &Path, target: RestoreTarget) -> Result<(), PgBackRestError> {
        let pg1 = format!("--pg1-path={}", pgdata.display());
        let mut args = vec![pg1];
        if let RestoreTarget::Time(time) = target {
            args.extend([
                "--type=time".into(),
                format!("--target={}", target_text(time)),
                "--target-action=promote".into(),
            ]);
        }
        self.run("restore", &args.iter().map(String::as_str).collect::<Vec<_>>()).map(drop)
    }
}

/// The form both pgBackRest (to pick the backup set) and Postgres read.
fn target_text(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}
