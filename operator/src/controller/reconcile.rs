use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::status::{self, Outcome, Phase};
use super::{Context, Error, FIELD_MANAGER, database, deploy, dereference};
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
    result
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
        Ok(v) => v,
        Err(errors) => {
            // Nothing is applied for an invalid spec; a new generation triggers the next look.
            report(stack, None, &Outcome::Invalid(errors.to_string()), ctx).await?;
            return Ok(Action::await_change());
        }
    };
    let password = dereference::superuser_password(&ctx.client, &validated).await?;
    deploy::apply_objects(&ctx.client, &render::objects(&validated, &password)).await?;
    if !database::pod_ready(&ctx.client, &validated).await? {
        report(stack, Some(&validated), &Outcome::Provisioning, ctx).await?;
        return Ok(Action::requeue(WAIT));
    }
    let found = dereference::referenced_secrets(&ctx.client, &validated).await?;
    let secrets = match secrets::resolve(&validated, &found) {
        Ok(secrets) => secrets,
        Err(missing) => {
            report(stack, Some(&validated), &Outcome::MissingSecrets(missing.to_string()), ctx).await?;
            return Ok(Action::requeue(WAIT));
        }
    };
    let mut conn = match database::connect(&ctx.client, &ctx.settings, &validated, &password).await {
        Ok(conn) => conn,
        Err(e) => {
            report(stack, Some(&validated), &Outcome::DatabaseUnavailable(e), ctx).await?;
            return Ok(Action::requeue(WAIT));
        }
    };
    let report_and_status = match sql::converge(&mut conn, &validated, &secrets).await {
        Ok((_, applied)) => match sql::status::read_status(&mut conn).await {
            Ok(warehouse) => Ok((applied, warehouse)),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    match report_and_status {
        Ok((applied, warehouse)) => {
            report(stack, Some(&validated), &Outcome::Converged { report: &applied, warehouse: &warehouse }, ctx)
                .await?
        }
        Err(e) => report(stack, Some(&validated), &Outcome::EngineFailed(e), ctx).await?,
    }
    Ok(Action::requeue(ctx.settings.requeue))
}

/// Writes the status (server-side apply on the subresource) and an Event when the phase changes
/// or a failure's message does.
async fn report(
    stack: &DataWarehouseStack,
    validated: Option<&ValidatedStack>,
    outcome: &Outcome<'_>,
    ctx: &Context,
) -> Result<(), Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new = status::build(stack, validated, outcome, &now);
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
    Ok(())
}

/// A failed reconcile retries with jitter, so many failing stacks do not retry in step.
pub fn error_policy(stack: Arc<DataWarehouseStack>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(stack = %stack.name_any(), namespace = ?stack.namespace(), %error, "reconcile failed");
    ctx.metrics.reconcile_failed(error.metric_label());
    let jitter =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_millis()).unwrap_or(0);
    Action::requeue(WAIT + Duration::from_millis(u64::from(jitter) * 10))
}
