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
//! plus the WebHDFS API ([`crate::webhdfs`]) and the credential endpoints ([`crate::auth`]).
//!
//! The token sits in the path before the file name because Spark names a downloaded file after
//! the URL's last path segment. Downloads honour `Range` and `If-None-Match` (the ETag is the
//! sha256) and send `X-Sha256`.
//!
//! The upload pipeline is in `upload.rs`; downloads from the store (ranges, bounded buffers) in
//! `serve.rs`.

pub(crate) mod serve;
pub(crate) mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Serialize;

use crate::auth::Auth;
use crate::bundle::Limits;
use crate::limits::{RateLimiter, Usage};
use crate::metrics::Metrics;
use crate::secrets;
use crate::store::{self, BundleMeta, Bundles, Owner};
use crate::webhdfs::WebHdfs;
use serve::serve_object;
use upload::upload;

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    pub bundles: Bundles,
    pub spool: PathBuf,
    pub max_bundle_size: u64,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// Bytes stored per namespace (`--namespace-quota`).
    pub usage: Arc<Usage>,
    /// Uploads per credential, or per client address on the v0 API (`--uploads-per-minute`).
    pub uploads: Arc<RateLimiter>,
    pub webhdfs: Arc<WebHdfs>,
    pub auth: Arc<Auth>,
}

/// All routes: the v0 API, WebHDFS and the credential endpoints.
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
        .merge(crate::webhdfs::router())
        .merge(crate::auth::router())
        .with_state(state)
}

/// An error response: status plus a one-line message naming what was wrong.
#[derive(Debug)]
pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl ApiError {
    pub(crate) fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self(status, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let msg = crate::errors::bounded(&self.1);
        if self.0.is_server_error() {
            tracing::error!(status = %self.0, "{msg}");
        } else {
            tracing::info!(status = %self.0, "{msg}");
        }
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", crate::errors::for_client(self.0, &msg)),
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
            path: format!("/api/v0/files/{id}/{token}/{}", encode_path(&f.name)),
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

/// A bundle file name as URL path segments: each `/`-separated part percent-encoded (spaces,
/// `#`, `?`, `%` and every other character outside RFC 3986's unreserved set), so the URL
/// reaches this file whatever its name, and Spark, which names a download after the URL's
/// last path segment (decoded), names it as it was uploaded.
pub fn encode_path(name: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    name.split('/')
        .map(|part| percent_encoding::utf8_percent_encode(part, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
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
