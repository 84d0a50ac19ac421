use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::status::{self, Outcome, Phase};
use super::{
    Context, Error, FIELD_MANAGER, api_error, bootstrap, database, deploy, dereference, instances, nodes, patroni,
    rollout,
};
use crate::api::DataWarehouseStack;
use crate::validate::{ValidatedStack, ValidationErrors, validate};
use crate::{render, secrets, sql, template};

/// How soon to look again while the pod starts or something is missing.
const WAIT: Duration = Duration::from_secs(15);

/// One pass of the pipeline for one stack.
pub async fn reconcile(stack: Arc<DataWarehouseStack>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = converge(&stack, &ctx).await;
    ctx.metrics.observe_reconcile(started.elapsed().as_secs_f64());
    if let Err(Error::Kube(error)) = &result {
        // Best effort: when the failing call was the status write itself, this fails too.
        let _ = report(&stack, None, None, &Outcome::ApiFailed(api_error::one_line(error)), &ctx).await;
    }
    if result.is_ok() {
        ctx.failures.lock().expect("failures lock").remove(&key(&stack));
    }
    result
}

fn key(stack: &DataWarehouseStack) -> String {
    format!("{}/{}", stack.namespace().unwrap_or_default(), stack.name_any())
}

async fn converge(stack: &DataWarehouseStack, ctx: &Context) -> Result<Action, Error> {
    let validated = match template::resolve(stack) {
        Ok(resolved) => validate(&resolved),
        Err(e) => Err(ValidationErrors(vec![crate::validate::FieldError {
            path: "spec.template".into(),
            message: e.to_string(),
        }])),
    };
    let validated = match validated {
        // A completed restore is history: the stack runs as any other from then on.
        Ok(v) if status::restore_completed(stack) => ValidatedStack { restore: None, ..v },
        Ok(v) => v,
        Err(errors) => {
            // Nothing is applied for an invalid spec; a new generation triggers the next look.
            report(stack, None, None, &Outcome::Invalid(errors.to_string()), ctx).await?;
            return Ok(Action::await_change());
        }
    };
    if let Some(conflict) = bootstrap::check(&ctx.client, &validated).await? {
        // Nothing is applied: the data that is there stays as it is.
        report(stack, None, None, &Outcome::Invalid(conflict), ctx).await?;
        return Ok(Action::await_change());
    }
    let passwords = dereference::stack_passwords(&ctx.client, &validated).await?;
    let mut objects = render::objects(&validated, &passwords);
    let password = passwords.superuser;
    let worker_pods = match validated.spec.distributed {
        Some(_) => nodes::replicas_to_run(&ctx.client, &validated).await?,
        None => 0,
    };
    objects.workers = render::worker_objects(&validated, worker_pods);
    let statefulset = deploy::apply_objects(&ctx.client, &objects).await?;
    // A stack of several instances has its pods listed once per reconcile: Patroni's API
    // addresses, the rollout and the status all read this one list.
    let pods = instances::list_pods(&ctx.client, &validated).await?;
    let mut observed = pods.as_deref().map(|pods| instances::from_pods(pods, validated.instances()));
    if !database::pod_ready(&statefulset) {
        report(stack, Some(&validated), observed.as_ref(), &Outcome::Provisioning, ctx).await?;
        return Ok(Action::requeue(WAIT));
    }
    let mut rolling = false;
    let seen = match (&pods, &observed) {
        (Some(pods), Some(instances)) => {
            let pass = converge_patroni(stack, &validated, &statefulset, pods, instances, ctx).await;
            if pass.acted {
                // Roles moved or pods went: the status tells what is there now.
                observed = reobserve(stack, &validated, ctx).await.or(observed);
            }
            rolling = pass.rolling;
            pass.seen
        }
        _ => stack.clone(),
    };
    let stack = &seen;
    let observed = observed.as_ref();
    let found = dereference::referenced_secrets(&ctx.client, &validated).await?;
    // A Secret that is not there holds back only the items that name it.
    let secrets = secrets::resolve_available(&validated, &found);
    let mut conn = match database::connect(&ctx.client, &ctx.settings, &validated, &password).await {
        Ok(conn) => conn,
        Err(e) => {
            report(stack, Some(&validated), observed, &Outcome::DatabaseUnavailable(e), ctx).await?;
            return Ok(Action::requeue(WAIT));
        }
    };
    let database_stage = async {
        let applied = match sql::converge(&mut conn, &validated, &secrets).await {
            Ok((_, applied)) => applied,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let nodes = match validated.spec.distributed {
            Some(_) => {
                Some(nodes::converge(&ctx.client, &ctx.settings, &validated, &password, &secrets, &mut conn).await?)
            }
            None => None,
        };
        Ok::<_, kube::Error>(match read_warehouse(&mut conn, &validated).await {
            Ok(warehouse) => Ok((applied, nodes, warehouse)),
            Err(e) => Err(e.to_string()),
        })
    };
    let limit = ctx.settings.database_stage_limit;
    let Ok(report_and_status) = tokio::time::timeout(limit, database_stage).await else {
        let stalled = format!("the database stage did not finish within {limit:?}: the connection stalled");
        report(stack, Some(&validated), observed, &Outcome::DatabaseUnavailable(stalled), ctx).await?;
        return Ok(Action::requeue(WAIT));
    };
    let report_and_status = report_and_status?;
    if let Ok((_, Some(found), _)) = &report_and_status
        && worker_pods > render::wanted_workers(&validated)
        && nodes::may_shrink(found)
    {
        // The coordinator has drained and removed the workers going away: their pods may stop.
        let wanted = render::worker_objects(&validated, render::wanted_workers(&validated));
        deploy::apply_workers(&ctx.client, wanted.as_ref()).await?;
    }
    let refresh_now_started = match (&report_and_status, status::refresh_now_asked(stack)) {
        (Ok(_), Some(_)) => start_refresh_now(stack, &validated, &password, ctx).await,
        _ => false,
    };
    let settling = match &report_and_status {
        Ok((applied, nodes, warehouse)) => {
            let outcome = Outcome::Converged { report: applied, nodes: nodes.as_ref(), warehouse, refresh_now_started };
            !report(stack, Some(&validated), observed, &outcome, ctx).await?
                || rolling
                || !matches!(nodes, None | Some(nodes::Nodes::Converged(_)))
                || warehouse.rebalance.as_ref().is_some_and(|r| r.in_progress())
        }
        Err(e) => {
            report(stack, Some(&validated), observed, &Outcome::EngineFailed(e.clone()), ctx).await?;
            false
        }
    };
    // While asked-for refreshes run, shards move or replicas are not streaming yet, look again
    // soon: their outcome reaches the status then.
    if ctx.refresh_now.running(&key(stack)) || settling {
        return Ok(Action::requeue(WAIT));
    }
    Ok(Action::requeue(ctx.settings.requeue))
}

/// What a pass through Patroni left behind.
struct PatroniPass {
    /// The stack as the status should record it (a switchover request handled).
    seen: DataWarehouseStack,
    /// A rollout goes on: look again soon.
    rolling: bool,
    /// Members restarted, switched over or had a pod replaced: the pods listed before are stale.
    acted: bool,
}

/// Under Patroni: the shared configuration converged through the leader, a switchover the
/// annotation asks for, then the next step of a rollout, all from the pods listed once.
async fn converge_patroni(
    stack: &DataWarehouseStack,
    validated: &ValidatedStack,
    statefulset: &StatefulSet,
    pods: &[Pod],
    instances: &instances::Instances,
    ctx: &Context,
) -> PatroniPass {
    let mut pass = PatroniPass { seen: stack.clone(), rolling: false, acted: false };
    let apis = patroni::member_apis(&ctx.settings, pods);
    let converged = match &apis {
        Ok(apis) => patroni::converge(apis, validated).await,
        Err(unreachable) => Err(unreachable.clone()),
    };
    match converged {
        Ok(done) if done != Default::default() => {
            tracing::info!(
                stack = %stack.name_any(),
                changed = ?done.changed,
                restarted = ?done.restarted,
                switched_to = ?done.switched_to,
                "Patroni's configuration converged"
            );
            pass.acted = !done.restarted.is_empty() || done.switched_to.is_some();
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(stack = %stack.name_any(), %error, "Patroni's configuration"),
    }
    // A request is answered once, made or refused (Patroni's reason in the status); asking again
    // is a new request.
    if let Some(asked) = patroni::switchover_asked(stack) {
        // The request's answer: made (no error) or refused (Patroni's reason); none while it
        // could not be recorded, so that the next reconcile asks again.
        let answer = match patroni::claim_switchover(&ctx.client, stack, asked).await {
            Ok(patroni::Claim::Ours) => {
                let outcome = match &apis {
                    Ok(apis) => patroni::switchover(apis, asked).await,
                    Err(unreachable) => Err(unreachable.clone()),
                };
                match &outcome {
                    Ok(primary) => tracing::info!(stack = %stack.name_any(), %primary, "switched over"),
                    Err(error) => tracing::warn!(stack = %stack.name_any(), %asked, %error, "switchover"),
                }
                pass.acted |= outcome.is_ok();
                Some(outcome.err())
            }
            Ok(patroni::Claim::Answered { error }) => Some(error),
            Err(error) => {
                let error = api_error::one_line(&error);
                tracing::warn!(stack = %stack.name_any(), %asked, %error, "switchover: recording the request");
                None
            }
        };
        if let Some(error) = answer {
            let status = pass.seen.status.get_or_insert_default();
            status.switchover_started = Some(asked.clone());
            status.switchover_handled = Some(asked.clone());
            status.switchover_error = error;
        }
    }
    let roll = if pass.acted {
        // Roles moved since the pods were listed: the next reconcile plans from a fresh list.
        Ok(rollout::Step::Wait("members were restarted or switched over".into()))
    } else {
        rollout::roll(&ctx.client, validated, statefulset, pods, instances, apis.as_deref().ok()).await
    };
    pass.rolling = match roll {
        Ok(rollout::Step::Done) => false,
        Ok(step) => {
            if matches!(step, rollout::Step::Replace(_) | rollout::Step::SwitchOverThenReplace(_)) {
                tracing::info!(stack = %stack.name_any(), ?step, "rolling the pods onto the new template");
                pass.acted = true;
            }
            true
        }
        Err(error) => {
            tracing::warn!(stack = %stack.name_any(), %error, "rollout");
            true
        }
    };
    pass
}

/// Patroni's account of the pods read again; a failed read leaves the last one standing.
async fn reobserve(
    stack: &DataWarehouseStack,
    validated: &ValidatedStack,
    ctx: &Context,
) -> Option<instances::Instances> {
    match instances::list_pods(&ctx.client, validated).await {
        Ok(pods) => pods.map(|pods| instances::from_pods(&pods, validated.instances())),
        Err(error) => {
            tracing::warn!(stack = %stack.name_any(), error = %api_error::one_line(&error), "reading the pods");
            None
        }
    }
}

/// Starts the stack's refreshes in the background on a connection of their own; false when the
/// stack's earlier ones still run (the annotation's value is then handled by a later reconcile).
async fn start_refresh_now(
    stack: &DataWarehouseStack,
    validated: &ValidatedStack,
    password: &str,
    ctx: &Context,
) -> bool {
    if ctx.refresh_now.running(&key(stack)) {
        return false;
    }
    match database::connect(&ctx.client, &ctx.settings, validated, password).await {
        Ok(conn) => ctx.refresh_now.start(key(stack), conn, validated.clone()),
        Err(error) => {
            tracing::warn!(stack = %stack.name_any(), %error, "refresh-now: cannot connect");
            false
        }
    }
}

/// The catalogs' account of the warehouse, with backups when the stack has them.
async fn read_warehouse(
    conn: &mut sqlx::PgConnection,
    stack: &ValidatedStack,
) -> Result<sql::status::WarehouseStatus, sqlx::Error> {
    let mut warehouse = sql::status::read_status(conn).await?;
    if stack.backup.is_some() {
        warehouse.backup = Some(crate::backup::record::read(conn, &stack.name).await?);
    }
    Ok(warehouse)
}

/// Writes the status (server-side apply on the subresource) and an Event when the phase changes
/// or a failure's message does; `instances` is Patroni's account of the pods (none leaves the
/// last one standing). False while a stack of several instances is not yet highly available:
/// pods are not watched, so the caller looks again soon.
async fn report(
    stack: &DataWarehouseStack,
    validated: Option<&ValidatedStack>,
    instances: Option<&instances::Instances>,
    outcome: &Outcome<'_>,
    ctx: &Context,
) -> Result<bool, Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new = status::build(stack, validated, outcome, instances, &now);
    let previous = stack.status.as_ref();
    let phase = outcome.phase();
    let ready_message = |s: Option<&crate::api::DataWarehouseStackStatus>| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).map(|c| c.message.clone())
    };
    let changed = previous.and_then(|p| p.phase.as_deref()) != Some(phase.as_str())
        || (phase != Phase::Ready && ready_message(previous) != ready_message(Some(&new)));
    let api: Api<DataWarehouseStack> = Api::namespaced(ctx.client.clone(), &stack.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "pgwarehouse.dev/v1alpha1", "kind": "DataWarehouseStack", "status": new});
    api.patch_status(&stack.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    if changed {
        let event = Event {
            type_: if matches!(phase, Phase::Failed | Phase::Degraded) {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: phase.as_str().into(),
            // Events are capped at 1 kB.
            note: Some(outcome.message().chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        ctx.recorder.publish(&event, &stack.object_ref(&())).await?;
    }
    Ok(instances.is_none_or(|i| i.condition().0))
}

/// A failed reconcile retries later each time it fails again (5 s doubling up to 5 min), with up
/// to 20% jitter so that many failing stacks do not retry in step.
pub fn error_policy(stack: Arc<DataWarehouseStack>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(stack = %stack.name_any(), namespace = ?stack.namespace(), %error, "reconcile failed");
    ctx.metrics.reconcile_failed(error.metric_label());
    let failures = {
        let mut failures = ctx.failures.lock().expect("failures lock");
        let count = failures.entry(key(&stack)).or_insert(0);
        *count += 1;
        *count
    };
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    Action::requeue(backoff(failures, f64::from(nanos % 1000) / 1000.0))
}

/// The wait after the `failures`-th failure in a row; `jitter` in [0, 1).
fn backoff(failures: u32, jitter: f64) -> Duration {
    let base = Duration::from_secs(5).saturating_mul(1 << failures.saturating_sub(1).min(10));
    base.min(Duration::from_secs(300)).mul_f64(1.0 + 0.2 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n, 0.0).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(1, 0.5), Duration::from_millis(5_500), "jitter adds up to 20%");
    }
}
