//! postgresql.conf for a stack: the settings the operator owns, with the user's parameters
//! merged around them (validation refuses user values for the owned ones). The StatefulSet's
//! ConfigMap and `pgwarehouse local` render the same settings.

use std::collections::BTreeMap;

use super::volumes::{CONFIG_MOUNT, PGBACKREST_CONF_KEY};
use crate::backup::config::{PGBACKREST, archive_settings};
use crate::validate::ValidatedStack;

/// pg_cron's default `cron.max_running_jobs`.
const CRON_DEFAULT_RUNNING_JOBS: u32 = 32;
/// Workers Postgres itself wants beyond pg_cron's (parallel query, logical replication).
const BASE_WORKER_PROCESSES: u32 = 16;

/// Libraries that only work when preloaded; citus must come first.
fn preload_libraries(stack: &ValidatedStack) -> Vec<&'static str> {
    let mut libraries = Vec::new();
    if stack.spec.distributed.is_some() {
        libraries.push("citus");
    }
    if stack.needs_pg_cron() {
        libraries.push("pg_cron");
    }
    if stack.extensions.iter().any(|e| e.name == "pg_stat_statements") {
        libraries.push("pg_stat_statements");
    }
    libraries
}

/// Every setting of the coordinator (the stack's own server), by name: the operator's and the
/// user's, with WAL archiving when the stack backs up.
pub fn settings(stack: &ValidatedStack) -> BTreeMap<String, String> {
    let mut settings = worker_settings(stack);
    if stack.backup.is_some() {
        let archive = archive_settings(PGBACKREST, &format!("{CONFIG_MOUNT}/{PGBACKREST_CONF_KEY}"), &stack.name);
        settings.extend(archive.into_iter().map(|(k, v)| (k.to_string(), v)));
        // The longest a committed transaction waits for its WAL segment to be archived: the RPO
        // of a quiet warehouse. The user may choose another.
        settings.entry("archive_timeout".into()).or_insert_with(|| "60s".into());
    }
    settings
}

/// The settings of a Citus worker: the coordinator's without WAL archiving (backups cover the
/// coordinator).
pub fn worker_settings(stack: &ValidatedStack) -> BTreeMap<String, String> {
    let mut settings = stack.spec.postgres.parameters.clone();
    let running_jobs =
        settings.get("cron.max_running_jobs").and_then(|v| v.parse::<u32>().ok()).unwrap_or(CRON_DEFAULT_RUNNING_JOBS);
    let owned = [
        ("shared_preload_libraries", preload_libraries(stack).join(",")),
        ("cron.database_name", stack.database.clone()),
        // Jobs run in background workers: no TCP login, so no password in pg_hba for cron.
        ("cron.use_background_workers", "on".into()),
        ("max_worker_processes", (BASE_WORKER_PROCESSES + running_jobs).to_string()),
        ("listen_addresses", "*".into()),
        ("port", "5432".into()),
    ];
    settings.extend(owned.into_iter().map(|(k, v)| (k.to_string(), v)));
    if stack.spec.distributed.is_some() {
        // Citus commits across nodes in two phases and moves shards by logical replication.
        settings.entry("max_prepared_transactions".into()).or_insert_with(|| "200".into());
        settings.entry("wal_level".into()).or_insert_with(|| "logical".into());
        // Citus's default (`sslmode=require`) makes CREATE EXTENSION turn ssl on with a
        // self-signed X.509 v1 certificate, which rustls clients (this operator) refuse to
        // parse; nodes talk over the pod network with scram passwords instead.
        settings.entry("citus.node_conninfo".into()).or_insert_with(|| "sslmode=prefer".into());
        // Postgres 15.20 / 17.8 and later name the libraries a logical decoding slot may use;
        // Citus's online moves (create_distributed_table_concurrently) decode through its own.
        settings.entry("output_plugin_libraries".into()).or_insert_with(|| "pgoutput, test_decoding, citus".into());
    }
    settings
}

/// The settings as postgresql.conf text, every value quoted.
pub fn postgresql_conf(settings: &BTreeMap<String, String>) -> String {
    let mut text = String::from("# Written by pgwarehouse; edits are overwritten.\n");
    for (key, value) in settings {
        text.push_str(&format!("{key} = '{}'\n", value.replace('\\', "\\\\").replace('\'', "''")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::load_manifest;
    use crate::validate::validate;

    #[test]
    fn citus_is_preloaded_first_and_only_for_a_distributed_stack() {
        let stack = |extra: &str| {
            let manifest =
                format!("kind: DataWarehouseStack\nmetadata: {{name: w}}\nspec:\n  template: datawarehouse\n{extra}");
            validate(&load_manifest(&manifest).unwrap()).unwrap()
        };
        let distributed = settings(&stack("  distributed: {workers: 2}\n"));
        assert_eq!(distributed["shared_preload_libraries"], "citus,pg_cron,pg_stat_statements");
        assert_eq!(
            (distributed["wal_level"].as_str(), distributed["max_prepared_transactions"].as_str()),
            ("logical", "200")
        );
        let single = settings(&stack(""));
        assert_eq!(single["shared_preload_libraries"], "pg_cron,pg_stat_statements");
        assert!(!single.contains_key("wal_level"));
        assert_eq!(distributed["output_plugin_libraries"], "pgoutput, test_decoding, citus");
        assert!(!single.contains_key("output_plugin_libraries"));
    }

    #[test]
    fn owned_settings_surround_the_users() {
        let stack = validate(
            &load_manifest(
                "kind: DataWarehouseStack\nmetadata: {name: w}\nspec:\n  template: datawarehouse\n  \
                 postgres: {database: dw, parameters: {work_mem: 1GB, cron.max_running_jobs: '4', \
                 search_path: \"it's\"}}\n",
            )
            .unwrap(),
        )
        .unwrap();
        let settings = settings(&stack);
        assert_eq!(settings["shared_preload_libraries"], "pg_cron,pg_stat_statements");
        assert_eq!(settings["cron.database_name"], "dw");
        assert_eq!(settings["max_worker_processes"], "20");
        assert_eq!(settings["work_mem"], "1GB");
        assert_eq!(settings["jit"], "on", "template parameters stay under the user's");
        let conf = postgresql_conf(&settings);
        assert!(conf.contains("cron.use_background_workers = 'on'\n"), "{conf}");
        assert!(conf.contains("search_path = 'it''s'\n"), "{conf}");
    }
}
