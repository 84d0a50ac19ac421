//! The operator's permissions, kept in one place: `pgwarehouse rbac` prints them and the chart
//! uses that output. No pods/exec: the operator talks SQL and Patroni's REST API over the network.
//! To grant Patroni's Role the API server requires the operator to hold every rule in it.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const READ_APPLY: &[&str] = &["get", "list", "watch", "create", "patch"];

pub fn cluster_role(name: &str) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta { name: Some(name.to_string()), ..ObjectMeta::default() },
        rules: Some(vec![
            rule("pgwarehouse.dev", &["datawarehousestacks"], READ),
            rule("pgwarehouse.dev", &["datawarehousestacks/status"], &["get", "patch"]),
            rule("apps", &["statefulsets"], READ_APPLY),
            rule("", &["services"], READ_APPLY),
            // Patroni's lock and configuration ConfigMaps and its pod labels: what its Role grants.
            rule("", &["configmaps"], &["get", "list", "watch", "create", "patch", "update"]),
            rule("", &["pods"], &["get", "list", "watch", "patch", "update"]),
            // Rollouts of a stack of several instances replace pods by eviction (the disruption
            // budget applies), replicas first.
            rule("", &["pods/eviction"], &["create"]),
            rule("", &["serviceaccounts"], READ_APPLY),
            rule("rbac.authorization.k8s.io", &["roles", "rolebindings"], READ_APPLY),
            rule("policy", &["poddisruptionbudgets"], READ_APPLY),
            // A volume repository's claim is applied; a restore checks that no data claim is left.
            rule("", &["persistentvolumeclaims"], READ_APPLY),
            // Referenced Secrets are read and watched (rotation); the superuser Secret is applied.
            rule("", &["secrets"], READ_APPLY),
            rule("events.k8s.io", &["events"], &["create", "patch"]),
            rule("coordination.k8s.io", &["leases"], &["get", "list", "watch", "create", "patch", "update"]),
        ]),
        ..ClusterRole::default()
    }
}

pub fn cluster_role_yaml(name: &str) -> String {
    serde_saphyr::to_string(&cluster_role(name)).expect("the role serializes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_role_grants_what_the_controller_calls_and_never_deletes() {
        let role = super::cluster_role("r");
        let rules = role.rules.unwrap();
        let allows = |resource: &str, verb: &str| {
            rules.iter().any(|r| {
                r.resources.as_ref().unwrap().iter().any(|x| x == resource) && r.verbs.iter().any(|v| v == verb)
            })
        };
        for (resource, verb) in [
            ("datawarehousestacks", "watch"),
            ("datawarehousestacks/status", "patch"),
            ("statefulsets", "patch"),
            ("services", "patch"),
            ("configmaps", "patch"),
            ("persistentvolumeclaims", "patch"),
            ("secrets", "watch"),
            ("events", "create"),
            ("leases", "update"),
            ("pods", "list"),
            ("serviceaccounts", "patch"),
            ("roles", "patch"),
            ("rolebindings", "patch"),
            ("poddisruptionbudgets", "patch"),
            ("pods/eviction", "create"),
        ] {
            assert!(allows(resource, verb), "{resource} {verb}");
        }
        let pod_subresources: Vec<&String> =
            rules.iter().flat_map(|r| r.resources.as_ref().unwrap()).filter(|x| x.starts_with("pods/")).collect();
        assert_eq!(pod_subresources, ["pods/eviction"], "no exec, no port-forward");
        assert!(!rules.iter().any(|r| r.verbs.iter().any(|v| v == "delete" || v == "*")), "the operator never deletes");
        assert!(!rules.iter().any(|r| r.verbs.iter().any(|v| v == "escalate" || v == "bind")));
    }

    #[test]
    fn patronis_role_grants_nothing_the_operator_does_not_hold() {
        let held = super::cluster_role("r").rules.unwrap();
        for granted in crate::render::patroni_rules() {
            for group in granted.api_groups.as_ref().unwrap() {
                for resource in granted.resources.as_ref().unwrap() {
                    for verb in &granted.verbs {
                        let covered = held.iter().any(|r| {
                            r.api_groups.as_ref().unwrap().contains(group)
                                && r.resources.as_ref().unwrap().contains(resource)
                                && r.verbs.contains(verb)
                        });
                        assert!(
                            covered,
                            "Patroni's Role grants {verb} on {resource} ({group:?}), which the operator lacks"
                        );
                    }
                }
            }
        }
    }
}
