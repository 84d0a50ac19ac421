//! What a repository holds, from `pgbackrest info --output=json`: the backup sets, and from them
//! the window a restore can reach.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::validate::RestoreTarget;

/// One backup set, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSet {
    pub label: String,
    /// `full`, `diff` or `incr`.
    pub kind: String,
    pub start: DateTime<Utc>,
    pub stop: DateTime<Utc>,
    /// The database's size at the backup.
    pub size_bytes: i64,
    /// What the set takes in the repository (compressed; a differential only its changes).
    pub repository_bytes: i64,
}

impl BackupSet {
    pub fn duration_seconds(&self) -> i64 {
        (self.stop - self.start).num_seconds()
    }
}

/// A stanza's contents, oldest backup first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryInfo {
    pub backups: Vec<BackupSet>,
}

impl RepositoryInfo {
    pub fn last(&self, kind: &str) -> Option<&BackupSet> {
        self.backups.iter().rev().find(|b| b.kind == kind)
    }

    pub fn newest(&self) -> Option<&BackupSet> {
        self.backups.last()
    }

    /// The earliest time a restore can reach: the end of the oldest backup.
    pub fn oldest_recovery_point(&self) -> Option<DateTime<Utc>> {
        self.backups.first().map(|b| b.stop)
    }

    /// The newest backup, when a restore of `stanza` can reach `target` from this repository; else
    /// why not, naming `field` (the option or spec path that gave the target).
    pub fn restorable(&self, stanza: &str, target: RestoreTarget, field: &str) -> Result<&BackupSet, String> {
        let (Some(oldest), Some(newest)) = (self.oldest_recovery_point(), self.newest()) else {
            return Err(format!("{field}: stanza {stanza:?} holds no backup to restore"));
        };
        match target {
            RestoreTarget::Time(time) if time < oldest => Err(format!(
                "{field}: {} is before the oldest backup, which ends at {}; the repository restores from then on",
                time.to_rfc3339(),
                oldest.to_rfc3339()
            )),
            _ => Ok(newest),
        }
    }

    /// Reads the JSON of `pgbackrest info --output=json --stanza=NAME`.
    pub fn from_json(text: &str) -> Result<RepositoryInfo, String> {
        let stanzas: Vec<Stanza> = serde_json::from_str(text).map_err(|e| format!("pgbackrest info: {e}"))?;
        let stanza = stanzas.into_iter().next().ok_or("pgbackrest info returned no stanza")?;
        let time = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
        let mut backups: Vec<BackupSet> = stanza
            .backup
            .into_iter()
            .filter(|b| !b.error.unwrap_or(false))
            .map(|b| BackupSet {
                label: b.label,
                kind: b.kind,
                start: time(b.timestamp.start),
                stop: time(b.timestamp.stop),
                size_bytes: b.info.size,
                repository_bytes: b.info.repository.delta,
            })
            .collect();
        backups.sort_by_key(|b| b.stop);
        Ok(RepositoryInfo { backups })
    }
}

#[derive(Deserialize)]
struct Stanza {
    #[serde(default)]
    backup: Vec<RawBackup>,
}

#[derive(Deserialize)]
struct RawBackup {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: RawTimestamp,
    info: RawSizes,
    error: Option<bool>,
}

#[derive(Deserialize)]
struct RawTimestamp {
    start: i64,
    stop: i64,
}

#[derive(Deserialize)]
struct RawSizes {
    size: i64,
    repository: RawRepositorySize,
}

#[derive(Deserialize)]
struct RawRepositorySize {
    delta: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbackrest_info() {
        let json = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000003","min":"000000010000000000000001"}],
          "backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000002"},"backrest":{"format":5,"version":"2.45"},
          "database":{"id":1,"repo-key":1},"error":false,"info":{"delta":23213809,"repository":{"delta":3062583,"size":3062583},"size":23213809},
          "label":"20261125-201616F","lsn":{"start":"0/2000028","stop":"0/2000100"},"prior":null,"reference":null,
          "timestamp":{"start":1795637776,"stop":1795637779},"type":"full"}],"cipher":"none","name":"w","status":{"code":0,"message":"ok"}}]"#;
        let info = RepositoryInfo::from_json(json).unwrap();
        let full = info.last("full").unwrap();
        assert_eq!(full.label, "20261125-201616F");
        assert_eq!((full.size_bytes, full.repository_bytes, full.duration_seconds()), (23213809, 3062583, 3));
        assert_eq!(info.oldest_recovery_point(), DateTime::from_timestamp(1795637779, 0));
        assert!(info.last("diff").is_none());

        let at = |t: i64| RestoreTarget::Time(DateTime::from_timestamp(t, 0).unwrap());
        assert_eq!(info.restorable("w", RestoreTarget::Latest, "--target").unwrap().label, "20261125-201616F");
        assert!(info.restorable("w", at(1795637779), "--target").is_ok(), "the oldest backup's end is reachable");
        let early = info.restorable("w", at(1795637778), "--target").unwrap_err();
        assert!(early.starts_with("--target: ") && early.contains("is before the oldest backup"), "{early}");
        let empty =
            RepositoryInfo::default().restorable("w", RestoreTarget::Latest, "spec.bootstrap.restore").unwrap_err();
        assert_eq!(empty, "spec.bootstrap.restore: stanza \"w\" holds no backup to restore");
    }
}
