//! A fake Kubernetes API server for tests (cargo feature `fake-kube`): plain HTTP on
//! 127.0.0.1, reached through a real kubeconfig, speaking the JSON and watch protocol that
//! `kube` and `kube::runtime::watcher` expect from the real one.
//!
//! What it serves (core/v1 only):
//! - pods: list and watch, cluster-wide (`/api/v1/pods`) or per namespace, with
//!   `labelSelector` (`=`, `!=`, `in`, `notin`, existence), `fieldSelector` (any dotted JSON path,
//!   e.g. `status.phase`, `spec.nodeName`), `limit`/`continue`; get and delete one pod;
//! - `pods/{name}/log` with `container`, `follow`, `timestamps`, `sinceTime`, `sinceSeconds`,
//!   `tailLines`, `limitBytes`; a follow stays open, streams lines appended later, and ends when
//!   the pod is deleted or reaches phase `Succeeded`/`Failed`;
//! - namespaces: list, watch, get (namespace `default` exists from the start);
//! - `tokenreviews` (authentication.k8s.io/v1, create) for service-account tokens issued
//!   with [`FakeApiServer::issue_token`]: a token bound to a pod stops authenticating once
//!   that pod (that uid) is gone, as a real bound token does; audiences are checked as the
//!   real server checks them (a token without audiences has the API server's,
//!   [`API_AUDIENCE`]).
//! - `subjectaccessreviews` (authorization.k8s.io/v1, create): a review allows exactly what
//!   [`FakeApiServer::allow`] granted; [`FakeApiServer::add_identity`] adds a token that
//!   authenticates as a plain user;
//! - secrets: get one ([`FakeApiServer::apply_secret`] puts them there).
//!
//! Watches behave like the real server's: without a resourceVersion (or with "0") they start
//! with synthetic `ADDED` events for what exists; with a resourceVersion they replay the changes
//! after it; `sendInitialEvents=true` ends the initial events with the `k8s.io/initial-events-end`
//! bookmark; with `allowWatchBookmarks` a `BOOKMARK` comes every second; `timeoutSeconds` ends
//! the stream. An object that stops matching the selector arrives as `DELETED`. A
//! resourceVersion older than the last [`FakeApiServer::expire_resource_versions`] gets what the
//! real server sends for a compacted version: HTTP 200, then one `ERROR` event carrying a
//! `Status` with code 410 (`Expired`), after which the watcher relists. (An HTTP 410 at watch
//! start would leave kube's watcher retrying the same version forever; the real server never
//! answers that way.)
//!
//! Every request is recorded ([`FakeApiServer::requests`], [`FakeApiServer::calls`] in RBAC
//! terms), and [`FakeApiServer::forbid`] makes a verb on a resource answer 403, so a test can
//! check that a component needs exactly the permissions its Role grants.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use k8s_openapi::api::core::v1::Pod;
//! use sidecars_common::fake_kube::FakeApiServer;
//!
//! let fake = FakeApiServer::start().await;
//! let pod: Pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "app-driver", "namespace": "spark",
//!                  "labels": {"spark-role": "driver", "spark-app-selector": "spark-123"}},
//!     "spec": {"containers": [{"name": "spark-kubernetes-driver"}]},
//!     "status": {"phase": "Running"}
//! }))?;
//! fake.apply_pod(pod);
//! fake.append_log("spark", "app-driver", "spark-kubernetes-driver", "hello");
//! // start the daemon under test with `--kubeconfig <fake.kubeconfig_path()>`, or:
//! let client = fake.client().await;
//! // ... exercise it, then:
//! fake.set_pod_phase("spark", "app-driver", "Succeeded");
//! fake.delete_pod("spark", "app-driver");
//! assert!(fake.calls().iter().all(|c| c.resource == "pods" || c.resource == "pods/log"));
//! # Ok(())
//! # }
//! ```

mod selector;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use selector::{FieldSelector, LabelSelector, SelectorError};

/// The audience of a token issued without one (the API server's own).
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc";

/// A service-account token the fake server knows.
#[derive(Debug, Clone)]
struct IssuedToken {
    namespace: String,
    service_account: String,
    /// (name, uid) of the pod the token is bound to.
    pod: Option<(String, String)>,
    audiences: Vec<String>,
    /// A plain user (name, groups) instead of the service account, for [`FakeApiServer::add_identity`].
    user: Option<(String, Vec<String>)>,
}

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

type Query_ = HashMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Namespace,
    Pod,
    Secret,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Secret => "Secret",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
            Kind::Secret => "secrets",
        }
    }
}

/// (kind, namespace or "" for cluster-scoped objects, name)
type Key = (Kind, String, String);

/// One committed change, kept for watches that resume from an older resourceVersion.
#[derive(Debug)]
struct Change {
    rv: u64,
    kind: Kind,
    ns: String,
    old: Option<Value>,
    new: Value,
    deleted: bool,
}

#[derive(Debug, Clone)]
struct LogLine {
    ts: DateTime<Utc>,
    text: String,
}

/// One API request in RBAC terms, as derived from its method and URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiCall {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
    /// `pods`, `pods/log`, `namespaces`, ...
    pub resource: String,
    /// The namespace in the URL, if any (not set for `namespaces` themselves).
    pub namespace: Option<String>,
    /// The object name in the URL, if any.
    pub name: Option<String>,
}

impl ApiCall {
    /// Classifies a request; `None` for non-resource URLs such as `/version`.
    pub fn from_request(method: &Method, path_and_query: &str) -> Option<ApiCall> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        // the core group (`/api/v1/`) or a named one (`/apis/<group>/<version>/`)
        let rest = match path.strip_prefix("/api/v1/") {
            Some(r) => r,
            None => path.strip_prefix("/apis/")?.splitn(3, '/').nth(2)?,
        };
        let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let (namespace, resource, name, sub) = match segs.as_slice() {
            ["namespaces"] => (None, "namespaces", None, None),
            ["namespaces", n] => (None, "namespaces", Some(*n), None),
            [res] => (None, *res, None, None),
            [res, n] => (None, *res, Some(*n), None),
            ["namespaces", ns, res] => (Some(*ns), *res, None, None),
            ["namespaces", ns, res, n] => (Some(*ns), *res, Some(*n), None),
            ["namespaces", ns, res, n, sub] => (Some(*ns), *res, Some(*n), Some(*sub)),
            _ => return None,
        };
        let watching = url::form_urlencoded::parse(query.as_bytes())
            .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
        let verb = match (method.as_str(), name.is_some()) {
            ("GET", _) if watching => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return None,
        };
        Some(ApiCall {
            verb: verb.to_string(),
            resource: match sub {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.to_string(),
            },
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
        })
    }
}

struct Store {
    rv: u64,
    /// Watches from a resourceVersion below this get `410 Expired`.
    oldest_valid_rv: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Arc<Change>>,
    logs: HashMap<(String, String, String), Vec<LogLine>>,
    requests: Vec<(Method, String)>,
    /// Cancelled to end every open watch (an API server restart, as far as clients can tell).
    watch_epoch: CancellationToken,
    /// (verb, resource) pairs that answer 403.
    forbidden: BTreeSet<(String, String)>,
    /// Service-account tokens TokenReviews accept.
    tokens: HashMap<String, IssuedToken>,
    /// (user or group, verb, resource, namespace) allowed, for SubjectAccessReview.
    allowed: BTreeSet<(String, String, String, String)>,
}

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Arc<Change>>,
    /// Bumped on every change to objects or logs; wakes log followers.
    poke: watch::Sender<u64>,
    shutdown: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // a test that panicked while holding the lock must not hide the real failure
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poke(&self) {
        self.poke.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Store {
    fn commit(
        &mut self,
        tx: &broadcast::Sender<Arc<Change>>,
        key: Key,
        new: Option<Value>,
    ) -> Option<Value> {
        let old = self.objects.get(&key).cloned();
        if new.is_none() && old.is_none() {
            return None;
        }
        self.rv += 1;
        let rv = self.rv.to_string();
        let deleted = new.is_none();
        let mut obj = new.or_else(|| old.clone())?;
        obj["metadata"]["resourceVersion"] = json!(rv);
        if deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), obj.clone());
        }
        let change = Arc::new(Change {
            rv: self.rv,
            kind: key.0,
            ns: key.1,
            old,
            new: obj.clone(),
            deleted,
        });
        self.history.push(change.clone());
        let _ = tx.send(change);
        Some(obj)
    }

    fn ensure_namespace(&mut self, tx: &broadcast::Sender<Arc<Change>>, name: &str) {
        let key = (Kind::Namespace, String::new(), name.to_string());
        if !self.objects.contains_key(&key) {
            self.commit(tx, key, Some(new_namespace_object(name)));
        }
    }
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn new_namespace_object(name: &str) -> Value {
    json!({
        "kind": "Namespace", "apiVersion": "v1",
        "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                     "creationTimestamp": now_rfc3339(),
                     "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

/// The fake API server. Dropping it stops the server and deletes its kubeconfig.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeApiServer {
    /// Starts the server on a free port of 127.0.0.1 and writes its kubeconfig.
    ///
    /// Panics if that fails: it is a test fixture, and a test cannot go on without it.
    pub async fn start() -> Self {
        Self::try_start()
            .await
            .expect("cannot start the fake Kubernetes API server")
    }

    /// [`FakeApiServer::start`] that returns the error instead of panicking.
    pub async fn try_start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (changes, _) = broadcast::channel(4096);
        let (poke, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                rv: 0,
                oldest_valid_rv: 0,
                objects: BTreeMap::new(),
                history: Vec::new(),
                logs: HashMap::new(),
                requests: Vec::new(),
                watch_epoch: CancellationToken::new(),
                forbidden: BTreeSet::new(),
                tokens: HashMap::new(),
                allowed: BTreeSet::new(),
            }),
            changes,
            poke,
            shutdown: CancellationToken::new(),
        });
        shared.lock().ensure_namespace(&shared.changes, "default");

        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        std::fs::write(&kubeconfig, kubeconfig_yaml(addr))?;

        let app = router(shared.clone());
        let stop = shared.shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!("fake Kubernetes API server on {addr} stopped: {e}");
            }
        });
        Ok(Self {
            shared,
            addr,
            kubeconfig,
            _dir: dir,
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context points at this server (namespace `default`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client built from [`FakeApiServer::kubeconfig_path`] by the same code the daemons use.
    pub async fn client(&self) -> kube::Client {
        crate::kube::client(Some(&self.kubeconfig))
            .await
            .expect("cannot build a client for the fake Kubernetes API server")
    }

    /// Creates or replaces a pod (an `ADDED` or `MODIFIED` event) and returns it as stored.
    ///
    /// Fills in what the API server would: namespace `default` when missing (and creates the
    /// namespace), a name from `generateName`, `uid`, `creationTimestamp`, `resourceVersion`,
    /// and phase `Pending` when the pod has no status. Replacing keeps `uid` and
    /// `creationTimestamp` unless the new pod sets them.
    pub fn apply_pod(&self, pod: Pod) -> Pod {
        let mut obj = serde_json::to_value(&pod).expect("a Pod always serialises");
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        let name = match obj.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                let prefix = obj
                    .pointer("/metadata/generateName")
                    .and_then(Value::as_str)
                    .expect("apply_pod needs metadata.name or metadata.generateName")
                    .to_string();
                format!(
                    "{prefix}{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..5]
                )
            }
        };
        obj["kind"] = json!("Pod");
        obj["apiVersion"] = json!("v1");
        obj["metadata"]["name"] = json!(name);
        obj["metadata"]["namespace"] = json!(ns);
        if obj.get("status").is_none_or(Value::is_null) {
            obj["status"] = json!({"phase": "Pending"});
        }
        let key = (Kind::Pod, ns.clone(), name);
        let stored = {
            let mut store = self.shared.lock();
            store.ensure_namespace(&self.shared.changes, &ns);
            let old = store.objects.get(&key);
            for field in ["uid", "creationTimestamp"] {
                if obj["metadata"].get(field).is_none_or(Value::is_null) {
                    let kept = old.and_then(|o| o["metadata"].get(field)).cloned();
                    obj["metadata"][field] = kept.unwrap_or_else(|| match field {
                        "uid" => json!(uuid::Uuid::new_v4().to_string()),
                        _ => json!(now_rfc3339()),
                    });
                }
            }
            store.commit(&self.shared.changes, key, Some(obj))
        };
        self.shared.poke();
        stored
            .and_then(|v| serde_json::from_value(v).ok())
            .expect("a stored Pod always deserialises")
    }

    /// Issues a service-account token of `namespace`/`service_account` that TokenReviews
    /// accept: bound to the pod `pod` (its current uid) if given, for `audiences` (none: the
    /// API server's, [`API_AUDIENCE`]).
    pub fn issue_token(
        &self,
        namespace: &str,
        service_account: &str,
        pod: Option<&str>,
        audiences: &[&str],
    ) -> String {
        let token = format!("fake-sa-{}", uuid::Uuid::new_v4().simple());
        let mut store = self.shared.lock();
        let pod = pod.map(|name| {
            let key = (Kind::Pod, namespace.to_string(), name.to_string());
            let uid = store
                .objects
                .get(&key)
                .and_then(|p| p.pointer("/metadata/uid"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("issue_token: no pod {namespace}/{name}"))
                .to_string();
            (name.to_string(), uid)
        });
        store.tokens.insert(
            token.clone(),
            IssuedToken {
                namespace: namespace.to_string(),
                service_account: service_account.to_string(),
                pod,
                audiences: audiences.iter().map(|a| a.to_string()).collect(),
                user: None,
            },
        );
        token
    }

    /// Creates or replaces a Secret (namespace `default` if unset), for `get` only.
    pub fn apply_secret(&self, secret: k8s_openapi::api::core::v1::Secret) {
        let mut obj = serde_json::to_value(&secret).expect("a Secret always serialises");
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .expect("apply_secret needs metadata.name")
            .to_string();
        obj["kind"] = json!("Secret");
        obj["apiVersion"] = json!("v1");
        obj["metadata"]["namespace"] = json!(ns);
        let mut store = self.shared.lock();
        store.ensure_namespace(&self.shared.changes, &ns);
        store.commit(&self.shared.changes, (Kind::Secret, ns, name), Some(obj));
    }

    /// Deletes a pod at once (a `DELETED` event); ends log follows on it. False if absent.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        let key = (Kind::Pod, namespace.to_string(), name.to_string());
        let gone = self.shared.lock().commit(&self.shared.changes, key, None);
        self.shared.poke();
        gone.is_some()
    }

    /// Starts a graceful deletion the way `kubectl delete` does: sets
    /// `metadata.deletionTimestamp` (a `MODIFIED` event); [`FakeApiServer::delete_pod`] then
    /// finishes it. False if the pod does not exist.
    pub fn begin_pod_deletion(&self, namespace: &str, name: &str) -> bool {
        let key = (Kind::Pod, namespace.to_string(), name.to_string());
        let done = {
            let mut store = self.shared.lock();
            match store.objects.get(&key).cloned() {
                Some(mut obj) => {
                    obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                    obj["metadata"]["deletionGracePeriodSeconds"] = json!(30);
                    store.commit(&self.shared.changes, key, Some(obj)).is_some()
                }
                None => false,
            }
        };
        self.shared.poke();
        done
    }

    /// Sets `status.phase` (a `MODIFIED` event). `Succeeded` or `Failed` end log follows on
    /// the pod once its lines are sent. False if the pod does not exist.
    pub fn set_pod_phase(&self, namespace: &str, name: &str, phase: &str) -> bool {
        let key = (Kind::Pod, namespace.to_string(), name.to_string());
        let done = {
            let mut store = self.shared.lock();
            match store.objects.get(&key).cloned() {
                Some(mut obj) => {
                    if !obj.get("status").is_some_and(Value::is_object) {
                        obj["status"] = json!({});
                    }
                    obj["status"]["phase"] = json!(phase);
                    store.commit(&self.shared.changes, key, Some(obj)).is_some()
                }
                None => false,
            }
        };
        self.shared.poke();
        done
    }

    /// The pod as stored now.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let key = (Kind::Pod, namespace.to_string(), name.to_string());
        let obj = self.shared.lock().objects.get(&key).cloned()?;
        serde_json::from_value(obj).ok()
    }

    /// Every pod, ordered by namespace and name.
    pub fn pods(&self) -> Vec<Pod> {
        self.shared
            .lock()
            .objects
            .iter()
            .filter(|(k, _)| k.0 == Kind::Pod)
            .filter_map(|(_, v)| serde_json::from_value(v.clone()).ok())
            .collect()
    }

    /// Creates or replaces a namespace.
    pub fn apply_namespace(&self, namespace: Namespace) -> Namespace {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let mut obj = new_namespace_object(&name);
        let given = serde_json::to_value(&namespace).expect("a Namespace always serialises");
        merge_json(&mut obj, given);
        let key = (Kind::Namespace, String::new(), name);
        let stored = self
            .shared
            .lock()
            .commit(&self.shared.changes, key, Some(obj));
        stored
            .and_then(|v| serde_json::from_value(v).ok())
            .expect("a stored Namespace always deserialises")
    }

    /// Deletes a namespace and its pods. False if it did not exist.
    pub fn delete_namespace(&self, name: &str) -> bool {
        let gone = {
            let mut store = self.shared.lock();
            let pods: Vec<Key> = store
                .objects
                .keys()
                .filter(|k| k.0 == Kind::Pod && k.1 == name)
                .cloned()
                .collect();
            for key in pods {
                store.commit(&self.shared.changes, key, None);
            }
            let key = (Kind::Namespace, String::new(), name.to_string());
            store.commit(&self.shared.changes, key, None).is_some()
        };
        self.shared.poke();
        gone
    }

    /// Appends one line to a container's log, stamped with the current time.
    pub fn append_log(&self, namespace: &str, pod: &str, container: &str, line: &str) {
        self.append_log_at(namespace, pod, container, Utc::now(), line);
    }

    /// Appends one line with a chosen timestamp (for `sinceTime` tests). Lines are served in
    /// the order they were appended, as the kubelet would.
    pub fn append_log_at(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        ts: DateTime<Utc>,
        line: &str,
    ) {
        let key = (
            namespace.to_string(),
            pod.to_string(),
            container.to_string(),
        );
        self.shared
            .lock()
            .logs
            .entry(key)
            .or_default()
            .push(LogLine {
                ts,
                text: line.trim_end_matches('\n').to_string(),
            });
        self.shared.poke();
    }

    /// Makes every resourceVersion handed out so far too old and closes open watches, so each
    /// watcher reconnects, gets `ERROR 410 Expired`, and relists.
    pub fn expire_resource_versions(&self) {
        let mut store = self.shared.lock();
        store.rv += 1;
        store.oldest_valid_rv = store.rv;
        store.history.clear();
        store.watch_epoch.cancel();
        store.watch_epoch = CancellationToken::new();
    }

    /// Closes open watches without expiring anything: watchers resume from their last
    /// resourceVersion and miss nothing.
    pub fn close_watches(&self) {
        let mut store = self.shared.lock();
        store.watch_epoch.cancel();
        store.watch_epoch = CancellationToken::new();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Every request so far: method and path with query, in arrival order.
    pub fn requests(&self) -> Vec<(Method, String)> {
        self.shared.lock().requests.clone()
    }

    /// Every resource request so far in RBAC terms (verb, resource, namespace, name).
    pub fn calls(&self) -> Vec<ApiCall> {
        self.requests()
            .iter()
            .filter_map(|(m, pq)| ApiCall::from_request(m, pq))
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Makes TokenReview authenticate `token` as the user `user` in `groups` (for the API
    /// server's audience, bound to no pod).
    pub fn add_identity(&self, token: &str, user: &str, groups: &[&str]) {
        self.shared.lock().tokens.insert(
            token.to_string(),
            IssuedToken {
                namespace: String::new(),
                service_account: String::new(),
                pod: None,
                audiences: Vec::new(),
                user: Some((
                    user.to_string(),
                    groups.iter().map(|g| g.to_string()).collect(),
                )),
            },
        );
    }

    /// Makes SubjectAccessReview allow `who` (a user or a group) to `verb` `resource` in
    /// `namespace`.
    pub fn allow(&self, who: &str, verb: &str, resource: &str, namespace: &str) {
        self.shared.lock().allowed.insert((
            who.to_string(),
            verb.to_string(),
            resource.to_string(),
            namespace.to_string(),
        ));
    }

    /// Makes `verb` on `resource` (e.g. `"delete"`, `"pods"`) answer 403 Forbidden from now on.
    pub fn forbid(&self, verb: &str, resource: &str) {
        self.shared
            .lock()
            .forbidden
            .insert((verb.to_string(), resource.to_string()));
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

fn merge_json(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                merge_json(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

fn kubeconfig_yaml(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
         current-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n"
    )
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api/v1/pods", get(list_all_pods))
        .route("/api/v1/namespaces", get(list_namespaces))
        .route("/api/v1/namespaces/{ns}", get(get_namespace))
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(get_pod).delete(delete_pod),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            axum::routing::post(token_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            axum::routing::post(access_review),
        )
        .route("/api/v1/namespaces/{ns}/secrets/{name}", get(get_secret))
        .fallback(unknown)
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

async fn record(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let call = ApiCall::from_request(&method, &pq);
    let forbidden = {
        let mut store = shared.lock();
        store.requests.push((method, pq));
        call.filter(|c| {
            store
                .forbidden
                .contains(&(c.verb.clone(), c.resource.clone()))
        })
    };
    if let Some(c) = forbidden {
        let scope = match &c.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let (res, sub) = c.resource.split_once('/').unwrap_or((&c.resource, ""));
        let shown = if sub.is_empty() {
            res.to_string()
        } else {
            format!("{res}/{sub}")
        };
        return status_response(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{shown} is forbidden: User \"system:serviceaccount:default:fake\" cannot {} \
                 resource \"{res}\" in API group \"\" {scope}",
                c.verb
            ),
        );
    }
    next.run(req).await
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
                "platform": "linux/amd64", "goVersion": "go1.24", "compiler": "gc",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z"}),
    )
}

async fn access_review(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(mut review) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("SubjectAccessReview: body is not JSON".into());
    };
    let spec = &review["spec"];
    let attrs = &spec["resourceAttributes"];
    let field = |v: &Value| v.as_str().unwrap_or("").to_string();
    let (verb, resource, ns) = (
        field(&attrs["verb"]),
        field(&attrs["resource"]),
        field(&attrs["namespace"]),
    );
    let mut subjects = vec![field(&spec["user"])];
    for g in spec["groups"].as_array().into_iter().flatten() {
        subjects.push(field(g));
    }
    let allowed = {
        let store = shared.lock();
        subjects.iter().any(|s| {
            !s.is_empty()
                && store
                    .allowed
                    .contains(&(s.clone(), verb.clone(), resource.clone(), ns.clone()))
        })
    };
    review["status"] = json!({"allowed": allowed});
    json_response(StatusCode::CREATED, &review)
}

async fn unknown(req: Request) -> Response {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "the fake API server does not serve {} {}",
            req.method(),
            req.uri().path()
        ),
    )
}

/// `POST tokenreviews`: authenticates a token issued by [`FakeApiServer::issue_token`].
async fn token_review(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("cannot decode the TokenReview: {e}")),
    };
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    let wanted: Vec<String> = review
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let denied = |why: &str| json!({"authenticated": false, "error": why});
    let status = {
        let store = shared.lock();
        match store.tokens.get(token) {
            None => denied("invalid bearer token"),
            Some(t) => {
                let has: Vec<String> = if t.audiences.is_empty() {
                    vec![API_AUDIENCE.to_string()]
                } else {
                    t.audiences.clone()
                };
                let want = if wanted.is_empty() {
                    vec![API_AUDIENCE.to_string()]
                } else {
                    wanted.clone()
                };
                let common: Vec<&String> = want.iter().filter(|a| has.contains(a)).collect();
                let pod_ok = t.pod.as_ref().is_none_or(|(name, uid)| {
                    store
                        .objects
                        .get(&(Kind::Pod, t.namespace.clone(), name.clone()))
                        .and_then(|p| p.pointer("/metadata/uid"))
                        .and_then(Value::as_str)
                        == Some(uid.as_str())
                });
                if common.is_empty() {
                    denied("token audiences is invalid for the target audiences")
                } else if !pod_ok {
                    denied("the pod the token was bound to does not exist any more")
                } else {
                    let mut extra = serde_json::Map::new();
                    if let Some((name, uid)) = &t.pod {
                        extra.insert(
                            "authentication.kubernetes.io/pod-name".into(),
                            json!([name]),
                        );
                        extra.insert("authentication.kubernetes.io/pod-uid".into(), json!([uid]));
                    }
                    let (username, groups) = match &t.user {
                        Some((user, groups)) => (user.clone(), json!(groups)),
                        None => (
                            format!(
                                "system:serviceaccount:{}:{}",
                                t.namespace, t.service_account
                            ),
                            json!([
                                "system:serviceaccounts",
                                format!("system:serviceaccounts:{}", t.namespace),
                                "system:authenticated"
                            ]),
                        ),
                    };
                    json!({
                        "authenticated": true,
                        "audiences": common,
                        "user": {
                            "username": username,
                            "uid": uuid::Uuid::new_v4().to_string(),
                            "groups": groups,
                            "extra": extra,
                        }
                    })
                }
            }
        }
    };
    json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": review.get("spec").cloned().unwrap_or(Value::Null),
            "status": status,
        }),
    )
}

async fn list_all_pods(State(shared): State<Arc<Shared>>, Query(q): Query<Query_>) -> Response {
    collection(shared, Kind::Pod, None, q)
}

async fn list_pods(
    State(shared): State<Arc<Shared>>,
    UrlPath(ns): UrlPath<String>,
    Query(q): Query<Query_>,
) -> Response {
    collection(shared, Kind::Pod, Some(ns), q)
}

async fn list_namespaces(State(shared): State<Arc<Shared>>, Query(q): Query<Query_>) -> Response {
    collection(shared, Kind::Namespace, None, q)
}

async fn get_namespace(
    State(shared): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let key = (Kind::Namespace, String::new(), name.clone());
    match shared.lock().objects.get(&key) {
        Some(obj) => json_response(StatusCode::OK, obj),
        None => not_found(Kind::Namespace, &name),
    }
}

async fn get_pod(
    State(shared): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    let key = (Kind::Pod, ns, name.clone());
    match shared.lock().objects.get(&key) {
        Some(obj) => json_response(StatusCode::OK, obj),
        None => not_found(Kind::Pod, &name),
    }
}

async fn get_secret(
    State(shared): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    let key = (Kind::Secret, ns, name.clone());
    match shared.lock().objects.get(&key) {
        Some(obj) => json_response(StatusCode::OK, obj),
        None => not_found(Kind::Secret, &name),
    }
}

async fn delete_pod(
    State(shared): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    let key = (Kind::Pod, ns, name.clone());
    let gone = shared.lock().commit(&shared.changes, key, None);
    shared.poke();
    match gone {
        Some(obj) => json_response(StatusCode::OK, &obj),
        None => not_found(Kind::Pod, &name),
    }
}

fn flag(q: &Query_, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true" || v == "1")
}

/// Error answers are boxed: a `Response` is too big to travel in every `Result`.
type Refusal = Box<Response>;

fn number<T: std::str::FromStr>(q: &Query_, name: &str) -> Result<Option<T>, Refusal> {
    match q.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Box::new(bad_request(format!(
                "{name}: Invalid value: {v:?}: must be a non-negative integer"
            )))
        }),
    }
}

/// List or watch of a collection: `ns` is `None` for the cluster-wide path.
fn collection(shared: Arc<Shared>, kind: Kind, ns: Option<String>, q: Query_) -> Response {
    let labels = match LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(e) => return bad_request(format!("labelSelector: {e}")),
    };
    let fields = match FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(e) => return bad_request(format!("fieldSelector: {e}")),
    };
    let filter = Filter {
        kind,
        ns,
        labels,
        fields,
    };
    if flag(&q, "watch") {
        start_watch(shared, filter, &q)
    } else {
        list(&shared, &filter, &q)
    }
}

struct Filter {
    kind: Kind,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn in_scope(&self, kind: Kind, ns: &str) -> bool {
        kind == self.kind && self.ns.as_deref().is_none_or(|want| want == ns)
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The watch event a change becomes for this watch, if any: objects entering or leaving
    /// the selection arrive as ADDED or DELETED, as with the real server.
    fn event(&self, c: &Change) -> Option<Value> {
        if !self.in_scope(c.kind, &c.ns) {
            return None;
        }
        let new_m = self.matches(&c.new);
        let ty = if c.deleted {
            new_m.then_some("DELETED")?
        } else {
            let old_m = c.old.as_ref().is_some_and(|o| self.matches(o));
            match (old_m, new_m) {
                (false, true) => "ADDED",
                (true, true) => "MODIFIED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        };
        Some(json!({"type": ty, "object": c.new}))
    }
}

fn list(shared: &Shared, filter: &Filter, q: &Query_) -> Response {
    let limit = match number::<usize>(q, "limit") {
        Ok(l) => l.filter(|l| *l > 0),
        Err(r) => return *r,
    };
    let offset = match q.get("continue").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match c.parse::<usize>() {
            Ok(o) => o,
            Err(_) => return bad_request(format!("continue: Invalid value: {c:?}")),
        },
    };
    let store = shared.lock();
    let all: Vec<&Value> = store
        .objects
        .iter()
        .filter(|(k, v)| filter.in_scope(k.0, &k.1) && filter.matches(v))
        .map(|(_, v)| v)
        .collect();
    let end = limit.map_or(all.len(), |l| (offset + l).min(all.len()));
    let items: Vec<Value> = all
        .get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|v| {
            // list items carry no kind/apiVersion on the real server either
            let mut v = (*v).clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            v
        })
        .collect();
    let mut metadata = json!({"resourceVersion": store.rv.to_string()});
    if end < all.len() {
        metadata["continue"] = json!(end.to_string());
        metadata["remainingItemCount"] = json!(all.len() - end);
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", filter.kind.name()), "apiVersion": "v1",
                "metadata": metadata, "items": items}),
    )
}

fn bookmark(kind: Kind, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {"kind": kind.name(), "apiVersion": "v1", "metadata": meta}})
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn start_watch(shared: Arc<Shared>, filter: Filter, q: &Query_) -> Response {
    let timeout = match number::<u64>(q, "timeoutSeconds") {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let bookmarks = flag(q, "allowWatchBookmarks");
    let rv_param = q.get("resourceVersion").filter(|v| !v.is_empty());
    let from_rv = match rv_param.map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return bad_request(format!(
                "resourceVersion: Invalid value: {:?}: must be a number",
                rv_param.map_or("", |v| v.as_str())
            ))
        }
    };

    // Subscribing and taking the backlog under one lock means no change is missed or doubled.
    let (initial, live, start_rv, epoch, expired) = {
        let store = shared.lock();
        let live = shared.changes.subscribe();
        let mut initial = Vec::new();
        let mut expired = false;
        let synthetic = flag(q, "sendInitialEvents") || matches!(from_rv, None | Some(0));
        if synthetic {
            for (k, v) in &store.objects {
                if filter.in_scope(k.0, &k.1) && filter.matches(v) {
                    initial.push(line(&json!({"type": "ADDED", "object": v})));
                }
            }
            if flag(q, "sendInitialEvents") {
                initial.push(line(&bookmark(filter.kind, store.rv, true)));
            }
        } else if let Some(rv) = from_rv.filter(|rv| *rv < store.oldest_valid_rv) {
            expired = true;
            initial.push(line(&json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {rv} ({})", store.oldest_valid_rv),
                "reason": "Expired", "code": 410}})));
        } else {
            let from = from_rv.unwrap_or(0);
            for c in store.history.iter().filter(|c| c.rv > from) {
                if let Some(ev) = filter.event(c) {
                    initial.push(line(&ev));
                }
            }
        }
        let start_rv = from_rv
            .filter(|_| !synthetic)
            .unwrap_or(store.rv)
            .max(store.rv);
        (initial, live, start_rv, store.watch_epoch.clone(), expired)
    };

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let kind = filter.kind;
    tokio::spawn(async move {
        for l in initial {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        let mut live = live;
        let deadline = timeout.map(|s| Instant::now() + Duration::from_secs(s));
        let mut ticks =
            tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
        let mut last_rv = start_rv;
        loop {
            let msg = tokio::select! {
                // closing wins over pending changes, so a watch closed by
                // expire_resource_versions() never delivers what came after
                biased;
                _ = shared.shutdown.cancelled() => break,
                _ = epoch.cancelled() => break,
                _ = tx.closed() => break,
                _ = sleep_until(deadline) => break,
                _ = ticks.tick(), if bookmarks => line(&bookmark(kind, last_rv, false)),
                got = live.recv() => match got {
                    Ok(c) if c.rv <= last_rv => continue,
                    Ok(c) => {
                        last_rv = c.rv;
                        match filter.event(&c) {
                            Some(ev) => line(&ev),
                            None => continue,
                        }
                    }
                    // a slow reader: end the stream, the client resumes from its last version
                    Err(_) => break,
                },
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    streaming_response("application/json", rx)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn streaming_response(content_type: &'static str, rx: mpsc::Receiver<Bytes>) -> Response {
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// What a log request asks for, validated.
struct LogRequest {
    key: (String, String, String),
    uid: Value,
    follow: bool,
    timestamps: bool,
    since: Option<DateTime<Utc>>,
    tail: Option<usize>,
    limit_bytes: Option<usize>,
}

impl LogRequest {
    fn wanted(&self, l: &LogLine) -> bool {
        self.since.is_none_or(|s| l.ts >= s)
    }

    fn render(&self, l: &LogLine) -> String {
        if self.timestamps {
            format!(
                "{} {}\n",
                l.ts.to_rfc3339_opts(SecondsFormat::Nanos, true),
                l.text
            )
        } else {
            format!("{}\n", l.text)
        }
    }

    /// Lines from index `from` on (the first batch cut to `tailLines`), the next index, and
    /// whether the log is finished (pod gone, replaced, or in a terminal phase).
    fn next_batch(&self, store: &Store, from: usize) -> (String, usize, bool) {
        let lines = store.logs.get(&self.key).map_or(&[][..], Vec::as_slice);
        let fresh: Vec<&LogLine> = lines
            .get(from..)
            .unwrap_or_default()
            .iter()
            .filter(|l| self.wanted(l))
            .collect();
        let fresh = match self.tail {
            Some(n) if from == 0 => &fresh[fresh.len().saturating_sub(n)..],
            _ => &fresh[..],
        };
        let text: String = fresh.iter().map(|l| self.render(l)).collect();
        let pod_key = (Kind::Pod, self.key.0.clone(), self.key.1.clone());
        let finished = match store.objects.get(&pod_key) {
            None => true,
            Some(p) => {
                p.pointer("/metadata/uid") != Some(&self.uid)
                    || matches!(
                        p.pointer("/status/phase").and_then(Value::as_str),
                        Some("Succeeded" | "Failed")
                    )
            }
        };
        (text, lines.len(), finished)
    }
}

fn parse_log_request(
    store: &Store,
    ns: &str,
    name: &str,
    q: &Query_,
) -> Result<LogRequest, Refusal> {
    let pod = store
        .objects
        .get(&(Kind::Pod, ns.to_string(), name.to_string()))
        .ok_or_else(|| Box::new(not_found(Kind::Pod, name)))?;
    let names: Vec<String> = ["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if names.is_empty() || names.contains(c) => c.clone(),
        Some(c) => {
            return Err(Box::new(bad_request(format!(
                "container {c} is not valid for pod {name}"
            ))))
        }
        None => match names.as_slice() {
            [one] => one.clone(),
            [] => String::new(),
            many => {
                return Err(Box::new(bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    many.join(" ")
                ))))
            }
        },
    };
    if flag(q, "previous") {
        return Err(Box::new(bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        ))));
    }
    let since_time = match q.get("sinceTime").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|e| {
                    Box::new(bad_request(format!("sinceTime: Invalid value: {s:?}: {e}")))
                })?
                .with_timezone(&Utc),
        ),
    };
    let since_seconds = number::<i64>(q, "sinceSeconds")?;
    if since_time.is_some() && since_seconds.is_some() {
        return Err(Box::new(bad_request(
            "at most one of sinceTime or sinceSeconds may be specified".to_string(),
        )));
    }
    let since = since_time
        .or_else(|| since_seconds.map(|s| Utc::now() - chrono::Duration::seconds(s.max(0))));
    Ok(LogRequest {
        key: (ns.to_string(), name.to_string(), container),
        uid: pod.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        follow: flag(q, "follow"),
        timestamps: flag(q, "timestamps"),
        since,
        tail: number::<usize>(q, "tailLines")?,
        limit_bytes: number::<usize>(q, "limitBytes")?,
    })
}

async fn pod_log(
    State(shared): State<Arc<Shared>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    Query(q): Query<Query_>,
) -> Response {
    let req = match parse_log_request(&shared.lock(), &ns, &name, &q) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let mut budget = req.limit_bytes.unwrap_or(usize::MAX);
    let mut take = move |mut text: String| {
        if text.len() > budget {
            let mut cut = budget;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        budget -= text.len();
        (text, budget == 0)
    };
    if !req.follow {
        let (text, _, _) = req.next_batch(&shared.lock(), 0);
        let (text, _) = take(text);
        return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response();
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut pokes = shared.poke.subscribe();
        let mut from = 0;
        loop {
            pokes.borrow_and_update();
            let (text, next, finished) = req.next_batch(&shared.lock(), from);
            from = next;
            let (text, spent) = take(text);
            if !text.is_empty() && tx.send(Bytes::from(text)).await.is_err() {
                return;
            }
            if finished || spent {
                return;
            }
            tokio::select! {
                changed = pokes.changed() => if changed.is_err() { return },
                _ = shared.shutdown.cancelled() => return,
                _ = tx.closed() => return,
            }
        }
    });
    streaming_response("text/plain", rx)
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn status_response(code: StatusCode, reason: &str, message: String) -> Response {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

fn bad_request(message: String) -> Response {
    status_response(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn not_found(kind: Kind, name: &str) -> Response {
    let mut resp = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{} \"{name}\" not found", kind.plural()), "reason": "NotFound",
        "details": {"name": name, "kind": kind.plural()}, "code": 404});
    if kind == Kind::Namespace {
        resp["details"]["kind"] = json!("namespaces");
    }
    json_response(StatusCode::NOT_FOUND, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_rbac_verbs() {
        let c = |m: Method, pq: &str| ApiCall::from_request(&m, pq).map(|c| (c.verb, c.resource));
        let pair = |v: &str, r: &str| Some((v.to_string(), r.to_string()));
        assert_eq!(
            c(Method::GET, "/api/v1/pods?labelSelector=a"),
            pair("list", "pods")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/pods?watch=true&resourceVersion=3"),
            pair("watch", "pods")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/s/pods/p"),
            pair("get", "pods")
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/s/pods/p"),
            pair("delete", "pods")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/s/pods/p/log?follow=true"),
            pair("get", "pods/log")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces?watch=1"),
            pair("watch", "namespaces")
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/s"),
            pair("get", "namespaces")
        );
        assert_eq!(
            c(Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews"),
            pair("create", "tokenreviews")
        );
        assert_eq!(c(Method::GET, "/version"), None);
        let full = ApiCall::from_request(&Method::GET, "/api/v1/namespaces/s/pods/p/log").unwrap();
        assert_eq!(
            (full.namespace.as_deref(), full.name.as_deref()),
            (Some("s"), Some("p"))
        );
    }
}
