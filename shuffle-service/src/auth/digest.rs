//! SASL DIGEST-MD5 (RFC 2831) as Spark's `SparkSaslServer` and `SparkSaslClient` run it over
//! the JDK's provider: mechanism `DIGEST-MD5`, protocol `null`, server name and realm `default`,
//! user `base64("sparkSaslUser")`, password `base64(secret)` (the base64 strings are used
//! literally), `md5-sess`, QOP `auth` or `auth-conf` with the `3des` cipher (the one the JDK's
//! client picks from the list Spark's server offers). Also the `SaslMessage` RPC that carries
//! each token (`0xEA` ‖ appId ‖ i32 length ‖ token).
//!
//! The server side answers real Spark clients; the client side exists so tests, fuzzing and
//! benchmarks can drive the server the way Spark does.

use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::sasl_layer::SaslLayer;
use crate::protocol::wire::{DecodeError, Reader, WireWrite};

/// Tag byte of Spark's `SaslMessage`.
pub const SASL_MESSAGE_TAG: u8 = 0xEA;
/// Spark's SASL user name (`SecurityManager.getSaslUser`), base64 encoded as Spark sends it.
pub const SPARK_SASL_USER_B64: &str = "c3BhcmtTYXNsVXNlcg==";
const REALM: &str = "default";
const DIGEST_URI: &str = "null/default";
/// The only cipher offered: the one every JDK client picks first from Spark's offer.
const CIPHER: &str = "3des";
/// The JDK refuses digest responses longer than this; so do we.
const MAX_TOKEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("DIGEST-MD5: {0}")]
    Protocol(String),
    #[error(
        "DIGEST-MD5: digest response does not match the secret (wrong spark.authenticate.secret?)"
    )]
    BadResponse,
    #[error("DIGEST-MD5: {0}")]
    Layer(String),
}

fn proto(s: impl Into<String>) -> SaslError {
    SaslError::Protocol(s.into())
}

/// `SaslMessage`: the RPC body of every SASL step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslMessage {
    pub app_id: String,
    pub token: Vec<u8>,
}

impl SaslMessage {
    pub fn decode(body: &[u8]) -> Result<SaslMessage, DecodeError> {
        let mut r = Reader::new(body);
        let tag = r.u8("SaslMessage tag")?;
        if tag != SASL_MESSAGE_TAG {
            return Err(DecodeError::Invalid {
                what: "SaslMessage tag",
                detail: format!("{tag:#04x}, expected 0xea"),
            });
        }
        let app_id = r.string("SaslMessage appId")?;
        let token = r.bytes("SaslMessage token")?.to_vec();
        Ok(SaslMessage { app_id, token })
    }

    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(1 + 4 + self.app_id.len() + 4 + self.token.len());
        out.put_u8(SASL_MESSAGE_TAG);
        out.put_string(&self.app_id);
        out.put_bytes_prefixed(&self.token);
        out
    }
}

/// The password Spark derives from a secret: its base64 as Netty's `Base64.encode(ByteBuf)`
/// writes it (`SparkSaslServer.encodePassword`), which breaks lines every 76 characters. Spark
/// on Kubernetes generates 64-character secrets, whose base64 (88 characters) has one break.
fn password(secret: &str) -> String {
    let plain = base64::engine::general_purpose::STANDARD.encode(secret.as_bytes());
    let mut out = String::with_capacity(plain.len() + plain.len() / 76);
    for (i, chunk) in plain.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // base64 is ASCII, so every chunk is valid UTF-8
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    out
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// H(A1) of md5-sess, raw: MD5(MD5(user:realm:password) ":" nonce ":" cnonce [":" authzid]).
fn ha1(user: &str, secret: &str, nonce: &str, cnonce: &str, authzid: Option<&str>) -> [u8; 16] {
    let inner = md5(&[
        user.as_bytes(),
        b":",
        REALM.as_bytes(),
        b":",
        password(secret).as_bytes(),
    ]);
    let mut parts: Vec<&[u8]> = vec![&inner, b":", nonce.as_bytes(), b":", cnonce.as_bytes()];
    if let Some(a) = authzid {
        parts.push(b":");
        parts.push(a.as_bytes());
    }
    md5(&parts)
}

/// The `response` (a2_prefix "AUTHENTICATE") or `rspauth` (a2_prefix "") value.
fn digest_value(
    ha1: &[u8; 16],
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    a2_prefix: &str,
) -> String {
    let mut a2 = format!("{a2_prefix}:{DIGEST_URI}");
    if qop != "auth" {
        a2.push_str(":00000000000000000000000000000000");
    }
    let ha2 = hex(&md5(&[a2.as_bytes()]));
    hex(&md5(&[
        hex(ha1).as_bytes(),
        b":",
        nonce.as_bytes(),
        b":",
        nc.as_bytes(),
        b":",
        cnonce.as_bytes(),
        b":",
        qop.as_bytes(),
        b":",
        ha2.as_bytes(),
    ]))
}

/// Parses a DIGEST-MD5 directive list (`key=value` or `key="quoted \" value"`, comma
/// separated). Duplicate keys are refused.
pub fn parse_directives(token: &[u8]) -> Result<Vec<(String, String)>, SaslError> {
    let s = std::str::from_utf8(token).map_err(|_| proto("token is not UTF-8"))?;
    let b = s.as_bytes();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b'\r' || b[*i] == b'\n')
        {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(proto(format!("directive without a value at byte {start}")));
        }
        let key = s[start..i].trim().to_ascii_lowercase();
        i += 1;
        skip_ws(&mut i);
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(proto(format!("unterminated quoted value of {key}"))),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let Some(c) = b.get(i + 1) else {
                            return Err(proto(format!("unterminated quoted value of {key}")));
                        };
                        v.push(*c);
                        i += 2;
                    }
                    Some(c) => {
                        v.push(*c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(v).map_err(|_| proto("value is not UTF-8"))?
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            s[start..i].trim().to_owned()
        };
        if out.iter().any(|(k, _)| *k == key) {
            return Err(proto(format!("directive {key} appears more than once")));
        }
        skip_ws(&mut i);
        if i < b.len() {
            if b[i] != b',' {
                return Err(proto(format!("expected ',' after {key}")));
            }
            i += 1;
        }
        out.push((key, value));
    }
    Ok(out)
}

fn get<'a>(d: &'a [(String, String)], key: &str) -> Option<&'a str> {
    d.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn random_nonce() -> String {
    let bytes: [u8; 30] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What a finished exchange established.
pub struct Negotiated {
    /// The `rspauth=...` token to send back.
    pub reply: Vec<u8>,
    /// The security layer, when the client chose `auth-conf`.
    pub layer: Option<SaslLayer>,
}

/// Server side of one DIGEST-MD5 exchange.
pub struct DigestServer {
    nonce: String,
    always_encrypt: bool,
    challenged: bool,
}

impl DigestServer {
    /// `always_encrypt` offers only `auth-conf` (Spark's `spark.network.sasl.serverAlwaysEncrypt`).
    pub fn new(always_encrypt: bool) -> Self {
        Self::with_nonce(random_nonce(), always_encrypt)
    }

    /// A fixed nonce, for test vectors recorded from Spark.
    pub fn with_nonce(nonce: String, always_encrypt: bool) -> Self {
        Self {
            nonce,
            always_encrypt,
            challenged: false,
        }
    }

    fn qop_offer(&self) -> &'static str {
        if self.always_encrypt {
            "auth-conf"
        } else {
            "auth-conf,auth"
        }
    }

    /// The digest-challenge, answering the client's empty first token.
    pub fn challenge(&mut self, first_token: &[u8]) -> Result<Vec<u8>, SaslError> {
        if self.challenged {
            return Err(proto("a second initial token"));
        }
        if !first_token.is_empty() {
            return Err(proto("the initial response must be empty"));
        }
        self.challenged = true;
        Ok(format!(
            "realm=\"{REALM}\",nonce=\"{}\",qop=\"{}\",charset=utf-8,cipher=\"{CIPHER}\",algorithm=md5-sess",
            self.nonce,
            self.qop_offer()
        )
        .into_bytes())
    }

    /// Checks the client's digest-response against `secret`; on success returns `rspauth`
    /// and, for `auth-conf`, the security layer.
    pub fn verify(&mut self, token: &[u8], secret: &str) -> Result<Negotiated, SaslError> {
        if !self.challenged {
            return Err(proto("digest-response before the challenge"));
        }
        if token.len() > MAX_TOKEN {
            return Err(proto(format!(
                "digest-response of {} bytes (at most {MAX_TOKEN})",
                token.len()
            )));
        }
        let d = parse_directives(token)?;
        let need = |k: &str| get(&d, k).ok_or_else(|| proto(format!("missing {k}")));
        let user = need("username")?;
        if user != SPARK_SASL_USER_B64 {
            return Err(proto(format!("unknown user {user:?}")));
        }
        if let Some(realm) = get(&d, "realm") {
            if realm != REALM {
                return Err(proto(format!("realm {realm:?}, expected {REALM:?}")));
            }
        }
        let nonce = need("nonce")?;
        if nonce.as_bytes().ct_eq(self.nonce.as_bytes()).unwrap_u8() == 0 {
            return Err(proto("nonce does not match the challenge"));
        }
        let nc = need("nc")?;
        if nc != "00000001" {
            return Err(proto(format!("nonce count {nc}, expected 00000001")));
        }
        let cnonce = need("cnonce")?;
        if cnonce.is_empty() {
            return Err(proto("empty cnonce"));
        }
        let qop = get(&d, "qop").unwrap_or("auth");
        let offered = self.qop_offer().split(',').any(|q| q == qop);
        if !offered {
            return Err(proto(format!(
                "qop {qop:?} was not offered ({})",
                self.qop_offer()
            )));
        }
        let uri = need("digest-uri")?;
        if uri != DIGEST_URI {
            return Err(proto(format!(
                "digest-uri {uri:?}, expected {DIGEST_URI:?}"
            )));
        }
        if let Some(cs) = get(&d, "charset") {
            if !cs.eq_ignore_ascii_case("utf-8") {
                return Err(proto(format!("charset {cs:?}")));
            }
        }
        let authzid = get(&d, "authzid");
        if authzid.is_some_and(|a| a != user) {
            return Err(proto("authzid differs from the user"));
        }
        let maxbuf = match get(&d, "maxbuf") {
            Some(m) => m
                .parse::<u32>()
                .ok()
                .filter(|m| *m >= 16)
                .ok_or_else(|| proto(format!("bad maxbuf {m:?}")))?,
            None => 65536,
        };
        let cipher = get(&d, "cipher");
        if qop == "auth-conf" && cipher != Some(CIPHER) {
            return Err(proto(format!(
                "cipher {cipher:?} was not offered (only {CIPHER})"
            )));
        }
        let response = need("response")?;
        let h = ha1(user, secret, nonce, cnonce, authzid);
        let expected = digest_value(&h, nonce, nc, cnonce, qop, "AUTHENTICATE");
        if response
            .to_ascii_lowercase()
            .as_bytes()
            .ct_eq(expected.as_bytes())
            .unwrap_u8()
            == 0
        {
            return Err(SaslError::BadResponse);
        }
        let rspauth = digest_value(&h, nonce, nc, cnonce, qop, "");
        Ok(Negotiated {
            reply: format!("rspauth={rspauth}").into_bytes(),
            layer: (qop == "auth-conf").then(|| SaslLayer::new(&h, true, maxbuf as usize)),
        })
    }
}

/// Client side, as Spark's `SparkSaslClient` behaves (for tests and the benchmark).
pub struct DigestClient {
    secret: String,
    encrypt: bool,
    expected_rspauth: Option<String>,
    ha1: [u8; 16],
}

impl DigestClient {
    pub fn new(secret: &str, encrypt: bool) -> Self {
        Self {
            secret: secret.to_owned(),
            encrypt,
            expected_rspauth: None,
            ha1: [0; 16],
        }
    }

    /// The digest-response to a challenge.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, SaslError> {
        let d = parse_directives(challenge)?;
        let nonce = get(&d, "nonce").ok_or_else(|| proto("challenge without nonce"))?;
        let qops = get(&d, "qop").unwrap_or("auth");
        let qop = if self.encrypt { "auth-conf" } else { "auth" };
        if !qops.split(',').any(|q| q.trim() == qop) {
            return Err(proto(format!("server does not offer {qop}")));
        }
        let cnonce = random_nonce();
        let nc = "00000001";
        self.ha1 = ha1(SPARK_SASL_USER_B64, &self.secret, nonce, &cnonce, None);
        let response = digest_value(&self.ha1, nonce, nc, &cnonce, qop, "AUTHENTICATE");
        self.expected_rspauth = Some(digest_value(&self.ha1, nonce, nc, &cnonce, qop, ""));
        let mut out = format!(
            "charset=utf-8,username=\"{SPARK_SASL_USER_B64}\",realm=\"{REALM}\",nonce=\"{nonce}\",nc={nc},cnonce=\"{cnonce}\",digest-uri=\"{DIGEST_URI}\",maxbuf=65536,response={response},qop={qop}"
        );
        if self.encrypt {
            out.push_str(&format!(",cipher=\"{CIPHER}\""));
        }
        Ok(out.into_bytes())
    }

    /// Checks the server's `rspauth`; returns the client's security layer for `auth-conf`.
    pub fn finish(&self, reply: &[u8]) -> Result<Option<SaslLayer>, SaslError> {
        let d = parse_directives(reply)?;
        let got = get(&d, "rspauth").ok_or_else(|| proto("no rspauth"))?;
        if Some(got) != self.expected_rspauth.as_deref() {
            return Err(proto(
                "rspauth does not match: the server does not know the secret",
            ));
        }
        Ok(self
            .encrypt
            .then(|| SaslLayer::new(&self.ha1, false, 65536)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_break_lines_as_netty_does() {
        // short secrets: one line
        assert_eq!(password("s3cret"), "czNjcmV0");
        // a secret as Spark on Kubernetes generates it (Utils.createSecret: 32 bytes in hex)
        let secret = "112be1ddcb135e7fe5a8a43b9bc9044b920c04c91dc7fa9077db231c1782c119";
        let p = password(secret);
        let (first, rest) = p.split_once('\n').expect("a line break");
        assert_eq!(first.len(), 76);
        assert_eq!(rest.len(), 12);
        assert!(!rest.contains('\n'));
        // exactly 76 characters (57 bytes): no break, no trailing newline
        assert!(!password(&"x".repeat(57)).contains('\n'));
        assert_eq!(password(&"x".repeat(58)).matches('\n').count(), 1);
    }

    #[test]
    fn spec_transcript_auth() {
        // spec/shuffle-protocol.md §13.2, recorded from Spark 4.3.0 with secret "secret".
        let mut s =
            DigestServer::with_nonce("loejejSZ5Vqh4Cd9qpeN6VvyUTncd1TbUfOZDBdF".into(), false);
        s.challenge(b"").expect("challenge");
        let c2 = b"charset=utf-8,username=\"c3BhcmtTYXNsVXNlcg==\",realm=\"default\",nonce=\"loejejSZ5Vqh4Cd9qpeN6VvyUTncd1TbUfOZDBdF\",nc=00000001,cnonce=\"6lRa+DqLaEH4oH2JTPA5vEiZ6g//e+JmLRcJLvbI\",digest-uri=\"null/default\",maxbuf=65536,response=fe5c00ca18456ccd7eb52577dc5b4f14,qop=auth";
        let n = s.verify(c2, "secret").expect("verifies");
        assert_eq!(n.reply, b"rspauth=e59bb14ad05d2175e20f4a13b1d02107");
        assert!(n.layer.is_none());
        let mut s =
            DigestServer::with_nonce("loejejSZ5Vqh4Cd9qpeN6VvyUTncd1TbUfOZDBdF".into(), false);
        s.challenge(b"").expect("challenge");
        assert_eq!(s.verify(c2, "other").err(), Some(SaslError::BadResponse));
    }

    #[test]
    fn directive_parsing() {
        let d = parse_directives(br#"a=1, b="x\"y,z" ,c=tok"#).expect("parses");
        assert_eq!(
            d,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x\"y,z".into()),
                ("c".into(), "tok".into())
            ]
        );
        assert!(parse_directives(b"a=1,a=2").is_err());
        assert!(parse_directives(b"a=\"open").is_err());
        assert!(parse_directives(b"novalue").is_err());
    }

    #[test]
    fn our_client_and_server_agree_both_qops() {
        for encrypt in [false, true] {
            let mut s = DigestServer::new(false);
            let mut c = DigestClient::new("s3cr3t", encrypt);
            let ch = s.challenge(b"").expect("challenge");
            let resp = c.respond(&ch).expect("respond");
            let n = s.verify(&resp, "s3cr3t").expect("verify");
            let client_layer = c.finish(&n.reply).expect("rspauth");
            assert_eq!(n.layer.is_some(), encrypt);
            assert_eq!(client_layer.is_some(), encrypt);
        }
    }
}
