use serde_json::json;

use super::*;

#[test]
fn agreeing_configurations_need_no_patch_whatever_the_value_types() {
    let current =
        json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "64MB", "max_connections": 100}}, "slots": {}});
    let desired = json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "64MB", "max_connections": "100"}}});
    assert_eq!(config_patch(&current, &desired), None);
}

#[test]
fn a_patch_sets_what_differs_and_removes_parameters_no_longer_desired_only() {
    let current = json!({
        "ttl": 30, "check_timeline": true,
        "postgresql": {"use_slots": true, "parameters": {"work_mem": "64MB", "old_setting": "on"}},
    });
    let desired = json!({
        "ttl": 20, "synchronous_mode": true,
        "postgresql": {"use_slots": true, "parameters": {"work_mem": "128MB", "shared_buffers": "1GB"}},
    });
    let (patch, mut changed) = config_patch(&current, &desired).expect("they differ");
    assert_eq!(
        patch,
        json!({
            "ttl": 20, "synchronous_mode": true,
            "postgresql": {"parameters": {"work_mem": "128MB", "shared_buffers": "1GB", "old_setting": null}},
        })
    );
    changed.sort();
    assert_eq!(
        changed,
        [
            "postgresql.parameters.old_setting",
            "postgresql.parameters.shared_buffers",
            "postgresql.parameters.work_mem",
            "synchronous_mode",
            "ttl"
        ]
    );
}

#[test]
fn a_member_is_reached_at_the_api_address_it_publishes() {
    let member: ClusterMember = serde_json::from_value(json!({
        "name": "wh-1", "role": "replica", "state": "streaming", "api_url": "http://10.244.0.7:8008/patroni",
        "timeline": 3, "lag": 0,
    }))
    .unwrap();
    assert_eq!(member_rest(&member).unwrap().base, "http://10.244.0.7:8008");
    assert!(member.is_running_replica() && !member.is_primary());
    assert_eq!(member.lag_bytes(), Some(0));
    let unknown: ClusterMember =
        serde_json::from_value(json!({"name": "wh-2", "role": "replica", "state": "starting", "lag": "unknown"}))
            .unwrap();
    assert!(!unknown.is_running_replica());
    assert_eq!(unknown.lag_bytes(), None);
}
