//! Backups of a local warehouse: pgBackRest with a config file in the stack's directory (owner
//! only: it holds an S3 repository's keys), the volume repository in a directory beside the
//! stack's (`.pgwarehouse/<stack>.backup`), so `local down --purge` leaves the backups.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use sqlx::postgres::PgConnectOptions;

use super::{Local, LocalError, LocalOptions, PASSWORD_FILE, io, write_secret, write_state};
use crate::backup::config::{self, Credentials, Paths};
use crate::backup::{BackupKind, PgBackRest, record, recover};
use crate::secrets::Secrets;
use crate::validate::backup::parse_target;
use crate::validate::{Repository, RestoreTarget, ValidatedStack};

const CONF_FILE: &str = "pgbackrest.conf";
const RESTORE_CONF_FILE: &str = "pgbackrest-restore.conf";

fn default_repository(stanza: &str) -> PathBuf {
    std::path::absolute(Path::new(".pgwarehouse").join(format!("{stanza}.backup"))).unwrap_or_default()
}

/// The default volume repository of the stanza's backups, when it holds them; otherwise an
/// error naming where it looked and how to point elsewhere.
fn find_repository(stanza: &str) -> Result<PathBuf, LocalError> {
    let default = default_repository(stanza);
    if default.join("backup").join(stanza).join("backup.info").exists() {
        return Ok(default);
    }
    Err(LocalError::Invalid(format!(
        "--from: no backups of stack {stanza:?} in {} (the default); `local up --data-dir DIR` keeps a \
         stack's backups in DIR.backup beside it (or in its --backup-dir): pass that directory as --from",
        default.display()
    )))
}

/// The volume repository of the stack whose directory is `stack_dir`: `--backup-dir`, or beside it.
pub fn repository_dir(stack_dir: &Path, options: &LocalOptions) -> PathBuf {
    options.backup_dir.clone().unwrap_or_else(|| {
        let name = stack_dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        stack_dir.with_file_name(format!("{name}.backup"))
    })
}

impl Local {
    fn backup_paths(&self, repository_dir: &Path) -> Paths {
        let b = &self.cluster.binaries;
        Paths {
            pgdata: b.in_server(&self.cluster.data_dir()),
            port: self.port,
            socket_dir: b.in_server(&self.cluster.dir),
            scratch: b.in_server(&self.cluster.dir),
            volume_repository: b.in_server(repository_dir),
        }
    }

    /// Writes a pgBackRest config file readable by its owner only, and returns pgbackrest for it.
    fn pgbackrest_with(
        &self,
        file: &str,
        stanza: &str,
        repository: &Repository,
        retention: Option<u32>,
        repository_dir: &Path,
        secrets: &Secrets,
    ) -> Result<PgBackRest, LocalError> {
        let credentials = Credentials::of(repository, secrets);
        let paths = self.backup_paths(repository_dir);
        let text = config::pgbackrest_conf(stanza, repository, retention, &paths, credentials.as_ref());
        let path = self.cluster.dir.join(file);
        write_secret(&path, &text)?;
        self.cluster.binaries.give_to_postgres(&path)?;
        if matches!(repository, Repository::Volume(_)) {
            std::fs::create_dir_all(repository_dir).map_err(io(repository_dir))?;
            self.cluster.binaries.give_to_postgres(repository_dir)?;
        }
        let pgbackrest =
            PgBackRest::new(self.cluster.binaries.clone(), self.cluster.binaries.in_server(&path), stanza, credentials);
        pgbackrest.require()?;
        Ok(pgbackrest)
    }

    /// pgbackrest for the stack's own backups (its config file rewritten from the spec).
    pub(super) fn pgbackrest(
        &self,
        stack: &ValidatedStack,
        options: &LocalOptions,
        secrets: &Secrets,
    ) -> Result<Option<PgBackRest>, LocalError> {
        let Some(backup) = &stack.backup else { return Ok(None) };
        let dir = repository_dir(&self.cluster.dir, options);
        let pgbackrest = self.pgbackrest_with(
            CONF_FILE,
            &stack.name,
            &backup.repository,
            Some(backup.retention_full),
            &dir,
            secrets,
        )?;
        Ok(Some(pgbackrest))
    }

    /// The archive settings pointing at the local config file.
    pub(super) fn archive_settings(&self, stack: &ValidatedStack) -> Vec<(&'static str, String)> {
        if stack.backup.is_none() {
            return Vec::new();
        }
        let conf = self.cluster.binaries.in_server(&self.cluster.dir.join(CONF_FILE));
        config::archive_settings(config::PGBACKREST, &conf.display().to_string(), &stack.name).into()
    }

    /// Where the backups go, for status.
    pub(super) fn repository_name(&self, stack: &ValidatedStack, options: &LocalOptions) -> Option<String> {
        let backup = stack.backup.as_ref()?;
        Some(config::describe(&backup.repository, &self.backup_paths(&repository_dir(&self.cluster.dir, options))))
    }

    fn socket_options(&self) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.cluster.dir).port(self.port).username("postgres").database("postgres")
    }
}

/// Takes a backup of the running local warehouse now and records what the repository holds.
pub async fn backup(
    stack: &ValidatedStack,
    secrets: &Secrets,
    options: &LocalOptions,
    kind: BackupKind,
    out: &mut dyn Write,
) -> Result<(), LocalError> {
    let local = Local::running(stack, options).await?;
    let pgbackrest = local.pgbackrest(stack, options, secrets)?.ok_or_else(|| no_repository("spec.backup"))?;
    pgbackrest.stanza_create()?;
    let took = pgbackrest.backup(kind)?;
    let info = pgbackrest.info()?;
    let mut conn = local.connect(&local.database).await?;
    record::write(&mut conn, &stack.name, &info).await.map_err(|e| LocalError::Connect(e.to_string()))?;
    if let Some(b) = info.newest() {
        let mb = b.size_bytes as f64 / 1e6;
        let _ = writeln!(
            out,
            "- {} backup {}: {mb:.1} MB in {:.1} s ({:.1} MB/s), {:.1} MB in the repository; {} backup(s) kept",
            if b.kind == "full" { "full" } else { "differential" },
            b.label,
            took.as_secs_f64(),
            mb / took.as_secs_f64().max(0.001),
            b.repository_bytes as f64 / 1e6,
            info.backups.len()
        );
    }
    Ok(())
}

/// A first full backup when the stack's repository holds none (as the pod's agent takes one at
/// once), recorded in the database; nothing when it has one.
pub(super) async fn first_full_backup(
    local: &Local,
    stack: &ValidatedStack,
    pgbackrest: &PgBackRest,
    out: &mut dyn Write,
) -> Result<(), LocalError> {
    if !pgbackrest.info()?.backups.is_empty() {
        return Ok(());
    }
    let took = pgbackrest.backup(BackupKind::Full)?;
    let info = pgbackrest.info()?;
    let mut conn = local.connect(&local.database).await?;
    record::write(&mut conn, &stack.name, &info).await.map_err(|e| LocalError::Connect(e.to_string()))?;
    let _ = writeln!(out, "- first full backup taken in {:.1} s (the repository had none)", took.as_secs_f64());
    Ok(())
}

fn no_repository(field: &str) -> LocalError {
    LocalError::Invalid(format!("{field}: the stack declares no backup repository"))
}

/// Restores the stack's backups (or `bootstrap.restore`'s) into a new data dir, recovers to the
/// target, and leaves the server running with a new superuser password.
pub async fn restore(
    stack: &ValidatedStack,
    secrets: &Secrets,
    options: &LocalOptions,
    target: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), LocalError> {
    if stack.spec.distributed.is_some() {
        // The repository holds the coordinator's WAL only: the workers' shards are not in it.
        return Err(LocalError::Invalid(
            "spec.distributed: local restore brings back one server, and a distributed stack's shards live on \
             its workers, which the backups do not cover yet"
                .into(),
        ));
    }
    let (stanza, repository, spec_target, field) = match (&stack.restore, &stack.backup) {
        (Some(r), _) => (r.stanza.clone(), r.repository.clone(), r.target, "spec.bootstrap.restore.target"),
        (None, Some(b)) => (stack.name.clone(), b.repository.clone(), RestoreTarget::Latest, "--target"),
        (None, None) => return Err(no_repository("spec.backup.repository")),
    };
    let (target, field) = match target {
        Some(text) => {
            (parse_target(text, Utc::now()).map_err(|e| LocalError::Invalid(format!("--target: {e}")))?, "--target")
        }
        None => (spec_target, field),
    };
    let (mut local, _) = Local::open(stack, options)?;
    if local.cluster.initialized() || local.cluster.data_dir().exists() {
        return Err(LocalError::Invalid(format!(
            "--data-dir: {} already holds a database; restore into a new directory",
            local.cluster.dir.display()
        )));
    }
    if !super::port_is_free(local.port) {
        return Err(LocalError::PortInUse(local.port));
    }
    crate::secrets::create_private_dir(&local.cluster.dir).map_err(io(&local.cluster.dir))?;
    local.cluster.give_to_postgres()?;
    let source_dir = match (&options.restore_from, &repository) {
        (Some(dir), _) => dir.clone(),
        (None, Repository::Volume(_)) => find_repository(&stanza)?,
        (None, Repository::S3(_)) => PathBuf::new(),
    };
    let source = local.pgbackrest_with(RESTORE_CONF_FILE, &stanza, &repository, None, &source_dir, secrets)?;
    let result = restore_into(&mut local, stack, secrets, options, &source, target, field, out).await;
    let _ = std::fs::remove_file(local.cluster.dir.join(RESTORE_CONF_FILE));
    if result.is_err() && local.cluster.running() {
        let _ = local.cluster.stop();
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn restore_into(
    local: &mut Local,
    stack: &ValidatedStack,
    secrets: &Secrets,
    options: &LocalOptions,
    source: &PgBackRest,
    target: RestoreTarget,
    field: &str,
    out: &mut dyn Write,
) -> Result<(), LocalError> {
    let info = source.info()?;
    let newest = info.restorable(&source.stanza, target, field).map_err(LocalError::Invalid)?;
    let started = std::time::Instant::now();
    source.restore(&local.cluster.binaries.in_server(&local.cluster.data_dir()), target)?;
    let _ = writeln!(
        out,
        "- restored stanza {:?} ({} backup(s), newest {}) into {}",
        source.stanza,
        info.backups.len(),
        newest.label,
        local.cluster.dir.display()
    );
    // The stack's own archiving goes on from the restored server (a new timeline).
    let own = local.pgbackrest(stack, options, secrets)?;
    local.password = crate::secrets::random_password().map_err(|e| LocalError::Io(format!("/dev/urandom: {e}")))?;
    write_secret(&local.cluster.dir.join(PASSWORD_FILE), &local.password)?;
    write_state(local, stack, &[], None)?;
    // Recovery runs without archiving (the own repository has no stanza yet) and with the
    // settings replay checks raised to the source's; the stanza is made on the promoted server,
    // which then restarts with the stack's own settings, archiving into it.
    let settings = local.settings(stack);
    let mut recovery = settings.clone();
    recovery.insert("archive_mode".into(), "off".into());
    recovery.extend(recover::replay_settings(&settings, &local.cluster.controldata()?));
    local.cluster.configure(&recovery)?;
    local.cluster.start()?;
    let cluster = local.cluster.clone();
    recover::finish(local.socket_options(), &local.password, || cluster.running(), || cluster.log_tail())
        .await
        .map_err(|e| LocalError::Io(e.to_string()))?;
    if let Some(own) = &own {
        own.stanza_create()?;
    }
    local.cluster.configure(&settings)?;
    local.cluster.stop()?;
    local.cluster.start()?;
    if let Some(own) = &own {
        first_full_backup(local, stack, own, out).await?;
    }
    let what = match target {
        RestoreTarget::Latest => "the latest archived transaction".to_string(),
        RestoreTarget::Time(t) => t.to_rfc3339(),
    };
    let _ = writeln!(
        out,
        "- recovered to {what} in {:.1} s; server listening on 127.0.0.1:{}",
        started.elapsed().as_secs_f64(),
        local.port
    );
    Ok(())
}
