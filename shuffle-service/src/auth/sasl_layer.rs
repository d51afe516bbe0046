//! The DIGEST-MD5 confidentiality layer (`auth-conf`, RFC 2831 §2.4) with the `3des` cipher,
//! as the JDK implements it, and Spark's framing of it (`SaslEncryption`): every message is cut
//! into pieces, each piece wrapped and sent as `i64 length (counting itself)` ‖ wrapped bytes.
//!
//! wrap(msg) = 3DES-EDE-CBC(Kc, msg ‖ padding ‖ HMAC-MD5(Ki, seq ‖ msg)[..10]) ‖ 0x0001 ‖ seq,
//! with the CBC chain carried from one message to the next (the JDK calls `Cipher.update`),
//! sequence numbers counting from 0 in each direction, and keys derived from H(A1).

use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::digest::SaslError;

type TdesCbcEnc = cbc::Encryptor<des::TdesEde3>;
type TdesCbcDec = cbc::Decryptor<des::TdesEde3>;
type HmacMd5 = Hmac<Md5>;

const C2S_SIGN: &[u8] = b"Digest session key to client-to-server signing key magic constant";
const S2C_SIGN: &[u8] = b"Digest session key to server-to-client signing key magic constant";
const C2S_SEAL: &[u8] = b"Digest H(A1) to client-to-server sealing key magic constant";
const S2C_SEAL: &[u8] = b"Digest H(A1) to server-to-client sealing key magic constant";
const MAC_LEN: usize = 10;
/// Message type and sequence number trailing each wrapped message.
const TRAILER: usize = 6;
const BLOCK: usize = 8;

fn md5(a: &[u8], b: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// Spreads 7 key bytes over 8, seven bits each, as DES expects (parity bits left 0: DES
/// ignores them).
fn des_key(k7: &[u8]) -> [u8; 8] {
    let mut v: u64 = 0;
    for b in &k7[..7] {
        v = (v << 8) | u64::from(*b);
    }
    let mut out = [0u8; 8];
    for (j, o) in out.iter_mut().enumerate() {
        *o = (((v >> (49 - 7 * j)) & 0x7f) << 1) as u8;
    }
    out
}

/// 3DES-EDE key K1 ‖ K2 ‖ K1 from the first 14 bytes of Kc; the IV is Kc's last 8 bytes.
fn tdes(kc: &[u8; 16]) -> ([u8; 24], [u8; 8]) {
    let k1 = des_key(&kc[0..7]);
    let k2 = des_key(&kc[7..14]);
    let mut key = [0u8; 24];
    key[0..8].copy_from_slice(&k1);
    key[8..16].copy_from_slice(&k2);
    key[16..24].copy_from_slice(&k1);
    let mut iv = [0u8; 8];
    iv.copy_from_slice(&kc[8..16]);
    (key, iv)
}

/// One side of the security layer: what it sends and what it receives.
pub struct SaslLayer {
    pub send: SaslSend,
    pub recv: SaslRecv,
}

/// Wraps what this side sends.
pub struct SaslSend {
    mac_key: [u8; 16],
    enc: TdesCbcEnc,
    seq: u32,
    /// Largest plaintext piece the peer accepts in one wrapped message.
    max_piece: usize,
}

/// Unwraps what this side receives.
pub struct SaslRecv {
    mac_key: [u8; 16],
    dec: TdesCbcDec,
    seq: u32,
}

impl SaslLayer {
    /// `ha1` is the raw H(A1); `server` picks the direction of each key; `peer_maxbuf` is the
    /// peer's advertised receive buffer.
    pub fn new(ha1: &[u8; 16], server: bool, peer_maxbuf: usize) -> Self {
        let kic = md5(ha1, C2S_SIGN);
        let kis = md5(ha1, S2C_SIGN);
        let kcc = md5(ha1, C2S_SEAL);
        let kcs = md5(ha1, S2C_SEAL);
        let (send_kc, recv_kc, send_mac, recv_mac) = if server {
            (kcs, kcc, kis, kic)
        } else {
            (kcc, kcs, kic, kis)
        };
        let (ek, eiv) = tdes(&send_kc);
        let (dk, div) = tdes(&recv_kc);
        Self {
            send: SaslSend {
                mac_key: send_mac,
                enc: TdesCbcEnc::new(&ek.into(), &eiv.into()),
                seq: 0,
                // room for the MAC, up to 8 bytes of padding and the trailer within maxbuf
                max_piece: peer_maxbuf
                    .saturating_sub(MAC_LEN + BLOCK + TRAILER)
                    .max(BLOCK)
                    / BLOCK
                    * BLOCK,
            },
            recv: SaslRecv {
                mac_key: recv_mac,
                dec: TdesCbcDec::new(&dk.into(), &div.into()),
                seq: 0,
            },
        }
    }

    pub fn wrap(&mut self, msg: &[u8]) -> Vec<u8> {
        self.send.wrap(msg)
    }

    pub fn unwrap(&mut self, wrapped: &mut [u8]) -> Result<Vec<u8>, SaslError> {
        self.recv.unwrap(wrapped)
    }
}

fn mac(key: &[u8; 16], seq: u32, msg: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <HmacMd5 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(&seq.to_be_bytes());
    m.update(msg);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

impl SaslSend {
    /// Largest plaintext this side puts in one wrapped message.
    pub fn max_piece(&self) -> usize {
        self.max_piece
    }

    /// Appends `wrap(msg)` to `out`.
    pub fn wrap_into(&mut self, msg: &[u8], out: &mut Vec<u8>) {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mac = mac(&self.mac_key, seq, msg);
        let pad = BLOCK - (msg.len() + MAC_LEN) % BLOCK;
        let start = out.len();
        out.extend_from_slice(msg);
        out.extend(std::iter::repeat_n(pad as u8, pad));
        out.extend_from_slice(&mac);
        for block in out[start..].chunks_exact_mut(BLOCK) {
            self.enc.encrypt_block_mut(block.into());
        }
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
    }

    pub fn wrap(&mut self, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(msg.len() + MAC_LEN + BLOCK + TRAILER);
        self.wrap_into(msg, &mut out);
        out
    }
}

impl SaslRecv {
    /// Checks and decrypts one wrapped message (consumed in place), returning the plaintext.
    pub fn unwrap(&mut self, wrapped: &mut [u8]) -> Result<Vec<u8>, SaslError> {
        let err = |s: &str| SaslError::Layer(s.to_owned());
        if wrapped.len() < BLOCK * 2 + TRAILER {
            return Err(err("wrapped message too short"));
        }
        let (body, trailer) = wrapped.split_at_mut(wrapped.len() - TRAILER);
        if trailer[0..2] != [0, 1] {
            return Err(err("wrapped message of an unknown type"));
        }
        let seq = u32::from_be_bytes([trailer[2], trailer[3], trailer[4], trailer[5]]);
        if seq != self.seq {
            return Err(SaslError::Layer(format!(
                "out-of-order message: sequence number {seq}, expected {}",
                self.seq
            )));
        }
        if body.len() % BLOCK != 0 {
            return Err(err(
                "wrapped message is not a whole number of cipher blocks",
            ));
        }
        for block in body.chunks_exact_mut(BLOCK) {
            self.dec.decrypt_block_mut(block.into());
        }
        self.seq = self.seq.wrapping_add(1);
        let mac_at = body.len() - MAC_LEN;
        let pad = usize::from(body[mac_at - 1]);
        if pad == 0 || pad > BLOCK || pad > mac_at {
            return Err(err("bad padding in a wrapped message"));
        }
        let msg_len = mac_at - pad;
        if body[msg_len..mac_at].iter().any(|b| usize::from(*b) != pad) {
            return Err(err("bad padding in a wrapped message"));
        }
        let want = mac(&self.mac_key, seq, &body[..msg_len]);
        if want.ct_eq(&body[mac_at..]).unwrap_u8() == 0 {
            return Err(err("message authentication code does not match"));
        }
        Ok(body[..msg_len].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::super::digest::DigestServer;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Recorded from Spark 4.3.0's SparkSaslClient/SparkSaslServer (JDK 17) with
    /// enableSaslEncryption, secret "secret": the JDK client picked cipher 3des.
    #[test]
    fn jdk_3des_vectors() {
        let mut s =
            DigestServer::with_nonce("G9jYUYoPpmLkILE9lJTobchXjJuH38IhAysjwA0x".into(), false);
        s.challenge(b"").expect("challenge");
        let c2 = b"charset=utf-8,username=\"c3BhcmtTYXNsVXNlcg==\",realm=\"default\",nonce=\"G9jYUYoPpmLkILE9lJTobchXjJuH38IhAysjwA0x\",nc=00000001,cnonce=\"Pwon0Wcw1/ByXDi7kF78TVt0GaGkcjzgi1xvK6RN\",digest-uri=\"null/default\",maxbuf=65536,response=e5acde9604871452f12dc4321d804d8e,qop=auth-conf,cipher=\"3des\"";
        let n = s.verify(c2, "secret").expect("verifies");
        assert_eq!(n.reply, b"rspauth=0adddf6b764c9beecac663456d3bf7a5");
        let mut layer = n.layer.expect("auth-conf layer");
        let m1 = b"hello from client".to_vec();
        let m2: Vec<u8> = (0..100u8).collect();
        let mut cw1 =
            unhex("199d292253cfd377d90161627dd9cfc929014ad3b4f45f64e40310bae8d73aa0000100000000");
        let mut cw2 = unhex("d7ebf38818f5ce85ff72979844a12b419955bfe4d120935d7a88b2800453dd8bc0fe0519a7a79aaa0ef27b05789c9f8a3584765bdc2de802215c01a64fe474f55abde1de4330022130a5c664f39c5720d226877bc3845e73b86475a9069cbc89d043d35927e92c1640335835b8268951000100000001");
        assert_eq!(layer.unwrap(&mut cw1).expect("unwrap 1"), m1);
        assert_eq!(layer.unwrap(&mut cw2).expect("unwrap 2"), m2);
        assert_eq!(
            layer.wrap(&m1),
            unhex("e61b0f7f8479e51f6361cfab95aa3132b48bb6749bde81cd98b7029d88db1132000100000000")
        );
        assert_eq!(
            layer.wrap(&m2),
            unhex("a8c56b2e0549edcd62e3bee6b60c287551d1610a4a0ecf881dbfdc04527c994497c2e4a08bb14250992a6cdb4a05b30a517450a0e40dea2557d5757abd03b1888d5fde03282c5cffc0f81b08a67171ac1af77a9d8d321874973e000b3d67f784e49e6e42edb4ce8c41aebc980ae2c24c000100000001")
        );
    }

    #[test]
    fn tampering_and_replay_are_refused() {
        let ha1 = [7u8; 16];
        let mut client = super::SaslLayer::new(&ha1, false, 65536);
        let mut server = super::SaslLayer::new(&ha1, true, 65536);
        let w = client.wrap(b"first");
        let mut bad = w.clone();
        bad[3] ^= 1;
        assert!(server.unwrap(&mut bad).is_err());
        let mut server = super::SaslLayer::new(&ha1, true, 65536);
        let mut ok = w.clone();
        assert_eq!(server.unwrap(&mut ok).expect("unwrap"), b"first");
        let mut replay = w;
        assert!(
            server.unwrap(&mut replay).is_err(),
            "replayed sequence number"
        );
    }
}
