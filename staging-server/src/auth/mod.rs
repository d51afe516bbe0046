//! Who may upload through WebHDFS, and how they prove it.
//!
//! - `POST /api/v1/credentials` issues an upload credential for one namespace (what
//!   `spark-stage token` calls). The caller presents, as `Authorization: Bearer`, either a
//!   Kubernetes token whose identity may create pods in that namespace (checked with a
//!   TokenReview and a SubjectAccessReview, see [`kube`]), or the administrator's token
//!   (`--admin-token-file`), which may issue credentials for any namespace. With neither
//!   configured, no credential is ever issued.
//! - `POST /oauth2/token` exchanges a credential for a short-lived access token, as an OAuth2
//!   client-credentials grant (RFC 6749, 4.4): exactly the request Hadoop's
//!   `ConfCredentialBasedAccessTokenProvider` sends (`grant_type=client_credentials`,
//!   `client_id`, `client_secret` = the credential, form-encoded), and the answer it reads
//!   (`access_token`, `expires_in`). HTTP Basic client authentication works too.
//!
//! Failed attempts count against the client's address (`--auth-failures-per-minute`).

pub mod grants;
pub mod kube;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::api::AppState;
use crate::limits::RateLimiter;
use crate::secrets;
use grants::Grants;

/// Settings and state of credential issuance and the token endpoint.
pub struct Auth {
    pub grants: Grants,
    pub kube: Option<::kube::Client>,
    /// sha256 of the administrator's token, when `--admin-token-file` is set.
    pub admin_token_sha256: Option<String>,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub access_ttl: Duration,
    pub failures: Arc<RateLimiter>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/api/v1/credentials", post(issue))
}

/// An OAuth2 error answer (RFC 6749, 5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::json!({ "error": error, "error_description": description }).to_string(),
    )
        .into_response()
}

fn client_ip(peer: &Option<Extension<ConnectInfo<SocketAddr>>>) -> String {
    peer.as_ref()
        .map(|Extension(ConnectInfo(p))| p.ip().to_string())
        .unwrap_or_default()
}

/// Counts a failed attempt; `Some(answer)` once the address has failed too often.
fn count_failure(auth: &Auth, ip: &str) -> Option<Response> {
    auth.failures
        .check(&format!("auth:{ip}"))
        .err()
        .map(|wait| {
            let mut r = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                &format!(
                    "too many failed attempts from this address (more than {} a minute)",
                    auth.failures.limit()
                ),
            );
            if let Ok(v) = wait.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        })
}

/// `POST /oauth2/token`.
async fn token(
    State(app): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = &app.auth;
    if body.len() > 16 << 10 {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body is larger than 16 KiB",
        );
    }
    let mut grant_type = None;
    let mut secret = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "grant_type" => grant_type = Some(v.into_owned()),
            "client_secret" => secret = Some(v.into_owned()),
            _ => {}
        }
    }
    if secret.is_none() {
        // client_secret_basic: Authorization: Basic base64(client_id:client_secret)
        secret = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(_, p)| p.to_string()));
    }
    if grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        );
    }
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "no client_secret (the staging credential)",
        );
    };
    let ip = client_ip(&peer);
    match auth.grants.verify_credential(&secret).await {
        Ok(grant) => {
            let (token, expires_in) = auth.grants.access_token(&grant, auth.access_ttl);
            tracing::debug!(grant = %grant.id, namespace = %grant.namespace, client = %ip, "access token issued");
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                serde_json::json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": expires_in,
                })
                .to_string(),
            )
                .into_response()
        }
        Err(grants::AuthError::Store(e)) => {
            tracing::error!(error = %e, "cannot read the credential store");
            oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "cannot check the credential now",
            )
        }
        Err(e) => {
            tracing::info!(client = %ip, reason = %e, "token request refused");
            if let Some(r) = count_failure(auth, &ip) {
                return r;
            }
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "invalid or expired credential",
            )
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IssueRequest {
    namespace: String,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// What `POST /api/v1/credentials` answers.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Issued {
    pub credential: String,
    pub namespace: String,
    pub expires: chrono::DateTime<chrono::Utc>,
    /// Path of the token endpoint on this server (`dfs.webhdfs.oauth2.refresh.url`).
    pub token_endpoint: String,
}

/// Whether `ns` is a valid Kubernetes namespace name (an RFC 1123 label).
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-')
}

/// `POST /api/v1/credentials`.
async fn issue(
    State(app): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = &app.auth;
    let plain = |status: StatusCode, msg: String| {
        tracing::info!(status = %status, "credential request: {msg}");
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{msg}\n"),
        )
            .into_response()
    };
    if body.len() > 16 << 10 {
        return plain(
            StatusCode::BAD_REQUEST,
            "the request body is larger than 16 KiB".into(),
        );
    }
    let req: IssueRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "expected JSON {\"namespace\": \"...\", \"ttlSeconds\": N}".into(),
            )
        }
    };
    if !valid_namespace(&req.namespace) {
        return plain(
            StatusCode::BAD_REQUEST,
            "`namespace` is not a valid Kubernetes namespace name".into(),
        );
    }
    let ip = client_ip(&peer);
    let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(secrets::from_authorization)
        .filter(|s| !s.is_empty() && s.len() <= 16 << 10)
    else {
        return plain(
            StatusCode::UNAUTHORIZED,
            "send a Kubernetes token (or the administrator's token) as Authorization: Bearer"
                .into(),
        );
    };
    let subject = if auth
        .admin_token_sha256
        .as_deref()
        .is_some_and(|h| secrets::matches(bearer, h))
    {
        "admin".to_string()
    } else if let Some(client) = &auth.kube {
        match kube::review(client, bearer, &req.namespace).await {
            Ok(kube::Verdict::Allowed(user)) => user,
            Ok(kube::Verdict::Unauthenticated) => {
                if let Some(r) = count_failure(auth, &ip) {
                    return r;
                }
                return plain(
                    StatusCode::UNAUTHORIZED,
                    "Kubernetes does not accept this token".into(),
                );
            }
            Ok(kube::Verdict::Forbidden(user)) => {
                if let Some(r) = count_failure(auth, &ip) {
                    return r;
                }
                return plain(
                    StatusCode::FORBIDDEN,
                    format!(
                        "`{}` may not create pods in namespace `{}`, so it may not upload for it",
                        crate::bundle::shown_name(user.as_bytes()),
                        req.namespace
                    ),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "token review failed");
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot check the token with the Kubernetes API server now".into(),
                );
            }
        }
    } else {
        if let Some(r) = count_failure(auth, &ip) {
            return r;
        }
        return plain(
            StatusCode::UNAUTHORIZED,
            "this token is not the administrator's, and the server has no Kubernetes API to check it with".into(),
        );
    };
    let ttl = req
        .ttl_seconds
        .map(Duration::from_secs)
        .unwrap_or(auth.default_ttl)
        .min(auth.max_ttl);
    match auth.grants.issue(&req.namespace, &subject, ttl).await {
        Ok((grant, credential)) => {
            tracing::info!(grant = %grant.id, namespace = %grant.namespace, subject = %grant.subject, expires = %grant.expires, "upload credential issued");
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                serde_json::to_string(&Issued {
                    credential,
                    namespace: grant.namespace,
                    expires: grant.expires,
                    token_endpoint: "/oauth2/token".into(),
                })
                .unwrap_or_default(),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store a credential");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the credential now".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn namespaces() {
        for ok in ["default", "team-a", "a1"] {
            assert!(super::valid_namespace(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!super::valid_namespace(bad), "{bad}");
        }
    }
}
