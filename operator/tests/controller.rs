//! Reconcile scenarios against a scripted API server (kube-rs tower-test fixtures, in the
//! controller-rs `ApiServerVerifier` style): each scenario lists the API calls the reconcile must
//! make, in order, checks their method, path and body, and answers them. The database stages run
//! against the real-Postgres harness.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};
use pgwarehouse::api::DataWarehouseStack;
use pgwarehouse::controller::metrics::Metrics;
use pgwarehouse::controller::{Context, Settings, reconcile, stacks_using_secret};
use serde_json::{Value, json};
use support::{CP_READER_PASSWORD, Fixture, PASSWORD};

const NS: &str = "analytics";

enum Reply {
    /// The request's own body (what server-side apply and create return, near enough).
    Echo,
    /// An applied object as the API server returns it: the body with the status it holds.
    Applied(Value),
    NotFound,
    /// What an API server answers a service account without the permission.
    Forbidden(&'static str),
    Json(Value),
    /// The stack with the status the request patched in.
    StackWithStatus(Value),
}

/// The scripted API server.
struct ApiServer(tower_test::mock::Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    /// Answers the next call, which must be `method path`; returns its JSON body.
    async fn expect(&mut self, method: Method, path: &str, reply: Reply) -> Value {
        let (request, send) = tokio::time::timeout(Duration::from_secs(30), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no call came; expected {method} {path}"))
            .expect("the client went away");
        assert_eq!((request.method(), request.uri().path()), (&method, path), "unexpected call");
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        let (status, reply) = match reply {
            Reply::Echo => (200, body.clone()),
            Reply::Applied(status) => {
                let mut applied = body.clone();
                applied["metadata"]["generation"] = json!(1);
                applied["status"] = status;
                (200, applied)
            }
            Reply::Json(value) => (200, value),
            Reply::StackWithStatus(mut stack) => {
                stack["status"] = body["status"].clone();
                (200, stack)
            }
            Reply::Forbidden(message) => (
                403,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden",
                       "details": {"kind": "secrets"}, "code": 403, "message": message}),
            ),
            Reply::NotFound => (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
            ),
        };
        send.send_response(
            Response::builder().status(status).body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap(),
        );
        body
    }

    /// No call may follow.
    async fn done(mut self) {
        if let Ok(Some((request, _))) = tokio::time::timeout(Duration::from_millis(200), self.0.next_request()).await {
            panic!("unexpected call after the scenario: {} {}", request.method(), request.uri().path());
        }
    }
}

fn context(settings: Settings) -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let reporter = Reporter { controller: "pgwarehouse-test".into(), instance: None };
    let recorder = Recorder::new(client.clone(), reporter);
    (
        Arc::new(Context {
            client,
            recorder,
            metrics: Arc::new(Metrics::default()),
            settings,
            failures: Default::default(),
            refresh_now: Default::default(),
        }),
        ApiServer(handle),
    )
}

fn stack(spec: &str) -> DataWarehouseStack {
    let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let mut stack = pgwarehouse::template::load_manifest(&format!(
        "apiVersion: pgwarehouse.dev/v1alpha1\nkind: DataWarehouseStack\nmetadata: {{name: w, namespace: {NS}}}\nspec:\n{indented}"
    ))
    .unwrap();
    stack.metadata.uid = Some("1b1e2a3c-0000-4000-8000-00000000000a".into());
    stack.metadata.generation = Some(3);
    stack
}

fn secret(name: &str, key: &str, value: &str) -> Value {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.into());
    secret.metadata.namespace = Some(NS.into());
    secret.data = Some([(key.to_string(), ByteString(value.as_bytes().to_vec()))].into());
    serde_json::to_value(secret).unwrap()
}

const STATUS: &str = "/apis/pgwarehouse.dev/v1alpha1/namespaces/analytics/datawarehousestacks/w/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/analytics/events";
const SUPERUSER: &str = "/api/v1/namespaces/analytics/secrets/w-superuser";
const STATEFULSET: &str = "/apis/apps/v1/namespaces/analytics/statefulsets/w";
const WORKER_STATEFULSET: &str = "/apis/apps/v1/namespaces/analytics/statefulsets/w-worker";

/// The five server-side applies of a valid stack, in order, the StatefulSet's answer with `ready`
/// pods; returns their bodies.
async fn expect_objects_applied(api: &mut ApiServer, ready: i32) -> Vec<Value> {
    let mut bodies = Vec::new();
    for path in [
        SUPERUSER,
        "/api/v1/namespaces/analytics/configmaps/w-config",
        "/api/v1/namespaces/analytics/services/w-headless",
        "/api/v1/namespaces/analytics/services/w",
    ] {
        bodies.push(api.expect(Method::PATCH, path, Reply::Echo).await);
    }
    let status = json!({"replicas": 1, "readyReplicas": ready});
    bodies.push(api.expect(Method::PATCH, STATEFULSET, Reply::Applied(status)).await);
    bodies
}

/// The status patch and the Event that end a reconcile, and nothing after them.
async fn expect_status_and_event(mut api: ApiServer, stack_json: Value) -> (Value, Value) {
    let patch = api.expect(Method::PATCH, STATUS, Reply::StackWithStatus(stack_json)).await;
    let event = api.expect(Method::POST, EVENTS, Reply::Echo).await;
    api.done().await;
    (patch, event)
}

#[tokio::test]
async fn invalid_spec_fails_with_every_field_and_applies_nothing() {
    let stack = stack("schedules: [{name: s, schedule: 5 minutes, command: SELECT 1}]\nroles: [{name: postgres}]");
    let (ctx, mut api) = context(Settings::default());
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        let patch = api.expect(Method::PATCH, STATUS, Reply::StackWithStatus(stack_json)).await;
        let event = api.expect(Method::POST, EVENTS, Reply::Echo).await;
        api.done().await;
        (patch, event)
    });
    reconcile(Arc::new(stack), ctx).await.unwrap();
    let (patch, event) = scenario.await.unwrap();
    let status = &patch["status"];
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["observedGeneration"], 3);
    let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("InvalidSpec")));
    let message = ready["message"].as_str().unwrap();
    assert!(message.contains("spec.schedules[0].schedule") && message.contains("spec.roles[0].name"), "{message}");
    assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some("Warning"), Some("Failed")));
}

/// Workers going away keep their pods until the coordinator has drained them: the worker
/// StatefulSet is applied with the replicas running now, never fewer, before any SQL runs.
#[tokio::test]
async fn a_distributed_stack_gets_its_workers_and_a_scale_down_keeps_their_pods_until_drained() {
    let stack = stack("distributed: {workers: 2}");
    let (ctx, mut api) = context(Settings::default());
    let stack_json = serde_json::to_value(&stack).unwrap();
    let running_workers = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "w-worker", "namespace": NS},
        "spec": {"replicas": 3, "selector": {}, "template": {}, "serviceName": "w-workers"}, "status": {"replicas": 3}});
    let scenario = tokio::spawn(async move {
        api.expect(Method::GET, STATEFULSET, Reply::NotFound).await;
        api.expect(Method::GET, SUPERUSER, Reply::NotFound).await;
        api.expect(Method::GET, WORKER_STATEFULSET, Reply::Json(running_workers)).await;
        let mut applied = expect_objects_applied(&mut api, 0).await;
        for path in [
            "/api/v1/namespaces/analytics/configmaps/w-worker-config",
            "/api/v1/namespaces/analytics/services/w-workers",
            WORKER_STATEFULSET,
        ] {
            applied.push(api.expect(Method::PATCH, path, Reply::Echo).await);
        }
        let (patch, _) = expect_status_and_event(api, stack_json).await;
        (applied, patch)
    });
    reconcile(Arc::new(stack), ctx).await.unwrap();
    let (applied, patch) = scenario.await.unwrap();
    let (coordinator, workers) = (&applied[4], &applied[7]);
    assert_eq!(workers["spec"]["replicas"], 3, "held at the running count until the drain");
    assert_eq!(workers["spec"]["serviceName"], "w-workers");
    assert_ne!(
        coordinator["spec"]["selector"], workers["spec"]["selector"],
        "the coordinator's selector never picks a worker"
    );
    assert!(
        applied[5]["data"]["postgresql.conf"].as_str().unwrap().contains("shared_preload_libraries = 'citus'\n"),
        "{}",
        applied[5]
    );
    assert_eq!(patch["status"]["phase"], "Provisioning");
}

#[tokio::test]
async fn new_stack_gets_its_objects_and_status_provisioning() {
    let stack = stack("template: datawarehouse");
    let (ctx, mut api) = context(Settings::default());
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        api.expect(Method::GET, STATEFULSET, Reply::NotFound).await;
        api.expect(Method::GET, SUPERUSER, Reply::NotFound).await;
        let applied = expect_objects_applied(&mut api, 0).await;
        let (patch, event) = expect_status_and_event(api, stack_json).await;
        (applied, patch, event)
    });
    reconcile(Arc::new(stack), ctx).await.unwrap();
    let (applied, patch, event) = scenario.await.unwrap();
    let password = applied[0]["stringData"]["password"].as_str().unwrap();
    assert_eq!(password.len(), 48, "a generated 24-byte password");
    assert_eq!(applied[4]["spec"]["template"]["metadata"]["annotations"].as_object().unwrap().len(), 1);
    assert_eq!(applied[4]["metadata"]["ownerReferences"][0]["uid"], "1b1e2a3c-0000-4000-8000-00000000000a");
    assert_eq!(patch["status"]["phase"], "Provisioning");
    assert_eq!(
        patch["status"]["endpoint"],
        json!({"host": "w.analytics.svc", "port": 5432, "database": "warehouse", "secretName": "w-superuser"})
    );
    assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some("Normal"), Some("Provisioning")));
}

/// Once its restore completed (status.restored), a restored stack's pod runs without the restore
/// step and without the source stack's repository claim (which may be ReadWriteOnce elsewhere,
/// or deleted), and no restore conflict is looked for.
#[tokio::test]
async fn a_completed_restore_leaves_the_pod_and_the_source_claim_alone() {
    let mut stack = stack("bootstrap: {restore: {repository: {volume: {}}, stack: source, target: latest}}");
    stack.status = Some(serde_json::from_value(json!({"phase": "Ready", "restored": true})).unwrap());
    let (ctx, mut api) = context(Settings::default());
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        api.expect(Method::GET, STATEFULSET, Reply::NotFound).await;
        api.expect(Method::GET, SUPERUSER, Reply::Json(secret("w-superuser", "password", "pw"))).await;
        let applied = expect_objects_applied(&mut api, 0).await;
        let (patch, _) = expect_status_and_event(api, stack_json).await;
        (applied, patch)
    });
    reconcile(Arc::new(stack), ctx).await.unwrap();
    let (applied, patch) = scenario.await.unwrap();
    let pod = &applied[4]["spec"]["template"]["spec"];
    assert!(pod["initContainers"].is_null(), "no restore step: {pod:#}");
    let volumes = pod["volumes"].as_array().map(|v| v.iter().map(|v| v["name"].clone()).collect::<Vec<_>>());
    assert!(!format!("{volumes:?}").contains("restore-source"), "{volumes:?}");
    assert!(!applied[1]["data"].as_object().unwrap().contains_key("pgbackrest-restore.conf"));
    assert_eq!(patch["status"]["restored"], true, "kept");
}

#[tokio::test]
async fn a_refused_api_call_reaches_status_and_events_as_one_readable_line() {
    let stack = stack("template: datawarehouse");
    let (ctx, mut api) = context(Settings::default());
    let stack_json = serde_json::to_value(&stack).unwrap();
    const REFUSAL: &str = "secrets \"w-superuser\" is forbidden: User \"system:serviceaccount:ops:pgw\" cannot get resource \"secrets\" in API group \"\" in the namespace \"analytics\"";
    let scenario = tokio::spawn(async move {
        api.expect(Method::GET, STATEFULSET, Reply::NotFound).await;
        api.expect(Method::GET, SUPERUSER, Reply::Forbidden(REFUSAL)).await;
        let patch = api.expect(Method::PATCH, STATUS, Reply::StackWithStatus(stack_json)).await;
        let event = api.expect(Method::POST, EVENTS, Reply::Echo).await;
        api.done().await;
        (patch, event)
    });
    let error = reconcile(Arc::new(stack), ctx).await.unwrap_err().to_string();
    let (patch, event) = scenario.await.unwrap();
    let expected = format!("Kubernetes API: {REFUSAL} (Forbidden, 403)");
    assert_eq!(error, expected, "the log line");
    let ready = &patch["status"]["conditions"][0];
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("KubernetesAPIError")));
    assert_eq!(ready["message"], expected.as_str());
    assert_eq!(patch["status"]["phase"], "Degraded");
    assert_eq!(event["note"], expected.as_str());
}

const SOURCE: &str = "sources:\n- name: cp\n  wrapper: postgres_fdw\n  options: {host: 127.0.0.1, port: \"PORT\", dbname: controlplane}\n  userMapping:\n    options: {user: cp_reader}\n    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}\n  importSchemas: [{remoteSchema: public, into: f}]\nschedules: [{name: refresh, schedule: '*/5 * * * *', command: SELECT 1}]\n";

/// A context whose databases are the harness's server.
fn database_context(fx: &Fixture) -> (Arc<Context>, ApiServer) {
    context(database_settings(fx))
}

fn database_settings(fx: &Fixture) -> Settings {
    Settings { database_host_override: Some(format!("127.0.0.1:{}", fx.server.port)), ..Settings::default() }
}

/// The calls up to a ready pod: the superuser Secret read, the objects applied (the StatefulSet's
/// answer saying its pod is ready).
async fn expect_a_ready_pod(api: &mut ApiServer) {
    api.expect(Method::GET, STATEFULSET, Reply::NotFound).await;
    api.expect(Method::GET, SUPERUSER, Reply::Json(secret("w-superuser", "password", PASSWORD))).await;
    expect_objects_applied(api, 1).await;
}

/// A ready pod, then the engine against the harness's database.
async fn converge_scenario(fx: &Fixture, cp_password: &'static str) -> Value {
    let stack = stack(&SOURCE.replace("PORT", &fx.server.port.to_string()));
    let (ctx, mut api) = database_context(fx);
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        expect_a_ready_pod(&mut api).await;
        api.expect(
            Method::GET,
            "/api/v1/namespaces/analytics/secrets/cp",
            Reply::Json(secret("cp", "password", cp_password)),
        )
        .await;
        let patch = api.expect(Method::PATCH, STATUS, Reply::StackWithStatus(stack_json)).await;
        api.expect(Method::POST, EVENTS, Reply::Echo).await;
        api.done().await;
        patch
    });
    let action = reconcile(Arc::new(stack), ctx).await.unwrap();
    assert_eq!(
        format!("{action:?}"),
        format!("{:?}", kube::runtime::controller::Action::requeue(Duration::from_secs(300)))
    );
    scenario.await.unwrap()["status"].clone()
}

fn patroni_pod(name: &str, role: &str, state: &str, position: i64) -> Value {
    let annotation = json!({"state": state, "role": role, "timeline": 2, "xlog_location": position,
                            "api_url": "http://10.244.0.9:8008/patroni"});
    json!({"metadata": {"name": name, "namespace": NS,
                        "labels": {"role": role, "controller-revision-hash": "w-7c9d"},
                        "annotations": {"status": annotation.to_string()}}})
}

/// The stack's StatefulSet as the API server holds it, its pod running `postgres` (a container).
fn running_statefulset(postgres: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "w", "namespace": NS},
           "spec": {"selector": {}, "serviceName": "w-headless", "template": {"spec": {"containers": [postgres]}}}})
}

/// The calls of a reconcile of a settled stack of three instances up to its database stage: the
/// StatefulSet read once (the conflict check; its apply answers with its status), the objects
/// applied, and the pods listed once; returns the StatefulSet applied.
async fn expect_a_settled_ha_stack(api: &mut ApiServer) -> Value {
    let mut stored = secret("w-superuser", "password", PASSWORD);
    stored["data"]["replication-password"] = json!("cmVwbGljYXRpb24=");
    stored["data"]["rewind-password"] = json!("cmV3aW5k");
    let live = running_statefulset(json!({"name": "postgres", "command": ["tini", "--", "patroni"]}));
    api.expect(Method::GET, STATEFULSET, Reply::Json(live)).await;
    api.expect(Method::GET, SUPERUSER, Reply::Json(stored)).await;
    for path in [
        "/api/v1/namespaces/analytics/serviceaccounts/w-patroni",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/analytics/roles/w-patroni",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/analytics/rolebindings/w-patroni",
        SUPERUSER,
        "/api/v1/namespaces/analytics/configmaps/w-config",
        "/api/v1/namespaces/analytics/services/w-headless",
        "/api/v1/namespaces/analytics/services/w",
    ] {
        api.expect(Method::PATCH, path, Reply::Echo).await;
    }
    let rolled = json!({"replicas": 3, "readyReplicas": 3, "observedGeneration": 1,
                        "currentRevision": "w-7c9d", "updateRevision": "w-7c9d"});
    let applied = api.expect(Method::PATCH, STATEFULSET, Reply::Applied(rolled)).await;
    api.expect(Method::PATCH, "/api/v1/namespaces/analytics/services/w-ro", Reply::Echo).await;
    api.expect(Method::PATCH, "/apis/policy/v1/namespaces/analytics/poddisruptionbudgets/w", Reply::Echo).await;
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
        patroni_pod("w-0", "replica", "streaming", 4096),
        patroni_pod("w-1", "primary", "running", 8192),
        patroni_pod("w-2", "replica", "streaming", 8192),
    ]});
    api.expect(Method::GET, "/api/v1/namespaces/analytics/pods", Reply::Json(pods)).await;
    applied
}

/// Settings for a stack of several instances: the harness's database, and an operator outside
/// the cluster (Patroni's API out of reach; the rest goes on).
fn ha_settings(fx: &Fixture) -> Settings {
    Settings { port_forward: true, ..database_settings(fx) }
}

/// A settled stack of three instances, reconciled again: one pod list serves Patroni's API
/// addresses, the rollout and the status, which shows Patroni's account of the members.
#[tokio::test]
async fn an_idle_highly_available_stack_lists_its_pods_once() {
    let fx = Fixture::start().await;
    let stack = stack("postgres: {instances: 3}");
    let (ctx, mut api) = context(ha_settings(&fx));
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        let applied = expect_a_settled_ha_stack(&mut api).await;
        (applied, expect_status_and_event(api, stack_json).await.0)
    });
    reconcile(Arc::new(stack), ctx).await.unwrap();
    let (applied, patch) = scenario.await.unwrap();
    assert_eq!(applied["spec"]["replicas"], 3);
    let status = &patch["status"];
    assert_eq!(status["phase"], "Ready", "{status:#}");
    assert_eq!((status["primary"].as_str(), status["readyInstances"].as_str()), (Some("w-1"), Some("3/3")));
    assert_eq!(status["instances"][0]["lagBytes"], 4096);
    let available = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "HighlyAvailable").unwrap();
    assert_eq!((available["status"].as_str(), available["reason"].as_str()), (Some("True"), Some("Streaming")));
}

const ASKED: &str = "any 2026-12-05T05:54:00Z";

fn asking_switchover() -> DataWarehouseStack {
    let mut stack = stack("postgres: {instances: 3}");
    stack.metadata.annotations = Some([("pgwarehouse.dev/switchover-to".to_string(), ASKED.to_string())].into());
    stack
}

/// The watch cache a reconcile starts from may lack the status the previous reconcile wrote
/// (seen on a real cluster: one request, two switchovers). The status is read afresh; a request
/// already answered is not made again, and its answer is kept.
#[tokio::test]
async fn a_switchover_already_answered_is_not_made_again_from_a_stale_cache() {
    let fx = Fixture::start().await;
    let stack = asking_switchover();
    let (ctx, mut api) = context(ha_settings(&fx));
    let mut answered = serde_json::to_value(&stack).unwrap();
    answered["status"] = json!({"switchoverHandled": ASKED, "switchoverError": "candidate name does not match"});
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        expect_a_settled_ha_stack(&mut api).await;
        api.expect(Method::GET, STATUS, Reply::Json(answered)).await;
        expect_status_and_event(api, stack_json).await.0
    });
    reconcile(Arc::new(stack), ctx).await.unwrap();
    let status = scenario.await.unwrap()["status"].clone();
    assert_eq!(status["switchoverHandled"], ASKED);
    assert_eq!(status["switchoverError"], "candidate name does not match", "the first answer stands");
}

/// A new request is recorded as begun before the switchover is tried, so that no later reconcile
/// (or a restarted operator) makes it again; its answer follows in the status.
#[tokio::test]
async fn a_switchover_is_recorded_before_it_is_made() {
    let fx = Fixture::start().await;
    let stack = asking_switchover();
    let (ctx, mut api) = context(ha_settings(&fx));
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        expect_a_settled_ha_stack(&mut api).await;
        api.expect(Method::GET, STATUS, Reply::Json(stack_json.clone())).await;
        let claim = api.expect(Method::PATCH, STATUS, Reply::StackWithStatus(stack_json.clone())).await;
        (claim, expect_status_and_event(api, stack_json).await.0)
    });
    reconcile(Arc::new(stack), ctx).await.unwrap();
    let (claim, patch) = scenario.await.unwrap();
    assert_eq!(claim, json!({"status": {"switchoverStarted": ASKED}}));
    let status = &patch["status"];
    assert_eq!((&status["switchoverStarted"], &status["switchoverHandled"]), (&json!(ASKED), &json!(ASKED)));
    let error = status["switchoverError"].as_str().unwrap();
    assert!(error.contains("run the operator in the cluster"), "{error}");
}

/// A stack running one instance without Patroni is not grown in place: members started beside
/// it would initialise an empty cluster. Refused with the field's path; nothing is applied.
#[tokio::test]
async fn one_instance_does_not_grow_to_three_in_place() {
    let stack = stack("postgres: {instances: 3}");
    let (ctx, mut api) = context(Settings::default());
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        let plain = json!({"name": "postgres", "args": ["-c", "config_file=/etc/pgwarehouse/postgresql.conf"]});
        api.expect(Method::GET, STATEFULSET, Reply::Json(running_statefulset(plain))).await;
        expect_status_and_event(api, stack_json).await.0
    });
    reconcile(Arc::new(stack), ctx).await.unwrap();
    let status = scenario.await.unwrap()["status"].clone();
    assert_eq!(status["phase"], "Failed");
    let message = status["conditions"][0]["message"].as_str().unwrap();
    assert!(message.contains("spec.postgres.instances: the stack runs one instance without Patroni"), "{message}");
}

#[tokio::test]
async fn a_ready_database_is_converged_and_the_stack_is_ready() {
    let fx = Fixture::start().await;
    let status = converge_scenario(&fx, CP_READER_PASSWORD).await;
    assert_eq!(status["phase"], "Ready", "{status:#}");
    let conditions: Vec<(&str, &str)> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(conditions, [("Ready", "True"), ("DatabaseAvailable", "True"), ("Converged", "True")]);
    assert_eq!(status["sources"], json!([{"name": "cp", "state": "Changed", "foreignTables": 3}]));
    assert_eq!(status["readySources"], "1/1");
    assert_eq!(status["activeJobs"], 1);
    assert!(status["schedules"][0]["jobId"].as_i64().is_some(), "{status:#}");
}

#[tokio::test]
async fn an_engine_error_on_one_source_degrades_with_its_message_and_no_secret() {
    let fx = Fixture::start().await;
    let status = converge_scenario(&fx, "wrong-password-value").await;
    assert_eq!(status["phase"], "Degraded");
    let source = &status["sources"][0];
    assert_eq!(source["state"], "Failed");
    let message = source["message"].as_str().unwrap();
    assert!(message.contains("password authentication failed"), "{message}");
    assert!(!status.to_string().contains("wrong-password-value"), "the secret is in the status");
    assert_eq!(status["schedules"][0]["state"], "Changed", "the other items converged");
    assert_eq!(status["conditions"][0]["reason"], "ItemsFailed");
}

/// A source and a role whose Secrets are not there (one missing whole, one without the key) wait
/// for them, each named with its field; the other source, the refresh reading it, the schedule
/// and the other role converge.
#[tokio::test]
async fn missing_secrets_hold_back_only_the_items_that_name_them() {
    let fx = Fixture::start().await;
    let spec = r#"sources:
- name: cp
  wrapper: postgres_fdw
  options: {host: 127.0.0.1, port: "PORT", dbname: controlplane}
  userMapping:
    options: {user: cp_reader}
    secretOptions: {password: {secretKeyRef: {name: cp, key: password}}}
  importSchemas: [{remoteSchema: public, into: f}]
- name: archive
  wrapper: postgres_fdw
  options: {host: 127.0.0.1, port: "PORT", dbname: controlplane}
  userMapping:
    options: {user: cp_reader}
    secretOptions: {password: {secretKeyRef: {name: archive-cp, key: password}}}
  importSchemas: [{remoteSchema: public, into: archive}]
schedules: [{name: refresh, schedule: '*/5 * * * *', command: SELECT 1}]
refreshes: [{name: clusters, target: public.clusters, query: 'SELECT id, name FROM f.instances', schedule: '*/5 * * * *'}]
roles:
- {name: analyst, passwordSecretRef: {name: analyst-login, key: password}, grants: [{schema: public, privileges: [SELECT]}]}
- {name: viewer, passwordSecretRef: {name: cp, key: viewer-password}, grants: [{schema: public, privileges: [SELECT]}]}
"#;
    let stack = stack(&spec.replace("PORT", &fx.server.port.to_string()));
    let (ctx, mut api) = database_context(&fx);
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        expect_a_ready_pod(&mut api).await;
        let mut cp = secret("cp", "password", CP_READER_PASSWORD);
        cp["data"]["viewer-password"] = json!("dmlld2VyLXB3");
        api.expect(Method::GET, "/api/v1/namespaces/analytics/secrets/cp", Reply::Json(cp)).await;
        api.expect(Method::GET, "/api/v1/namespaces/analytics/secrets/archive-cp", Reply::NotFound).await;
        api.expect(Method::GET, "/api/v1/namespaces/analytics/secrets/analyst-login", Reply::NotFound).await;
        let patch = api.expect(Method::PATCH, STATUS, Reply::StackWithStatus(stack_json)).await;
        let event = api.expect(Method::POST, EVENTS, Reply::Echo).await;
        api.done().await;
        (patch, event)
    });
    reconcile(Arc::new(stack), ctx).await.unwrap();
    let (patch, event) = scenario.await.unwrap();
    let status = &patch["status"];
    assert_eq!(status["phase"], "Degraded", "{status:#}");
    let ready = &status["conditions"][0];
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("MissingSecret")));
    let message = ready["message"].as_str().unwrap();
    for expected in [
        "source/archive: waiting for a Secret: spec.sources[1].userMapping.secretOptions.password: Secret \"archive-cp\" does not exist",
        "role/analyst: waiting for a Secret: spec.roles[0].passwordSecretRef: Secret \"analyst-login\" does not exist",
    ] {
        assert!(message.contains(expected), "{expected} not in {message}");
    }
    assert_eq!(event["reason"], "Degraded");
    let state = |list: &str, name: &str| {
        status[list].as_array().unwrap().iter().find(|i| i["name"] == name).map(|i| i["state"].clone())
    };
    assert_eq!(state("sources", "cp"), Some(json!("Changed")));
    assert_eq!(state("sources", "archive"), Some(json!("Failed")));
    assert_eq!(state("schedules", "refresh"), Some(json!("Changed")));

    let mut warehouse = fx.warehouse().await;
    let servers: Vec<String> = sqlx::query_scalar("SELECT srvname::text FROM pg_foreign_server ORDER BY 1")
        .fetch_all(&mut warehouse)
        .await
        .unwrap();
    assert_eq!(servers, ["cp"], "the waiting source made nothing");
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname IN ('analyst', 'viewer') ORDER BY 1")
            .fetch_all(&mut warehouse)
            .await
            .unwrap();
    assert_eq!(roles, ["viewer"], "the role whose Secret exists was made, the other waits");
    let refreshed: i64 = support::scalar(&mut warehouse, "SELECT count(*) FROM pgwarehouse.refreshes").await;
    assert_eq!(refreshed, 1, "the refresh over the converged source is defined");
}

/// The refresh-now annotation starts the refreshes and the reconcile returns while they run (a
/// refresh sleeping 10 s here): it does not wait for them, the annotation's value is handled,
/// and the run completes on its own connection afterwards.
#[tokio::test]
async fn refresh_now_runs_beside_the_reconcile_not_inside_it() {
    let fx = Fixture::start().await;
    let spec = "refreshes: [{name: slow, target: public.slow, query: 'SELECT 1 AS id FROM pg_sleep(10)', schedule: '0 3 * * *'}]";
    let mut stack = stack(spec);
    stack.metadata.annotations =
        Some([(pgwarehouse::controller::status::REFRESH_NOW.to_string(), "now-1".to_string())].into());
    let (ctx, mut api) = database_context(&fx);
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        expect_a_ready_pod(&mut api).await;
        let patch = api.expect(Method::PATCH, STATUS, Reply::StackWithStatus(stack_json)).await;
        api.expect(Method::POST, EVENTS, Reply::Echo).await;
        api.done().await;
        patch
    });
    let action = reconcile(Arc::new(stack), ctx.clone()).await.unwrap();
    let mut warehouse = fx.warehouse().await;
    let sleeping: i64 = support::scalar(
        &mut warehouse,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() \
         AND query LIKE '%pgwarehouse.refresh(%'",
    )
    .await;
    assert_eq!(sleeping, 1, "the reconcile returned while the refresh runs");
    let runs: i64 = support::scalar(&mut warehouse, "SELECT count(*) FROM pgwarehouse.refresh_runs").await;
    assert_eq!(runs, 0, "and before it finished");
    assert!(ctx.refresh_now.running("analytics/w"));
    assert_eq!(
        format!("{action:?}"),
        format!("{:?}", kube::runtime::controller::Action::requeue(Duration::from_secs(15))),
        "a running refresh-now is looked at again soon"
    );
    let patch = scenario.await.unwrap();
    assert_eq!(patch["status"]["refreshNowHandled"], "now-1");
    assert_eq!(patch["status"]["phase"], "Ready", "{:#}", patch["status"]);

    let mut finished = 0;
    for _ in 0..300 {
        finished = support::scalar::<i64>(
            &mut warehouse,
            "SELECT count(*) FROM pgwarehouse.refresh_runs WHERE name = 'slow' AND state = 'succeeded'",
        )
        .await;
        if finished == 1 && !ctx.refresh_now.running("analytics/w") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(finished, 1, "the run completed on its own connection");
    assert_eq!(support::scalar::<i64>(&mut warehouse, "SELECT count(*) FROM public.slow").await, 1);
}

/// A database stage that does not end (here a migration sleeping past the limit, standing in for
/// a stream that stalls) ends the reconcile with the reason instead of holding it forever.
#[tokio::test]
async fn a_database_stage_past_its_limit_ends_the_reconcile_with_the_reason() {
    let fx = Fixture::start().await;
    let stack = stack("migrations: [{name: slow, sql: 'SELECT pg_sleep(5)'}]");
    let (ctx, mut api) = context(Settings { database_stage_limit: Duration::from_secs(1), ..database_settings(&fx) });
    let stack_json = serde_json::to_value(&stack).unwrap();
    let scenario = tokio::spawn(async move {
        expect_a_ready_pod(&mut api).await;
        let patch = api.expect(Method::PATCH, STATUS, Reply::StackWithStatus(stack_json)).await;
        api.expect(Method::POST, EVENTS, Reply::Echo).await;
        api.done().await;
        patch
    });
    let action = reconcile(Arc::new(stack), ctx).await.unwrap();
    assert_eq!(
        format!("{action:?}"),
        format!("{:?}", kube::runtime::controller::Action::requeue(Duration::from_secs(15)))
    );
    let patch = scenario.await.unwrap();
    let ready = &patch["status"]["conditions"][0];
    assert_eq!(ready["reason"], "ConnectFailed");
    assert!(ready["message"].as_str().unwrap().contains("did not finish within 1s"), "{ready}");
}

#[test]
fn a_changed_secret_maps_to_the_stacks_that_read_it() {
    let reader = Arc::new(stack("roles: [{name: analyst, passwordSecretRef: {name: cp, key: password}}]"));
    let mut elsewhere = stack("roles: [{name: analyst, passwordSecretRef: {name: cp, key: password}}]");
    elsewhere.metadata.namespace = Some("other".into());
    let unrelated = stack("template: datawarehouse");
    let stacks = [reader.clone(), Arc::new(elsewhere), Arc::new(unrelated)];
    let changed: Secret = serde_json::from_value(secret("cp", "password", "x")).unwrap();
    let refs = stacks_using_secret(&changed, &stacks);
    assert_eq!(refs, [kube::runtime::reflector::ObjectRef::from_obj(reader.as_ref())]);
    assert_eq!(reader.object_ref(&()).name.as_deref(), Some("w"));
}

#[tokio::test]
async fn the_status_command_reads_the_stack_and_names_a_missing_one_in_one_line() {
    let (ctx, mut api) = context(Settings::default());
    let mut found = serde_json::to_value(stack("template: datawarehouse")).unwrap();
    found["status"] = json!({"phase": "Ready", "observedGeneration": 3,
        "endpoint": {"host": "w.analytics.svc", "port": 5432, "database": "warehouse", "secretName": "w-superuser"}});
    const STACK: &str = "/apis/pgwarehouse.dev/v1alpha1/namespaces/analytics/datawarehousestacks/w";
    let scenario = tokio::spawn(async move {
        api.expect(Method::GET, STACK, Reply::Json(found)).await;
        api.expect(Method::GET, &STACK.replace("/w", "/nope"), Reply::NotFound).await;
        api.done().await;
    });
    let report = pgwarehouse::report::fetch_cluster_report(&ctx.client, NS, "w").await.unwrap();
    assert_eq!(report.phase.as_deref(), Some("Ready"));
    assert_eq!(report.url, "postgres://postgres@w.analytics.svc:5432/warehouse");
    let missing = pgwarehouse::report::fetch_cluster_report(&ctx.client, NS, "nope").await.unwrap_err();
    assert_eq!(pgwarehouse::controller::api_error::one_line(&missing), "not found (NotFound, 404)");
    scenario.await.unwrap();
}
