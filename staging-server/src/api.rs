//! The HTTP API: the original v0 routes, kept byte-compatible so existing clients work, plus
//! our additions (a manifest with sha256s, and per-file download URLs that stock Spark can
//! fetch).
//!
//! | route | auth |
//! |---|---|
//! | `POST /api/v0/resources[/]` multipart `resources` + `resourcesOwner` | none (as the original) |
//! | `GET /api/v0/resources/{id}` the bundle as uploaded | `Authorization: <secret>` or `Bearer <secret>` |
//! | `GET /api/v0/resources/{id}/manifest` ids, sha256s, file paths, download token | secret |
//! | `GET /api/v0/files/{id}/{token}/{name...}` one file; the last segment is its name | token in the path |
//! | `GET /api/v0/ping` | none |
//!
//! The token sits in the path before the file name because Spark names a downloaded file after
//! the URL's last path segment. Downloads honour `Range` and `If-None-Match` (the ETag is the
//! sha256) and send `X-Sha256`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;

use crate::bundle::{self, BundleError, Limits};
use crate::metrics::Metrics;
use crate::secrets;
use crate::store::{self, BundleMeta, Bundles, Owner};

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    pub bundles: Bundles,
    pub spool: PathBuf,
    pub max_bundle_size: u64,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AppState) -> Router {
    // Multipart framing adds a little to the bundle itself; the exact bundle limit is
    // enforced while streaming so the client gets a 413 that says what the limit is.
    let body_limit = state
        .max_bundle_size
        .saturating_add(1 << 20)
        .min(usize::MAX as u64) as usize;
    Router::new()
        .route("/api/v0/resources", post(upload))
        .route("/api/v0/resources/", post(upload))
        .route("/api/v0/resources/{id}", get(download_bundle))
        .route("/api/v0/resources/{id}/manifest", get(manifest))
        .route("/api/v0/files/{id}/{token}/{*name}", get(download_file))
        .route(
            "/api/v0/ping",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "pong") }),
        )
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// An error response: status plus a one-line message naming what was wrong.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self(status, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::error!(status = %self.0, "{}", self.1);
        } else {
            tracing::info!(status = %self.0, "{}", self.1);
        }
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.1),
        )
            .into_response()
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

/// The v0 upload answer; exactly these two fields, because the original client's JSON
/// mapper refuses unknown ones.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IdAndSecret {
    resource_id: String,
    resource_secret: String,
}

/// A spool directory removed when the upload ends, however it ends.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Chunks of an upload as they arrived, handed between the receiving stages together.
type Chunks = Vec<Bytes>;

/// A blocking reader over chunks arriving on a channel, for the checking thread. It is a
/// `BufRead` over the chunks themselves, so the decoder reads them in place.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Chunks>,
    batch: std::vec::IntoIter<Bytes>,
    cur: Bytes,
}

impl std::io::BufRead for ChannelReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.cur.is_empty() {
            if let Some(b) = self.batch.next() {
                self.cur = b;
                continue;
            }
            match self.rx.blocking_recv() {
                Some(batch) => self.batch = batch.into_iter(),
                None => break,
            }
        }
        Ok(&self.cur)
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.cur.len());
        bytes::Buf::advance(&mut self.cur, amt);
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        let avail = self.fill_buf()?;
        let n = buf.len().min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

async fn upload(
    State(app): State<AppState>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > app.max_bundle_size.saturating_add(1 << 20) {
            app.metrics.upload_result("too_large");
            return Err(too_large(app.max_bundle_size));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let spool_dir = app.spool.join(&id);
    tokio::fs::create_dir_all(&spool_dir).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot create {}: {e}", spool_dir.display()),
        )
    })?;
    let spool = Spool(spool_dir);
    let started = std::time::Instant::now();
    let mut owner: Option<Owner> = None;
    let mut received: Option<Received> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e, app.max_bundle_size, &app.metrics)),
        };
        match field.name() {
            Some("resources") => {
                if received.is_some() {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "more than one `resources` part",
                    ));
                }
                received = Some(receive_bundle(&app, &spool.0, field).await?);
            }
            Some("resourcesOwner") => {
                let text = field
                    .bytes()
                    .await
                    .map_err(|e| multipart_error(e, app.max_bundle_size, &app.metrics))?;
                if text.len() > 64 << 10 {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "`resourcesOwner` is larger than 64 KiB",
                    ));
                }
                let o: Owner = serde_json::from_slice(&text).map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("`resourcesOwner` is not valid owner JSON: {e}"),
                    )
                })?;
                if o.owner_type != "Pod" {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "`resourcesOwner.ownerType` is `{}`; only `Pod` is supported",
                            o.owner_type
                        ),
                    ));
                }
                owner = Some(o);
            }
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                    "unexpected multipart part `{}` (expected `resources` and `resourcesOwner`)",
                    other.unwrap_or("")
                ),
                ))
            }
        }
    }
    let Some(received) = received else {
        app.metrics.upload_result("bad_request");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing multipart part `resources` (the tar.gz bundle)",
        ));
    };
    let Some(owner) = owner else {
        app.metrics.upload_result("bad_request");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing multipart part `resourcesOwner` (owner JSON)",
        ));
    };
    let secret = secrets::new_secret(&id);
    let meta = BundleMeta {
        version: 1,
        resource_id: id.clone(),
        owner,
        secret_sha256: secrets::hash(&secret),
        token_sha256: secrets::hash(&secrets::token_for(&secret)),
        created: Utc::now(),
        first_access: None,
        last_access: None,
        bundle_size: received.size,
        bundle_sha256: received.sha256,
        files: received.files,
    };
    let received_in = started.elapsed();
    let meta = app.bundles.publish(meta, &spool.0).await?;
    let published_in = started.elapsed() - received_in;
    // The per-file objects are extracted after the answer, off the upload's critical path;
    // a request that comes first waits for (or starts) this same extraction.
    if !meta.files.is_empty() {
        drop(app.bundles.materialise(meta.clone(), true));
    }
    app.metrics.upload_result("ok");
    app.metrics.bundle_added(meta.stored_bytes());
    tracing::info!(bundle = %id, size = meta.bundle_size, files = meta.files.len(), namespace = %meta.owner.owner_namespace, ?received_in, ?published_in, "bundle stored");
    drop(spool);
    Ok((
        StatusCode::OK,
        Json(IdAndSecret {
            resource_id: id,
            resource_secret: secret,
        }),
    )
        .into_response())
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("bundle is larger than --max-bundle-size ({max} bytes)"),
    )
}

fn multipart_error(e: axum::extract::multipart::MultipartError, max: u64, m: &Metrics) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        m.upload_result("too_large");
        return too_large(max);
    }
    m.upload_result("bad_request");
    ApiError::new(
        e.status(),
        format!("malformed multipart upload: {}", e.body_text()),
    )
}

/// What was received of the `resources` part: the archive's size and sha256, and its files.
struct Received {
    size: u64,
    sha256: String,
    files: Vec<bundle::FileEntry>,
}

/// Streams the `resources` part into the spool while checking it, so a bad entry stops the
/// upload early and memory stays bounded whatever the size. Three stages run at once, joined
/// by short channels: this task reads the body; a thread writes and hashes the archive as
/// uploaded (`bundle.tar.gz`), flushing it to disk as it goes, and hands each
/// chunk on; another thread gunzips and checks it, hashing each file. Every byte is written
/// once (the per-file objects are materialised later, see `store`); the store then takes the
/// spool over by rename.
async fn receive_bundle(
    app: &AppState,
    dir: &std::path::Path,
    mut field: axum::extract::multipart::Field<'_>,
) -> Result<Received, ApiError> {
    let archive_path = dir.join("bundle.tar.gz");
    let internal = |what: &str, e: std::io::Error| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {e}"))
    };
    let out = std::fs::File::create(&archive_path)
        .map_err(|e| internal(&format!("cannot create {}", archive_path.display()), e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunks>(8);
    let (etx, erx) = tokio::sync::mpsc::channel::<Chunks>(8);
    let limits = app.limits;
    let checker = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx: erx,
            batch: Vec::new().into_iter(),
            cur: Bytes::new(),
        };
        bundle::validate(reader, limits)
    });
    let ap = archive_path.clone();
    let sync = app.bundles.sync_spool();
    let archiver = tokio::task::spawn_blocking(move || archive(out, rx, etx, &ap, sync));
    let mut tx = Some(tx);
    let mut total = 0u64;
    let mut failure = None;
    let mut pending: Chunks = Vec::new();
    let mut pending_len = 0;
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                failure = Some(multipart_error(e, app.max_bundle_size, &app.metrics));
                break;
            }
        };
        total += chunk.len() as u64;
        if total > app.max_bundle_size {
            app.metrics.upload_result("too_large");
            failure = Some(too_large(app.max_bundle_size));
            break;
        }
        // Network chunks are handed on in batches (one hand-off per 512 KiB instead of
        // per read keeps the threads' wake-ups off the profile), without a copy.
        pending_len += chunk.len();
        pending.push(chunk);
        if pending_len < HANDOFF {
            continue;
        }
        pending_len = 0;
        if send(&tx, std::mem::take(&mut pending)).await.is_err() {
            // The archiver stopped early: the checker found a bad entry, or a write
            // failed. Their errors are the answer.
            break;
        }
    }
    if failure.is_none() && !pending.is_empty() {
        let _ = send(&tx, pending).await;
    }
    drop(tx.take());
    let archived = archiver.await;
    let checked = checker.await;
    if let Some(f) = failure {
        return Err(f);
    }
    let files = match checked {
        Ok(Ok(files)) => files,
        Ok(Err(e)) => {
            let status = match e {
                BundleError::Write { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                _ => {
                    app.metrics.upload_result("bad_bundle");
                    StatusCode::BAD_REQUEST
                }
            };
            return Err(ApiError::new(status, e.to_string()));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("bundle check failed: {e}"),
            ))
        }
    };
    let (size, sha256) = match archived {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Err(internal(
                &format!("cannot write {}", archive_path.display()),
                e,
            ))
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("archive writer failed: {e}"),
            ))
        }
    };
    if size != total {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "spooled {size} of {total} bytes to {}",
                archive_path.display()
            ),
        ));
    }
    tracing::debug!(size, files = files.len(), "bundle received");
    Ok(Received {
        size,
        sha256,
        files,
    })
}

/// How much of the upload is passed between the receiving stages at a time.
const HANDOFF: usize = 512 << 10;

/// How much of the archive is written between two `fdatasync`s of it while it arrives (with
/// fsync on). Flushing as it goes, rather than once at the end, keeps the disk (and its write
/// cache) busy during the upload; a single fsync of 1 GiB after the last byte took a second
/// here, during which nothing else happened.
const SYNC_STEP: u64 = 32 << 20;

async fn send(tx: &Option<tokio::sync::mpsc::Sender<Chunks>>, chunks: Chunks) -> Result<(), ()> {
    match tx {
        Some(t) => t.send(chunks).await.map_err(|_| ()),
        None => Err(()),
    }
}

/// The archive stage of [`receive_bundle`]: writes and hashes each chunk, then passes it to
/// the checker. Stops (dropping `rx`, which ends the upload) when the checker has. With
/// `sync`, a thread of its own flushes the file to disk every [`SYNC_STEP`] while writing and
/// hashing go on; a flush that fails fails the upload (the error is the file's, and a later
/// fsync of it may no longer report it).
fn archive(
    mut out: std::fs::File,
    mut rx: tokio::sync::mpsc::Receiver<Chunks>,
    etx: tokio::sync::mpsc::Sender<Chunks>,
    path: &std::path::Path,
    sync: bool,
) -> std::io::Result<(u64, String)> {
    use sha2::Digest;
    use std::io::Write;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut requested = 0u64;
    let (stx, srx) = std::sync::mpsc::channel::<()>();
    let flusher = match sync {
        true => Some(out.try_clone()?),
        false => None,
    };
    std::thread::scope(|scope| -> std::io::Result<()> {
        let flushing = flusher.as_ref().map(|f| {
            scope.spawn(move || -> std::io::Result<()> {
                // requests that queued up during a flush are all served by the next one
                while srx.recv().is_ok() {
                    while srx.try_recv().is_ok() {}
                    f.sync_data()?;
                }
                Ok(())
            })
        });
        let written = (|| {
            while let Some(chunks) = rx.blocking_recv() {
                write_all_vectored(&mut out, &chunks)?;
                size += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                // the checker works on these chunks while they are hashed here
                let hashed = chunks.clone();
                if etx.blocking_send(chunks).is_err() {
                    break;
                }
                for c in &hashed {
                    hasher.update(c);
                }
                if sync && size - requested >= SYNC_STEP {
                    // fails only once the flusher has stopped on an error, reported below
                    let _ = stx.send(());
                    requested = size;
                }
            }
            Ok(())
        })();
        drop(stx);
        let flushed = match flushing {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the flushing thread panicked"))),
            None => Ok(()),
        };
        written.and(flushed)
    })?;
    out.flush()?;
    tracing::trace!(path = %path.display(), size, "archive spooled");
    Ok((size, hex::encode(hasher.finalize())))
}

/// Writes every chunk, as few system calls as the kernel allows.
fn write_all_vectored(out: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut slices: Vec<IoSlice> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn secret_from(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(secrets::from_authorization)
        .filter(|s| !s.is_empty())
}

async fn authorised(app: &AppState, id: &str, headers: &HeaderMap) -> Result<BundleMeta, ApiError> {
    let meta = app.bundles.meta(id).await?;
    let Some(secret) = secret_from(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("bundle {id}: missing Authorization header with the resource secret"),
        ));
    };
    if !secrets::matches(secret, &meta.secret_sha256) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("bundle {id}: wrong resource secret"),
        ));
    }
    Ok(meta)
}

async fn download_bundle(
    State(app): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meta = authorised(&app, &id, &headers).await?;
    let resp = serve_object(
        &app,
        &store::bundle_key(&id),
        meta.bundle_size,
        &meta.bundle_sha256,
        "application/octet-stream",
        &headers,
    )
    .await?;
    app.metrics.download("bundle");
    touch(&app, meta).await;
    Ok(resp)
}

/// What `GET .../manifest` answers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    resource_id: String,
    download_token: String,
    bundle_size: u64,
    bundle_sha256: String,
    created: chrono::DateTime<Utc>,
    owner: Owner,
    files: Vec<ManifestFile>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestFile {
    name: String,
    size: u64,
    sha256: String,
    /// Absolute path on this server; prefix it with the server's base URL.
    path: String,
}

async fn manifest(
    State(app): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meta = authorised(&app, &id, &headers).await?;
    let secret = secret_from(&headers).unwrap_or_default();
    let token = secrets::token_for(secret);
    let files = meta
        .files
        .iter()
        .map(|f| ManifestFile {
            name: f.name.clone(),
            size: f.size,
            sha256: f.sha256.clone(),
            path: format!("/api/v0/files/{id}/{token}/{}", f.name),
        })
        .collect();
    Ok(Json(Manifest {
        resource_id: id,
        download_token: token,
        bundle_size: meta.bundle_size,
        bundle_sha256: meta.bundle_sha256,
        created: meta.created,
        owner: meta.owner,
        files,
    })
    .into_response())
}

async fn download_file(
    State(app): State<AppState>,
    UrlPath((id, token, name)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meta = app.bundles.meta(&id).await?;
    if !secrets::matches(&token, &meta.token_sha256) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("bundle {id}: wrong download token"),
        ));
    }
    let Some(index) = meta.files.iter().position(|f| f.name == name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("bundle {id} has no file `{name}`"),
        ));
    };
    app.bundles.ensure_file(&meta, index).await?;
    let f = &meta.files[index];
    let resp = serve_object(
        &app,
        &store::file_key(&id, &f.name),
        f.size,
        &f.sha256,
        content_type(&f.name),
        &headers,
    )
    .await?;
    app.metrics.download("file");
    touch(&app, meta).await;
    Ok(resp)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("jar") | Some("zip") | Some("egg") | Some("whl") => "application/zip",
        Some("py") | Some("txt") | Some("conf") | Some("properties") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Records an access: the first one moves the bundle from "unused" to "used" (see the
/// cleaner); later ones refresh `lastAccess` at most once a minute, to keep downloads cheap.
async fn touch(app: &AppState, mut meta: BundleMeta) {
    let now = Utc::now();
    let stale = meta.last_access.is_none_or(|t| {
        now.signed_duration_since(t)
            > chrono::Duration::from_std(Duration::from_secs(60)).unwrap_or_default()
    });
    if meta.first_access.is_some() && !stale {
        return;
    }
    meta.first_access.get_or_insert(now);
    meta.last_access = Some(now);
    if let Err(e) = app.bundles.write_meta(&meta).await {
        tracing::warn!(bundle = %meta.resource_id, error = %e, "cannot record access");
    }
}

/// Parses a single `bytes=` range against `size`. `Ok(None)`: no (or an ignorable) range.
fn parse_range(value: &str, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Multiple ranges: allowed to answer with the whole body.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        if start >= size || start >= end {
            return Err(());
        }
        start..end
    };
    Ok(Some(r))
}

async fn serve_object(
    app: &AppState,
    key: &str,
    size: u64,
    sha256: &str,
    ctype: &'static str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{sha256}\"");
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
        }
    }
    let mut range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => match parse_range(v, size) {
            Ok(r) => r,
            Err(()) => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response())
            }
        },
        None => None,
    };
    if let Some(ir) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if ir.trim() != etag {
            range = None;
        }
    }
    let body = match app.bundles.local_path(key) {
        Some(path) => local_body(path, range.clone().unwrap_or(0..size), size).await?,
        None => {
            let got = app
                .bundles
                .objects
                .get(key, range.clone())
                .await
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                got.body,
                64 << 10,
            ))
        }
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag_value)
        .header("x-sha256", sha256);
    builder = match range {
        Some(r) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_LENGTH, r.end - r.start)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            ),
        None => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, size),
    };
    builder
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// All read buffers of local downloads in flight, in KiB. A chunk holds its share from the
/// read until hyper has written it to the socket (it is returned when the `Bytes` is
/// dropped), so however many connections download at once, and however slowly their clients
/// read, the buffers they hold add up to at most this much.
const DOWNLOAD_BUDGET_KIB: u32 = 16 << 10;

/// The chunk size of local downloads (every chunk buffer has this capacity, and takes this
/// much of the budget).
const CHUNK: usize = 256 << 10;

/// How long a chunk waits for its share before it is read anyway: clients that stop reading
/// can hold the budget, and they must not stall everyone else forever.
const BUDGET_WAIT: Duration = Duration::from_secs(5);

/// Most chunk reads running at once on the blocking pool. Reads from the page cache take
/// microseconds, so a few suffice for two cores; without this bound a couple of hundred
/// downloads would start a couple of hundred threads, each with its stack and allocator
/// caches (most of the peak RSS once the buffers themselves were bounded).
static READ_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

static DOWNLOAD_BUDGET: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| {
        Arc::new(tokio::sync::Semaphore::new(DOWNLOAD_BUDGET_KIB as usize))
    });

/// A chunk of a download with its share of the budget, released when hyper drops it.
struct Chunk {
    data: Vec<u8>,
    _share: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.data));
    }
}

/// Chunk buffers kept for reuse, at most the budget's worth: downloads then recycle the same
/// few megabytes instead of spreading fresh allocations over the heap (whose freed pieces the
/// allocator keeps, raising the peak RSS), and skip the page faults of new memory.
static SPARE: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn take_buffer() -> Vec<u8> {
    let spare = SPARE.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut buf = spare.unwrap_or_else(|| Vec::with_capacity(CHUNK));
    buf.clear();
    buf
}

fn give_back(buf: Vec<u8>) {
    if buf.capacity() != CHUNK {
        return;
    }
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.len() * CHUNK < (DOWNLOAD_BUDGET_KIB as usize) << 10 {
        spare.push(buf);
    }
}

/// The body of a download from the local store: `range` of the file at `path` (which must be
/// `size` bytes long), read chunk by chunk on the blocking pool within the download budget.
async fn local_body(
    path: PathBuf,
    range: std::ops::Range<u64>,
    size: u64,
) -> Result<Body, ApiError> {
    let shown = path.display().to_string();
    let internal = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
    let slot = READ_SLOTS.acquire().await;
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        use std::io::{Seek, SeekFrom};
        let mut file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        if len != size {
            return Err(std::io::Error::other(format!(
                "{len} bytes where {size} were recorded"
            )));
        }
        file.seek(SeekFrom::Start(range.start))?;
        Ok(file)
    })
    .await
    .map_err(|e| internal(format!("cannot open {shown}: {e}")))?
    .map_err(|e| internal(format!("cannot read {shown}: {e}")))?;
    drop(slot);
    let state = (Some(file), range.end - range.start);
    let stream = futures::stream::unfold(state, move |(file, left)| {
        let shown = shown.clone();
        async move {
            let file = file?;
            if left == 0 {
                return None;
            }
            let budget = DOWNLOAD_BUDGET.clone();
            let want = left.min(CHUNK as u64) as usize;
            let kib = (CHUNK / 1024) as u32;
            let share =
                match tokio::time::timeout(BUDGET_WAIT, budget.acquire_many_owned(kib)).await {
                    Ok(Ok(p)) => Some(p),
                    _ => None,
                };
            let slot = READ_SLOTS.acquire().await;
            let read = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut data = take_buffer();
                let r = (&file).take(want as u64).read_to_end(&mut data);
                (file, r.map(|_| data))
            })
            .await;
            drop(slot);
            match read {
                Ok((file, Ok(data))) if !data.is_empty() => {
                    let n = data.len() as u64;
                    let bytes = Bytes::from_owner(Chunk {
                        data,
                        _share: share,
                    });
                    Some((Ok(bytes), (Some(file), left - n)))
                }
                Ok((_, Ok(_))) => Some((
                    Err(std::io::Error::other(format!("{shown} ended early"))),
                    (None, 0),
                )),
                Ok((_, Err(e))) => Some((
                    Err(std::io::Error::new(e.kind(), format!("{shown}: {e}"))),
                    (None, 0),
                )),
                Err(e) => Some((
                    Err(std::io::Error::other(format!(
                        "read of {shown} failed: {e}"
                    ))),
                    (None, 0),
                )),
            }
        }
    });
    Ok(Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::{archive, parse_range, Chunks, SYNC_STEP};
    use bytes::Bytes;
    use sha2::Digest;

    /// The archive stage, flushing as it goes: every chunk lands in the file in order, is
    /// handed on unchanged, and the sha256 is the whole upload's, over several flush steps.
    #[test]
    fn archive_writes_hashes_and_hands_on_while_flushing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.tar.gz");
        let chunk = |i: u64| Bytes::from(vec![i as u8; (1 << 20) + i as usize]);
        let n = ((2 * SYNC_STEP) >> 20) + 3;
        let expected: Vec<u8> = (0..n).flat_map(|i| chunk(i).to_vec()).collect();
        for sync in [true, false] {
            let out = std::fs::File::create(&path).unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel::<Chunks>(4);
            let (etx, mut erx) = tokio::sync::mpsc::channel::<Chunks>(4);
            let p = path.clone();
            let writer = std::thread::spawn(move || archive(out, rx, etx, &p, sync));
            let checker = std::thread::spawn(move || {
                let mut seen = Vec::new();
                while let Some(chunks) = erx.blocking_recv() {
                    chunks.iter().for_each(|c| seen.extend_from_slice(c));
                }
                seen
            });
            for i in (0..n).step_by(2) {
                let batch = (i..(i + 2).min(n)).map(chunk).collect();
                tx.blocking_send(batch).unwrap();
            }
            drop(tx);
            let (size, sha) = writer.join().unwrap().unwrap();
            assert_eq!(size, expected.len() as u64);
            assert_eq!(sha, hex::encode(sha2::Sha256::digest(&expected)));
            assert!(checker.join().unwrap() == expected, "handed on as received");
            assert!(
                std::fs::read(&path).unwrap() == expected,
                "written as received"
            );
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=-5", 100), Ok(Some(95..100)));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some(50..100)));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=1-2", 100), Ok(None));
    }
}
