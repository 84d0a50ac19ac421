//! What the running stack rules out, refused before anything is applied so that no data is
//! touched. A restore makes a new stack: it may only fill an empty data volume, not a stack that
//! already runs (its StatefulSet created without the restore step) or a data claim left from an
//! earlier stack of the name. And a stack keeps the way its instances run: one pod without
//! Patroni cannot become several in place (members started beside it would find no Patroni
//! cluster and initialise an empty one, which the client Service would then select), nor the
//! other way round (the pod left could be a replica).

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

/// Whether the running pods are Patroni's, by the StatefulSet's template.
fn runs_patroni(statefulset: &StatefulSet) -> bool {
    let pod = statefulset.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let commands = pod.iter().flat_map(|p| &p.containers).filter_map(|c| c.command.as_ref());
    commands.flatten().any(|word| word == "patroni")
}

/// Why `spec.postgres.instances` cannot take effect on the running stack, if it cannot.
pub fn instances_conflict(stack: &ValidatedStack, existing: Option<&StatefulSet>) -> Option<String> {
    let running_patroni = runs_patroni(existing?);
    match (running_patroni, stack.highly_available()) {
        (false, true) => Some(format!(
            "spec.postgres.instances: the stack runs one instance without Patroni; it cannot grow to {} in place \
             yet (new members would start an empty cluster beside its data): keep instances: 1, or create a \
             stack of {} instances and load the data into it",
            stack.instances(),
            stack.instances()
        )),
        (true, false) => Some(
            "spec.postgres.instances: the stack runs its instances under Patroni; going back to one instance \
             without Patroni is not supported (the pod kept could be a replica): keep 2 or more"
                .into(),
        ),
        _ => None,
    }
}

/// Reads what [`restore_conflict`] and [`instances_conflict`] decide on: a steady reconcile costs
/// one GET.
pub async fn check(client: &Client, stack: &ValidatedStack) -> Result<Option<String>, kube::Error> {
    let namespace = stack.namespace_or_default();
    let name = client_name(stack);
    let existing = Api::<StatefulSet>::namespaced(client.clone(), namespace).get_opt(&name).await?;
    // Once the StatefulSet exists, it decides.
    let data_claim_exists = match existing {
        None if stack.restore.is_some() => {
            let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace);
            claims.get_opt(&format!("data-{name}-0")).await?.is_some()
        }
        _ => false,
    };
    Ok(restore_conflict(stack, existing.as_ref(), data_claim_exists)
        .or_else(|| instances_conflict(stack, existing.as_ref())))
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

    #[test]
    fn a_stack_keeps_the_way_its_instances_run() {
        let stack = |instances: u32| {
            let text = format!(
                "kind: DataWarehouseStack\nmetadata: {{name: w}}\nspec: {{postgres: {{instances: {instances}}}}}\n"
            );
            validate(&load_manifest(&text).unwrap()).unwrap()
        };
        let statefulset = |instances: u32| {
            crate::render::objects(&stack(instances), &crate::render::StackPasswords::default()).statefulset
        };
        assert_eq!(instances_conflict(&stack(3), None), None, "a new stack of three");
        assert_eq!(instances_conflict(&stack(3), Some(&statefulset(3))), None);
        assert_eq!(instances_conflict(&stack(5), Some(&statefulset(3))), None, "more members under Patroni");
        assert_eq!(instances_conflict(&stack(1), Some(&statefulset(1))), None);
        let grow = instances_conflict(&stack(3), Some(&statefulset(1))).unwrap();
        assert!(grow.starts_with("spec.postgres.instances: the stack runs one instance without Patroni"), "{grow}");
        let shrink = instances_conflict(&stack(1), Some(&statefulset(3))).unwrap();
        assert!(shrink.contains("going back to one instance"), "{shrink}");
    }
}
