//! From what the database recorded to `status.backup` and the `BackedUp` condition.

use chrono::{DateTime, Utc};

use super::info::BackupSet;
use super::record::BackupState;
use crate::api::{ArchiveStatus, BackupSetStatus, BackupStatus};
use crate::validate::{ValidatedBackup, next_run};

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn set(b: &BackupSet) -> BackupSetStatus {
    BackupSetStatus {
        label: b.label.clone(),
        time: rfc3339(b.stop),
        duration_seconds: b.duration_seconds(),
        size_bytes: b.size_bytes,
        repository_bytes: b.repository_bytes,
    }
}

pub fn backup_status(repository: String, state: &BackupState) -> BackupStatus {
    let info = &state.repository;
    let a = &state.archiver;
    BackupStatus {
        repository,
        last_backup_time: info.newest().map(|b| rfc3339(b.stop)),
        last_full: info.last("full").map(set),
        last_differential: info.last("diff").map(set),
        backups: info.backups.len() as i64,
        archive: ArchiveStatus {
            last_archived_wal: a.last_archived_wal.clone(),
            last_archived_time: a.last_archived_time.map(rfc3339),
            failed_count: a.failed_count,
            last_failed_wal: a.last_failed_wal.clone(),
            last_failed_time: a.last_failed_time.map(rfc3339),
            failing: a.failing(),
        },
        oldest_recovery_point: info.oldest_recovery_point().map(rfc3339),
        newest_recovery_point: state.newest_recovery_point().map(rfc3339),
    }
}

/// How late a scheduled backup may finish before it counts as missed.
const GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(2);

/// The `BackedUp` condition: (true/false, reason, message).
pub fn backed_up(backup: &ValidatedBackup, state: &BackupState, now: DateTime<Utc>) -> (bool, &'static str, String) {
    let a = &state.archiver;
    if a.failing() {
        return (
            false,
            "ArchivingFailed",
            format!(
                "archiving {} failed at {} ({} failure(s)); the server keeps the WAL until it succeeds",
                a.last_failed_wal.as_deref().unwrap_or("WAL"),
                a.last_failed_time.map(rfc3339).unwrap_or_default(),
                a.failed_count
            ),
        );
    }
    let Some(newest) = state.repository.newest() else {
        return (false, "NoBackup", "no backup in the repository yet".into());
    };
    let missed =
        [&backup.full, &backup.differential].into_iter().filter_map(|cron| last_due(cron, newest.stop, now)).min();
    match missed {
        Some(due) => (
            false,
            "BackupOverdue",
            format!("the newest backup ({}) is older than the one due at {}", newest.label, rfc3339(due)),
        ),
        None => (true, "BackedUp", format!("newest backup {} at {}", newest.label, rfc3339(newest.stop))),
    }
}

/// The first scheduled run after `since` that is more than [`GRACE`] in the past, if any.
fn last_due(cron: &str, since: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    next_run(cron, since).filter(|due| *due + GRACE < now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::info::RepositoryInfo;
    use crate::backup::record::Archiver;
    use crate::validate::Repository;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn state(stop: &str, archiver: Archiver) -> BackupState {
        let b = BackupSet {
            label: "F".into(),
            kind: "full".into(),
            start: at(stop),
            stop: at(stop),
            size_bytes: 1,
            repository_bytes: 1,
        };
        BackupState { repository: RepositoryInfo { backups: vec![b], newest_wal: None }, archiver }
    }

    #[test]
    fn backed_up_until_a_scheduled_backup_is_missed_or_archiving_fails() {
        let backup = ValidatedBackup {
            repository: Repository::Volume(Default::default()),
            full: "0 3 * * 0".into(),
            differential: "0 3 * * 1-6".into(),
            retention_full: 2,
        };
        // Wednesday 2026-11-25; the differential of 03:00 ran.
        let fresh = state("2026-11-25T03:10:00Z", Archiver::default());
        assert!(backed_up(&backup, &fresh, at("2026-11-25T12:00:00Z")).0);
        // Thursday 06:00: Thursday's 03:00 run is missing.
        let (ok, reason, _) = backed_up(&backup, &fresh, at("2026-11-26T06:00:00Z"));
        assert_eq!((ok, reason), (false, "BackupOverdue"));
        let failing = Archiver {
            last_archived_time: Some(at("2026-11-25T10:00:00Z")),
            last_failed_time: Some(at("2026-11-25T11:00:00Z")),
            failed_count: 3,
            ..Archiver::default()
        };
        let (ok, reason, message) =
            backed_up(&backup, &state("2026-11-25T03:10:00Z", failing), at("2026-11-25T12:00:00Z"));
        assert_eq!((ok, reason), (false, "ArchivingFailed"));
        assert!(message.contains("3 failure(s)"), "{message}");
    }
}
