//! A restore makes a new stack: it may only fill an empty data volume. A stack that already runs
//! (its StatefulSet created without the restore step) or whose name's data claim is left from an
//! earlier stack is refused before anything is applied, so no data is touched.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{Api, Client};

use crate::render::{RESTORE_STEP, client_name};
use crate::validate::ValidatedStack;

/// Why `spec.bootstrap.restore` cannot run here, if it cannot.
pub fn restore_conflict(
    stack: &ValidatedStack,
    existing: Option<&StatefulSet>,
    data_claim_exists: bool,
) -> Option<String> {
    stack.restore.as_ref()?;
    let restored_at_creation = |sts: &StatefulSet| {
        let pod = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        pod.and_then(|p| p.init_containers.as_ref()).is_some_and(|c| c.iter().any(|c| c.name == RESTORE_STEP))
    };
    match existing {
        Some(sts) if !restored_at_creation(sts) => Some(
            "spec.bootstrap.restore: the stack already runs on a volume with data; a restore makes a new stack \
             (apply it under another name)"
                .into(),
        ),
        None if data_claim_exists => Some(format!(
            "spec.bootstrap.restore: the volume data-{}-0 left by an earlier stack of this name holds data; \
             restore under another name, or delete that claim first",
            client_name(stack)
        )),
        _ => None,
    }
}

/// Reads what [`restore_conflict`] decides on.
pub async fn check(client: &Client, stack: &ValidatedStack) -> Result<Option<String>, kube::Error> {
    if stack.restore.is_none() {
        return Ok(None);
    }
    let namespace = stack.namespace_or_default();
    let name = client_name(stack);
    let existing = Api::<StatefulSet>::namespaced(client.clone(), namespace).get_opt(&name).await?;
    // Once the StatefulSet exists, it decides; a steady reconcile costs one GET.
    let data_claim_exists = match existing {
        Some(_) => false,
        None => {
            let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace);
            claims.get_opt(&format!("data-{name}-0")).await?.is_some()
        }
    };
    Ok(restore_conflict(stack, existing.as_ref(), data_claim_exists))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::load_manifest;
    use crate::validate::validate;

    #[test]
    fn a_restore_only_fills_a_new_stack() {
        let text = "kind: DataWarehouseStack\nmetadata: {name: copy}\nspec:\n  bootstrap:\n    restore:\n      \
                    repository: {volume: {}}\n      stack: quickstart\n";
        let stack = validate(&load_manifest(text).unwrap()).unwrap();
        let rendered = crate::render::objects(&stack, &crate::render::StackPasswords::default()).statefulset;
        assert_eq!(restore_conflict(&stack, None, false), None, "a new stack");
        assert_eq!(restore_conflict(&stack, Some(&rendered), true), None, "its own restored pod, restarted");
        let mut plain = stack.clone();
        plain.restore = None;
        let running = crate::render::objects(&plain, &crate::render::StackPasswords::default()).statefulset;
        let refused = restore_conflict(&stack, Some(&running), true).unwrap();
        assert!(refused.starts_with("spec.bootstrap.restore: the stack already runs"), "{refused}");
        let left = restore_conflict(&stack, None, true).unwrap();
        assert!(left.contains("data-copy-0"), "{left}");
        assert_eq!(restore_conflict(&plain, Some(&running), true), None, "no restore asked");
    }
}
