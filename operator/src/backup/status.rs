//! From what the database recorded to `status.backup` and the `BackedUp` condition.

use chrono::{DateTime, TimeDelta, Utc};

use super::info::{BackupSet, RepositoryInfo};
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

/// How late a scheduled backup may finish before it counts as missed, at least.
const MIN_GRACE: TimeDelta = TimeDelta::hours(2);

/// [`MIN_GRACE`], or twice the longest backup in the repository when backups take longer than an
/// hour: a large warehouse's backup still running is not a missed one.
fn grace(info: &RepositoryInfo) -> TimeDelta {
    let longest = info.backups.iter().map(|b| b.stop - b.start).max().unwrap_or_default();
    MIN_GRACE.max(longest * 2)
}

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
    let grace = grace(&state.repository);
    let missed = [&backup.full, &backup.differential]
        .into_iter()
        .filter_map(|cron| last_due(cron, newest.stop, grace, now))
        .min();
    match missed {
        Some(due) => (
            false,
            "BackupOverdue",
            format!("the newest backup ({}) is older than the one due at {}", newest.label, rfc3339(due)),
        ),
        None => (true, "BackedUp", format!("newest backup {} at {}", newest.label, rfc3339(newest.stop))),
    }
}

/// The first scheduled run after `since` that is more than `grace` in the past, if any.
fn last_due(cron: &str, since: DateTime<Utc>, grace: TimeDelta, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    next_run(cron, since).filter(|due| *due + grace < now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::record::Archiver;
    use crate::validate::Repository;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    /// A full on Sundays, a differential the other days, at 03:00.
    fn default_schedules() -> ValidatedBackup {
        ValidatedBackup {
            repository: Repository::Volume(Default::default()),
            full: "0 3 * * 0".into(),
            differential: "0 3 * * 1-6".into(),
            retention_full: 2,
        }
    }

    fn state(stop: &str, archiver: Archiver) -> BackupState {
        state_of_a_backup_taking(TimeDelta::zero(), stop, archiver)
    }

    fn state_of_a_backup_taking(duration: TimeDelta, stop: &str, archiver: Archiver) -> BackupState {
        let b = BackupSet {
            label: "F".into(),
            kind: "full".into(),
            start: at(stop) - duration,
            stop: at(stop),
            size_bytes: 1,
            repository_bytes: 1,
        };
        BackupState { repository: RepositoryInfo { backups: vec![b] }, archiver }
    }

    #[test]
    fn backed_up_until_a_scheduled_backup_is_missed_or_archiving_fails() {
        let backup = default_schedules();
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

    #[test]
    fn backups_that_take_hours_get_twice_their_duration_before_counting_as_missed() {
        let backup = default_schedules();
        // Wednesday's backup ran from 03:00 to 06:00.
        let slow = state_of_a_backup_taking(TimeDelta::hours(3), "2026-11-25T06:00:00Z", Archiver::default());
        // Thursday's 03:00 run may still be running at 08:00 (5 h < 2 × 3 h).
        assert!(backed_up(&backup, &slow, at("2026-11-26T08:00:00Z")).0);
        let (ok, reason, _) = backed_up(&backup, &slow, at("2026-11-26T09:30:00Z"));
        assert_eq!((ok, reason), (false, "BackupOverdue"));
        // A quick backup keeps the two-hour floor: Thursday 05:30 is late.
        let quick = state("2026-11-25T03:10:00Z", Archiver::default());
        assert!(!backed_up(&backup, &quick, at("2026-11-26T05:30:00Z")).0);
    }
}
