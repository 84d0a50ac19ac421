//! Reaching a stack's database: ready when its StatefulSet's pod is, through the client Service,
//! a host override, or (an operator running outside the cluster) a port-forward through the API
//! server; always with connect and statement timeouts.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use sqlx::PgConnection;
use sqlx::postgres::PgConnectOptions;

use super::{Settings, api_error};
use crate::render::{client_name, worker_host, worker_statefulset_name};
use crate::validate::ValidatedStack;

pub const PORT: u16 = 5432;

/// Whether a Postgres pod is ready, by the StatefulSet's status as applied.
pub fn pod_ready(statefulset: &StatefulSet) -> bool {
    statefulset.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) >= 1
}

/// The client Service's cluster DNS name.
pub fn service_host(stack: &ValidatedStack) -> String {
    format!("{}.{}.svc", client_name(stack), stack.namespace_or_default())
}

/// A loopback port forwarded to `pod` for one connection.
async fn port_forward(client: &Client, stack: &ValidatedStack, pod: &str) -> Result<u16, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), stack.namespace_or_default());
    let mut forwarder = pods
        .portforward(pod, &[PORT])
        .await
        .map_err(|e| format!("port-forward to {pod}: {}", api_error::one_line(&e)))?;
    let mut upstream = forwarder.take_stream(PORT).ok_or_else(|| format!("port-forward to {pod}: no stream"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    tokio::spawn(async move {
        if let Ok((mut local, _)) = listener.accept().await {
            let _ = tokio::io::copy_bidirectional(&mut local, &mut upstream).await;
        }
        drop(forwarder);
    });
    Ok(port)
}

async fn address(client: &Client, settings: &Settings, stack: &ValidatedStack) -> Result<(String, u16), String> {
    match &settings.database_host_override {
        Some(host) => Ok(match host.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
            Some((h, Ok(port))) => (h.to_string(), port),
            _ => (host.clone(), PORT),
        }),
        None if settings.port_forward => {
            Ok(("127.0.0.1".into(), port_forward(client, stack, &primary_pod(client, stack).await?).await?))
        }
        None => Ok((service_host(stack), PORT)),
    }
}

/// The pod the client Service selects: the only one, or the one Patroni labels primary.
async fn primary_pod(client: &Client, stack: &ValidatedStack) -> Result<String, String> {
    if !stack.highly_available() {
        return Ok(format!("{}-0", client_name(stack)));
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), stack.namespace_or_default());
    let selector =
        crate::render::selector_text(&crate::render::role_selector(stack, crate::render::patroni::PRIMARY_ROLE));
    let listed = pods.list(&ListParams::default().labels(&selector)).await.map_err(|e| api_error::one_line(&e))?;
    match listed.items.as_slice() {
        [one] => Ok(one.name_any()),
        found => Err(format!("{} pods are labelled primary: waiting for Patroni", found.len())),
    }
}

/// Worker `index` by its stable name, or through a port-forward to its pod.
async fn worker_address(
    client: &Client,
    settings: &Settings,
    stack: &ValidatedStack,
    index: u32,
) -> Result<(String, u16), String> {
    match &settings.database_host_override {
        Some(_) => Err("the database host override names the coordinator only: Citus workers are reached \
                        in the cluster or through port-forwards"
            .into()),
        None if settings.port_forward => {
            let pod = format!("{}-{index}", worker_statefulset_name(stack));
            Ok(("127.0.0.1".into(), port_forward(client, stack, &pod).await?))
        }
        None => Ok((worker_host(stack, index), PORT)),
    }
}

/// The stack's database on the coordinator.
pub async fn connect(
    client: &Client,
    settings: &Settings,
    stack: &ValidatedStack,
    password: &str,
) -> Result<PgConnection, String> {
    let reach = || async {
        tokio::time::timeout(settings.connect_timeout, address(client, settings, stack))
            .await
            .map_err(|_| format!("no port-forward to the pod within {:?}", settings.connect_timeout))?
    };
    match connect_at(settings, stack, password, reach().await?).await {
        // Patroni's bootstrap (initdb) makes no warehouse database, unlike the image's entrypoint:
        // created here, over a connection of its own (a port-forward carries one).
        Err(ConnectError::NoDatabase(_)) if stack.highly_available() => {
            let mut admin = connect_to(settings, password, reach().await?, "postgres").await.map_err(String::from)?;
            let create = format!("CREATE DATABASE {}", crate::sql::quote::ident(&stack.database));
            sqlx::Executor::execute(&mut admin, sqlx::AssertSqlSafe(create)).await.map_err(|e| e.to_string())?;
            Ok(connect_at(settings, stack, password, reach().await?).await?)
        }
        other => Ok(other?),
    }
}

/// The stack's database on worker `index`.
pub async fn connect_worker(
    client: &Client,
    settings: &Settings,
    stack: &ValidatedStack,
    password: &str,
    index: u32,
) -> Result<PgConnection, String> {
    let address = tokio::time::timeout(settings.connect_timeout, worker_address(client, settings, stack, index))
        .await
        .map_err(|_| format!("no port-forward to worker {index} within {:?}", settings.connect_timeout))??;
    Ok(connect_at(settings, stack, password, address).await?)
}

/// Why a connection was not made; a missing database is told apart.
#[derive(Debug)]
enum ConnectError {
    NoDatabase(String),
    Other(String),
}

impl From<ConnectError> for String {
    fn from(e: ConnectError) -> String {
        match e {
            ConnectError::NoDatabase(m) | ConnectError::Other(m) => m,
        }
    }
}

async fn connect_at(
    settings: &Settings,
    stack: &ValidatedStack,
    password: &str,
    address: (String, u16),
) -> Result<PgConnection, ConnectError> {
    connect_to(settings, password, address, &stack.database).await
}

async fn connect_to(
    settings: &Settings,
    password: &str,
    (host, port): (String, u16),
    database: &str,
) -> Result<PgConnection, ConnectError> {
    let statement_timeout = format!("{}s", settings.statement_timeout.as_secs());
    let options = PgConnectOptions::new()
        .host(&host)
        .port(port)
        .username("postgres")
        .password(password)
        .database(database)
        .application_name("pgwarehouse-operator")
        .options([("statement_timeout", statement_timeout.as_str())]);
    match tokio::time::timeout(settings.connect_timeout, crate::sql::connection::connect(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("3D000") => {
            Err(ConnectError::NoDatabase(format!("{host}:{port}: {e}")))
        }
        Ok(Err(e)) => Err(ConnectError::Other(format!("{host}:{port}: {e}"))),
        Err(_) => Err(ConnectError::Other(format!("{host}:{port}: no answer within {:?}", settings.connect_timeout))),
    }
}
