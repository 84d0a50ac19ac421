//! `pgwarehouse run`: the controller in a cluster, with leader election, metrics and health
//! endpoints, and a stop on SIGTERM that releases the Lease and exits within five seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::api_error::{one_line, watch_error};
use super::health::Health;
use super::leader::{Elector, Held, Timing};
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
/// How long in-flight reconciles get after SIGTERM; with the Lease release and the HTTP server
/// it keeps the whole stop under five seconds, whatever the watches are doing.
const RECONCILE_GRACE: Duration = Duration::from_secs(3);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a failing watch's permissions are probed to tell when it works again.
const PROBE_EVERY: Duration = Duration::from_secs(5);

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

/// The watches of one controller: stacks, the three kinds it owns, and Secrets.
pub const WATCHES_PER_CONTROLLER: usize = 5;

/// A watch of `K` that marks `health` listed once, at its first complete list (its first
/// `InitDone`).
///
/// Readiness follows the watch streams themselves rather than `Store::wait_until_ready`:
/// kube-runtime 5's store readiness is a oneshot receiver that keeps one waker, and the
/// controller's applier waits on the same store, so a second waiter is never woken.
fn listed_watch<K>(
    client: &Client,
    namespace: Option<&str>,
    health: &Arc<Health>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let health = health.clone();
    let mut pending = true;
    watcher(api::<K>(client, namespace), watcher::Config::default()).inspect(move |event| {
        if pending && matches!(event, Ok(watcher::Event::InitDone)) {
            pending = false;
            health.listed();
        }
    })
}

/// One controller over one namespace (or all), running until `stop` fires.
async fn control(
    client: Client,
    namespace: Option<String>,
    ctx: Arc<Context>,
    health: Arc<Health>,
    concurrency: u16,
    stop: watch::Receiver<bool>,
) {
    let ns = namespace.as_deref();
    let (store, writer) = reflector::store();
    let stacks = listed_watch::<DataWarehouseStack>(&client, ns, &health).reflect(writer).applied_objects();
    ctx.metrics.count_stacks_in(store.clone());
    let mapped_store = store.clone();
    let mut stop = stop;
    Controller::for_stream(stacks, store)
        .with_config(controller::Config::default().concurrency(concurrency))
        .owns_stream(listed_watch::<PartialObjectMeta<StatefulSet>>(&client, ns, &health).touched_objects())
        .owns_stream(listed_watch::<PartialObjectMeta<Service>>(&client, ns, &health).touched_objects())
        .owns_stream(listed_watch::<PartialObjectMeta<ConfigMap>>(&client, ns, &health).touched_objects())
        .watches_stream(listed_watch::<Secret>(&client, ns, &health).touched_objects(), move |secret| {
            stacks_using_secret(&secret, &mapped_store.state())
        })
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(controller::Error::QueueError(error)) = &result {
                let reason = watch_error(error);
                if health.watch_failed(reason.clone(), Instant::now()) {
                    tracing::warn!(namespace = ns.unwrap_or("(all)"), %reason, "a watch is failing; not ready");
                }
            }
            async {}
        })
        .await;
}

async fn can_list<K>(client: &Client, namespace: Option<&str>) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    api::<K>(client, namespace).list_metadata(&ListParams::default().limit(1)).await.map(|_| ())
}

/// While a watch fails, checks every few seconds whether everything watched can be listed
/// again, and marks the operator ready when it can.
async fn probe_while_failing(client: Client, namespaces: Vec<Option<String>>, health: Arc<Health>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        if !health.is_failing() {
            continue;
        }
        let mut failure = None;
        for ns in namespaces.iter().map(Option::as_deref) {
            let results = [
                can_list::<DataWarehouseStack>(&client, ns).await,
                can_list::<StatefulSet>(&client, ns).await,
                can_list::<Service>(&client, ns).await,
                can_list::<ConfigMap>(&client, ns).await,
                can_list::<Secret>(&client, ns).await,
            ];
            failure = failure.or(results.into_iter().find_map(Result::err));
        }
        match failure {
            None => {
                health.recovered();
                tracing::info!("the watches can list again; ready");
            }
            Some(e) => {
                if health.watch_failed(one_line(&e), Instant::now()) {
                    tracing::warn!(reason = %one_line(&e), "a watch is still failing; not ready");
                }
            }
        }
    }
}

pub async fn run(options: RunOptions) -> Result<(), kube::Error> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let identity = options.identity.clone().unwrap_or_else(|| format!("pgwarehouse-{}", std::process::id()));

    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(server::serve(options.metrics_address, metrics.clone(), health.clone(), async move {
        let _ = server_stop.wait_for(|stopped| *stopped).await;
    }));
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signal_tx.send(true);
    });

    let elector = options.leader_election.then(|| {
        Arc::new(Elector::new(client.clone(), &options.lease_namespace, LEASE_NAME, &identity, Timing::default()))
    });
    if let Some(elector) = &elector {
        health.standby();
        if !elector.acquire(&mut stop_rx.clone()).await {
            let _ = tokio::time::timeout(RELEASE_TIMEOUT, server).await;
            return Ok(());
        }
        tracing::info!(%identity, "leading");
        let (elector, lost_tx, mut stopped) = (elector.clone(), stop_tx.clone(), stop_rx.clone());
        tokio::spawn(async move {
            if elector.hold(&mut stopped).await == Held::Lost {
                tracing::warn!("lost the leader Lease; stopping");
                let _ = lost_tx.send(true);
            }
        });
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
        refresh_now: Default::default(),
    });
    let namespaces: Vec<Option<String>> =
        if options.namespaces.is_empty() { vec![None] } else { options.namespaces.iter().cloned().map(Some).collect() };
    health.running(namespaces.len() * WATCHES_PER_CONTROLLER);
    let probe = tokio::spawn(probe_while_failing(client.clone(), namespaces.clone(), health.clone()));
    let controllers = join_all(
        namespaces
            .into_iter()
            .map(|ns| control(client.clone(), ns, ctx.clone(), health.clone(), options.concurrency, stop_rx.clone())),
    );
    let mut stopped = stop_rx.clone();
    tokio::select! {
        _ = controllers => {}
        _ = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(RECONCILE_GRACE).await;
        } => tracing::warn!("reconciles still running after {RECONCILE_GRACE:?}; stopping anyway"),
    }
    let _ = stop_tx.send(true);
    probe.abort();
    if let Some(elector) = elector {
        match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
            Ok(Ok(())) => tracing::info!("released the leader Lease"),
            Ok(Err(e)) => tracing::warn!(error = %one_line(&e), "could not release the leader Lease"),
            Err(_) => tracing::warn!("releasing the leader Lease timed out"),
        }
    }
    let _ = tokio::time::timeout(RELEASE_TIMEOUT, server).await;
    Ok(())
}
