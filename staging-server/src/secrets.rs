//! Resource secrets and download tokens.
//!
//! The secret (`<resourceId>-<random>`) authorises everything on a bundle and is sent in the
//! `Authorization` header, as the original client did. The download token is derived from the
//! secret (`base64url(sha256(label || secret))`), so the server never has to keep it: it stores
//! only the sha256 of each, and a client holding the secret can always rebuild its file URLs.
//! The token is made only of URL-unreserved characters (`A-Za-z0-9-_`), so Spark's URI
//! handling (comma splitting, `#` fragments, percent-decoding) leaves it intact.
//! Comparisons are constant-time.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const TOKEN_LABEL: &[u8] = b"spark-sidecars/download-token/v1\n";

/// A fresh secret for bundle `id`.
pub fn new_secret(id: &str) -> String {
    let mut raw = [0u8; 48];
    rand::rng().fill_bytes(&mut raw);
    format!(
        "{id}-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// The read-only download token that belongs to `secret`.
pub fn token_for(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(TOKEN_LABEL);
    h.update(secret.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Lower-case hex sha256 of a secret or token, as stored.
pub fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Whether `presented` hashes to `stored_hash`, compared in constant time.
pub fn matches(presented: &str, stored_hash: &str) -> bool {
    let h = hash(presented);
    h.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// The secret from an `Authorization` header value: raw (as the original client sent it) or
/// `Bearer <secret>`.
pub fn from_authorization(value: &str) -> &str {
    let v = value.trim();
    match v.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unreserved_and_derived() {
        let s = new_secret("abc");
        assert!(s.starts_with("abc-"));
        let t = token_for(&s);
        assert_eq!(t, token_for(&s));
        assert!(t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert!(matches(&t, &hash(&t)));
        assert!(!matches(&s, &hash(&t)));
        assert_eq!(from_authorization("Bearer xyz"), "xyz");
        assert_eq!(from_authorization("xyz"), "xyz");
    }
}
