//! The operator against a real cluster, when `KUBECONFIG` points at one (kind, k3d, ...): CRD
//! installed, operator run in-process (reaching databases by port-forward), a stack applied and
//! Ready, its objects and database checked, a spec change converged, the stack deleted and its
//! volume kept. Without a reachable cluster it prints that it skipped, and why.
//! With `PGW_E2E_INSTALLED_OPERATOR=1` the operator already installed in the cluster (the
//! chart, as `.github/workflows/e2e-kind.yml` does) does the work instead of an in-process one.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, CustomResourceExt};
use pgwarehouse::api::DataWarehouseStack;
use pgwarehouse::controller::RunOptions;
use serde_json::json;
use sqlx::{Connection, PgConnection};

const MANAGER: &str = "pgwarehouse-e2e";

async fn reachable_cluster() -> Result<Client, String> {
    let kubeconfig = std::env::var("KUBECONFIG").map_err(|_| "KUBECONFIG is not set".to_string())?;
    let client = Client::try_default().await.map_err(|e| format!("KUBECONFIG={kubeconfig}: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(format!("KUBECONFIG={kubeconfig}: the API server refused: {e}")),
        Err(_) => Err(format!("KUBECONFIG={kubeconfig}: the API server did not answer in 10 s")),
    }
}

async fn wait_for<T, F: Future<Output = Option<T>>>(what: &str, limit: Duration, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            println!("  ok: {what}");
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

fn stack(namespace: &str, schedules: &str) -> serde_json::Value {
    let image = std::env::var("PGW_E2E_IMAGE").unwrap_or_else(|_| "ghcr.io/pgwarehouse/stack-datawarehouse:17".into());
    json!({
        "apiVersion": "pgwarehouse.dev/v1alpha1", "kind": "DataWarehouseStack",
        "metadata": {"name": "e2e", "namespace": namespace},
        "spec": {
            "template": "datawarehouse",
            "postgres": {"image": image, "storage": {"size": "1Gi"}},
            "migrations": [{"name": "001_t", "sql": "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);"}],
            "schedules": serde_json::from_str::<serde_json::Value>(schedules).unwrap(),
        }
    })
}

fn ready(stack: &DataWarehouseStack) -> bool {
    stack.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_scenario_runs_when_kubeconfig_points_at_a_cluster() {
    let client = match reachable_cluster().await {
        Ok(client) => client,
        Err(why) => {
            println!("SKIPPED the real-cluster e2e: {why}. See README, 'End-to-end on a cluster'.");
            return;
        }
    };
    let started = Instant::now();
    let ns = format!("pgw-e2e-{}", std::process::id());
    let apply = PatchParams::apply(MANAGER).force();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(&ns, &apply, &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})))
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch("datawarehousestacks.pgwarehouse.dev", &apply, &Patch::Apply(DataWarehouseStack::crd())).await.unwrap();
    wait_for("the CRD is established", Duration::from_secs(60), || async {
        let crd = crds.get("datawarehousestacks.pgwarehouse.dev").await.ok()?;
        crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
    })
    .await;

    let in_process = std::env::var("PGW_E2E_INSTALLED_OPERATOR").as_deref() != Ok("1");
    println!("  operator: {}", if in_process { "in-process" } else { "the one installed in the cluster" });
    let operator = in_process.then(|| {
        tokio::spawn(pgwarehouse::controller::run(RunOptions {
            namespaces: vec![ns.clone()],
            requeue_seconds: 20,
            concurrency: 2,
            metrics_address: "127.0.0.1:0".parse().unwrap(),
            database_host_override: None,
            leader_election: false,
            lease_namespace: ns.clone(),
            identity: None,
        }))
    });

    let stacks: Api<DataWarehouseStack> = Api::namespaced(client.clone(), &ns);
    let one_job = r#"[{"name": "tick", "schedule": "@hourly", "command": "SELECT 1"}]"#;
    stacks.patch("e2e", &apply, &Patch::Apply(stack(&ns, one_job))).await.unwrap();
    let converged = wait_for("the stack is Ready", Duration::from_secs(600), || async {
        stacks.get("e2e").await.ok().filter(ready)
    })
    .await;
    let status = converged.status.unwrap();
    assert_eq!(status.endpoint.as_ref().unwrap().host, format!("e2e.{ns}.svc"));

    assert!(Api::<StatefulSet>::namespaced(client.clone(), &ns).get("e2e").await.is_ok());
    assert!(Api::<Service>::namespaced(client.clone(), &ns).get("e2e").await.is_ok());
    assert!(Api::<Service>::namespaced(client.clone(), &ns).get("e2e-headless").await.is_ok());
    let secret = Api::<Secret>::namespaced(client.clone(), &ns).get("e2e-superuser").await.unwrap();
    let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();

    // The database itself, through a port-forward to the pod.
    let mut forwarder = Api::<Pod>::namespaced(client.clone(), &ns).portforward("e2e-0", &[5432]).await.unwrap();
    let mut upstream = forwarder.take_stream(5432).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut local, _) = listener.accept().await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut local, &mut upstream).await;
    });
    let url = format!("postgres://postgres:{password}@127.0.0.1:{port}/warehouse");
    let mut db = PgConnection::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(&mut db).await.unwrap();
    assert_eq!(rows, 2);
    drop(db);
    println!("  ok: the warehouse answers through the endpoint's pod");

    let two_jobs = r#"[{"name": "tick", "schedule": "@hourly", "command": "SELECT 1"},
                       {"name": "tock", "schedule": "@daily", "command": "SELECT 2"}]"#;
    stacks.patch("e2e", &apply, &Patch::Apply(stack(&ns, two_jobs))).await.unwrap();
    wait_for("the spec change converges (two jobs)", Duration::from_secs(120), || async {
        let s = stacks.get("e2e").await.ok()?.status?;
        (s.schedules.len() == 2 && s.schedules.iter().all(|j| j.job_id.is_some())).then_some(())
    })
    .await;

    stacks.delete("e2e", &DeleteParams::default()).await.unwrap();
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    wait_for("the StatefulSet is garbage-collected", Duration::from_secs(120), || async {
        statefulsets.get_opt("e2e").await.ok().flatten().is_none().then_some(())
    })
    .await;
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns).get_opt("data-e2e-0").await.unwrap();
    assert!(pvc.is_some(), "the data volume is retained after the stack is deleted");
    assert!(Api::<Secret>::namespaced(client.clone(), &ns).get_opt("e2e-superuser").await.unwrap().is_some());
    println!("  ok: the volume and its password outlive the stack");

    if let Some(operator) = operator {
        operator.abort();
    }
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
    println!("real-cluster e2e passed in {:.0?}", started.elapsed());
}
