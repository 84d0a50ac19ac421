//! The Citus workers of a local warehouse (`spec.distributed.workers`): one server each beside
//! the coordinator, in `<stack dir>/worker-N` on a port of its own, with the coordinator's
//! superuser password and rendered settings (no WAL archiving: backups cover the coordinator).
//! They are registered by `127.0.0.1:<port>` and converged by the same code as in a cluster.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::cluster::{Binaries, Cluster};
use super::{Local, LocalError, create_database, free_port_besides, io};
use crate::secrets::Secrets;
use crate::sql::distributed::{self, Node, NodesReport, Worker};
use crate::validate::ValidatedStack;

pub(super) struct LocalWorker {
    pub cluster: Cluster,
    pub port: u16,
}

/// Worker `index`'s directory.
fn worker_dir(stack_dir: &Path, index: usize) -> std::path::PathBuf {
    stack_dir.join(format!("worker-{index}"))
}

/// The workers recorded in `ports` (from the state file), in order.
pub(super) fn recorded(stack_dir: &Path, binaries: &Binaries, ports: &[u16]) -> Vec<LocalWorker> {
    ports
        .iter()
        .enumerate()
        .map(|(i, &port)| LocalWorker {
            cluster: Cluster { binaries: binaries.clone(), dir: worker_dir(stack_dir, i) },
            port,
        })
        .collect()
}

/// The first `wanted` workers: those recorded keep their ports, new ones get free ones.
pub(super) fn wanted(
    stack_dir: &Path,
    binaries: &Binaries,
    ports: &[u16],
    wanted: usize,
    coordinator_port: u16,
) -> Result<Vec<LocalWorker>, LocalError> {
    let mut taken: Vec<u16> = ports.iter().copied().chain([coordinator_port]).collect();
    let mut workers = recorded(stack_dir, binaries, &ports[..ports.len().min(wanted)]);
    for index in workers.len()..wanted {
        let port = free_port_besides(&taken)?;
        taken.push(port);
        workers.push(LocalWorker {
            cluster: Cluster { binaries: binaries.clone(), dir: worker_dir(stack_dir, index) },
            port,
        });
    }
    Ok(workers)
}

/// Initializes (once), configures and starts a worker, and creates the warehouse database on it.
pub(super) async fn start(
    worker: &LocalWorker,
    local: &Local,
    settings: BTreeMap<String, String>,
    out: &mut dyn Write,
) -> Result<(), LocalError> {
    if !worker.cluster.initialized() {
        worker.cluster.init(&local.password)?;
        let _ = writeln!(out, "- initialized worker {}", worker.cluster.dir.display());
    }
    let restart = worker.cluster.configure(&settings)?;
    let running = worker.cluster.running();
    if running && restart {
        worker.cluster.stop()?;
    }
    if !running || restart {
        worker.cluster.start()?;
    }
    let mut admin = local.connect_to(worker.port, "postgres").await?;
    create_database(&mut admin, &local.database).await?;
    Ok(())
}

/// Registers `workers` (draining and removing any other registered worker first) and lays out
/// the stack's tables.
pub(super) async fn converge(
    local: &Local,
    workers: &[LocalWorker],
    stack: &ValidatedStack,
    secrets: &Secrets,
) -> Result<NodesReport, LocalError> {
    let mut connected = Vec::new();
    for worker in workers {
        let conn = local.connect_to(worker.port, &local.database).await?;
        connected.push(Worker { node: Node { host: "127.0.0.1".into(), port: worker.port }, conn });
    }
    let mut conn = local.connect(&local.database).await?;
    let coordinator = Node { host: "127.0.0.1".into(), port: local.port };
    let failed = |e: sqlx::Error| LocalError::Invalid(format!("distributing the warehouse: {e}"));
    let mut report = distributed::converge(&mut conn, &coordinator, &mut connected, stack, &local.password, secrets)
        .await
        .map_err(failed)?;
    if !report.draining_after_rebalance.is_empty() {
        // An earlier `up` was stopped while shards moved: the drain runs once they have, and
        // only then are the workers it empties stopped.
        distributed::wait_for_rebalance(&mut conn).await.map_err(failed)?;
        report = distributed::converge(&mut conn, &coordinator, &mut connected, stack, &local.password, secrets)
            .await
            .map_err(failed)?;
    }
    if report.rebalance_started {
        distributed::wait_for_rebalance(&mut conn).await.map_err(failed)?;
    }
    Ok(report)
}

/// Stops a worker no longer wanted (its shards already drained) and deletes its directory.
pub(super) fn retire(worker: &LocalWorker) -> Result<(), LocalError> {
    if worker.cluster.running() {
        worker.cluster.stop()?;
    }
    std::fs::remove_dir_all(&worker.cluster.dir).map_err(io(&worker.cluster.dir))
}
