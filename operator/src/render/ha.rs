//! A stack of more than one instance (`postgres.instances > 1`): every pod runs Patroni, which
//! keeps its lock in ConfigMaps of the stack's namespace and labels its own pod `role=primary` or
//! `role=replica`. The client Service selects the primary, `<stack>-ro` the replicas; a Role gives
//! Patroni's ServiceAccount exactly the verbs it uses; a PodDisruptionBudget lets one pod go at a
//! time.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe, SecretKeySelector,
    Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{metadata, selector_labels};
use super::patroni::{self, API_PORT, Dcs, Member, PATRONI_KEY, REPLICA_ROLE, ROLE_LABEL, ReplicaFromBackup};
use super::statefulset::spread_over_nodes;
use super::volumes::{CONFIG_MOUNT, DATA_MOUNT, PGBACKREST_CONF_KEY};
use super::{PASSWORD_KEY, REPLICATION_PASSWORD_KEY, REWIND_PASSWORD_KEY, client_name, superuser_secret_name};
use crate::backup::config::PGBACKREST;
use crate::validate::ValidatedStack;

/// What only a stack of more than one instance has, in apply order.
#[derive(Debug, Clone)]
pub struct HaObjects {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub replicas_service: Service,
    pub disruption_budget: PodDisruptionBudget,
}

pub fn patroni_name(stack: &ValidatedStack) -> String {
    format!("{}-patroni", stack.name)
}

/// The Service of the replicas (read-only queries): `<stack>-ro`.
pub fn replicas_service_name(stack: &ValidatedStack) -> String {
    format!("{}-ro", stack.name)
}

/// The pods of `role` (`primary`, `replica`).
pub fn role_selector(stack: &ValidatedStack, role: &str) -> BTreeMap<String, String> {
    let mut selector = selector_labels(stack);
    selector.insert(ROLE_LABEL.into(), role.into());
    selector
}

/// Patroni's verbs in its namespace: its lock, config and member state live in ConfigMaps
/// (`<stack>-leader`, `-config`, `-failover`, `-sync`) and pod annotations, and it labels pods.
pub fn patroni_rules() -> Vec<PolicyRule> {
    let rule = |resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    };
    vec![
        rule(&["configmaps"], &["get", "list", "watch", "create", "patch", "update"]),
        rule(&["pods"], &["get", "list", "watch", "patch", "update"]),
    ]
}

pub fn ha_objects(stack: &ValidatedStack) -> Option<HaObjects> {
    if !stack.highly_available() {
        return None;
    }
    let name = patroni_name(stack);
    let mut replicas_service = super::client_service(stack);
    replicas_service.metadata = metadata(stack, replicas_service_name(stack));
    replicas_service.spec.get_or_insert_default().selector = Some(role_selector(stack, REPLICA_ROLE));
    Some(HaObjects {
        service_account: ServiceAccount { metadata: metadata(stack, name.clone()), ..ServiceAccount::default() },
        role: Role { metadata: metadata(stack, name.clone()), rules: Some(patroni_rules()) },
        role_binding: RoleBinding {
            metadata: metadata(stack, name.clone()),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name,
                namespace: Some(stack.namespace_or_default().to_string()),
                ..Subject::default()
            }]),
        },
        replicas_service,
        disruption_budget: PodDisruptionBudget {
            metadata: metadata(stack, client_name(stack)),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(stack)),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        },
    })
}

/// The pods' Patroni configuration (the ConfigMap's `patroni.yml`).
pub fn patroni_yaml(stack: &ValidatedStack) -> String {
    patroni::to_yaml(&patroni_document(stack))
}

/// What a pod's Patroni reads at start beyond its first bootstrap: a change rolls the pods,
/// while postgresql.conf changes go through `PATCH /config` without one.
pub fn patroni_yaml_after_bootstrap(stack: &ValidatedStack) -> String {
    let mut document = patroni_document(stack);
    document.as_object_mut().expect("an object").remove("bootstrap");
    patroni::to_yaml(&document)
}

fn patroni_document(stack: &ValidatedStack) -> serde_json::Value {
    let member = Member {
        name: None,
        postgres_listen: "0.0.0.0:5432".into(),
        postgres_connect: None,
        api_listen: format!("0.0.0.0:{API_PORT}"),
        api_connect: None,
        data_dir: format!("{DATA_MOUNT}/pgdata"),
        bin_dir: format!("/usr/lib/postgresql/{}/bin", major_version(stack)),
        pgpass: "/tmp/pgpass".into(),
        networks: vec!["0.0.0.0/0".into(), "::/0".into()],
        parameters: BTreeMap::new(),
        pgbackrest: stack.backup.as_ref().map(|_| {
            let pgbackrest =
                format!("{PGBACKREST} --config={CONFIG_MOUNT}/{PGBACKREST_CONF_KEY} --stanza={}", stack.name);
            ReplicaFromBackup {
                create_replica: format!("{pgbackrest} --delta restore"),
                restore_command: format!("{pgbackrest} archive-get %f \"%p\""),
            }
        }),
    };
    let dcs = Dcs::Kubernetes { namespace: stack.namespace_or_default().to_string(), labels: selector_labels(stack) };
    patroni::patroni_config(stack, &dcs, &member)
}

/// The Postgres generation of the stack's image (its tag's major, as in `...:17`), 17 by default.
fn major_version(stack: &ValidatedStack) -> String {
    let image = stack.spec.postgres.image.as_deref().unwrap_or_default();
    image
        .rsplit_once(':')
        .map(|(_, tag)| tag.split(['.', '-']).next().unwrap_or_default())
        .filter(|major| !major.is_empty() && major.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or("17")
        .to_string()
}

fn secret_env(name: &str, stack: &ValidatedStack, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: superuser_secret_name(stack),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..ObjectFieldSelector::default() }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

fn patroni_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(API_PORT.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Postgres under Patroni (tini as PID 1 reaps what Patroni and Postgres leave): Patroni runs
/// initdb on first boot, replicas clone the primary, and the Services follow its pod labels.
fn patroni_container(stack: &ValidatedStack, postgres: &mut Container) {
    postgres.command = Some(["tini", "--", "patroni"].map(String::from).to_vec());
    postgres.args = Some(vec![format!("{CONFIG_MOUNT}/{PATRONI_KEY}")]);
    let kept: Vec<EnvVar> =
        postgres.env.take().unwrap_or_default().into_iter().filter(|e| !e.name.starts_with("POSTGRES_")).collect();
    let mut env = vec![
        field_env("PATRONI_NAME", "metadata.name"),
        field_env("PATRONI_KUBERNETES_POD_IP", "status.podIP"),
        value_env("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "$(PATRONI_KUBERNETES_POD_IP):5432"),
        value_env("PATRONI_RESTAPI_CONNECT_ADDRESS", &format!("$(PATRONI_KUBERNETES_POD_IP):{API_PORT}")),
        secret_env("PATRONI_SUPERUSER_PASSWORD", stack, PASSWORD_KEY),
        secret_env("PATRONI_REPLICATION_PASSWORD", stack, REPLICATION_PASSWORD_KEY),
        secret_env("PATRONI_REWIND_PASSWORD", stack, REWIND_PASSWORD_KEY),
    ];
    env.extend(kept);
    postgres.env = Some(env);
    postgres.ports.get_or_insert_default().push(ContainerPort {
        name: Some("patroni".into()),
        container_port: API_PORT.into(),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    });
    // Ready = this pod may take queries; a primary that stops answering leaves the Service in
    // about 3 s (3 failures, 1 s apart), well before its lock expires.
    postgres.readiness_probe = Some(patroni_probe("/readiness", 1, 3));
    postgres.liveness_probe = Some(Probe { initial_delay_seconds: Some(30), ..patroni_probe("/liveness", 10, 6) });
}

/// Turns the one-instance StatefulSet into Patroni's: N pods started together and spread over
/// nodes, no `role` label in the template (Patroni owns it), replaced by the operator.
pub fn make_highly_available(stack: &ValidatedStack, statefulset: &mut StatefulSet) {
    let Some(spec) = statefulset.spec.as_mut() else { return };
    spec.replicas = Some(i32::try_from(stack.instances()).unwrap_or(1));
    spec.pod_management_policy = Some("Parallel".into());
    // The operator replaces pods itself: replicas first, the primary after a switchover.
    spec.update_strategy = Some(StatefulSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
    let Some(pod) = spec.template.spec.as_mut() else { return };
    pod.service_account_name = Some(patroni_name(stack));
    pod.affinity = Some(spread_over_nodes(selector_labels(stack)));
    if let Some(postgres) = pod.containers.iter_mut().find(|c| c.name == "postgres") {
        patroni_container(stack, postgres);
    }
}
