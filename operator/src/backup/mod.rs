//! Backups with pgBackRest: its configuration rendered from the spec, the commands the local
//! mode and the backup agent run, what the repository holds, and recovery of a restored server.
//!
//! The database is the meeting point: whoever takes a backup (the agent in the pod,
//! `pgwarehouse local backup`) records the repository's contents in `pgwarehouse.backup_info`,
//! and status readers take them from there with the WAL archiver's state
//! (`pg_stat_archiver`), so the operator needs no access to the pod.

pub mod agent;
pub mod config;
pub mod info;
pub mod pgbackrest;
pub mod record;
pub mod recover;
pub mod status;

pub use config::{Credentials, Paths};
pub use info::{BackupSet, RepositoryInfo};
pub use pgbackrest::{BackupKind, PgBackRest, PgBackRestError};
