//! A distributed stack's Citus workers in the cluster: how many worker pods run (a scale-down
//! keeps them until the coordinator has drained and removed the ones going away), whether they
//! are ready, and the nodes' converge over a connection to each worker by its stable name.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Client;
use kube::api::Api;
use sqlx::PgConnection;

use super::{Settings, database};
use crate::render::{coordinator_host, wanted_workers, worker_statefulset_name};
use crate::secrets::Secrets;
use crate::sql::distributed::{self, Node, NodesReport, Worker};
use crate::validate::ValidatedStack;

/// What the nodes' converge found.
#[derive(Debug)]
pub enum Nodes {
    /// Fewer worker pods are ready than the spec asks for: nothing is registered yet.
    WaitingForWorkers {
        ready: u32,
        wanted: u32,
    },
    Converged(NodesReport),
    Failed(String),
}

async fn worker_statefulset(client: &Client, stack: &ValidatedStack) -> Result<Option<StatefulSet>, kube::Error> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), stack.namespace_or_default());
    api.get_opt(&worker_statefulset_name(stack)).await
}

/// The worker pods to run: the spec's count, or the pods running now while a scale-down waits
/// for the coordinator to drain the ones going away.
pub async fn replicas_to_run(client: &Client, stack: &ValidatedStack) -> Result<u32, kube::Error> {
    let running = worker_statefulset(client, stack)
        .await?
        .and_then(|s| s.spec?.replicas)
        .map_or(0, |r| u32::try_from(r).unwrap_or(0));
    Ok(running.max(wanted_workers(stack)))
}

/// Registers the wanted workers with the coordinator (`conn`), drains and removes the others,
/// lays out `spec.tables`; the same converge `pgwarehouse local` runs, with stable DNS names.
pub async fn converge(
    client: &Client,
    settings: &Settings,
    stack: &ValidatedStack,
    password: &str,
    secrets: &Secrets,
    conn: &mut PgConnection,
) -> Result<Nodes, kube::Error> {
    let wanted = wanted_workers(stack);
    let ready = worker_statefulset(client, stack)
        .await?
        .and_then(|s| s.status?.ready_replicas)
        .map_or(0, |r| u32::try_from(r).unwrap_or(0));
    if ready < wanted {
        return Ok(Nodes::WaitingForWorkers { ready, wanted });
    }
    let mut workers = Vec::new();
    for index in 0..wanted {
        match database::connect_worker(client, settings, stack, password, index).await {
            Ok(conn) => workers.push(Worker {
                node: Node { host: crate::render::worker_host(stack, index), port: database::PORT },
                conn,
            }),
            Err(e) => return Ok(Nodes::Failed(format!("worker {index}: {e}"))),
        }
    }
    let coordinator = Node { host: coordinator_host(stack), port: database::PORT };
    // A drain moves every shard off its worker before returning: longer than one statement may
    // take elsewhere, bounded by the database stage's limit.
    if let Err(e) = sqlx::raw_sql("SET statement_timeout = 0").execute(&mut *conn).await {
        return Ok(Nodes::Failed(e.to_string()));
    }
    let result = distributed::converge(conn, &coordinator, &mut workers, stack, password, secrets).await;
    let restored = sqlx::raw_sql("RESET statement_timeout").execute(&mut *conn).await;
    Ok(match (result, restored) {
        (Ok(report), Ok(_)) => Nodes::Converged(report),
        (Err(e), _) | (Ok(_), Err(e)) => Nodes::Failed(e.to_string()),
    })
}

/// Whether the worker pods beyond the spec's count may go: the coordinator no longer knows them.
pub fn may_shrink(nodes: &Nodes) -> bool {
    matches!(nodes, Nodes::Converged(report) if report.draining_after_rebalance.is_empty())
}
