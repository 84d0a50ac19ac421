//! `pgwarehouse run`, the real binary, against an API server that lists and watches as a real
//! one does (support/api_server.rs): `/readyz` must turn 200 within seconds of the watches'
//! first lists, and not before. A store whose readiness is awaited by two tasks lost the second
//! one's wakeup in kube-runtime 5; these runs are what showed the operator never Ready.

#[path = "support/api_server.rs"]
mod api_server;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api_server::{ApiServer, kubeconfig};
use serde_json::json;

/// How long a list takes to answer: long enough that every waiter is parked before it does.
const LIST_DELAY: Duration = Duration::from_millis(400);
const READY_WITHIN: Duration = Duration::from_secs(15);

struct Operator {
    child: Child,
    metrics: String,
    _dir: tempfile::TempDir,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_operator(url: &str, args: &[&str]) -> Operator {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_pgwarehouse"))
        .args(["run", "--metrics-address", &metrics])
        .args(args)
        .env("KUBECONFIG", kubeconfig(dir.path(), url))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Operator { child, metrics, _dir: dir }
}

/// `/readyz`'s status and body, or None while nothing listens.
async fn readyz(operator: &Operator) -> Option<(u16, String)> {
    let url = format!("http://{}/readyz", operator.metrics);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.get(&url).call().ok()?;
        Some((response.status().as_u16(), response.body_mut().read_to_string().ok()?))
    })
    .await
    .unwrap()
}

/// Polls `/readyz` until 200; returns how long that took and every non-200 answer seen.
async fn wait_ready(operator: &mut Operator) -> (Duration, Vec<String>) {
    let start = Instant::now();
    let mut answers = Vec::new();
    while start.elapsed() < READY_WITHIN {
        assert!(operator.child.try_wait().unwrap().is_none(), "the operator exited");
        match readyz(operator).await {
            Some((200, _)) => return (start.elapsed(), answers),
            Some((code, body)) => answers.push(format!("{code} {body}")),
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered 200 within {READY_WITHIN:?}; it said: {:?}", answers.last());
}

fn seed(server: &ApiServer, namespace: &str) {
    server.insert(
        &format!("/api/v1/namespaces/{namespace}/secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "control-plane", "namespace": namespace},
               "data": {"password": "c2VjcmV0"}}),
    );
    server.insert(
        &format!("/api/v1/namespaces/{namespace}/configmaps"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated", "namespace": namespace}}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_every_watch_has_listed_across_all_namespaces() {
    let (server, url) = ApiServer::start(LIST_DELAY).await;
    seed(&server, "analytics");
    let mut operator = start_operator(&url, &["--leader-election", "false"]);
    let (took, answers) = wait_ready(&mut operator).await;
    assert!(
        answers.iter().any(|a| a.contains("have not listed yet")),
        "readiness came before the lists answered: {answers:?}"
    );
    let requests = server.requests.lock().unwrap().clone();
    for collection in [
        "/apis/pgwarehouse.dev/v1alpha1/datawarehousestacks",
        "/apis/apps/v1/statefulsets",
        "/api/v1/services",
        "/api/v1/configmaps",
        "/api/v1/secrets",
    ] {
        assert!(
            requests.iter().any(|r| r.starts_with(&format!("GET {collection}?")) && !r.contains("watch=")),
            "{collection} was never listed: {requests:?}"
        );
    }
    eprintln!("ready {took:?} after start (lists take {LIST_DELAY:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_in_named_namespaces_while_leading() {
    let (server, url) = ApiServer::start(LIST_DELAY).await;
    seed(&server, "a");
    seed(&server, "b");
    let mut operator = start_operator(
        &url,
        &["--namespace", "a,b", "--lease-namespace", "pgwarehouse-system", "--identity", "operator-0"],
    );
    wait_ready(&mut operator).await;
    let lease = server
        .get("/apis/coordination.k8s.io/v1/namespaces/pgwarehouse-system/leases", "pgwarehouse-operator")
        .expect("the Lease was taken");
    assert_eq!(lease["spec"]["holderIdentity"], "operator-0");
    let requests = server.requests.lock().unwrap().clone();
    for namespace in ["a", "b"] {
        let watched = format!("GET /api/v1/namespaces/{namespace}/secrets?");
        assert!(
            requests.iter().any(|r| r.starts_with(&watched) && r.contains("watch=true")),
            "{namespace}: {requests:?}"
        );
    }
}

/// A watch the operator may not list (RBAC without Secrets) keeps it unready with the reason
/// while every other watch has listed; once the permission is granted it becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unready_with_the_reason_while_a_watch_is_forbidden_then_ready() {
    let (server, url) = ApiServer::start(LIST_DELAY).await;
    seed(&server, "analytics");
    server.forbid(Some("/api/v1/namespaces/analytics/secrets"));
    let mut operator = start_operator(&url, &["--leader-election", "false", "--namespace", "analytics"]);
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(4) {
        if let Some(answer) = readyz(&operator).await {
            assert_ne!(answer.0, 200, "ready although the Secrets watch cannot list");
            last = Some(answer);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, body) = last.expect("/readyz answered");
    assert_eq!(code, 503);
    assert!(body.contains("secrets is forbidden"), "{body}");
    server.forbid(None);
    wait_ready(&mut operator).await;
}
