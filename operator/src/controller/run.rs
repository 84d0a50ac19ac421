//! `pgwarehouse run`: the controller in a cluster, with leader election, metrics and health
//! endpoints, and a graceful stop on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource};
use kube_lease_manager::LeaseManagerBuilder;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::metrics::Metrics;
use super::{Context, Settings, error_policy, reconcile, server, stacks_using_secret};
use crate::api::DataWarehouseStack;

#[derive(clap::Args, Debug, Clone)]
pub struct RunOptions {
    /// Namespaces to watch (repeat or comma-separate); all namespaces when unset.
    #[arg(long = "namespace", env = "PGWAREHOUSE_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Seconds between drift repairs of a converged stack.
    #[arg(long, env = "PGWAREHOUSE_REQUEUE_SECONDS", default_value_t = 300)]
    pub requeue_seconds: u64,
    /// Stacks reconciled at once.
    #[arg(long, env = "PGWAREHOUSE_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, env = "PGWAREHOUSE_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,
    /// Reach every database at host[:port] instead of its Service (outside the cluster, with a port-forward).
    #[arg(long, env = "PGWAREHOUSE_DATABASE_HOST_OVERRIDE")]
    pub database_host_override: Option<String>,
    /// Take a Lease before reconciling, so that two replicas never reconcile together.
    #[arg(long, env = "PGWAREHOUSE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "pgwarehouse-system")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

const LEASE_NAME: &str = "pgwarehouse-operator";

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One controller over one namespace (or all), running until `stop` fires.
async fn control(
    client: Client,
    namespace: Option<String>,
    ctx: Arc<Context>,
    concurrency: u16,
    stop: watch::Receiver<bool>,
) {
    let ns = namespace.as_deref();
    let wc = watcher::Config::default();
    let controller = Controller::new(api::<DataWarehouseStack>(&client, ns), wc.clone())
        .with_config(controller::Config::default().concurrency(concurrency));
    let store = controller.store();
    ctx.metrics.count_stacks_in(store.clone());
    let mut stop = stop;
    controller
        .owns(api::<StatefulSet>(&client, ns), wc.clone())
        .owns(api::<Service>(&client, ns), wc.clone())
        .owns(api::<ConfigMap>(&client, ns), wc.clone())
        .watches(api::<Secret>(&client, ns), wc, move |secret| stacks_using_secret(&secret, &store.state()))
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
}

pub async fn run(options: RunOptions) -> Result<(), kube::Error> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let identity = options.identity.clone().unwrap_or_else(|| format!("pgwarehouse-{}", std::process::id()));

    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(server::serve(options.metrics_address, metrics.clone(), ready.clone(), async move {
        let _ = server_stop.wait_for(|stopped| *stopped).await;
    }));
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signal_tx.send(true);
    });

    let mut leadership = None;
    if options.leader_election {
        let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
            .with_namespace(&options.lease_namespace)
            .with_identity(&identity)
            .build()
            .await
            .map_err(|e| kube::Error::Service(e.to_string().into()))?;
        let (mut leader, task) = manager.watch().await;
        // A standby replica is healthy and ready; it just waits for the Lease.
        ready.store(true, Ordering::Relaxed);
        let mut stopped = stop_rx.clone();
        tokio::select! {
            _ = leader.wait_for(|is_leader| *is_leader) => tracing::info!(%identity, "leading"),
            _ = stopped.wait_for(|s| *s) => return Ok(()),
        }
        // Losing the Lease stops the controllers; the pod restarts and queues up as a follower.
        let lost_tx = stop_tx.clone();
        tokio::spawn(async move {
            let _ = leader.wait_for(|is_leader| !*is_leader).await;
            tracing::warn!("lost the lease; stopping");
            let _ = lost_tx.send(true);
        });
        leadership = Some(task);
    }

    let reporter = Reporter { controller: "pgwarehouse-operator".into(), instance: Some(identity) };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        settings: Settings {
            requeue: Duration::from_secs(options.requeue_seconds),
            database_host_override: options.database_host_override.clone(),
            // Outside a cluster, Service names do not resolve: go through the API server.
            port_forward: std::env::var_os("KUBERNETES_SERVICE_HOST").is_none(),
            ..Settings::default()
        },
        failures: Default::default(),
    });
    ready.store(true, Ordering::Relaxed);
    let namespaces: Vec<Option<String>> =
        if options.namespaces.is_empty() { vec![None] } else { options.namespaces.iter().cloned().map(Some).collect() };
    join_all(
        namespaces.into_iter().map(|ns| control(client.clone(), ns, ctx.clone(), options.concurrency, stop_rx.clone())),
    )
    .await;
    let _ = stop_tx.send(true);
    if let Some(task) = leadership {
        task.abort();
    }
    let _ = server.await;
    Ok(())
}
