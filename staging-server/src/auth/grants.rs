//! Upload credentials ("grants") and the short-lived access tokens exchanged for them.
//!
//! A grant belongs to one Kubernetes namespace and expires. It is stored in the object store
//! (`webhdfs/grants/<id>.json`, so every replica sharing a bucket knows it, and a restart loses
//! nothing) with the sha256 of its secret, never the secret itself. Its credential is
//! `stagetoken.<id>.<secret>`: the word `token` in it makes Spark redact any configuration
//! value that contains it (Spark's default `spark.redaction.regex` matches values as well as
//! keys), so the credential does not show in the UI or the event log. The credential is
//! presented either to the OAuth2 token endpoint (client-credentials grant, as Hadoop's
//! `ConfCredentialBasedAccessTokenProvider` does), or as the first component of a WebHDFS path
//! (`webhdfs://host:port/stagetoken.<id>.<secret>/...`) for clients whose OAuth2 provider is
//! unusable (stock Spark 3.5, see docs/staging-server.md).
//!
//! Access tokens are `stageaccess.<id>.<expiry>.<mac>`: an HMAC-SHA256, keyed by a random key
//! kept in the grant, over the grant id and the expiry time. Any replica can check one by
//! reading the grant, and deleting the grant revokes every token at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sidecars_common::objstore::{self, ObjectStore, StoreError};
use subtle::ConstantTimeEq;

use crate::secrets;

const CREDENTIAL_PREFIX: &str = "stagetoken.";
const ACCESS_PREFIX: &str = "stageaccess.";
/// How long a grant read from the store is trusted before it is read again (a deleted grant
/// stops working within this long on every replica).
const CACHE_FOR: Duration = Duration::from_secs(15);

/// One upload credential as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub version: u32,
    /// 32 lower-case hex digits.
    pub id: String,
    /// The namespace whose uploads this grant makes, and whose pods may claim them.
    pub namespace: String,
    /// Who obtained it (the Kubernetes user the token review named, or `admin`).
    pub subject: String,
    pub secret_sha256: String,
    /// HMAC key of its access tokens, hex.
    pub token_key: String,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl Grant {
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires
    }
}

/// Why a credential or token was not accepted. Deliberately vague towards the client (all
/// answer 401); the log gets the variant.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("malformed credential")]
    Malformed,
    #[error("unknown or revoked credential")]
    Unknown,
    #[error("wrong credential secret")]
    WrongSecret,
    #[error("the credential expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the access token expired")]
    TokenExpired,
    #[error("cannot read the credential store: {0}")]
    Store(#[from] StoreError),
}

pub fn grant_key(id: &str) -> String {
    format!("webhdfs/grants/{id}.json")
}

/// Whether `s` has the shape of a credential (what a path component must look like to be
/// taken as one).
pub fn looks_like_credential(s: &str) -> bool {
    s.starts_with(CREDENTIAL_PREFIX)
}

fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The grants, read through a short cache.
#[derive(Clone, Debug)]
pub struct Grants {
    objects: Arc<dyn ObjectStore>,
    cache: Arc<Mutex<HashMap<String, (Grant, std::time::Instant)>>>,
}

impl Grants {
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self {
            objects,
            cache: Default::default(),
        }
    }

    /// Issues a new grant for `namespace`, valid for `ttl`. Returns it and its credential
    /// (the only time the secret exists outside the caller).
    pub async fn issue(
        &self,
        namespace: &str,
        subject: &str,
        ttl: Duration,
    ) -> Result<(Grant, String), StoreError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let secret = b64(&secret);
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let now = Utc::now();
        let grant = Grant {
            version: 1,
            id: id.clone(),
            namespace: namespace.to_string(),
            subject: subject.to_string(),
            secret_sha256: secrets::hash(&secret),
            token_key: hex::encode(key),
            created: now,
            expires: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero()),
        };
        let body = serde_json::to_vec_pretty(&grant).map_err(|e| StoreError::Other {
            url: self.objects.object_url(&grant_key(&id)),
            message: e.to_string(),
        })?;
        objstore::put_bytes(&*self.objects, &grant_key(&id), body.into()).await?;
        Ok((grant, format!("{CREDENTIAL_PREFIX}{id}.{secret}")))
    }

    /// The grant with this id (cached for a few seconds), or `None` if there is none.
    pub async fn get(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        if !valid_id(id) {
            return Ok(None);
        }
        if let Some((g, at)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            if at.elapsed() < CACHE_FOR {
                return Ok(Some(g.clone()));
            }
        }
        let bytes = match objstore::get_bytes(&*self.objects, &grant_key(id)).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => {
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(id);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let grant: Grant = serde_json::from_slice(&bytes).map_err(|e| StoreError::Other {
            url: self.objects.object_url(&grant_key(id)),
            message: format!("unreadable grant: {e}"),
        })?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), (grant.clone(), std::time::Instant::now()));
        Ok(Some(grant))
    }

    /// Checks a credential (`stagetoken.<id>.<secret>`), in constant time for the secret.
    pub async fn verify_credential(&self, credential: &str) -> Result<Grant, AuthError> {
        let rest = credential
            .strip_prefix(CREDENTIAL_PREFIX)
            .ok_or(AuthError::Malformed)?;
        let (id, secret) = rest.split_once('.').ok_or(AuthError::Malformed)?;
        if !valid_id(id) || secret.is_empty() || secret.len() > 128 {
            return Err(AuthError::Malformed);
        }
        let grant = self.get(id).await?.ok_or(AuthError::Unknown)?;
        if !secrets::matches(secret, &grant.secret_sha256) {
            return Err(AuthError::WrongSecret);
        }
        if grant.expired(Utc::now()) {
            return Err(AuthError::Expired(grant.expires));
        }
        Ok(grant)
    }

    /// A new access token for `grant`, valid for `ttl` but never past the grant's expiry.
    /// Returns it and its lifetime in whole seconds (the OAuth2 `expires_in`).
    pub fn access_token(&self, grant: &Grant, ttl: Duration) -> (String, u64) {
        let now = Utc::now();
        let until = (now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero()))
            .min(grant.expires);
        let exp = until.timestamp();
        let mac = mac(grant, exp);
        let lifetime = (until - now).num_seconds().max(0) as u64;
        (format!("{ACCESS_PREFIX}{}.{exp}.{mac}", grant.id), lifetime)
    }

    /// Checks an access token; returns its grant.
    pub async fn verify_access_token(&self, token: &str) -> Result<Grant, AuthError> {
        let rest = token
            .strip_prefix(ACCESS_PREFIX)
            .ok_or(AuthError::Malformed)?;
        let mut parts = rest.splitn(3, '.');
        let (Some(id), Some(exp), Some(given)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(AuthError::Malformed);
        };
        let exp: i64 = exp.parse().map_err(|_| AuthError::Malformed)?;
        if !valid_id(id) {
            return Err(AuthError::Malformed);
        }
        let grant = self.get(id).await?.ok_or(AuthError::Unknown)?;
        let want = mac(&grant, exp);
        if !bool::from(want.as_bytes().ct_eq(given.as_bytes())) {
            return Err(AuthError::WrongSecret);
        }
        if Utc::now().timestamp() >= exp {
            return Err(AuthError::TokenExpired);
        }
        if grant.expired(Utc::now()) {
            return Err(AuthError::Expired(grant.expires));
        }
        Ok(grant)
    }

    /// Deletes a grant (its tokens stop working within the cache time).
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.objects.delete(&grant_key(id)).await
    }
}

fn mac(grant: &Grant, exp: i64) -> String {
    let key_bytes = hex::decode(&grant.token_key).unwrap_or_default();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
    let tag = ring::hmac::sign(&key, format!("{}.{exp}", grant.id).as_bytes());
    b64(tag.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecars_common::objstore::FileStore;

    #[tokio::test]
    async fn credentials_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let grants = Grants::new(Arc::new(FileStore::new(dir.path()).unwrap()));
        let (g, cred) = grants
            .issue("team-a", "alice", Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(
            cred.contains("token"),
            "Spark redacts values containing `token`"
        );
        assert!(cred
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        assert_eq!(grants.verify_credential(&cred).await.unwrap().id, g.id);
        let stored = std::fs::read_to_string(dir.path().join(grant_key(&g.id))).unwrap();
        let secret = cred.rsplit('.').next().unwrap();
        assert!(!stored.contains(secret), "secret stored in plain text");
        let mut wrong = cred.clone();
        wrong.pop();
        wrong.push('x');
        assert!(matches!(
            grants.verify_credential(&wrong).await,
            Err(AuthError::WrongSecret)
        ));
        for bad in ["", "stagetoken.", "stagetoken.xyz.abc", "bearer x"] {
            assert!(grants.verify_credential(bad).await.is_err(), "{bad}");
        }
        let (token, life) = grants.access_token(&g, Duration::from_secs(600));
        assert!((599..=600).contains(&life));
        assert_eq!(grants.verify_access_token(&token).await.unwrap().id, g.id);
        // the same MAC with a later expiry does not verify
        let (rest, tag) = token.rsplit_once('.').unwrap();
        let (head, _) = rest.rsplit_once('.').unwrap();
        let later = format!("{head}.{}.{tag}", i64::MAX);
        assert!(matches!(
            grants.verify_access_token(&later).await,
            Err(AuthError::WrongSecret)
        ));
        // an expired token
        let (old, _) = grants.access_token(&g, Duration::ZERO);
        assert!(matches!(
            grants.verify_access_token(&old).await,
            Err(AuthError::TokenExpired)
        ));
        grants.delete(&g.id).await.unwrap();
        assert!(matches!(
            grants.verify_access_token(&token).await,
            Err(AuthError::Unknown)
        ));
    }
}
