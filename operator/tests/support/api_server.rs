//! An in-memory Kubernetes API server on a loopback port, speaking the protocol a real one does
//! for what a controller's watches and leader election use: collections are listed with the
//! store's current `resourceVersion` (as a `List`, or as a `PartialObjectMetadataList` when the
//! client asks for metadata only), then watched from that version as a stream of JSON lines that
//! carries the changes after it and a `BOOKMARK` every second, until `timeoutSeconds` closes it;
//! `sendInitialEvents=true` (the streaming list) sends every object as `ADDED` and ends with the
//! bookmark annotated `k8s.io/initial-events-end`. Objects are read, created (409 when present)
//! and replaced (409 on a stale `resourceVersion`); a collection can be made to answer 403. Lists answer after `list_delay`, like a
//! server some network away: it is what lets two tasks both wait for a store before it is ready.
//! Writers it does not model (patch, delete) answer 405, so a test using them fails loudly.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::broadcast;

struct Change {
    collection: Collection,
    kind: &'static str,
    object: Value,
}

struct Store {
    revision: u64,
    /// Namespaced collection → name → object.
    objects: BTreeMap<Collection, BTreeMap<String, Value>>,
}

#[derive(Clone)]
pub struct ApiServer {
    store: Arc<Mutex<Store>>,
    changes: broadcast::Sender<Arc<Change>>,
    list_delay: Duration,
    /// Every request as `METHOD path?query`, for assertions on what the client did.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// A collection answered 403, as for a service account without the permission.
    forbidden: Arc<Mutex<Option<Collection>>>,
}

/// A collection: `/api/v1` + `namespaces/ns` (None: every namespace) + `secrets`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Collection {
    prefix: String,
    namespace: Option<String>,
    resource: String,
}

impl Collection {
    /// Whether an object stored in `stored` (a namespaced collection) is in this one.
    fn covers(&self, stored: &Collection) -> bool {
        self.prefix == stored.prefix
            && self.resource == stored.resource
            && (self.namespace.is_none() || self.namespace == stored.namespace)
    }
}

/// The collection and object name of a request path.
fn split(path: &str) -> Option<(Collection, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let version_end = if parts.first() == Some(&"api") { 2 } else { 3 };
    let prefix = format!("/{}", parts.get(..version_end)?.join("/"));
    let (namespace, rest) = match parts.get(version_end) {
        Some(&"namespaces") if parts.len() > version_end + 2 => {
            (Some(parts[version_end + 1].to_string()), &parts[version_end + 2..])
        }
        _ => (None, &parts[version_end..]),
    };
    let collection =
        |resource: &str| Collection { prefix: prefix.clone(), namespace: namespace.clone(), resource: resource.into() };
    match rest {
        [resource] => Some((collection(resource), None)),
        [resource, name] => Some((collection(resource), Some(name.to_string()))),
        _ => None,
    }
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    json_response(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "reason": reason, "message": message, "code": code}),
    )
}

fn json_response(code: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn list_kind(collection: &Collection) -> String {
    let resource = collection.resource.as_str();
    let singular =
        resource.strip_suffix("es").filter(|s| s.ends_with("ss")).or(resource.strip_suffix('s')).unwrap_or(resource);
    let mut chars = singular.chars();
    let kind: String = chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect();
    format!("{kind}List")
}

/// What a metadata-only client gets for an object: its kind and metadata.
fn metadata_only(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]})
}

impl ApiServer {
    /// Serves on a free loopback port; returns the server and its URL.
    pub async fn start(list_delay: Duration) -> (ApiServer, String) {
        let server = ApiServer {
            store: Arc::new(Mutex::new(Store { revision: 100, objects: BTreeMap::new() })),
            changes: broadcast::channel(1024).0,
            list_delay,
            requests: Arc::default(),
            forbidden: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handler = server.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let handler = handler.clone();
            async move { handler.handle(method, uri, headers, body).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (server, url)
    }

    /// Puts an object into `collection` (its path), as a client's create would.
    pub fn insert(&self, collection: &str, object: Value) {
        let (collection, _) = split(collection).expect("a collection path");
        self.put(collection, object);
    }

    fn put(&self, collection: Collection, mut object: Value) {
        let mut store = self.store.lock().unwrap();
        store.revision += 1;
        object["metadata"]["resourceVersion"] = json!(store.revision.to_string());
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        store.objects.entry(collection.clone()).or_default().insert(name, object.clone());
        let _ = self.changes.send(Arc::new(Change { collection, kind: "ADDED", object }));
    }

    /// Answers every request on `collection` with 403 Forbidden (None: none).
    pub fn forbid(&self, collection: Option<&str>) {
        *self.forbidden.lock().unwrap() = collection.map(|path| split(path).expect("a collection path").0);
    }

    /// The object `name` in `collection` (its path).
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.find(&split(collection).expect("a collection path").0, name)
    }

    fn find(&self, collection: &Collection, name: &str) -> Option<Value> {
        self.store.lock().unwrap().objects.get(collection)?.get(name).cloned()
    }

    async fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        self.requests.lock().unwrap().push(format!("{method} {uri}"));
        let Some((collection, name)) = split(uri.path()) else {
            return status(
                404,
                "NotFound",
                &format!("the server could not find the requested resource ({})", uri.path()),
            );
        };
        if self.forbidden.lock().unwrap().as_ref().is_some_and(|forbidden| collection.covers(forbidden)) {
            let resource = &collection.resource;
            return status(
                403,
                "Forbidden",
                &format!(
                    "{resource} is forbidden: User \"system:serviceaccount:test:operator\" cannot list resource \"{resource}\""
                ),
            );
        }
        let params = query(&uri);
        let metadata = headers
            .get("accept")
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"));
        match (method, name) {
            (Method::GET, None) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
                self.watch(collection, &params, metadata)
            }
            (Method::GET, None) => {
                tokio::time::sleep(self.list_delay).await;
                self.list(&collection, metadata)
            }
            (Method::GET, Some(name)) => match self.find(&collection, &name) {
                Some(object) => json_response(200, object),
                None => status(404, "NotFound", &format!("\"{name}\" not found")),
            },
            (Method::POST, None) => self.create(collection, &body),
            (Method::PUT, Some(name)) => self.replace(collection, &name, &body),
            (method, _) => status(405, "MethodNotAllowed", &format!("{method} is not modelled by this test server")),
        }
    }

    fn list(&self, collection: &Collection, metadata: bool) -> Response {
        let store = self.store.lock().unwrap();
        let items: Vec<Value> = store
            .objects
            .iter()
            .filter(|(stored, _)| collection.covers(stored))
            .flat_map(|(_, objects)| objects.values())
            .map(|o| if metadata { metadata_only(o) } else { o.clone() })
            .collect();
        let (api_version, kind) = if metadata {
            ("meta.k8s.io/v1".to_string(), "PartialObjectMetadataList".to_string())
        } else {
            ("v1".into(), list_kind(collection))
        };
        json_response(
            200,
            json!({"apiVersion": api_version, "kind": kind,
                   "metadata": {"resourceVersion": store.revision.to_string()}, "items": items}),
        )
    }

    fn create(&self, collection: Collection, body: &[u8]) -> Response {
        let object: Value = serde_json::from_slice(body).unwrap();
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if self.find(&collection, &name).is_some() {
            return status(409, "AlreadyExists", &format!("\"{name}\" already exists"));
        }
        self.put(collection.clone(), object);
        json_response(201, self.find(&collection, &name).unwrap())
    }

    fn replace(&self, collection: Collection, name: &str, body: &[u8]) -> Response {
        let mut object: Value = serde_json::from_slice(body).unwrap();
        let mut store = self.store.lock().unwrap();
        let Some(current) = store.objects.get(&collection).and_then(|objects| objects.get(name)) else {
            return status(404, "NotFound", &format!("\"{name}\" not found"));
        };
        if object["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
            return status(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version",
            );
        }
        store.revision += 1;
        object["metadata"]["resourceVersion"] = json!(store.revision.to_string());
        store.objects.get_mut(&collection).unwrap().insert(name.to_string(), object.clone());
        let _ = self.changes.send(Arc::new(Change { collection, kind: "MODIFIED", object: object.clone() }));
        json_response(200, object)
    }

    fn watch(&self, collection: Collection, params: &BTreeMap<String, String>, metadata: bool) -> Response {
        let timeout = Duration::from_secs(params.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(300));
        let bookmarks = params.get("allowWatchBookmarks").is_some_and(|b| b == "true");
        let mut changes = self.changes.subscribe();
        let (mut lines, from) = {
            let store = self.store.lock().unwrap();
            let mut lines = Vec::new();
            let from = if params.get("sendInitialEvents").is_some_and(|s| s == "true") {
                let covered = store.objects.iter().filter(|(stored, _)| collection.covers(stored));
                for object in covered.flat_map(|(_, objects)| objects.values()) {
                    let object = if metadata { metadata_only(object) } else { object.clone() };
                    lines.push(json!({"type": "ADDED", "object": object}));
                }
                lines.push(
                    json!({"type": "BOOKMARK", "object": {"kind": list_kind(&collection).trim_end_matches("List"),
                    "apiVersion": "v1", "metadata": {"resourceVersion": store.revision.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"}}}}),
                );
                store.revision
            } else {
                params.get("resourceVersion").and_then(|rv| rv.parse().ok()).unwrap_or(store.revision)
            };
            (lines, from)
        };
        let store = self.store.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
        tokio::spawn(async move {
            for line in lines.drain(..) {
                let _ = sender.send(Ok(Bytes::from(format!("{line}\n")))).await;
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                let line = tokio::select! {
                    _ = &mut deadline => return,
                    _ = tick.tick() => {
                        if !bookmarks { continue; }
                        let revision = store.lock().unwrap().revision;
                        json!({"type": "BOOKMARK", "object": {"kind": list_kind(&collection).trim_end_matches("List"),
                               "apiVersion": "v1", "metadata": {"resourceVersion": revision.to_string()}}})
                    }
                    change = changes.recv() => match change {
                        Ok(change) if collection.covers(&change.collection) => {
                            let revision: u64 = change.object["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
                            if revision <= from { continue; }
                            let object = if metadata { metadata_only(&change.object) } else { change.object.clone() };
                            json!({"type": change.kind, "object": object})
                        }
                        Ok(_) => continue,
                        Err(_) => return,
                    },
                };
                if sender.send(Ok(Bytes::from(format!("{line}\n")))).await.is_err() {
                    return;
                }
            }
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from_stream(tokio_stream_of(receiver)))
            .unwrap()
    }
}

fn tokio_stream_of<T: Send + 'static>(mut receiver: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// A kubeconfig pointing at `url` (plain HTTP, a bearer token), written to `dir`.
pub fn kubeconfig(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: test, cluster: {{server: \"{url}\"}}}}]\n\
             users: [{{name: test, user: {{token: test-token}}}}]\n\
             contexts: [{{name: test, context: {{cluster: test, user: test, namespace: default}}}}]\n\
             current-context: test\n"
        ),
    )
    .unwrap();
    path
}
