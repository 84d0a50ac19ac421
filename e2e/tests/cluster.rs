//! The operator against a real cluster, when `KUBECONFIG` points at one (kind, k3d, ...): CRD
//! installed, operator run in-process (reaching databases by port-forward), a stack applied and
//! Ready, its objects and database checked, a spec change converged, the stack deleted and its
//! volume kept; and a backup round trip: a stack backed up to a volume repository, deleted, and a
//! new stack restored from that repository with every row; and the chart installed as the
//! README installs it (`helm install --wait`), its operator Ready with `/readyz` answering 200.
//! A distributed stack runs a coordinator and two Citus workers, its rows on both, and keeps
//! every row when a worker's pod is replaced. A stack of three instances under Patroni keeps
//! every acknowledged insert of a writer when its primary's pod is deleted, gracefully and by
//! force: a replica takes over, the client Service and the status follow it.
//! Without a reachable cluster each scenario prints that it skipped, and why.
//! With `PGW_E2E_INSTALLED_OPERATOR=1` the operator already installed in the cluster (the
//! chart, as `.github/workflows/e2e-kind.yml` does) does the work instead of an in-process one.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::AbortHandle;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
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

fn stack(namespace: &str, name: &str, extra_spec: serde_json::Value) -> serde_json::Value {
    let image = std::env::var("PGW_E2E_IMAGE").unwrap_or_else(|_| "ghcr.io/pgwarehouse/stack-datawarehouse:17".into());
    let mut spec = json!({
        "template": "datawarehouse",
        "postgres": {"image": image, "storage": {"size": "1Gi"}},
        "migrations": [{"name": "001_t", "sql": "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);"}],
    });
    spec.as_object_mut().unwrap().extend(extra_spec.as_object().unwrap().clone());
    json!({
        "apiVersion": "pgwarehouse.dev/v1alpha1", "kind": "DataWarehouseStack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

fn ready(stack: &DataWarehouseStack) -> bool {
    condition_true(stack, "Ready")
}

fn condition_true(stack: &DataWarehouseStack, type_: &str) -> bool {
    stack.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The CRD, applied by the harness (every scenario, in parallel: one field manager), established.
async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let apply = PatchParams::apply(MANAGER).force();
    crds.patch("datawarehousestacks.pgwarehouse.dev", &apply, &Patch::Apply(DataWarehouseStack::crd())).await.unwrap();
    wait_for("the CRD is established", Duration::from_secs(60), || async {
        let crd = crds.get("datawarehousestacks.pgwarehouse.dev").await.ok()?;
        crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
    })
    .await;
}

/// One scenario's namespace, with the CRD installed and an operator watching it (in-process, or the
/// one installed in the cluster).
struct Scenario {
    client: Client,
    ns: String,
    stacks: Api<DataWarehouseStack>,
    operator: Option<AbortHandle>,
    started: Instant,
}

impl Scenario {
    /// `None` (after printing why) when no cluster is reachable.
    async fn start(name: &str) -> Option<Scenario> {
        let client = match reachable_cluster().await {
            Ok(client) => client,
            Err(why) => {
                println!("SKIPPED the real-cluster e2e ({name}): {why}. See README, 'End-to-end on a cluster'.");
                return None;
            }
        };
        let ns = format!("pgw-e2e-{name}-{}", std::process::id());
        let apply = PatchParams::apply(MANAGER).force();
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        Api::<Namespace>::all(client.clone()).patch(&ns, &apply, &Patch::Apply(namespace)).await.unwrap();
        install_crd(&client).await;

        let in_process = std::env::var("PGW_E2E_INSTALLED_OPERATOR").as_deref() != Ok("1");
        println!("  {name}: operator {}", if in_process { "in-process" } else { "installed in the cluster" });
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
            .abort_handle()
        });
        let stacks = Api::namespaced(client.clone(), &ns);
        Some(Scenario { client, ns, stacks, operator, started: Instant::now() })
    }

    async fn apply(&self, name: &str, extra_spec: serde_json::Value) {
        let manifest = stack(&self.ns, name, extra_spec);
        self.stacks.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(manifest)).await.unwrap();
    }

    async fn wait_until(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        check: impl Fn(&DataWarehouseStack) -> bool,
    ) -> DataWarehouseStack {
        wait_for(&format!("{name}: {what}"), limit, || async { self.stacks.get(name).await.ok().filter(&check) }).await
    }

    /// A connection to the stack's database as its superuser, through a port-forward to its pod.
    async fn connect(&self, name: &str) -> PgConnection {
        let secret =
            Api::<Secret>::namespaced(self.client.clone(), &self.ns).get(&format!("{name}-superuser")).await.unwrap();
        let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.ns);
        let mut forwarder = pods.portforward(&format!("{name}-0"), &[5432]).await.unwrap();
        let mut upstream = forwarder.take_stream(5432).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut local, _) = listener.accept().await.unwrap();
            let _ = tokio::io::copy_bidirectional(&mut local, &mut upstream).await;
            drop(forwarder);
        });
        PgConnection::connect(&format!("postgres://postgres:{password}@127.0.0.1:{port}/warehouse")).await.unwrap()
    }

    /// Deletes the stack and waits until its StatefulSet and pod are gone.
    async fn delete(&self, name: &str) {
        self.stacks.delete(name, &DeleteParams::default()).await.unwrap();
        let statefulsets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.ns);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let pod = format!("{name}-0");
        wait_for(&format!("{name}: its StatefulSet and pod are gone"), Duration::from_secs(180), || async {
            let statefulset = statefulsets.get_opt(name).await.ok()?;
            let pod = pods.get_opt(&pod).await.ok()?;
            (statefulset.is_none() && pod.is_none()).then_some(())
        })
        .await;
    }

    async fn claim_exists(&self, claim: &str) -> bool {
        Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &self.ns).get_opt(claim).await.unwrap().is_some()
    }

    async fn finish(self, what: &str) {
        if let Some(operator) = self.operator {
            operator.abort();
        }
        Api::<Namespace>::all(self.client).delete(&self.ns, &DeleteParams::default()).await.unwrap();
        println!("real-cluster e2e ({what}) passed in {:.0?}", self.started.elapsed());
    }
}

async fn count_rows(db: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_scenario_runs_when_kubeconfig_points_at_a_cluster() {
    let Some(scenario) = Scenario::start("stack").await else { return };
    let one_job = json!({"schedules": [{"name": "tick", "schedule": "@hourly", "command": "SELECT 1"}]});
    scenario.apply("e2e", one_job).await;
    let converged = scenario.wait_until("e2e", "Ready", Duration::from_secs(600), ready).await;
    let status = converged.status.unwrap();
    assert_eq!(status.endpoint.as_ref().unwrap().host, format!("e2e.{}.svc", scenario.ns));

    let client = scenario.client.clone();
    let ns = scenario.ns.as_str();
    assert!(Api::<StatefulSet>::namespaced(client.clone(), ns).get("e2e").await.is_ok());
    assert!(Api::<Service>::namespaced(client.clone(), ns).get("e2e").await.is_ok());
    assert!(Api::<Service>::namespaced(client.clone(), ns).get("e2e-headless").await.is_ok());

    let mut db = scenario.connect("e2e").await;
    assert_eq!(count_rows(&mut db).await, 2);
    drop(db);
    println!("  ok: the warehouse answers through the endpoint's pod");

    let two_jobs = json!({"schedules": [{"name": "tick", "schedule": "@hourly", "command": "SELECT 1"},
                                        {"name": "tock", "schedule": "@daily", "command": "SELECT 2"}]});
    scenario.apply("e2e", two_jobs).await;
    scenario
        .wait_until("e2e", "the spec change converges (two jobs)", Duration::from_secs(120), |s| {
            s.status.as_ref().is_some_and(|s| s.schedules.len() == 2 && s.schedules.iter().all(|j| j.job_id.is_some()))
        })
        .await;

    scenario.delete("e2e").await;
    assert!(scenario.claim_exists("data-e2e-0").await, "the data volume is retained after the stack is deleted");
    assert!(Api::<Secret>::namespaced(client, ns).get_opt("e2e-superuser").await.unwrap().is_some());
    println!("  ok: the volume and its password outlive the stack");
    scenario.finish("stack").await;
}

/// A stack backed up to a volume repository (the agent's first full at once, WAL archived), one
/// row written after the backup, the stack deleted, and a new stack restored from the first one's
/// repository: every row back, the new stack's password in force.
#[tokio::test(flavor = "multi_thread")]
async fn backup_round_trip_restores_every_row_into_a_new_stack() {
    let Some(scenario) = Scenario::start("backup").await else { return };
    scenario.apply("source", json!({"backup": {"repository": {"volume": {"size": "1Gi"}}}})).await;
    scenario.wait_until("source", "Ready", Duration::from_secs(600), ready).await;
    let backed_up = scenario
        .wait_until("source", "BackedUp, the first full in status.backup", Duration::from_secs(600), |s| {
            condition_true(s, "BackedUp")
                && s.status.as_ref().and_then(|s| s.backup.as_ref()).is_some_and(|b| b.last_full.is_some())
        })
        .await;
    let full = backed_up.status.unwrap().backup.unwrap().last_full.unwrap();
    println!("  ok: full backup {} ({} bytes)", full.label, full.size_bytes);

    let mut db = scenario.connect("source").await;
    sqlx::query("INSERT INTO t VALUES (3)").execute(&mut db).await.unwrap();
    let segment: String =
        sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())").fetch_one(&mut db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let archived: Option<String> =
            sqlx::query_scalar("SELECT last_archived_wal FROM pg_stat_archiver").fetch_one(&mut db).await.unwrap();
        if archived.is_some_and(|wal| wal >= segment) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "WAL segment {segment} (the row after the backup) was not archived in 120 s"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    drop(db);
    println!("  ok: a row written after the backup, its WAL segment {segment} archived");

    scenario.delete("source").await;
    assert!(scenario.claim_exists("source-backup").await, "the repository's claim outlives the stack");

    let restore =
        json!({"bootstrap": {"restore": {"repository": {"volume": {}}, "stack": "source", "target": "latest"}}});
    scenario.apply("restored", restore).await;
    scenario.wait_until("restored", "Ready (restored before its first start)", Duration::from_secs(600), ready).await;
    // Once restored, the pod is rolled once without the restore step and the source's claim.
    let statefulsets: Api<StatefulSet> = Api::namespaced(scenario.client.clone(), &scenario.ns);
    wait_for("restored: rolled without the restore step", Duration::from_secs(300), || async {
        let sts = statefulsets.get("restored").await.ok()?;
        let pod = sts.spec.as_ref()?.template.spec.as_ref()?;
        let status = sts.status.as_ref()?;
        let rolled = pod.init_containers.as_ref().is_none_or(Vec::is_empty)
            && !pod.volumes.iter().flatten().any(|v| v.name == "restore-source")
            && status.update_revision.is_some()
            && status.current_revision == status.update_revision
            && status.ready_replicas == Some(1);
        rolled.then_some(())
    })
    .await;
    scenario.wait_until("restored", "Ready after the roll", Duration::from_secs(300), ready).await;
    let mut db = scenario.connect("restored").await;
    assert_eq!(count_rows(&mut db).await, 3, "every row, the one only in archived WAL included");
    println!("  ok: the restored stack has every row and answers to its own password");
    drop(db);
    scenario.finish("backup").await;
}

/// The nodes of the shards holding `t`'s rows.
async fn nodes_holding_rows(db: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(DISTINCT n.nodename) FROM (SELECT DISTINCT get_shard_id_for_distribution_column('t', id) AS shardid \
         FROM t) s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n ON n.groupid = p.groupid",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

async fn count_and_sum(db: &mut PgConnection) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), sum(id)::int8 FROM t").fetch_one(db).await.unwrap()
}

/// A distributed stack: the coordinator and two Citus workers (their own StatefulSet, headless
/// Service and volumes), Ready and Distributed; a distributed table with rows on both workers and
/// a reference table; one worker's pod deleted, recreated by its StatefulSet under the same DNS
/// name, every row still there.
#[tokio::test(flavor = "multi_thread")]
async fn a_distributed_stack_keeps_every_row_when_a_worker_pod_is_replaced() {
    let Some(scenario) = Scenario::start("citus").await else { return };
    let spec = json!({
        "distributed": {"workers": 2, "shardCount": 4},
        "migrations": [{"name": "001_tables", "sql":
            "CREATE TABLE t (id int8 PRIMARY KEY, v text); CREATE TABLE kinds (id int PRIMARY KEY, name text);"}],
        "tables": [{"table": "public.t", "distribute": {"column": "id"}}, {"table": "public.kinds", "reference": true}],
    });
    scenario.apply("dist", spec).await;
    let converged = scenario
        .wait_until("dist", "Ready and Distributed, 2/2 workers", Duration::from_secs(900), |s| {
            ready(s)
                && condition_true(s, "Distributed")
                && s.status.as_ref().and_then(|s| s.distributed.as_ref()).is_some_and(|d| d.ready_workers == "2/2")
        })
        .await;
    let ns = scenario.ns.clone();
    let nodes: Vec<String> =
        converged.status.unwrap().distributed.unwrap().nodes.iter().map(|n| n.name.clone()).collect();
    assert_eq!(
        nodes,
        [
            format!("dist-0.dist-headless.{ns}.svc:5432"),
            format!("dist-worker-0.dist-workers.{ns}.svc:5432"),
            format!("dist-worker-1.dist-workers.{ns}.svc:5432")
        ],
        "registered by stable DNS names"
    );
    let services: Api<Service> = Api::namespaced(scenario.client.clone(), &ns);
    assert!(services.get("dist-workers").await.unwrap().spec.unwrap().cluster_ip.as_deref() == Some("None"));

    let mut db = scenario.connect("dist").await;
    sqlx::query("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g").execute(&mut db).await.unwrap();
    sqlx::query("INSERT INTO kinds VALUES (1, 'one')").execute(&mut db).await.unwrap();
    let before = count_and_sum(&mut db).await;
    assert_eq!(before, (1000, 500_500));
    assert_eq!(nodes_holding_rows(&mut db).await, 2, "rows on both workers");
    drop(db);
    println!("  ok: 1000 rows spread over both workers");

    let pods: Api<Pod> = Api::namespaced(scenario.client.clone(), &ns);
    let old_uid = pods.get("dist-worker-1").await.unwrap().metadata.uid;
    pods.delete("dist-worker-1", &DeleteParams::default()).await.unwrap();
    let statefulsets: Api<StatefulSet> = Api::namespaced(scenario.client.clone(), &ns);
    wait_for("dist-worker-1: recreated and ready", Duration::from_secs(300), || async {
        let pod = pods.get_opt("dist-worker-1").await.ok()??;
        let set = statefulsets.get("dist-worker").await.ok()?;
        (pod.metadata.uid != old_uid && set.status?.ready_replicas == Some(2)).then_some(())
    })
    .await;
    let mut db = scenario.connect("dist").await;
    // The coordinator's cached connection to the old pod may fail once; a new one reaches the new pod.
    let deadline = Instant::now() + Duration::from_secs(120);
    let after = loop {
        match sqlx::query_as::<_, (i64, i64)>("SELECT count(*), sum(id)::int8 FROM t").fetch_one(&mut db).await {
            Ok(found) => break found,
            Err(e) => assert!(Instant::now() < deadline, "the coordinator cannot read every shard: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    assert_eq!(after, before, "every row, on the replaced worker's volume");
    let kinds: i64 = sqlx::query_scalar("SELECT count(*) FROM kinds").fetch_one(&mut db).await.unwrap();
    assert_eq!(kinds, 1);
    drop(db);
    scenario.wait_until("dist", "Ready again", Duration::from_secs(300), ready).await;
    assert!(scenario.claim_exists("data-dist-worker-1").await, "the worker's own volume");

    let workers = |n: u32| json!({"distributed": {"workers": n, "shardCount": 4}});
    let with_spec = |n: u32| {
        let mut spec = workers(n);
        spec.as_object_mut().unwrap().extend(
            json!({"migrations": [{"name": "001_tables", "sql":
                "CREATE TABLE t (id int8 PRIMARY KEY, v text); CREATE TABLE kinds (id int PRIMARY KEY, name text);"}],
                "tables": [{"table": "public.t", "distribute": {"column": "id"}},
                           {"table": "public.kinds", "reference": true}]})
            .as_object()
            .unwrap()
            .clone(),
        );
        spec
    };
    let settled = |n: &'static str| {
        move |s: &DataWarehouseStack| {
            ready(s)
                && condition_true(s, "Distributed")
                && s.status
                    .as_ref()
                    .and_then(|s| s.distributed.as_ref())
                    .is_some_and(|d| d.ready_workers == n && d.rebalance.as_ref().is_none_or(|r| r.state == "finished"))
        }
    };
    scenario.apply("dist", with_spec(3)).await;
    scenario.wait_until("dist", "3/3 workers, rebalance finished", Duration::from_secs(600), settled("3/3")).await;
    let mut db = scenario.connect("dist").await;
    assert_eq!(count_and_sum(&mut db).await, before);
    assert_eq!(nodes_holding_rows(&mut db).await, 3, "the new worker took its share");
    drop(db);

    scenario.apply("dist", with_spec(2)).await;
    wait_for("dist: drained, then the worker StatefulSet shrank to 2", Duration::from_secs(600), || async {
        let set = statefulsets.get("dist-worker").await.ok()?;
        (set.spec?.replicas == Some(2)).then_some(())
    })
    .await;
    scenario.wait_until("dist", "2/2 workers", Duration::from_secs(300), settled("2/2")).await;
    let mut db = scenario.connect("dist").await;
    assert_eq!(count_and_sum(&mut db).await, before, "no row lost with the removed worker");
    assert_eq!(nodes_holding_rows(&mut db).await, 2);
    drop(db);
    assert!(scenario.claim_exists("data-dist-worker-2").await, "a removed worker's volume is kept");
    println!("  ok: scaled 2 -> 3 (rebalanced) -> 2 (drained first), every row kept");
    scenario.finish("citus").await;
}

/// The pod Patroni labels primary, when exactly one is.
async fn primary_pod(pods: &Api<Pod>, stack: &str) -> Option<String> {
    let selector = format!("app.kubernetes.io/instance={stack},role=primary");
    let listed = pods.list(&ListParams::default().labels(&selector)).await.ok()?;
    match listed.items.as_slice() {
        [one] => one.metadata.name.clone(),
        _ => None,
    }
}

/// A connection to `pod`'s warehouse database through a port-forward; none while it refuses.
async fn connect_pod(pods: &Api<Pod>, pod: &str, password: &str) -> Option<PgConnection> {
    let mut forwarder = pods.portforward(pod, &[5432]).await.ok()?;
    let mut upstream = forwarder.take_stream(5432)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let port = listener.local_addr().ok()?.port();
    tokio::spawn(async move {
        if let Ok((mut local, _)) = listener.accept().await {
            let _ = tokio::io::copy_bidirectional(&mut local, &mut upstream).await;
        }
        drop(forwarder);
    });
    let url = format!("postgres://postgres:{password}@127.0.0.1:{port}/warehouse");
    tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await.ok()?.ok()
}

type Acked = std::sync::Arc<std::sync::Mutex<Vec<(i64, Instant)>>>;

/// Inserts 1, 2, ... into `t` on whichever pod is primary, logging each acknowledged id.
fn writer(
    pods: Api<Pod>,
    password: String,
    acked: Acked,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut id = 0i64;
        let mut conn: Option<PgConnection> = None;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if conn.is_none() {
                conn = match primary_pod(&pods, "ha").await {
                    Some(pod) => connect_pod(&pods, &pod, &password).await,
                    None => None,
                };
                if conn.is_none() {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            }
            id += 1;
            let insert = sqlx::query("INSERT INTO t VALUES ($1)").bind(id as i32).execute(conn.as_mut().unwrap());
            match tokio::time::timeout(Duration::from_secs(3), insert).await {
                Ok(Ok(_)) => acked.lock().unwrap().push((id, Instant::now())),
                _ => conn = None,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// The longest wait between two acknowledged inserts since `since`.
fn write_gap(acked: &Acked, since: Instant) -> Duration {
    let times: Vec<Instant> = acked.lock().unwrap().iter().map(|(_, t)| *t).collect();
    let start = times.iter().rposition(|t| *t <= since).unwrap_or(0);
    times[start..].windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_keep_every_acknowledged_row_when_the_primary_pod_goes() {
    let Some(scenario) = Scenario::start("ha").await else { return };
    let spec = json!({
        "postgres": {
            "image": std::env::var("PGW_E2E_IMAGE").unwrap_or_else(|_| "ghcr.io/pgwarehouse/stack-datawarehouse:17".into()),
            "storage": {"size": "1Gi"},
            "instances": 3, "synchronous": "on",
            "failover": {"ttlSeconds": 20, "loopWaitSeconds": 5, "retryTimeoutSeconds": 5},
        },
        "migrations": [{"name": "001_t", "sql": "CREATE TABLE t (id int PRIMARY KEY)"}],
    });
    scenario.apply("ha", spec.clone()).await;
    let highly_available = |s: &DataWarehouseStack| {
        ready(s)
            && condition_true(s, "HighlyAvailable")
            && s.status.as_ref().and_then(|s| s.ready_instances.as_deref()) == Some("3/3")
    };
    scenario
        .wait_until("ha", "Ready and HighlyAvailable, 3/3 instances", Duration::from_secs(600), highly_available)
        .await;
    let ns = scenario.ns.clone();
    let pods: Api<Pod> = Api::namespaced(scenario.client.clone(), &ns);
    let secret = Api::<Secret>::namespaced(scenario.client.clone(), &ns).get("ha-superuser").await.unwrap();
    let password = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    let acked: Acked = Default::default();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = writer(pods.clone(), password.clone(), acked.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;

    for (how, force) in [("graceful delete", false), ("--force --grace-period=0", true)] {
        let old = primary_pod(&pods, "ha").await.expect("one primary");
        let old_uid = pods.get(&old).await.unwrap().metadata.uid;
        let started = Instant::now();
        let params = match force {
            true => DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() },
            false => DeleteParams::default(),
        };
        pods.delete(&old, &params).await.unwrap();
        // Deleted gracefully, Patroni hands its lock over as it stops; deleted by force, the lock
        // outlives the pod, and the pod the StatefulSet makes again under the same name may take
        // it back before it expires: either way one primary, and writes go on.
        let written = acked.lock().unwrap().len();
        let new = wait_for(
            &format!("{how}: a primary again, and the writer writes on it"),
            Duration::from_secs(180),
            || async {
                let replaced = pods.get_opt(&old).await.ok()?.is_none_or(|p| p.metadata.uid != old_uid);
                let primary = primary_pod(&pods, "ha").await?;
                (replaced && acked.lock().unwrap().len() > written + 5).then_some(primary)
            },
        )
        .await;
        let gap = write_gap(&acked, started);
        let endpoints =
            wait_for(&format!("{how}: the client Service selects {new} only"), Duration::from_secs(60), || async {
                let slices =
                    Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::namespaced(scenario.client.clone(), &ns)
                        .list(&ListParams::default().labels("kubernetes.io/service-name=ha"))
                        .await
                        .ok()?;
                let targets: Vec<String> = slices
                    .items
                    .iter()
                    .flat_map(|s| &s.endpoints)
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
                    .filter_map(|e| e.target_ref.as_ref()?.name.clone())
                    .collect();
                (targets == [new.clone()]).then_some(targets)
            })
            .await;
        let status = scenario
            .wait_until("ha", &format!("{how}: status shows {new} primary, 3/3 again"), Duration::from_secs(300), |s| {
                highly_available(s) && s.status.as_ref().and_then(|s| s.primary.as_deref()) == Some(new.as_str())
            })
            .await;
        let ids: Vec<i32> = acked.lock().unwrap().iter().map(|(id, _)| *id as i32).collect();
        let mut db = connect_pod(&pods, &new, &password).await.expect("the new primary answers");
        let found: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE id = ANY ($1)")
            .bind(&ids)
            .fetch_one(&mut db)
            .await
            .unwrap();
        let lost = ids.len() as i64 - found;
        println!(
            "  {how} of {old}: primary {new}, write gap {:.1} s, {lost} of {} acknowledged rows missing, Service -> {endpoints:?}, status primary {:?}",
            gap.as_secs_f64(),
            ids.len(),
            status.status.as_ref().and_then(|s| s.primary.clone()),
        );
        assert_eq!(lost, 0, "{how}: synchronous: on loses no acknowledged row");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.await.unwrap();

    // Back to one instance in place is refused with the field's path, and the pods stay.
    let mut one = spec.clone();
    one["postgres"]["instances"] = json!(1);
    scenario.apply("ha", one).await;
    let refused = |s: &DataWarehouseStack| {
        let status = s.status.as_ref();
        status.and_then(|s| s.phase.as_deref()) == Some("Failed")
            && status.is_some_and(|s| s.conditions.iter().any(|c| c.message.contains("spec.postgres.instances")))
    };
    scenario.wait_until("ha", "instances: 1 refused, naming its field", Duration::from_secs(120), refused).await;
    let left = pods.list(&ListParams::default().labels("app.kubernetes.io/instance=ha")).await.unwrap();
    assert_eq!(left.items.len(), 3, "the refused change touched no pod");
    scenario.finish("ha").await;
}

/// `helm` from PATH (`make deps` puts one in `.cache/tools`).
fn helm(args: &[&str]) -> std::process::Output {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::process::Command::new("helm")
        .args(args)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("helm is not available ({e}): run `make deps`"))
}

/// `GET path` on `port` of `pod`, through a port-forward; the status line and body.
async fn http_get(client: &Client, ns: &str, pod: &str, port: u16, path: &str) -> String {
    let mut forwarder = Api::<Pod>::namespaced(client.clone(), ns).portforward(pod, &[port]).await.unwrap();
    let mut stream = forwarder.take_stream(port).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    drop(stream);
    let _ = forwarder.join().await;
    let status = answer.lines().next().unwrap_or_default().to_string();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    format!("{status} {body}")
}

/// The chart installed as the README installs it, with `--wait`: Helm returns only once the
/// operator's readiness probe (`/readyz`) passes, which it must within the timeout; `/readyz`
/// then answers 200 `ready`. The release watches its own namespace only (so that it leaves the
/// other scenarios' stacks alone) and is uninstalled at the end.
#[tokio::test(flavor = "multi_thread")]
async fn the_chart_installs_with_wait_and_its_operator_is_ready() {
    let client = match reachable_cluster().await {
        Ok(client) => client,
        Err(why) => {
            println!("SKIPPED the real-cluster e2e (chart): {why}. See README, 'End-to-end on a cluster'.");
            return;
        }
    };
    let started = Instant::now();
    // The CRD is the harness's here (the other scenarios apply it at the same time, and two
    // field managers applying it would conflict); the chart's copy is checked equal to it by
    // operator/tests/distribution.rs.
    install_crd(&client).await;
    let ns = format!("pgw-e2e-chart-{}", std::process::id());
    let release = format!("pgw-e2e-{}", std::process::id());
    let mut args = vec![
        "install".to_string(),
        release.clone(),
        "charts/pgwarehouse-operator".into(),
        "-n".into(),
        ns.clone(),
        "--create-namespace".into(),
        "--skip-crds".into(),
        format!("--set=watchNamespaces={{{ns}}}"),
        "--wait".into(),
        "--timeout=3m".into(),
    ];
    // The operator image under test (kind loads it; a local cluster imports it): repository:tag.
    if let Ok(image) = std::env::var("PGW_E2E_OPERATOR_IMAGE") {
        let (repository, tag) = image.rsplit_once(':').expect("PGW_E2E_OPERATOR_IMAGE is repository:tag");
        args.extend([format!("--set=image.repository={repository}"), format!("--set=image.tag={tag}")]);
        args.push("--set=image.pullPolicy=Never".into());
    }
    let install = helm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let took = started.elapsed();
    let said = format!("{}{}", String::from_utf8_lossy(&install.stdout), String::from_utf8_lossy(&install.stderr));
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let listed = pods.list(&Default::default()).await.unwrap();
    let pod = listed.items.iter().find_map(|p| p.metadata.name.clone());
    if !install.status.success() {
        let logs = match &pod {
            Some(pod) => pods.logs(pod, &Default::default()).await.unwrap_or_default(),
            None => "(no pod)".into(),
        };
        let _ = helm(&["uninstall", &release, "-n", &ns]);
        panic!("helm install --wait failed after {took:.0?}: {said}\noperator log:\n{logs}");
    }
    println!("  ok: helm install --wait returned in {took:.0?}");
    let pod = pod.expect("the operator's pod");
    let readyz = http_get(&client, &ns, &pod, 8080, "/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 200") || readyz.starts_with("HTTP/1.0 200"), "{readyz}");
    assert!(readyz.ends_with("ready"), "{readyz}");
    println!("  ok: /readyz answers {readyz:?}");
    let uninstall = helm(&["uninstall", &release, "-n", &ns, "--wait"]);
    assert!(uninstall.status.success(), "{}", String::from_utf8_lossy(&uninstall.stderr));
    Api::<Namespace>::all(client).delete(&ns, &DeleteParams::default()).await.unwrap();
    println!("real-cluster e2e (chart) passed in {:.0?}", started.elapsed());
}
