//! Fuzz properties of the authentication decoders, in the style of the frame decoders' (see
//! `protocol/tests.rs`): random and mutated bytes must give an error, never a panic, and never
//! an authenticated connection.

use bytes::BytesMut;
use proptest::prelude::*;

use super::digest::{parse_directives, DigestClient, DigestServer, SaslMessage};
use super::engine::{AuthMessage, EngineClient};
use super::transport::{Detector, GcmOpener, SaslOpener};
use super::*;

fn config() -> AuthConfig {
    AuthConfig {
        mode: AuthMode::Required,
        ..AuthConfig::default()
    }
}

/// A genuine digest-response for a fresh server, to mutate.
fn digest_response() -> (DigestServer, Vec<u8>) {
    let mut s = DigestServer::new(false);
    let ch = s.challenge(b"").expect("challenge");
    let mut c = DigestClient::new("secret", true);
    let r = c.respond(&ch).expect("respond");
    (s, r)
}

#[test]
fn state_machine_runs_both_protocols_and_refuses_the_rest() {
    // AuthEngine, right and wrong secret
    let c = EngineClient::new("app-1", "secret");
    let body = c.challenge().encode();
    let mut st = ConnAuth::Start;
    match step(&mut st, &body, |_| Some("secret".into()), &config()) {
        AuthStep::Reply { body, install } => {
            assert!(matches!(install, Some(Install::Engine(_))));
            c.finish(&AuthMessage::decode(&body).expect("reply"))
                .expect("keys");
        }
        AuthStep::Fail(e) => panic!("{e}"),
    }
    assert!(matches!(st, ConnAuth::Authenticated { ref app_id } if app_id == "app-1"));
    let mut st = ConnAuth::Start;
    assert!(matches!(
        step(&mut st, &body, |_| Some("other".into()), &config()),
        AuthStep::Fail(_)
    ));
    let mut st = ConnAuth::Start;
    match step(&mut st, &body, |_| None, &config()) {
        AuthStep::Fail(e) => assert!(e.contains("non-registered app app-1"), "{e}"),
        AuthStep::Reply { .. } => panic!("authenticated without a secret"),
    }
    // SASL in two steps
    let mut st = ConnAuth::Start;
    let first = SaslMessage {
        app_id: "app-2".into(),
        token: vec![],
    }
    .encode();
    let AuthStep::Reply {
        body: challenge, ..
    } = step(&mut st, &first, |_| Some("s".into()), &config())
    else {
        panic!("no challenge")
    };
    let mut client = DigestClient::new("s", false);
    let second = SaslMessage {
        app_id: "app-2".into(),
        token: client.respond(&challenge).expect("respond"),
    }
    .encode();
    let AuthStep::Reply {
        body: rspauth,
        install,
    } = step(&mut st, &second, |_| Some("s".into()), &config())
    else {
        panic!("refused")
    };
    assert!(install.is_none());
    client.finish(&rspauth).expect("server proved the secret");
    assert!(matches!(st, ConnAuth::Authenticated { ref app_id } if app_id == "app-2"));
    // a second handshake on an authenticated connection, and a plain RPC, are refused
    assert!(matches!(
        step(&mut st, &first, |_| Some("s".into()), &config()),
        AuthStep::Fail(_)
    ));
    let mut st = ConnAuth::Start;
    match step(&mut st, b"\x02\x00", |_| Some("s".into()), &config()) {
        AuthStep::Fail(e) => assert!(e.contains("Expected SaslMessage"), "{e}"),
        AuthStep::Reply { .. } => panic!("accepted"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn auth_decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = SaslMessage::decode(&data);
        let _ = AuthMessage::decode(&data);
        let _ = parse_directives(&data);
        let _ = auth_app_id(&data);
        let mut s = DigestServer::new(false);
        let _ = s.challenge(b"");
        prop_assert!(s.verify(&data, "secret").is_err());
        let mut st = ConnAuth::Start;
        let _ = step(&mut st, &data, |_| Some("secret".into()), &config());
        let authenticated = matches!(st, ConnAuth::Authenticated { .. });
        prop_assert!(!authenticated);
    }

    #[test]
    fn mutated_auth_messages_never_authenticate(pos in 0usize..400, byte in any::<u8>(), cut in 1usize..400) {
        let c = EngineClient::new("app-1", "secret");
        let mut data = c.challenge().encode().to_vec();
        let p = pos % data.len();
        let changed = data[p] != byte;
        data[p] = byte;
        let shortened = cut < data.len();
        data.truncate(cut);
        let mut st = ConnAuth::Start;
        let r = step(&mut st, &data, |_| Some("secret".into()), &config());
        if changed || shortened {
            prop_assert!(matches!(r, AuthStep::Fail(_)));
        }
        // anywhere in the digest-response: no panic; in the response hash: refused
        let (mut s, mut resp) = digest_response();
        let p = pos % resp.len();
        resp[p] = byte;
        let _ = s.verify(&resp, "secret");
        let (mut s, mut resp) = digest_response();
        let at = resp.windows(9).position(|w| w == b"response=").expect("response") + 9;
        let p = at + pos % 32;
        let changed = !resp[p].eq_ignore_ascii_case(&byte);
        resp[p] = byte;
        let r = s.verify(&resp, "secret");
        if changed { prop_assert!(r.is_err()); }
    }

    #[test]
    fn cipher_decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000), key32 in any::<bool>()) {
        let key = if key32 { vec![1u8; 32] } else { vec![1u8; 16] };
        let mut raw = BytesMut::from(&data[..]);
        let _ = GcmOpener::new(&key).open(&mut raw, &mut BytesMut::new());
        let layer = sasl_layer::SaslLayer::new(&[9u8; 16], true, 65536);
        let mut raw = BytesMut::from(&data[..]);
        let _ = SaslOpener::new(layer.recv, 1 << 20).open(&mut raw, &mut BytesMut::new());
        let mut layer = sasl_layer::SaslLayer::new(&[9u8; 16], true, 65536);
        let mut d = data.clone();
        let _ = layer.unwrap(&mut d);
        let c = EngineClient::new("a", "s");
        let (_, keys) = engine::respond(c.challenge(), "s").expect("respond");
        let _ = Detector::new(keys, 1 << 20).detect(&data);
    }
}
