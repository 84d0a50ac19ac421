//! Patroni's configuration for a stack of more than one instance: the same document in a pod
//! (Kubernetes API as lock store) and in `pgwarehouse local` (etcd on loopback). What every
//! member must agree on (timing, synchronous mode, postgresql.conf) is the dynamic
//! configuration kept in the lock store: `bootstrap.dcs` seeds it, and the operator converges it
//! afterwards with `PATCH /config` on the leader ([`dynamic_config`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config;
use crate::api::{PostgresSpec, Synchronous};
use crate::validate::ValidatedStack;

/// Patroni's REST API port, in a pod.
pub const API_PORT: u16 = 8008;
/// The roles Patroni creates at bootstrap for streaming and for pg_rewind.
pub const REPLICATION_USER: &str = "pgwarehouse_replication";
pub const REWIND_USER: &str = "pgwarehouse_rewind";
/// The key of the Patroni configuration in the stack's ConfigMap.
pub const PATRONI_KEY: &str = "patroni.yml";
/// The most WAL (bytes) a replica may lag and still be promoted by an asynchronous failover.
pub const MAXIMUM_LAG_ON_FAILOVER: u64 = 1 << 20;
/// The pod label Patroni keeps on each member, and its values: the Services select by it.
pub const ROLE_LABEL: &str = "role";
pub const PRIMARY_ROLE: &str = "primary";
pub const REPLICA_ROLE: &str = "replica";

/// Patroni's failure detection, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
}

impl Timing {
    pub fn of(postgres: &PostgresSpec) -> Timing {
        let failover = postgres.failover.clone().unwrap_or_default();
        Timing {
            ttl: failover.ttl_seconds.unwrap_or(30),
            loop_wait: failover.loop_wait_seconds.unwrap_or(10),
            retry_timeout: failover.retry_timeout_seconds.unwrap_or(10),
        }
    }
}

/// Where the members keep their lock and find each other.
#[derive(Debug, Clone)]
pub enum Dcs {
    /// ConfigMaps in the stack's namespace, member pods found by these labels (the scope label,
    /// `app.kubernetes.io/instance`, holds the stack's name).
    Kubernetes { namespace: String, labels: BTreeMap<String, String> },
    /// etcd at these `host:port`s, through `api`.
    Etcd { hosts: Vec<String>, api: EtcdApi },
}

/// Which of etcd's APIs Patroni speaks (`etcd:` or `etcd3:` in its configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdApi {
    V2,
    #[default]
    V3,
}

/// One member's own addresses and paths; in a pod the name and connect addresses come from the
/// environment (`PATRONI_NAME`, `PATRONI_*_CONNECT_ADDRESS`), so the file is the same for all.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: Option<String>,
    pub postgres_listen: String,
    pub postgres_connect: Option<String>,
    pub api_listen: String,
    pub api_connect: Option<String>,
    pub data_dir: String,
    pub bin_dir: String,
    pub pgpass: String,
    /// Addresses clients and replicas connect from (pg_hba).
    pub networks: Vec<String>,
    /// postgresql.conf settings of this member only (a local socket directory).
    pub parameters: BTreeMap<String, String>,
    /// How a new replica is made and how a replica fetches archived WAL, when the stack backs up.
    pub pgbackrest: Option<ReplicaFromBackup>,
}

/// pgBackRest as the first way to make a replica, and `archive-get` as its restore_command.
#[derive(Debug, Clone)]
pub struct ReplicaFromBackup {
    pub create_replica: String,
    pub restore_command: String,
}

/// The settings Patroni owns per member (it writes them from `listen` and its own state).
const PATRONI_OWNED: &[&str] = &["listen_addresses", "port"];

/// postgresql.conf as every member runs it: the stack's settings and what streaming and
/// pg_rewind need (`wal_log_hints`, as data checksums are off by default).
pub fn parameters(stack: &ValidatedStack) -> BTreeMap<String, String> {
    let mut parameters = config::settings(stack);
    parameters.retain(|k, _| !PATRONI_OWNED.contains(&k.as_str()));
    for (key, value) in
        [("wal_level", "replica"), ("hot_standby", "on"), ("max_wal_senders", "10"), ("max_replication_slots", "10")]
    {
        parameters.entry(key.into()).or_insert_with(|| value.into());
    }
    parameters.insert("wal_log_hints".into(), "on".into());
    parameters
}

fn synchronous_mode(stack: &ValidatedStack) -> Value {
    match stack.spec.postgres.synchronous.unwrap_or_default() {
        Synchronous::Off => json!(false),
        Synchronous::On => json!(true),
        Synchronous::Quorum => json!("quorum"),
    }
}

/// The configuration all members share through the lock store, as `GET /config` returns it.
pub fn dynamic_config(stack: &ValidatedStack) -> Value {
    let timing = Timing::of(&stack.spec.postgres);
    json!({
        "ttl": timing.ttl,
        "loop_wait": timing.loop_wait,
        "retry_timeout": timing.retry_timeout,
        "maximum_lag_on_failover": MAXIMUM_LAG_ON_FAILOVER,
        "failsafe_mode": true,
        "synchronous_mode": synchronous_mode(stack),
        "postgresql": {
            "use_pg_rewind": true,
            "use_slots": true,
            "parameters": parameters(stack),
        },
    })
}

fn hba(member: &Member) -> Vec<String> {
    let mut lines = vec!["local all all trust".to_string()];
    for network in &member.networks {
        lines.push(format!("host replication {REPLICATION_USER} {network} scram-sha-256"));
        lines.push(format!("host all all {network} scram-sha-256"));
    }
    lines
}

/// One member's Patroni configuration file. Passwords are not in it: Patroni reads them from
/// `PATRONI_SUPERUSER_PASSWORD`, `PATRONI_REPLICATION_PASSWORD` and `PATRONI_REWIND_PASSWORD`.
pub fn patroni_config(stack: &ValidatedStack, dcs: &Dcs, member: &Member) -> Value {
    let mut postgresql = json!({
        "listen": member.postgres_listen,
        "data_dir": member.data_dir,
        "bin_dir": member.bin_dir,
        "pgpass": member.pgpass,
        "authentication": {
            "superuser": {"username": "postgres"},
            "replication": {"username": REPLICATION_USER},
            "rewind": {"username": REWIND_USER},
        },
        "pg_hba": hba(member),
        "parameters": member.parameters,
        "use_unix_socket": true,
        // A new replica's base backup starts at once instead of after a spread checkpoint.
        "basebackup": [{"checkpoint": "fast"}],
    });
    if let Some(address) = &member.postgres_connect {
        postgresql["connect_address"] = json!(address);
    }
    if let Some(pgbackrest) = &member.pgbackrest {
        postgresql["create_replica_methods"] = json!(["pgbackrest", "basebackup"]);
        postgresql["pgbackrest"] = json!({"command": pgbackrest.create_replica, "keep_data": true, "no_params": true});
        postgresql["recovery_conf"] = json!({"restore_command": pgbackrest.restore_command});
    }
    let mut restapi = json!({"listen": member.api_listen});
    if let Some(address) = &member.api_connect {
        restapi["connect_address"] = json!(address);
    }
    let mut document = json!({
        "scope": stack.name,
        "restapi": restapi,
        "bootstrap": {
            "dcs": dynamic_config(stack),
            "initdb": [{"encoding": "UTF8"}, {"auth-host": "scram-sha-256"}, {"auth-local": "trust"}, "no-locale"],
        },
        "postgresql": postgresql,
        "watchdog": {"mode": "off"},
    });
    if let Some(name) = &member.name {
        document["name"] = json!(name);
    }
    match dcs {
        Dcs::Kubernetes { namespace, labels } => {
            let mut labels = labels.clone();
            let scope_label = "app.kubernetes.io/instance";
            labels.remove(scope_label);
            document["kubernetes"] = json!({
                "namespace": namespace,
                "labels": labels,
                "scope_label": scope_label,
                "role_label": ROLE_LABEL,
                "leader_label_value": PRIMARY_ROLE,
                "follower_label_value": REPLICA_ROLE,
                "standby_leader_label_value": PRIMARY_ROLE,
                "use_endpoints": false,
            });
        }
        Dcs::Etcd { hosts, api } => {
            document["namespace"] = json!("/pgwarehouse/");
            let key = match api {
                EtcdApi::V2 => "etcd",
                EtcdApi::V3 => "etcd3",
            };
            document[key] = json!({"hosts": hosts});
        }
    }
    document
}

/// The document as YAML, the form Patroni reads.
pub fn to_yaml(document: &Value) -> String {
    serde_saphyr::to_string(document).expect("a JSON value serializes to YAML")
}
