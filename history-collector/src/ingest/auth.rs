//! Who is sending: the identity behind an agent's bearer token. Two kinds of token are
//! accepted, and nothing else:
//! - a Kubernetes service-account token (the agent's pod's, ideally a projected token bound
//!   to the pod and to the collector's audience), checked by the API server itself with a
//!   `TokenReview`; the identity is the namespace, the service account and, for a bound
//!   token, the pod;
//! - a shared token from `--ingest-token-file`, for agents outside Kubernetes; the identity
//!   is the name it is listed under.
//!
//! Tokens are never stored or logged: the cache of verdicts is keyed by their SHA-256, and
//! shared tokens are compared by hash in constant time. TokenReviews are bounded (a few at a
//! time, verdicts cached), so a client spraying tokens costs the API server little.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::verdicts::Verdicts;

/// The extra fields the API server puts in a bound service-account token's review.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";

/// How long a verdict on a token is reused.
const GOOD_FOR: Duration = Duration::from_secs(60);
const BAD_FOR: Duration = Duration::from_secs(10);
/// Verdicts kept at most.
const CACHE_MAX: usize = 4096;
/// TokenReviews in flight at once.
const REVIEWS_AT_ONCE: usize = 4;
/// A token longer than this is not a token.
const MAX_TOKEN_BYTES: usize = 16 << 10;

/// Where event logs come from. Stored as the owner of each log (see [`super::owners`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "source", rename_all = "camelCase")]
pub enum Identity {
    /// A pod's service account, from a TokenReview.
    #[serde(rename_all = "camelCase")]
    Kubernetes {
        namespace: String,
        service_account: String,
        /// The pod a bound token was issued for (name, uid); `None` for legacy tokens.
        pod: Option<(String, String)>,
    },
    /// A shared token, by the name it is listed under.
    Token { name: String },
    /// The collector's own `--event-log-dir` watcher.
    Directory,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Kubernetes {
                namespace,
                service_account,
                pod,
            } => {
                write!(f, "serviceaccount {namespace}/{service_account}")?;
                match pod {
                    Some((name, uid)) => write!(f, " (pod {name}, uid {uid})"),
                    None => Ok(()),
                }
            }
            Identity::Token { name } => write!(f, "shared token {name:?}"),
            Identity::Directory => write!(f, "the event-log directory watcher"),
        }
    }
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token (send `authorization: Bearer <token>`)")]
    Missing,
    #[error("token refused: {0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("cannot check the token now: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// The `reason` label of the metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "no_token",
            AuthError::Invalid(_) => "bad_token",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::Unavailable(_) => "unavailable",
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Shared tokens, by name.
#[derive(Clone, Debug, Default)]
pub struct SharedTokens {
    tokens: Vec<(String, [u8; 32])>,
}

impl SharedTokens {
    /// Reads a token file: one token per line, optionally preceded by a name and a space
    /// (`<name> <token>`; a token alone is named `shared`). Blank lines and lines starting
    /// with `#` are skipped. Tokens shorter than 16 characters are refused.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read --ingest-token-file {}: {e}", path.display())
        })?;
        Self::parse(&text)
            .map_err(|e| anyhow::anyhow!("--ingest-token-file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, token) = match line.split_once(char::is_whitespace) {
                Some((n, t)) => (n.to_string(), t.trim()),
                None => ("shared".to_string(), line),
            };
            anyhow::ensure!(
                token.len() >= 16,
                "line {}: a token must be at least 16 characters",
                i + 1
            );
            tokens.push((name, digest(token)));
        }
        anyhow::ensure!(!tokens.is_empty(), "no token in the file");
        Ok(SharedTokens { tokens })
    }

    /// The name of the token whose hash is `d`; every entry is compared, in constant time.
    fn find(&self, d: &[u8; 32]) -> Option<String> {
        let mut found = None;
        for (name, h) in &self.tokens {
            if bool::from(h.ct_eq(d)) {
                found = Some(name.clone());
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// TokenReviews against the API server.
pub struct TokenReviewer {
    client: Client,
    /// What the token must have been issued for (`spec.audiences`); empty: the API server's
    /// own audience.
    audiences: Vec<String>,
    at_once: Semaphore,
}

impl TokenReviewer {
    pub fn new(client: Client, audiences: Vec<String>) -> Self {
        TokenReviewer {
            client,
            audiences,
            at_once: Semaphore::new(REVIEWS_AT_ONCE),
        }
    }

    async fn review(&self, token: &str) -> Result<Identity, AuthError> {
        let _permit = self
            .at_once
            .acquire()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        let pp = PostParams::default();
        let call = api.create(&pp, &review);
        let done = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .map_err(|_| AuthError::Unavailable("TokenReview timed out".into()))?
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 403 => AuthError::Unavailable(format!(
                    "the collector may not create tokenreviews (RBAC): {}",
                    s.message
                )),
                e => AuthError::Unavailable(format!("TokenReview failed: {e}")),
            })?;
        identity_of(&done)
    }
}

/// The service-account identity a TokenReview's answer names.
pub fn identity_of(review: &TokenReview) -> Result<Identity, AuthError> {
    let status = review
        .status
        .as_ref()
        .ok_or_else(|| AuthError::Invalid("the TokenReview has no status".into()))?;
    if status.authenticated != Some(true) {
        let why = status
            .error
            .clone()
            .unwrap_or_else(|| "not authenticated".into());
        return Err(AuthError::Invalid(why));
    }
    let user = status.user.clone().unwrap_or_default();
    let name = user.username.unwrap_or_default();
    let Some((namespace, sa)) = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    else {
        return Err(AuthError::Invalid(format!(
            "{name:?} is not a service account"
        )));
    };
    let extra = user.extra.unwrap_or_default();
    let one = |k: &str| extra.get(k).and_then(|v| v.first()).cloned();
    let pod = match (one(POD_NAME_EXTRA), one(POD_UID_EXTRA)) {
        (Some(n), Some(u)) => Some((n, u)),
        _ => None,
    };
    Ok(Identity::Kubernetes {
        namespace: namespace.to_string(),
        service_account: sa.to_string(),
        pod,
    })
}

/// Turns bearer tokens into identities.
pub struct Authenticator {
    shared: SharedTokens,
    kube: Option<TokenReviewer>,
    cache: Verdicts<[u8; 32], Result<Identity, AuthError>>,
}

impl Authenticator {
    pub fn new(shared: SharedTokens, kube: Option<TokenReviewer>) -> Self {
        Authenticator {
            shared,
            kube,
            cache: Verdicts::new(CACHE_MAX),
        }
    }

    /// Whether any token can be accepted at all.
    pub fn enabled(&self) -> bool {
        !self.shared.is_empty() || self.kube.is_some()
    }

    /// The identity behind `token`.
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid("token too long".into()));
        }
        let d = digest(token);
        if let Some(name) = self.shared.find(&d) {
            return Ok(Identity::Token { name });
        }
        if let Some(verdict) = self.cache.get(&d) {
            return verdict;
        }
        let Some(kube) = &self.kube else {
            return Err(AuthError::Invalid("unknown token".into()));
        };
        let verdict = kube.review(token).await;
        let ttl = match &verdict {
            Ok(_) => GOOD_FOR,
            // the API server being away is no verdict on the token
            Err(AuthError::Unavailable(_)) => return verdict,
            Err(_) => BAD_FOR,
        };
        self.cache.put(d, verdict.clone(), ttl);
        verdict
    }
}

/// The token of an `authorization: Bearer <token>` header value.
pub fn bearer(value: Option<&str>) -> Result<&str, AuthError> {
    let v = value.ok_or(AuthError::Missing)?;
    let (scheme, token) = v.trim().split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};

    #[tokio::test]
    async fn shared_tokens_by_name() {
        let shared = SharedTokens::parse(
            "# agents outside Kubernetes\nteam-a 0123456789abcdef-a\n\n0123456789abcdef-shared\n",
        )
        .unwrap();
        let auth = Authenticator::new(shared, None);
        assert_eq!(
            auth.authenticate("0123456789abcdef-a").await,
            Ok(Identity::Token {
                name: "team-a".into()
            })
        );
        assert_eq!(
            auth.authenticate("0123456789abcdef-shared").await,
            Ok(Identity::Token {
                name: "shared".into()
            })
        );
        assert!(matches!(
            auth.authenticate("0123456789abcdef-b").await,
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(auth.authenticate("").await, Err(AuthError::Missing));
        assert!(SharedTokens::parse("short").is_err());
        assert!(SharedTokens::parse("# nothing\n").is_err());
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer(Some("Basic abc")), Err(AuthError::Missing));
        assert_eq!(bearer(Some("Bearer ")), Err(AuthError::Missing));
        assert_eq!(bearer(None), Err(AuthError::Missing));
    }

    #[test]
    fn identities_from_reviews() {
        let review = |user: &str, extra: &[(&str, &str)], ok: bool| TokenReview {
            status: Some(TokenReviewStatus {
                authenticated: Some(ok),
                user: Some(UserInfo {
                    username: Some(user.into()),
                    extra: Some(
                        extra
                            .iter()
                            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            identity_of(&review(
                "system:serviceaccount:apps:spark",
                &[(POD_NAME_EXTRA, "drv"), (POD_UID_EXTRA, "u-1")],
                true
            )),
            Ok(Identity::Kubernetes {
                namespace: "apps".into(),
                service_account: "spark".into(),
                pod: Some(("drv".into(), "u-1".into())),
            })
        );
        assert!(identity_of(&review("system:serviceaccount:apps:spark", &[], false)).is_err());
        assert!(identity_of(&review("alice@example.com", &[], true)).is_err());
        let json = serde_json::to_string(&Identity::Token { name: "x".into() }).unwrap();
        assert_eq!(json, r#"{"source":"token","name":"x"}"#);
    }
}
