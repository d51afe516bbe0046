//! Spark's `AuthEngine` handshake (`spark.network.crypto.enabled=true`): one RPC each way
//! carrying an `AuthMessage` (`0xFB` ‖ appId ‖ salt ‖ ciphertext). Each side sends an X25519
//! public key sealed with AES-128-GCM under HKDF-SHA256(secret, salt, appId ‖ salt ‖ transcript);
//! only a peer that knows the secret can open it. The shared X25519 secret then gives the
//! session key and the two IVs of the transport cipher.
//!
//! `authEngineVersion` is not on the wire: version 1 uses the raw shared secret as an AES-256
//! key, version 2 an HKDF-derived AES-128 key. The server computes both and lets the client's
//! first encrypted bytes say which one it uses (see `transport`).

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use bytes::{BufMut, BytesMut};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::protocol::wire::{DecodeError, Reader, WireWrite};

pub const AUTH_MESSAGE_TAG: u8 = 0xFB;
const SALT_LEN: usize = 16;
const GCM_IV: usize = 12;
const GCM_TAG: usize = 16;
/// A sealed X25519 public key: IV ‖ 32 bytes ‖ tag.
const SEALED_KEY_LEN: usize = GCM_IV + 32 + GCM_TAG;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error(
        "the peer's key could not be opened with this secret (wrong spark.authenticate.secret?)"
    )]
    BadSecret,
    #[error("{0}")]
    Invalid(String),
}

/// `AuthMessage`: the RPC body of both handshake steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMessage {
    pub app_id: String,
    pub salt: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl AuthMessage {
    pub fn decode(body: &[u8]) -> Result<AuthMessage, DecodeError> {
        let mut r = Reader::new(body);
        let tag = r.u8("AuthMessage tag")?;
        if tag != AUTH_MESSAGE_TAG {
            return Err(DecodeError::Invalid {
                what: "AuthMessage tag",
                detail: format!("{tag:#04x}, expected 0xfb (Expected ClientChallenge, received something else.)"),
            });
        }
        let app_id = r.string("AuthMessage appId")?;
        let salt = r.bytes("AuthMessage salt")?.to_vec();
        let ciphertext = r.bytes("AuthMessage ciphertext")?.to_vec();
        if r.remaining() != 0 {
            return Err(DecodeError::Invalid {
                what: "AuthMessage",
                detail: format!("{} bytes after the ciphertext", r.remaining()),
            });
        }
        Ok(AuthMessage {
            app_id,
            salt,
            ciphertext,
        })
    }

    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(
            1 + 4 + self.app_id.len() + 4 + self.salt.len() + 4 + self.ciphertext.len(),
        );
        out.put_u8(AUTH_MESSAGE_TAG);
        out.put_string(&self.app_id);
        out.put_bytes_prefixed(&self.salt);
        out.put_bytes_prefixed(&self.ciphertext);
        out
    }
}

fn hkdf(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .expect("HKDF output of at most 32 bytes");
}

fn aad(app_id: &str, salt: &[u8], transcript: &[u8]) -> Vec<u8> {
    [app_id.as_bytes(), salt, transcript].concat()
}

fn kek(secret: &str, salt: &[u8], aad: &[u8]) -> Aes128Gcm {
    let mut k = [0u8; 16];
    hkdf(secret.as_bytes(), salt, aad, &mut k);
    Aes128Gcm::new(&k.into())
}

/// Seals our public key for the peer: AES-GCM(HKDF(secret, salt, aad)), random IV first.
fn seal(secret: &str, app_id: &str, transcript: &[u8], public: &[u8; 32]) -> AuthMessage {
    let salt: [u8; SALT_LEN] = rand::random();
    let aad = aad(app_id, &salt, transcript);
    let iv: [u8; GCM_IV] = rand::random();
    let sealed = kek(secret, &salt, &aad)
        .encrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: public,
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of 32 bytes");
    AuthMessage {
        app_id: app_id.to_owned(),
        salt: salt.to_vec(),
        ciphertext: [&iv[..], &sealed].concat(),
    }
}

/// Opens the peer's sealed public key.
fn open(secret: &str, msg: &AuthMessage, transcript: &[u8]) -> Result<PublicKey, EngineError> {
    if msg.salt.len() != SALT_LEN || msg.ciphertext.len() != SEALED_KEY_LEN {
        return Err(EngineError::Invalid(format!(
            "salt of {} bytes and ciphertext of {} (expected {SALT_LEN} and {SEALED_KEY_LEN})",
            msg.salt.len(),
            msg.ciphertext.len()
        )));
    }
    let aad = aad(&msg.app_id, &msg.salt, transcript);
    let (iv, sealed) = msg.ciphertext.split_at(GCM_IV);
    let plain = kek(secret, &msg.salt, &aad)
        .decrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map_err(|_| EngineError::BadSecret)?;
    let key: [u8; 32] = plain
        .try_into()
        .map_err(|_| EngineError::Invalid("public key is not 32 bytes".into()))?;
    Ok(PublicKey::from(key))
}

/// What a finished handshake gives the transport cipher: the session key of each
/// `authEngineVersion` and the IV of each direction.
#[derive(Clone)]
pub struct SessionKeys {
    /// Version 1: the X25519 shared secret itself (AES-256).
    pub v1_key: [u8; 32],
    /// Version 2: HKDF(shared, transcript, "derivedKey") (AES-128).
    pub v2_key: [u8; 16],
    /// IV of client-to-server bytes (HKDF "outputIv").
    pub client_to_server_iv: [u8; 16],
    /// IV of server-to-client bytes (HKDF "inputIv").
    pub server_to_client_iv: [u8; 16],
}

impl SessionKeys {
    fn derive(shared: &[u8; 32], transcript: &[u8]) -> Self {
        let mut v2_key = [0u8; 16];
        hkdf(shared, transcript, b"derivedKey", &mut v2_key);
        let mut c2s = [0u8; 16];
        hkdf(shared, transcript, b"outputIv", &mut c2s);
        let mut s2c = [0u8; 16];
        hkdf(shared, transcript, b"inputIv", &mut s2c);
        Self {
            v1_key: *shared,
            v2_key,
            client_to_server_iv: c2s,
            server_to_client_iv: s2c,
        }
    }
}

fn new_keypair() -> (StaticSecret, PublicKey) {
    let secret = StaticSecret::from(rand::random::<[u8; 32]>());
    let public = PublicKey::from(&secret);
    (secret, public)
}

fn shared_secret(ours: &StaticSecret, theirs: &PublicKey) -> Result<[u8; 32], EngineError> {
    let shared = ours.diffie_hellman(theirs);
    if !shared.was_contributory() {
        return Err(EngineError::Invalid(
            "the peer's public key is a low-order point".into(),
        ));
    }
    Ok(*shared.as_bytes())
}

/// Server side: checks the client's challenge with `secret` and returns the response to send
/// and the session keys.
pub fn respond(
    client_msg: &AuthMessage,
    secret: &str,
) -> Result<(AuthMessage, SessionKeys), EngineError> {
    let client_pub = open(secret, client_msg, &[])?;
    let (ours, our_pub) = new_keypair();
    let t1 = client_msg.encode();
    let reply = seal(secret, &client_msg.app_id, &t1, our_pub.as_bytes());
    let shared = shared_secret(&ours, &client_pub)?;
    let transcript = [&t1[..], &reply.encode()[..]].concat();
    Ok((reply, SessionKeys::derive(&shared, &transcript)))
}

/// Client side (tests and benchmarks): the challenge to send.
pub struct EngineClient {
    secret: String,
    app_id: String,
    ours: StaticSecret,
    challenge: AuthMessage,
}

impl EngineClient {
    pub fn new(app_id: &str, secret: &str) -> Self {
        let (ours, public) = new_keypair();
        let challenge = seal(secret, app_id, &[], public.as_bytes());
        Self {
            secret: secret.to_owned(),
            app_id: app_id.to_owned(),
            ours,
            challenge,
        }
    }

    pub fn challenge(&self) -> &AuthMessage {
        &self.challenge
    }

    /// Checks the server's response; returns the session keys.
    pub fn finish(&self, reply: &AuthMessage) -> Result<SessionKeys, EngineError> {
        if reply.app_id != self.app_id {
            return Err(EngineError::Invalid("appId is different.".into()));
        }
        let t1 = self.challenge.encode();
        let server_pub = open(&self.secret, reply, &t1)?;
        let shared = shared_secret(&self.ours, &server_pub)?;
        let transcript = [&t1[..], &reply.encode()[..]].concat();
        Ok(SessionKeys::derive(&shared, &transcript))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_agrees_and_wrong_secret_fails() {
        let c = EngineClient::new("app-1", "secret");
        let wire = c.challenge().encode();
        assert_eq!(wire.len(), 94, "as spec §13.3 says for app-1");
        let msg = AuthMessage::decode(&wire).expect("decode");
        let (reply, server) = respond(&msg, "secret").expect("server");
        let client = c
            .finish(&AuthMessage::decode(&reply.encode()).expect("decode"))
            .expect("client");
        assert_eq!(server.v1_key, client.v1_key);
        assert_eq!(server.v2_key, client.v2_key);
        assert_eq!(server.client_to_server_iv, client.client_to_server_iv);
        assert_ne!(server.client_to_server_iv, server.server_to_client_iv);
        assert_eq!(respond(&msg, "wrong").err(), Some(EngineError::BadSecret));
        let mut forged = msg.clone();
        forged.app_id = "app-2".into();
        assert_eq!(
            respond(&forged, "secret").err(),
            Some(EngineError::BadSecret)
        );
    }
}
