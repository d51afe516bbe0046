//! The WebHDFS REST API (`/webhdfs/v1/...`), the subset that stock Spark 3.5 and 4.x use to
//! upload a cluster-mode application's local files (`spark.kubernetes.file.upload.path`) and
//! that their drivers and executors use to download them, as Hadoop's own WebHDFS client
//! (`webhdfs://`, `swebhdfs://` over the server's TLS) sends it:
//!
//! | op | method | what |
//! |---|---|---|
//! | `MKDIRS` | PUT | creates a directory and its parents; `{"boolean":true}` |
//! | `CREATE` | PUT | step 1 answers 307 with a `Location` on this server; step 2 (that URL) carries the bytes; 201 |
//! | `GETFILESTATUS` | GET | `{"FileStatus":{...}}` |
//! | `LISTSTATUS` | GET | `{"FileStatuses":{"FileStatus":[...]}}` |
//! | `OPEN` | GET | 307 to the data URL, which answers the bytes from `offset` (`length` of them) |
//! | `DELETE` | DELETE | `{"boolean":...}`; `recursive` for directories |
//! | `RENAME` | PUT | `{"boolean":...}` |
//! | `GETHOMEDIRECTORY` | GET | `{"Path":"/user/<user>"}` |
//!
//! Every request needs a grant (see [`crate::auth`]): an access token from `/oauth2/token`
//! (`Authorization: Bearer ...`, what Hadoop's OAuth2 support sends), or the credential itself
//! as the first path component. A grant sees only its own tree. Files are write-once: a file
//! that exists is never replaced (`CREATE` over it is refused), so nobody who learns an upload's
//! path can swap a jar an application loads; deleting and renaming need an access token.
//! Identical files are stored once (by sha256). Errors are Hadoop `RemoteException`s (see
//! [`error`]), so the client raises `FileNotFoundException`, `AccessControlException` and the
//! rest.

pub mod claims;
pub mod cleanup;
pub mod error;
pub mod tree;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;

use crate::api::AppState;
use crate::auth::grants::{looks_like_credential, Grant, Grants};
use crate::cleaner::OwnerPods;
use crate::limits::{RateLimiter, Usage};
use crate::secrets;
use crate::spool::Spooled;
use claims::Claims;
use error::HdfsError;
use tree::{blob_key, Entry, HdfsPath, Kind, Tree};

/// The query parameter this server adds to the URLs it redirects to (the second step of
/// `CREATE` and `OPEN`).
const DATA_STEP: &str = "staging.data";
/// Most entries one `LISTSTATUS` answers.
const MAX_LIST: usize = 10_000;
/// What the block size of a file is said to be (Hadoop splits reads by it).
const BLOCK_SIZE: u64 = 128 << 20;

/// The WebHDFS side of the server.
pub struct WebHdfs {
    pub tree: Tree,
    pub grants: Grants,
    pub claims: Claims,
    /// Held (shared) from the check for a blob to the entry that refers to it, and
    /// (exclusively) by the blob sweep, so the sweep never deletes a blob a new entry is about
    /// to refer to.
    pub gc: Arc<tokio::sync::RwLock<()>>,
    pub usage: Arc<Usage>,
    /// Uploads per grant (and per client address on the v0 API) per minute.
    pub uploads: Arc<RateLimiter>,
    /// Failed authentications per client address per minute.
    pub auth_failures: Arc<RateLimiter>,
    pub pods: Option<Arc<dyn OwnerPods>>,
    pub max_file_size: u64,
    /// `https` or `http`: the scheme of the URLs this server redirects to.
    pub scheme: &'static str,
    /// Files being written now (write-once also between two concurrent uploads).
    writing: Mutex<HashSet<(String, HdfsPath)>>,
}

impl WebHdfs {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        objects: Arc<dyn sidecars_common::objstore::ObjectStore>,
        grants: Grants,
        usage: Arc<Usage>,
        uploads: Arc<RateLimiter>,
        auth_failures: Arc<RateLimiter>,
        pods: Option<Arc<dyn OwnerPods>>,
        max_file_size: u64,
        tls: bool,
    ) -> Self {
        Self {
            tree: Tree::new(objects.clone()),
            grants,
            claims: Claims::new(objects),
            gc: Default::default(),
            usage,
            uploads,
            auth_failures,
            pods,
            max_file_size,
            scheme: if tls { "https" } else { "http" },
            writing: Mutex::new(HashSet::new()),
        }
    }
}

impl std::fmt::Debug for WebHdfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebHdfs").finish_non_exhaustive()
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhdfs/v1", any(root))
        .route("/webhdfs/v1/", any(root))
        .route("/webhdfs/v1/{*path}", any(with_path))
}

/// How a request proved its grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// An access token (or the credential) in `Authorization: Bearer`.
    Bearer,
    /// The credential as the path's first component: may read and add files, not delete,
    /// rename or change them.
    PathCredential,
}

/// One parsed request.
struct Req {
    grant: Grant,
    access: Access,
    path: HdfsPath,
    params: HashMap<String, String>,
    peer: Option<SocketAddr>,
}

impl Req {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    fn bool_param(&self, name: &str, default: bool) -> Result<bool, HdfsError> {
        match self.param(name) {
            None | Some("") => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(HdfsError::bad_request(format!(
                "parameter `{name}` must be true or false"
            ))),
        }
    }

    fn u64_param(&self, name: &str) -> Result<Option<u64>, HdfsError> {
        match self.param(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                HdfsError::bad_request(format!("parameter `{name}` must be a non-negative integer"))
            }),
        }
    }

    fn permission(&self, default: &str) -> Result<String, HdfsError> {
        let Some(p) = self.param("permission").filter(|p| !p.is_empty()) else {
            return Ok(default.to_string());
        };
        match u16::from_str_radix(p, 8) {
            Ok(v) if p.len() <= 4 && v <= 0o1777 => Ok(format!("{v:o}")),
            _ => Err(HdfsError::bad_request(
                "parameter `permission` must be an octal mode up to 1777",
            )),
        }
    }

    fn require_bearer(&self, what: &str) -> Result<(), HdfsError> {
        if self.access == Access::Bearer {
            return Ok(());
        }
        Err(HdfsError::forbidden(format!(
            "{what} needs an access token (OAuth2); a credential in the path may only read and add files"
        )))
    }
}

async fn root(State(app): State<AppState>, parts: Parts, body: Body) -> Response {
    dispatch(app, parts, String::new(), body).await
}

async fn with_path(
    State(app): State<AppState>,
    UrlPath(path): UrlPath<String>,
    parts: Parts,
    body: Body,
) -> Response {
    dispatch(app, parts, path, body).await
}

async fn dispatch(app: AppState, parts: Parts, path: String, body: Body) -> Response {
    match handle(&app, &parts, &path, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        // WebHDFS parameter names are case-insensitive; values are kept as sent
        out.entry(k.to_ascii_lowercase()).or_insert(v.into_owned());
    }
    out
}

/// One WebHDFS request: `raw_path` is the (decoded) path after `/webhdfs/v1`.
async fn handle(
    app: &AppState,
    parts: &Parts,
    raw_path: &str,
    body: Body,
) -> Result<Response, HdfsError> {
    let (method, headers, query) = (&parts.method, &parts.headers, parts.uri.query());
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(p)| *p);
    let wh = &app.webhdfs;
    let params = parse_query(query);
    let op = params
        .get("op")
        .map(|o| o.to_ascii_uppercase())
        .ok_or_else(|| HdfsError::bad_request("missing parameter `op`"))?;
    let mut segments: Vec<&str> = raw_path.split('/').filter(|c| !c.is_empty()).collect();
    let credential = match segments.first() {
        Some(first) if looks_like_credential(first) => Some(segments.remove(0).to_string()),
        _ => None,
    };
    let (grant, access) = authenticate(wh, headers, credential.as_deref(), peer).await?;
    let path =
        HdfsPath::parse(&segments.join("/")).map_err(|e| HdfsError::bad_request(e.to_string()))?;
    let req = Req {
        grant,
        access,
        path,
        params,
        peer,
    };
    let data_step = req.params.contains_key(DATA_STEP);
    match (method.as_str(), op.as_str()) {
        ("GET", "GETFILESTATUS") => get_file_status(wh, &req).await,
        ("GET", "LISTSTATUS") => list_status(wh, &req).await,
        ("GET", "GETHOMEDIRECTORY") => Ok(json(
            StatusCode::OK,
            serde_json::json!({ "Path": home_dir(req.param("user.name")) }),
        )),
        ("GET", "OPEN") if !data_step => redirect(wh, &req, parts.uri.path(), query, headers),
        ("GET", "OPEN") => open(app, &req).await,
        ("PUT", "MKDIRS") => {
            let perm = req.permission("755")?;
            mkdirs(wh, &req.grant, &req.path, &perm).await?;
            Ok(json(StatusCode::OK, serde_json::json!({ "boolean": true })))
        }
        ("PUT", "CREATE") if !data_step => {
            check_create(wh, &req).await?;
            redirect(wh, &req, parts.uri.path(), query, headers)
        }
        ("PUT", "CREATE") => create(app, &req, body).await,
        ("DELETE", "DELETE") => delete(wh, &req).await,
        ("PUT", "RENAME") => rename(wh, &req, credential.as_deref()).await,
        (m, op) => Err(HdfsError::unsupported(format!(
            "{} {} is not supported by the staging server (it serves MKDIRS, CREATE, GETFILESTATUS, LISTSTATUS, OPEN, DELETE, RENAME and GETHOMEDIRECTORY)",
            crate::bundle::shown_name(m.as_bytes()),
            crate::bundle::shown_name(op.as_bytes()),
        ))),
    }
}

/// Finds the request's grant: the credential in the path, else `Authorization: Bearer` with an
/// access token (or the credential itself). Failures are counted per client address.
async fn authenticate(
    wh: &WebHdfs,
    headers: &HeaderMap,
    path_credential: Option<&str>,
    peer: Option<SocketAddr>,
) -> Result<(Grant, Access), HdfsError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(secrets::from_authorization)
        .filter(|s| !s.is_empty());
    let (result, access) = match (path_credential, bearer) {
        (Some(c), _) => (wh.grants.verify_credential(c).await, Access::PathCredential),
        (None, Some(b)) if looks_like_credential(b) => {
            (wh.grants.verify_credential(b).await, Access::Bearer)
        }
        (None, Some(b)) => (wh.grants.verify_access_token(b).await, Access::Bearer),
        (None, None) => {
            return Err(HdfsError::unauthorized(
                "no credential: send an OAuth2 access token (Authorization: Bearer) or put the credential first in the path",
            ))
        }
    };
    match result {
        Ok(g) => Ok((g, access)),
        Err(crate::auth::grants::AuthError::Store(e)) => Err(HdfsError::unavailable(format!(
            "cannot check the credential: {e}"
        ))),
        Err(e) => {
            let who = peer.map(|p| p.ip().to_string()).unwrap_or_default();
            tracing::info!(client = %who, reason = %e, "webhdfs: credential refused");
            if let Err(wait) = wh.auth_failures.check(&format!("auth:{who}")) {
                return Err(HdfsError::rate_limited(
                    format!(
                        "too many failed authentications from this address (more than {} a minute)",
                        wh.auth_failures.limit()
                    ),
                    wait,
                ));
            }
            Err(HdfsError::unauthorized("invalid or expired credential"))
        }
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    let mut resp = (status, v.to_string()).into_response();
    // see `error`: no Content-Type on WebHDFS JSON
    resp.headers_mut().remove(header::CONTENT_TYPE);
    resp
}

fn home_dir(user: Option<&str>) -> String {
    let ok = |u: &str| {
        !u.is_empty()
            && u.len() <= 64
            && u.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    match user {
        Some(u) if ok(u) => format!("/user/{u}"),
        _ => "/user/spark".to_string(),
    }
}

fn millis(t: chrono::DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn file_status(name: &str, e: &Entry, grant: &Grant) -> serde_json::Value {
    let file = e.kind == Kind::File;
    serde_json::json!({
        "pathSuffix": name,
        "type": if file { "FILE" } else { "DIRECTORY" },
        "length": if file { e.size } else { 0 },
        "owner": grant.namespace,
        "group": grant.namespace,
        "permission": e.permission,
        "accessTime": if file { millis(e.modified) } else { 0 },
        "modificationTime": millis(e.modified),
        "blockSize": if file { BLOCK_SIZE } else { 0 },
        "replication": if file { 1 } else { 0 },
        "childrenNum": 0,
        "fileId": 0,
        "storagePolicy": 0,
    })
}

async fn get_file_status(wh: &WebHdfs, req: &Req) -> Result<Response, HdfsError> {
    let e = wh
        .tree
        .get(&req.grant.id, &req.path)
        .await?
        .ok_or_else(|| HdfsError::not_found(req.path.shown()))?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "FileStatus": file_status("", &e, &req.grant) }),
    ))
}

async fn list_status(wh: &WebHdfs, req: &Req) -> Result<Response, HdfsError> {
    let e = wh
        .tree
        .get(&req.grant.id, &req.path)
        .await?
        .ok_or_else(|| HdfsError::not_found(req.path.shown()))?;
    let statuses: Vec<serde_json::Value> = if e.is_dir() {
        match wh.tree.children(&req.grant.id, &req.path, MAX_LIST).await? {
            Ok(children) => children
                .iter()
                .map(|(name, c)| file_status(name, c, &req.grant))
                .collect(),
            Err(n) => {
                return Err(HdfsError::io(format!(
                    "the directory has {n} entries, more than the {MAX_LIST} one listing answers"
                )))
            }
        }
    } else {
        vec![file_status("", &e, &req.grant)]
    };
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "FileStatuses": { "FileStatus": statuses } }),
    ))
}

/// Answers the first step of `CREATE` and `OPEN`: a 307 to the same URL on this server with
/// [`DATA_STEP`] added (or, with `noredirect=true`, that URL as JSON), as a NameNode
/// redirects to a DataNode. Hadoop's client sends the data (or reads it) there.
fn redirect(
    wh: &WebHdfs,
    req: &Req,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, HdfsError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .ok_or_else(|| HdfsError::bad_request("missing or invalid Host header"))?;
    let q = query.unwrap_or("");
    let sep = if q.is_empty() { "" } else { "&" };
    let location = format!("{}://{host}{}?{q}{sep}{DATA_STEP}=true", wh.scheme, path);
    if req.bool_param("noredirect", false)? {
        return Ok(json(
            StatusCode::OK,
            serde_json::json!({ "Location": location }),
        ));
    }
    Ok((
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, location)],
        Body::empty(),
    )
        .into_response())
}

/// Creates `path` and its missing parents as directories (an existing directory is fine); a
/// file on the way is refused.
async fn mkdirs(
    wh: &WebHdfs,
    grant: &Grant,
    path: &HdfsPath,
    permission: &str,
) -> Result<(), HdfsError> {
    let now = Utc::now();
    let mut all = path.ancestors();
    if !path.is_root() {
        all.push(path.clone());
    }
    for p in all {
        match wh.tree.get(&grant.id, &p).await? {
            Some(e) if e.is_dir() => {}
            Some(_) if p == *path => {
                return Err(HdfsError::exists(format!(
                    "{} exists and is not a directory",
                    p.shown()
                )))
            }
            Some(_) => {
                return Err(HdfsError::parent_not_dir(format!(
                    "{} is a file, not a directory",
                    p.shown()
                )))
            }
            None => {
                let perm = if p == *path { permission } else { "755" };
                wh.tree.put(&grant.id, &p, &Entry::dir(now, perm)).await?;
            }
        }
    }
    Ok(())
}

/// What `CREATE` checks before any byte is sent: the path is free (files are write-once) and
/// its parents are (or can be) directories.
async fn check_create(wh: &WebHdfs, req: &Req) -> Result<(), HdfsError> {
    if req.path.is_root() {
        return Err(HdfsError::exists("/ is a directory"));
    }
    match wh.tree.get(&req.grant.id, &req.path).await? {
        Some(e) if e.is_dir() => Err(HdfsError::exists(format!(
            "{} is a directory",
            req.path.shown()
        ))),
        Some(_) => Err(HdfsError::exists(format!(
            "{} exists; uploaded files are never replaced (write-once), upload under a new name",
            req.path.shown()
        ))),
        None => {
            for p in req.path.ancestors() {
                if let Some(e) = wh.tree.get(&req.grant.id, &p).await? {
                    if !e.is_dir() {
                        return Err(HdfsError::parent_not_dir(format!(
                            "{} is a file, not a directory",
                            p.shown()
                        )));
                    }
                }
            }
            Ok(())
        }
    }
}

/// Marks a path as being written for as long as it lives.
struct Writing<'a> {
    wh: &'a WebHdfs,
    key: (String, HdfsPath),
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.wh
            .writing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// The second step of `CREATE`: receives the bytes, stores them (once per sha256), then
/// publishes the file's entry.
async fn create(app: &AppState, req: &Req, body: Body) -> Result<Response, HdfsError> {
    let wh = &app.webhdfs;
    if let Err(wait) = wh.uploads.check(&format!("grant:{}", req.grant.id)) {
        return Err(HdfsError::rate_limited(
            format!(
                "this credential made more than {} uploads in a minute (--uploads-per-minute)",
                wh.uploads.limit()
            ),
            wait,
        ));
    }
    let permission = req.permission("644")?;
    check_create(wh, req).await?;
    let key = (req.grant.id.clone(), req.path.clone());
    if !wh
        .writing
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone())
    {
        return Err(HdfsError::exists(format!(
            "{} is being written by another request",
            req.path.shown()
        )));
    }
    let _writing = Writing { wh, key };
    let ns = req.grant.namespace.clone();
    let mut charged = 0u64;
    let received = receive(app, body, &ns, &mut charged).await;
    let (spooled, size, sha256) = match received {
        Ok(r) => r,
        Err(e) => {
            wh.usage.settle(&ns, charged, 0);
            return Err(e);
        }
    };
    let published = async {
        // files may appear meanwhile (another replica); the parents are made now
        check_create(wh, req).await?;
        if let Some(parent) = req.path.parent() {
            mkdirs(wh, &req.grant, &parent, "755").await?;
        }
        let _gc = wh.gc.read().await;
        let objects = wh.tree.objects();
        let dedup = match objects.head(&blob_key(&sha256)).await {
            Ok(m) => m.size == size,
            Err(sidecars_common::objstore::StoreError::NotFound { .. }) => false,
            Err(e) => return Err(HdfsError::from(e)),
        };
        if dedup {
            drop(spooled);
        } else {
            spooled
                .publish(objects, &blob_key(&sha256), &sha256)
                .await?;
        }
        let now = Utc::now();
        let entry = Entry {
            kind: Kind::File,
            id: uuid::Uuid::new_v4().simple().to_string(),
            size,
            sha256: sha256.clone(),
            permission,
            created: now,
            modified: now,
        };
        wh.tree.put(&req.grant.id, &req.path, &entry).await?;
        Ok::<_, HdfsError>(dedup)
    }
    .await;
    match published {
        Ok(dedup) => {
            wh.usage.settle(&ns, charged, size);
            tracing::info!(grant = %req.grant.id, namespace = %ns, path = %req.path.shown(), size, sha256 = %sha256, dedup, "webhdfs file stored");
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, format!("webhdfs://{}", req.path))],
                Body::empty(),
            )
                .into_response())
        }
        Err(e) => {
            wh.usage.settle(&ns, charged, 0);
            Err(e)
        }
    }
}

/// Streams a request body into a spool (in the store itself when it is local) on a thread of
/// its own that writes and hashes it, within `--max-file-size` and the namespace's quota.
async fn receive(
    app: &AppState,
    body: Body,
    namespace: &str,
    charged: &mut u64,
) -> Result<(Spooled, u64, String), HdfsError> {
    use crate::api::upload::{archive, Chunks, HANDOFF};
    let wh = &app.webhdfs;
    let (spooled, out) = Spooled::create(&app.bundles.objects, &app.spool, app.bundles.fsync())
        .map_err(|e| HdfsError::internal(format!("cannot spool the upload: {e}")))?;
    let sync = spooled.flush_while_writing();
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunks>(8);
    let writer = tokio::task::spawn_blocking(move || {
        archive(
            out,
            rx,
            None,
            std::path::Path::new("the uploaded file"),
            sync,
        )
    });
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    let mut pending: Chunks = Vec::new();
    let mut pending_len = 0usize;
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(HdfsError::bad_request(format!(
                    "the upload was cut off: {e}"
                )));
                break;
            }
        };
        total += chunk.len() as u64;
        if total > wh.max_file_size {
            failure = Some(HdfsError::too_large(format!(
                "the file is larger than --max-file-size ({} bytes)",
                wh.max_file_size
            )));
            break;
        }
        if let Err(e) = wh.usage.charge(namespace, chunk.len() as u64) {
            failure = Some(HdfsError::quota(e.to_string()));
            break;
        }
        *charged += chunk.len() as u64;
        pending_len += chunk.len();
        pending.push(chunk);
        if pending_len < HANDOFF {
            continue;
        }
        pending_len = 0;
        if tx.send(std::mem::take(&mut pending)).await.is_err() {
            break; // the writer failed; its error is the answer
        }
    }
    if failure.is_none() && !pending.is_empty() {
        let _ = tx.send(pending).await;
    }
    drop(tx);
    let written = writer
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(format!("the writer failed: {e}"))));
    if let Some(f) = failure {
        return Err(f);
    }
    let (size, sha256) =
        written.map_err(|e| HdfsError::internal(format!("cannot write the upload: {e}")))?;
    if size != total {
        return Err(HdfsError::internal(format!(
            "wrote {size} of {total} bytes received"
        )));
    }
    Ok((spooled, size, sha256))
}

/// `OPEN` (second step): the file's bytes from `offset`, `length` of them (else to the end).
async fn open(app: &AppState, req: &Req) -> Result<Response, HdfsError> {
    let wh = &app.webhdfs;
    let e = wh
        .tree
        .get(&req.grant.id, &req.path)
        .await?
        .ok_or_else(|| HdfsError::not_found(req.path.shown()))?;
    if e.is_dir() {
        return Err(HdfsError::not_found(format!(
            "{} (it is a directory)",
            req.path.shown()
        )));
    }
    let offset = req.u64_param("offset")?.unwrap_or(0);
    if offset > e.size {
        return Err(HdfsError::io(format!(
            "Offset={offset} out of the range [0, {}]",
            e.size
        )));
    }
    let end = match req.u64_param("length")? {
        Some(len) => offset.saturating_add(len).min(e.size),
        None => e.size,
    };
    claim_by_reader(wh, req, &e);
    let body = if end > offset {
        crate::api::serve::object_body(&app.bundles, &blob_key(&e.sha256), offset..end, e.size)
            .await?
    } else {
        Body::empty()
    };
    app.metrics.download("webhdfs");
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, (end - offset).to_string()),
        ],
        body,
    )
        .into_response())
}

/// Records that the pods at the reader's address (in the grant's namespace) claim the file,
/// off the request's path.
fn claim_by_reader(wh: &WebHdfs, req: &Req, e: &Entry) {
    let (Some(pods), Some(peer)) = (&wh.pods, req.peer) else {
        return;
    };
    let owners = pods.owners_at(&req.grant.namespace, peer.ip());
    if owners.is_empty() {
        return;
    }
    let (claims, grant, file) = (wh.claims.clone(), req.grant.id.clone(), e.id.clone());
    tokio::spawn(async move {
        for o in owners {
            if let Err(err) = claims.record(&grant, &file, &o).await {
                tracing::warn!(error = %err, "cannot record a claim");
            }
        }
    });
}

async fn delete(wh: &WebHdfs, req: &Req) -> Result<Response, HdfsError> {
    req.require_bearer("DELETE")?;
    let recursive = req.bool_param("recursive", false)?;
    if req.path.is_root() {
        return Ok(json(
            StatusCode::OK,
            serde_json::json!({ "boolean": false }),
        ));
    }
    let Some(e) = wh.tree.get(&req.grant.id, &req.path).await? else {
        return Ok(json(
            StatusCode::OK,
            serde_json::json!({ "boolean": false }),
        ));
    };
    if e.is_dir() {
        let below = wh.tree.descendants(&req.grant.id, &req.path).await?;
        if !below.is_empty() && !recursive {
            return Err(HdfsError::not_empty(format!(
                "`{}': Directory is not empty",
                req.path.shown()
            )));
        }
        // deepest first, so a failure half-way leaves a tree that still makes sense
        let mut keys: Vec<_> = below.into_iter().map(|o| o.key).collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.matches('/').count()));
        for key in keys {
            if let Some(child) = wh.tree.read_key(&key).await? {
                remove_entry_key(wh, &req.grant, &key, &child).await?;
            }
        }
    }
    remove_entry_key(
        wh,
        &req.grant,
        &tree::entry_key(&req.grant.id, &req.path),
        &e,
    )
    .await?;
    Ok(json(StatusCode::OK, serde_json::json!({ "boolean": true })))
}

/// Removes one entry (and a file's claims), giving its bytes back to the namespace.
pub(crate) async fn remove_entry_key(
    wh: &WebHdfs,
    grant: &Grant,
    key: &str,
    e: &Entry,
) -> Result<(), HdfsError> {
    wh.tree.objects().delete(key).await?;
    if e.kind == Kind::File {
        wh.usage.release(&grant.namespace, e.size);
        if let Err(err) = wh.claims.remove_file(&grant.id, &e.id).await {
            tracing::warn!(error = %err, "cannot delete the claims of a deleted file");
        }
    }
    Ok(())
}

async fn rename(wh: &WebHdfs, req: &Req, credential: Option<&str>) -> Result<Response, HdfsError> {
    req.require_bearer("RENAME")?;
    let dest = req
        .param("destination")
        .ok_or_else(|| HdfsError::bad_request("missing parameter `destination`"))?;
    let mut parts: Vec<&str> = dest.split('/').filter(|c| !c.is_empty()).collect();
    if let (Some(first), Some(c)) = (parts.first(), credential) {
        if *first == c {
            parts.remove(0);
        }
    }
    let dest =
        HdfsPath::parse(&parts.join("/")).map_err(|e| HdfsError::bad_request(e.to_string()))?;
    let no = || {
        Ok(json(
            StatusCode::OK,
            serde_json::json!({ "boolean": false }),
        ))
    };
    if req.path.is_root() || dest.is_root() || dest.starts_with(&req.path) {
        return no();
    }
    let Some(src) = wh.tree.get(&req.grant.id, &req.path).await? else {
        return no();
    };
    if wh.tree.get(&req.grant.id, &dest).await?.is_some() {
        return no();
    }
    match dest.parent() {
        Some(p) => match wh.tree.get(&req.grant.id, &p).await? {
            Some(pe) if pe.is_dir() => {}
            _ => return no(),
        },
        None => return no(),
    }
    let g = &req.grant.id;
    if src.is_dir() {
        let depth = req.path.parts().len();
        let mut below: Vec<String> = wh
            .tree
            .descendants(g, &req.path)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        // parents first when writing, so the new tree is complete top-down
        below.sort_by_key(|k| k.matches('/').count());
        wh.tree.put(g, &dest, &src).await?;
        for key in &below {
            let (Some((_, p)), Some(e)) =
                (tree::parse_entry_key(key), wh.tree.read_key(key).await?)
            else {
                continue;
            };
            let mut moved = dest.parts().to_vec();
            moved.extend_from_slice(&p.parts()[depth..]);
            wh.tree.put(g, &HdfsPath::from_parts(moved), &e).await?;
        }
        below.reverse();
        for key in &below {
            wh.tree.objects().delete(key).await?;
        }
        wh.tree.remove(g, &req.path).await?;
    } else {
        wh.tree.put(g, &dest, &src).await?;
        wh.tree.remove(g, &req.path).await?;
    }
    Ok(json(StatusCode::OK, serde_json::json!({ "boolean": true })))
}
