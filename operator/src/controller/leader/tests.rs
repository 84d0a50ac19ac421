//! The elector against a fake Lease API (tower-test): it keeps the Lease, checks
//! `resourceVersion` on every write as the API server does, and records every call.

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use super::*;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/pgwarehouse-operator";

#[derive(Default)]
struct FakeApi {
    lease: Option<Value>,
    version: u64,
    calls: Vec<(Method, String, Value)>,
    refuse_writes: bool,
}

fn reply(code: u16, body: Value) -> Response<Body> {
    Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
}

fn conflict() -> Response<Body> {
    reply(
        409,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "conflict"}),
    )
}

fn client_with_fake(api: Arc<Mutex<FakeApi>>) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (method, path) = (request.method().clone(), request.uri().path().to_string());
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            let mut api = api.lock().unwrap();
            api.calls.push((method.clone(), path.clone(), body.clone()));
            let response = match (method, path.as_str()) {
                (Method::GET, LEASE) => match &api.lease {
                    Some(lease) => reply(200, lease.clone()),
                    None => reply(
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
                    ),
                },
                (Method::POST, LEASES) if api.lease.is_none() && !api.refuse_writes => {
                    api.version += 1;
                    let mut lease = body;
                    lease["metadata"]["resourceVersion"] = json!(api.version.to_string());
                    api.lease = Some(lease.clone());
                    reply(201, lease)
                }
                (Method::PUT, LEASE) => {
                    let current = api.lease.as_ref().map(|l| l["metadata"]["resourceVersion"].clone());
                    if api.refuse_writes || current != Some(body["metadata"]["resourceVersion"].clone()) {
                        conflict()
                    } else {
                        api.version += 1;
                        let mut lease = body;
                        lease["metadata"]["resourceVersion"] = json!(api.version.to_string());
                        api.lease = Some(lease.clone());
                        reply(200, lease)
                    }
                }
                _ => conflict(),
            };
            send.send_response(response);
        }
    });
    Client::new(service, "ops")
}

fn elector(client: &Client, identity: &str) -> Elector {
    Elector::new(client.clone(), "ops", "pgwarehouse-operator", identity, Timing::default())
}

fn holder(api: &Arc<Mutex<FakeApi>>) -> Option<String> {
    api.lock().unwrap().lease.as_ref().and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
}

#[tokio::test(start_paused = true)]
async fn the_leader_renews_and_on_stop_releases_so_a_standby_leads_within_a_second() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let client = client_with_fake(api.clone());
    let (a, b) = (elector(&client, "a"), elector(&client, "b"));
    let (stop_a, mut stopped_a) = watch::channel(false);
    let (_stop_b, mut stopped_b) = watch::channel(false);

    assert!(a.acquire(&mut stopped_a).await);
    assert_eq!(holder(&api), Some("a".into()));
    let standby = tokio::spawn(async move {
        let leads = b.acquire(&mut stopped_b).await;
        (leads, tokio::time::Instant::now())
    });
    let holding = tokio::spawn(async move { (a.hold(&mut stopped_a).await, a) });
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(holder(&api), Some("a".into()), "a renews; b stands by");
    let renewals = api
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(m, _, b)| *m == Method::PUT && b["spec"]["holderIdentity"] == "a")
        .count();
    assert_eq!(renewals, 2, "renewed every 5 s");

    stop_a.send(true).unwrap();
    let (held, a) = holding.await.unwrap();
    assert_eq!(held, Held::Stopped);
    a.release().await.unwrap();
    let released_at = tokio::time::Instant::now();
    let release = api.lock().unwrap().calls.iter().rev().find(|(m, _, _)| *m == Method::PUT).cloned().unwrap();
    assert_eq!((release.0, release.1.as_str()), (Method::PUT, LEASE));
    assert_eq!(release.2["spec"]["holderIdentity"], Value::Null, "the release call clears the holder");
    assert_eq!(release.2["spec"]["renewTime"], Value::Null);

    let (leads, at) = standby.await.unwrap();
    assert!(leads);
    assert_eq!(holder(&api), Some("b".into()));
    assert!(
        at.duration_since(released_at) <= Duration::from_secs(1),
        "hand-off took {:?}",
        at.duration_since(released_at)
    );
    let transitions = api.lock().unwrap().lease.as_ref().unwrap()["spec"]["leaseTransitions"].clone();
    assert_eq!(transitions, 1);
}

#[tokio::test]
async fn a_live_lease_of_another_is_left_and_an_expired_one_taken() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let client = client_with_fake(api.clone());
    let lease_renewed = |seconds_ago: i64| {
        let at = Timestamp::now() - SignedDuration::from_secs(seconds_ago);
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "pgwarehouse-operator", "namespace": "ops", "resourceVersion": "7"},
               "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15, "renewTime": at.to_string(), "leaseTransitions": 3}})
    };
    api.lock().unwrap().lease = Some(lease_renewed(2));
    api.lock().unwrap().version = 7;
    let me = elector(&client, "me");
    assert!(!me.try_lead().await.unwrap(), "live for 13 more seconds");
    me.release().await.unwrap();
    assert_eq!(holder(&api), Some("other".into()), "release leaves another's Lease alone");

    api.lock().unwrap().lease = Some(lease_renewed(20));
    assert!(me.try_lead().await.unwrap(), "expired 5 s ago");
    let lease = api.lock().unwrap().lease.clone().unwrap();
    assert_eq!(
        (lease["spec"]["holderIdentity"].as_str(), lease["spec"]["leaseTransitions"].as_i64()),
        (Some("me"), Some(4))
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_fail_stops_leading_before_its_lease_expires() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let client = client_with_fake(api.clone());
    let me = elector(&client, "me");
    let (_stop, mut stopped) = watch::channel(false);
    assert!(me.acquire(&mut stopped).await);
    api.lock().unwrap().refuse_writes = true;
    let started = tokio::time::Instant::now();
    assert_eq!(me.hold(&mut stopped).await, Held::Lost, "a refused renewal is a lost race");
    assert!(started.elapsed() < Timing::default().duration);
}
