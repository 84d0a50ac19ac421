//! The convergence engine: observe the catalogs, plan the difference, apply it.

pub mod apply;
pub mod columnar;
pub mod connection;
pub mod distributed;
pub mod ledger;
pub mod observe;
pub mod plan;
pub mod quote;
pub mod refresh;
pub mod status;

use sqlx::PgConnection;

use crate::secrets::Secrets;
use crate::validate::ValidatedStack;

/// Observations cost this many round trips, whatever the stack's size.
pub const OBSERVE_ROUND_TRIPS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read the catalogs: {0}")]
    Observe(#[source] sqlx::Error),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
}

/// Observes, plans and applies; the plan is returned beside what applying it did.
pub async fn converge(
    conn: &mut PgConnection,
    stack: &ValidatedStack,
    secrets: &Secrets,
) -> Result<(plan::Plan, apply::ApplyReport), EngineError> {
    let (plan, report) = pass(conn, stack, secrets).await?;
    // A refresh's query may read what this very plan created (a source's foreign tables, a
    // migration's view): once those exist, it is described again.
    let waiting = plan.units.iter().any(|u| u.item == plan::ItemKind::Refresh && u.blocked.is_some());
    if waiting && report.statements > 0 {
        let (plan, again) = pass(conn, stack, secrets).await?;
        return Ok((plan, apply::ApplyReport::merged(report, again)));
    }
    Ok((plan, report))
}

async fn pass(
    conn: &mut PgConnection,
    stack: &ValidatedStack,
    secrets: &Secrets,
) -> Result<(plan::Plan, apply::ApplyReport), EngineError> {
    let observed = observe::observe(conn, stack).await.map_err(EngineError::Observe)?;
    let plan = plan::plan(stack, &observed, secrets)?;
    let mut report = apply::apply(conn, &plan).await;
    report.round_trips += OBSERVE_ROUND_TRIPS + observed.described.len() * observe::DESCRIBE_ROUND_TRIPS;
    Ok((plan, report))
}
