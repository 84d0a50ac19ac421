//! Reaching a stack's database: ready when its StatefulSet's pod is, through the client Service
//! (or a host override), with connect and statement timeouts.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Client;
use kube::api::Api;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::Settings;
use crate::render::client_name;
use crate::validate::ValidatedStack;

pub const PORT: u16 = 5432;

pub async fn pod_ready(client: &Client, stack: &ValidatedStack) -> Result<bool, kube::Error> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), stack.namespace.as_deref().unwrap_or("default"));
    let statefulset = api.get_opt(&client_name(stack)).await?;
    Ok(statefulset.and_then(|s| s.status?.ready_replicas).unwrap_or(0) >= 1)
}

/// The client Service's cluster DNS name.
pub fn service_host(stack: &ValidatedStack) -> String {
    format!("{}.{}.svc", client_name(stack), stack.namespace.as_deref().unwrap_or("default"))
}

fn address(settings: &Settings, stack: &ValidatedStack) -> (String, u16) {
    match &settings.database_host_override {
        Some(host) => match host.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
            Some((h, Ok(port))) => (h.to_string(), port),
            _ => (host.clone(), PORT),
        },
        None => (service_host(stack), PORT),
    }
}

pub async fn connect(settings: &Settings, stack: &ValidatedStack, password: &str) -> Result<PgConnection, String> {
    let (host, port) = address(settings, stack);
    let statement_timeout = format!("{}s", settings.statement_timeout.as_secs());
    let options = PgConnectOptions::new()
        .host(&host)
        .port(port)
        .username("postgres")
        .password(password)
        .database(&stack.database)
        .application_name("pgwarehouse-operator")
        .options([("statement_timeout", statement_timeout.as_str())]);
    match tokio::time::timeout(settings.connect_timeout, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("{host}:{port}: {e}")),
        Err(_) => Err(format!("{host}:{port}: no answer within {:?}", settings.connect_timeout)),
    }
}
