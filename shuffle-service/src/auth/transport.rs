//! The encryption an authenticated connection switches to, both directions, as Spark frames it:
//!
//! - `AES/CTR/NoPadding` (`CtrTransportCipher`): one AES-CTR keystream per direction for the
//!   life of the connection, 128-bit big-endian counter starting at the direction's IV.
//! - `AES/GCM/NoPadding` (`GcmTransportCipher`): each write is one independent unit,
//!   `i64 total length` ‖ Tink AES-GCM-HKDF streaming header (header length, salt, 7-byte nonce
//!   prefix) ‖ segments of 32,768 ciphertext bytes (the last may be shorter), each sealed under
//!   HKDF(session key, salt, total length) with nonce prefix ‖ segment number ‖ last flag.
//! - SASL `auth-conf` (`SaslEncryption`): `i64 length` ‖ DIGEST-MD5-wrapped piece.
//!
//! Which cipher and which `authEngineVersion` an AuthEngine client uses is its own setting and
//! never sent, so [`Detector`] looks at the client's first encrypted bytes: a GCM unit announces
//! its header length (40 bytes for version 1's 32-byte key, 24 for version 2) and its first
//! segment's tag proves the key; otherwise CTR under the key whose decryption starts with a
//! plausible frame (a length within bounds and a client message type).

use aes::{Aes128, Aes256};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit, Nonce, Tag};
use bytes::{Buf, BufMut, BytesMut};
use ctr::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use sha2::Sha256;

use super::engine::SessionKeys;
use super::sasl_layer::{SaslRecv, SaslSend};

/// Tink ciphertext segment size Spark uses.
pub const GCM_SEGMENT: usize = 32 * 1024;
const GCM_TAG: usize = 16;
/// Plaintext bytes in a full segment.
pub const GCM_PLAIN_SEGMENT: usize = GCM_SEGMENT - GCM_TAG;
const NONCE_PREFIX: usize = 7;
const LENGTH_BYTES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
}

fn bad(s: impl Into<String>) -> CipherError {
    CipherError::Decrypt(s.into())
}

/// An AES-CTR keystream of either key size.
pub enum CtrStream {
    A128(Box<ctr::Ctr128BE<Aes128>>),
    A256(Box<ctr::Ctr128BE<Aes256>>),
}

impl CtrStream {
    pub fn new(key: &[u8], iv: &[u8; 16]) -> Self {
        match key.len() {
            16 => CtrStream::A128(Box::new(ctr::Ctr128BE::<Aes128>::new(
                key.into(),
                iv.into(),
            ))),
            _ => CtrStream::A256(Box::new(ctr::Ctr128BE::<Aes256>::new(
                key[..32].into(),
                iv.into(),
            ))),
        }
    }

    pub fn apply(&mut self, data: &mut [u8]) {
        match self {
            CtrStream::A128(c) => c.apply_keystream(data),
            CtrStream::A256(c) => c.apply_keystream(data),
        }
    }
}

enum GcmKey {
    A128(Box<Aes128Gcm>),
    A256(Box<Aes256Gcm>),
}

impl GcmKey {
    fn new(key: &[u8]) -> Self {
        match key.len() {
            16 => GcmKey::A128(Box::new(Aes128Gcm::new(key.into()))),
            _ => GcmKey::A256(Box::new(Aes256Gcm::new(key[..32].into()))),
        }
    }

    fn seal(&self, nonce: &[u8; 12], data: &mut [u8]) -> Tag {
        let n = Nonce::from_slice(nonce);
        match self {
            GcmKey::A128(k) => k.encrypt_in_place_detached(n, b"", data),
            GcmKey::A256(k) => k.encrypt_in_place_detached(n, b"", data),
        }
        .expect("AES-GCM sealing of at most one segment")
    }

    fn open(&self, nonce: &[u8; 12], data: &mut [u8], tag: &[u8]) -> bool {
        let n = Nonce::from_slice(nonce);
        let t = Tag::from_slice(tag);
        match self {
            GcmKey::A128(k) => k.decrypt_in_place_detached(n, b"", data, t),
            GcmKey::A256(k) => k.decrypt_in_place_detached(n, b"", data, t),
        }
        .is_ok()
    }
}

fn header_len(key_len: usize) -> usize {
    1 + key_len + NONCE_PREFIX
}

fn unit_key(session: &[u8], salt: &[u8], total_len: u64) -> GcmKey {
    let mut k = vec![0u8; session.len()];
    Hkdf::<Sha256>::new(Some(salt), session)
        .expand(&total_len.to_be_bytes(), &mut k)
        .expect("HKDF of a 16 or 32 byte key");
    GcmKey::new(&k)
}

fn segment_nonce(prefix: &[u8; NONCE_PREFIX], segment: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..NONCE_PREFIX].copy_from_slice(prefix);
    n[NONCE_PREFIX..11].copy_from_slice(&segment.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Seals Spark GCM units.
pub struct GcmSealer {
    key: Vec<u8>,
}

impl GcmSealer {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// Size of the unit that carries `plain_len` bytes.
    pub fn unit_len(&self, plain_len: usize) -> usize {
        let full = plain_len / GCM_PLAIN_SEGMENT;
        let partial = plain_len % GCM_PLAIN_SEGMENT;
        LENGTH_BYTES
            + header_len(self.key.len())
            + full * GCM_SEGMENT
            + if partial > 0 { partial + GCM_TAG } else { 0 }
    }

    /// Appends one unit carrying `plain` to `out`.
    pub fn seal(&self, plain: &[u8], out: &mut Vec<u8>) {
        let total = self.unit_len(plain.len()) as u64;
        let salt: Vec<u8> = (0..self.key.len()).map(|_| rand::random::<u8>()).collect();
        let prefix: [u8; NONCE_PREFIX] = rand::random();
        let key = unit_key(&self.key, &salt, total);
        out.reserve(total as usize);
        out.extend_from_slice(&total.to_be_bytes());
        out.push(header_len(self.key.len()) as u8);
        out.extend_from_slice(&salt);
        out.extend_from_slice(&prefix);
        let n = plain.chunks(GCM_PLAIN_SEGMENT).count();
        for (i, seg) in plain.chunks(GCM_PLAIN_SEGMENT).enumerate() {
            let start = out.len();
            out.extend_from_slice(seg);
            let tag = key.seal(
                &segment_nonce(&prefix, i as u32, i + 1 == n),
                &mut out[start..],
            );
            out.extend_from_slice(&tag);
        }
    }
}

struct GcmUnit {
    key: GcmKey,
    prefix: [u8; NONCE_PREFIX],
    /// Ciphertext bytes of the unit not yet decrypted.
    remaining: u64,
    segment: u32,
}

/// Opens Spark GCM units from the byte stream.
pub struct GcmOpener {
    key: Vec<u8>,
    unit: Option<GcmUnit>,
}

impl GcmOpener {
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            unit: None,
        }
    }

    /// Moves every complete segment from `raw` to `plain`.
    pub fn open(&mut self, raw: &mut BytesMut, plain: &mut BytesMut) -> Result<(), CipherError> {
        let hl = header_len(self.key.len());
        loop {
            let unit = match &mut self.unit {
                Some(u) => u,
                None => {
                    if raw.len() < LENGTH_BYTES + hl {
                        return Ok(());
                    }
                    let total = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
                    if total < (LENGTH_BYTES + hl) as u64 || total > i64::MAX as u64 {
                        return Err(bad(format!("GCM unit length {total}")));
                    }
                    if usize::from(raw[8]) != hl {
                        return Err(bad(format!("GCM header length {} (expected {hl})", raw[8])));
                    }
                    let salt = &raw[9..9 + self.key.len()];
                    let mut prefix = [0u8; NONCE_PREFIX];
                    prefix.copy_from_slice(&raw[9 + self.key.len()..LENGTH_BYTES + hl]);
                    let key = unit_key(&self.key, salt, total);
                    raw.advance(LENGTH_BYTES + hl);
                    self.unit.insert(GcmUnit {
                        key,
                        prefix,
                        remaining: total - (LENGTH_BYTES + hl) as u64,
                        segment: 0,
                    })
                }
            };
            if unit.remaining == 0 {
                self.unit = None;
                continue;
            }
            let seg_len = unit.remaining.min(GCM_SEGMENT as u64) as usize;
            if seg_len <= GCM_TAG {
                return Err(bad("GCM segment shorter than its tag"));
            }
            if raw.len() < seg_len {
                return Ok(());
            }
            let last = unit.remaining == seg_len as u64;
            let nonce = segment_nonce(&unit.prefix, unit.segment, last);
            let mut seg = raw.split_to(seg_len);
            let (data, tag) = seg.split_at_mut(seg_len - GCM_TAG);
            if !unit.key.open(&nonce, data, tag) {
                return Err(bad(format!(
                    "GCM segment {} failed authentication",
                    unit.segment
                )));
            }
            plain.put_slice(data);
            unit.segment = unit.segment.wrapping_add(1);
            unit.remaining -= seg_len as u64;
            if last {
                self.unit = None;
            }
        }
    }
}

/// Unwraps SASL `auth-conf` frames (`i64 length counting itself` ‖ wrapped bytes).
pub struct SaslOpener {
    recv: SaslRecv,
    max_frame: usize,
}

impl SaslOpener {
    pub fn new(recv: SaslRecv, max_frame: usize) -> Self {
        Self { recv, max_frame }
    }

    pub fn open(&mut self, raw: &mut BytesMut, plain: &mut BytesMut) -> Result<(), CipherError> {
        while raw.len() >= LENGTH_BYTES {
            let len = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
            if len <= LENGTH_BYTES as u64 || len > self.max_frame as u64 {
                return Err(bad(format!("SASL frame length {len}")));
            }
            let len = len as usize;
            if raw.len() < len {
                return Ok(());
            }
            raw.advance(LENGTH_BYTES);
            let mut wrapped = raw.split_to(len - LENGTH_BYTES);
            let msg = self
                .recv
                .unwrap(&mut wrapped)
                .map_err(|e| bad(e.to_string()))?;
            plain.put_slice(&msg);
        }
        Ok(())
    }
}

/// How to read what the client sends.
// One per connection (or a one-off return value), never queued per message: the size of
// the SASL state costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Inbound {
    Ctr(CtrStream),
    Gcm(GcmOpener),
    Sasl(SaslOpener),
    /// AuthEngine finished; the cipher and version are not known yet.
    Detect(Box<Detector>),
}

/// How to encrypt what the server sends.
// One per connection (or a one-off return value), never queued per message: the size of
// the SASL state costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Outbound {
    Ctr(CtrStream),
    Gcm(GcmSealer),
    Sasl(SaslSend),
}

impl Outbound {
    /// Encrypts `plain` (any slice of the byte stream) and appends what goes on the wire.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        match self {
            Outbound::Ctr(c) => {
                let start = out.len();
                out.extend_from_slice(plain);
                c.apply(&mut out[start..]);
            }
            Outbound::Gcm(g) => g.seal(plain, out),
            Outbound::Sasl(s) => {
                for piece in plain.chunks(s.max_piece()) {
                    let at = out.len();
                    out.extend_from_slice(&[0u8; LENGTH_BYTES]);
                    s.wrap_into(piece, out);
                    let len = (out.len() - at) as u64;
                    out[at..at + LENGTH_BYTES].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Outbound::Ctr(_) => "AES/CTR",
            Outbound::Gcm(_) => "AES/GCM",
            Outbound::Sasl(_) => "SASL auth-conf",
        }
    }
}

/// What the detector settled on.
pub struct Detected {
    pub cipher: &'static str,
    pub version: u8,
    pub outbound: Outbound,
}

/// Decides the AuthEngine client's cipher and version from its first bytes.
pub struct Detector {
    keys: SessionKeys,
    max_frame: usize,
}

/// Client message types that can start a connection's traffic.
fn plausible_frame_start(head: &[u8; 9], max_frame: usize) -> bool {
    let len = u64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
    len > 8 && len <= max_frame as u64 && matches!(head[8], 0 | 3 | 6 | 9 | 10 | 11)
}

impl Detector {
    pub fn new(keys: SessionKeys, max_frame: usize) -> Self {
        Self { keys, max_frame }
    }

    fn key(&self, version: u8) -> &[u8] {
        if version == 1 {
            &self.keys.v1_key
        } else {
            &self.keys.v2_key
        }
    }

    /// `None`: not enough bytes yet. Otherwise the inbound side to use from the first byte of
    /// `raw` on, and the outbound side for the writer.
    pub fn detect(&self, raw: &[u8]) -> Result<Option<(Inbound, Detected)>, CipherError> {
        if raw.len() < 9 {
            return Ok(None);
        }
        // GCM: a plain length, then the header length byte that says which key size.
        let total = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        for version in [1u8, 2] {
            let key = self.key(version);
            let hl = header_len(key.len());
            if usize::from(raw[8]) != hl || total < (LENGTH_BYTES + hl) as u64 || total > 1 << 40 {
                continue;
            }
            let need = (total as usize).min(LENGTH_BYTES + hl + GCM_SEGMENT);
            if raw.len() < need {
                return Ok(None);
            }
            let mut trial = GcmOpener::new(key);
            let mut buf = BytesMut::from(&raw[..need]);
            let mut out = BytesMut::new();
            if trial.open(&mut buf, &mut out).is_ok() && (buf.is_empty()) {
                return Ok(Some((
                    Inbound::Gcm(GcmOpener::new(key)),
                    Detected {
                        cipher: "AES/GCM",
                        version,
                        outbound: Outbound::Gcm(GcmSealer::new(key)),
                    },
                )));
            }
        }
        for version in [1u8, 2] {
            let key = self.key(version);
            let mut c = CtrStream::new(key, &self.keys.client_to_server_iv);
            let mut head = [0u8; 9];
            head.copy_from_slice(&raw[..9]);
            c.apply(&mut head);
            if plausible_frame_start(&head, self.max_frame) {
                return Ok(Some((
                    Inbound::Ctr(CtrStream::new(key, &self.keys.client_to_server_iv)),
                    Detected {
                        cipher: "AES/CTR",
                        version,
                        outbound: Outbound::Ctr(CtrStream::new(
                            key,
                            &self.keys.server_to_client_iv,
                        )),
                    },
                )));
            }
        }
        Err(bad(
            "the first bytes after authentication decrypt as no frame under AES/CTR or AES/GCM with authEngineVersion 1 or 2 (a cipher this service does not know?)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        let c = super::super::engine::EngineClient::new("app", "s");
        let msg = c.challenge().clone();
        let (reply, keys) = super::super::engine::respond(&msg, "s").expect("respond");
        let client = c.finish(&reply).expect("finish");
        assert_eq!(client.v1_key, keys.v1_key);
        keys
    }

    fn frame() -> Vec<u8> {
        crate::protocol::Message::RpcRequest {
            request_id: 1,
            body: bytes::Bytes::from_static(b"\x0a\x00\x00\x00\x01a\x00\x00\x00\x00"),
        }
        .encode()
        .to_vec()
    }

    #[test]
    fn gcm_units_round_trip_at_segment_edges() {
        for len in [
            0,
            1,
            GCM_PLAIN_SEGMENT - 1,
            GCM_PLAIN_SEGMENT,
            GCM_PLAIN_SEGMENT + 1,
            3 * GCM_PLAIN_SEGMENT,
        ] {
            for key in [vec![3u8; 16], vec![4u8; 32]] {
                let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let s = GcmSealer::new(&key);
                let mut wire = Vec::new();
                s.seal(&plain, &mut wire);
                s.seal(b"next", &mut wire);
                assert_eq!(wire.len(), s.unit_len(len) + s.unit_len(4));
                let mut o = GcmOpener::new(&key);
                let mut raw = BytesMut::new();
                let mut out = BytesMut::new();
                // byte by byte, as TCP may deliver it
                for b in &wire {
                    raw.put_u8(*b);
                    o.open(&mut raw, &mut out).expect("opens");
                }
                assert_eq!(
                    &out[..],
                    [&plain[..], b"next"].concat().as_slice(),
                    "len {len}"
                );
                let mut tampered = wire.clone();
                let last = tampered.len() - 20;
                tampered[last] ^= 1;
                let mut raw = BytesMut::from(&tampered[..]);
                assert!(GcmOpener::new(&key)
                    .open(&mut raw, &mut BytesMut::new())
                    .is_err());
            }
        }
    }

    #[test]
    fn detector_tells_cipher_and_version() {
        let k = keys();
        for version in [1u8, 2] {
            let key: &[u8] = if version == 1 { &k.v1_key } else { &k.v2_key };
            // CTR, as the client encrypts (client-to-server IV)
            let mut ctr = frame();
            CtrStream::new(key, &k.client_to_server_iv).apply(&mut ctr);
            let d = Detector::new(k.clone(), 1 << 20);
            let (_, det) = d.detect(&ctr).expect("ok").expect("decided");
            assert_eq!((det.cipher, det.version), ("AES/CTR", version));
            let mut gcm = Vec::new();
            GcmSealer::new(key).seal(&frame(), &mut gcm);
            assert!(
                d.detect(&gcm[..20]).expect("ok").is_none(),
                "waits for the segment"
            );
            let (_, det) = d.detect(&gcm).expect("ok").expect("decided");
            assert_eq!((det.cipher, det.version), ("AES/GCM", version));
        }
        let d = Detector::new(k, 1 << 20);
        assert!(d.detect(&[0x55; 64]).is_err());
    }
}
