//! Golden files: a change in rendered output is a reviewed diff. Regenerate with
//! `PGW_UPDATE_GOLDEN=1 cargo test -p pgwarehouse --lib render`.

use std::path::PathBuf;

use super::*;
use crate::template::load_manifest;
use crate::validate::validate;

fn quickstart() -> ValidatedStack {
    let mut stack = load_manifest(include_str!("../../../stack-templates/examples/quickstart.yaml")).unwrap();
    stack.metadata.namespace = Some("analytics".into());
    stack.metadata.uid = Some("8d3c1f2e-0000-4000-8000-000000000001".into());
    validate(&stack).unwrap()
}

fn golden(name: &str, rendered: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/render/golden").join(format!("{name}.yaml"));
    if std::env::var_os("PGW_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == rendered,
        "{name} differs from {}; review and regenerate with PGW_UPDATE_GOLDEN=1:\n{rendered}",
        path.display()
    );
}

fn yaml<T: serde::Serialize>(object: &T) -> String {
    serde_saphyr::to_string(object).unwrap()
}

#[test]
fn every_object_matches_its_golden_file() {
    let objects = objects(&quickstart(), "golden-password");
    golden("secret", &yaml(&objects.secret));
    golden("configmap", &yaml(&objects.configmap));
    golden("service-headless", &yaml(&objects.headless));
    golden("service-client", &yaml(&objects.client));
    golden("statefulset", &yaml(&objects.statefulset));
}

#[test]
fn a_config_change_rolls_the_pod_and_storage_can_be_released() {
    let stack = quickstart();
    let before = statefulset(&stack);
    let mut changed = stack.clone();
    changed.spec.postgres.parameters.insert("work_mem".into(), "256MB".into());
    changed.spec.postgres.storage.retain_on_delete = Some(false);
    let after = statefulset(&changed);
    let checksum = |s: &StatefulSet| {
        s.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()
            [statefulset::CONFIG_CHECKSUM_ANNOTATION]
            .clone()
    };
    assert_ne!(checksum(&before), checksum(&after));
    let policy = |s: &StatefulSet| s.spec.as_ref().unwrap().persistent_volume_claim_retention_policy.clone().unwrap();
    assert_eq!(policy(&before).when_deleted.as_deref(), Some("Retain"));
    assert_eq!(policy(&after).when_deleted.as_deref(), Some("Delete"));
    // The superuser Secret lives exactly as long as the data it opens.
    assert!(superuser_secret(&stack, "pw").metadata.owner_references.is_none());
    assert!(superuser_secret(&changed, "pw").metadata.owner_references.is_some());
}

#[test]
fn objects_outside_a_cluster_have_no_owner() {
    let mut stack = quickstart();
    stack.uid = None;
    assert!(configmap(&stack).metadata.owner_references.is_none());
    assert_eq!(owner_reference(&quickstart()).unwrap().uid, "8d3c1f2e-0000-4000-8000-000000000001");
}
