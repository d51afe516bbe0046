//! `spark.authenticate` as Spark's shuffle service speaks it: SASL DIGEST-MD5 (`digest`,
//! `sasl_layer` for `auth-conf`), the AuthEngine handshake (`engine`) and the transport ciphers
//! it leads to (`transport`), and the per-connection state machine that runs them before any
//! other traffic (this file).
//!
//! Which protocol a client speaks is its choice (Spark's `spark.network.crypto.enabled`): the
//! first RPC's tag byte says it (0xFB AuthEngine, 0xEA SASL), so one service serves both, as
//! Spark's own does with `saslFallback`. After authentication the connection belongs to the
//! application it authenticated as; requests naming any other application are refused.

pub mod digest;
pub mod engine;
pub mod sasl_layer;
pub mod secrets;
pub mod transport;

use std::time::Duration;

use digest::{DigestServer, SaslMessage, SASL_MESSAGE_TAG};
use engine::{AuthMessage, SessionKeys, AUTH_MESSAGE_TAG};
use sasl_layer::SaslLayer;

/// Which applications must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Every connection authenticates before anything else (Spark's ESS with
    /// `spark.authenticate=true`); applications whose secret is unknown cannot use the service.
    Required,
    /// Applications whose secret is known must authenticate; the others may use the service
    /// without (what a node shared with `spark.authenticate=false` applications needs).
    Known,
    /// No authentication (Spark's ESS with `spark.authenticate=false`).
    Off,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Required => "required",
            AuthMode::Known => "known",
            AuthMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// SASL offers only `auth-conf` (Spark's `spark.network.sasl.serverAlwaysEncrypt`).
    pub sasl_always_encrypt: bool,
    /// How long a connection may take to authenticate, when it must.
    pub timeout: Duration,
    /// How long a handshake for an application with no known secret waits for the pod watch
    /// to learn it (executors can connect moments after their pod appears).
    pub secret_wait: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Off,
            sasl_always_encrypt: false,
            timeout: Duration::from_secs(30),
            secret_wait: Duration::from_secs(5),
        }
    }
}

/// Where a connection stands.
#[derive(Debug)]
pub enum ConnAuth {
    /// Nothing has happened yet: the first RPC may authenticate.
    Start,
    /// A SASL exchange is under way for this application.
    Sasl {
        app_id: String,
        server: Box<SaslServerState>,
    },
    /// Authenticated: every request must be for this application.
    Authenticated { app_id: String },
    /// Did not authenticate (allowed by `AuthMode::Known` or `Off`).
    Anonymous,
}

pub struct SaslServerState(pub DigestServer);

impl std::fmt::Debug for SaslServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestServer")
    }
}

/// What the connection must switch to once an auth reply is on its way.
// One per connection (or a one-off return value), never queued per message: the size of
// the SASL state costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Install {
    Sasl(SaslLayer),
    Engine(SessionKeys),
}

/// What the connection's reader must switch to before reading on (the writer is told through
/// its queue, after the auth reply).
// One per connection (or a one-off return value), never queued per message: the size of
// the SASL state costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum PendingCipher {
    Sasl(sasl_layer::SaslRecv),
    Engine(SessionKeys),
}

/// The kind of an auth RPC body, by its first byte.
pub fn auth_tag(body: &[u8]) -> Option<u8> {
    match body.first() {
        Some(&t) if t == SASL_MESSAGE_TAG || t == AUTH_MESSAGE_TAG => Some(t),
        _ => None,
    }
}

/// Outcome of one auth RPC.
// One per connection (or a one-off return value), never queued per message: the size of
// the SASL state costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum AuthStep {
    /// Reply with this body; the exchange continues or is done (see `ConnAuth`).
    Reply {
        body: Vec<u8>,
        install: Option<Install>,
    },
    /// Reply with an RpcFailure carrying this text and close the connection (Spark closes
    /// the channel after a failed handshake).
    Fail(String),
}

/// The application an auth RPC names, without running it (to wait for its secret first).
pub fn auth_app_id(body: &[u8]) -> Option<String> {
    match auth_tag(body)? {
        AUTH_MESSAGE_TAG => AuthMessage::decode(body).ok().map(|m| m.app_id),
        _ => SaslMessage::decode(body).ok().map(|m| m.app_id),
    }
}

/// Runs one step of a handshake. `secret` is looked up for the application the message names.
pub fn step(
    state: &mut ConnAuth,
    body: &[u8],
    secret: impl FnOnce(&str) -> Option<String>,
    config: &AuthConfig,
) -> AuthStep {
    let fail = |s: String| AuthStep::Fail(s);
    match (auth_tag(body), &mut *state) {
        (Some(AUTH_MESSAGE_TAG), ConnAuth::Start) => {
            let msg = match AuthMessage::decode(body) {
                Ok(m) => m,
                Err(e) => {
                    return fail(format!(
                        "java.lang.IllegalArgumentException: Unknown challenge message: {e}"
                    ))
                }
            };
            let Some(secret) = secret(&msg.app_id) else {
                return fail(format!(
                    "java.lang.IllegalStateException: Trying to authenticate non-registered app {}: this shuffle service knows no secret for it (--auth-secret-file, or the executor pods' {} it learns on Kubernetes)",
                    msg.app_id,
                    secrets::ENV_AUTH_SECRET
                ));
            };
            match engine::respond(&msg, &secret) {
                Ok((reply, keys)) => {
                    *state = ConnAuth::Authenticated { app_id: msg.app_id };
                    AuthStep::Reply {
                        body: reply.encode().to_vec(),
                        install: Some(Install::Engine(keys)),
                    }
                }
                Err(e) => fail(format!(
                    "java.lang.RuntimeException: Authentication failed for app {}: {e}",
                    msg.app_id
                )),
            }
        }
        (Some(SASL_MESSAGE_TAG), ConnAuth::Start) => {
            let msg = match SaslMessage::decode(body) {
                Ok(m) => m,
                Err(e) => return fail(format!("java.lang.IllegalStateException: {e}")),
            };
            let mut server = DigestServer::new(config.sasl_always_encrypt);
            match server.challenge(&msg.token) {
                Ok(challenge) => {
                    *state = ConnAuth::Sasl {
                        app_id: msg.app_id,
                        server: Box::new(SaslServerState(server)),
                    };
                    AuthStep::Reply {
                        body: challenge,
                        install: None,
                    }
                }
                Err(e) => fail(format!("javax.security.sasl.SaslException: {e}")),
            }
        }
        (Some(SASL_MESSAGE_TAG), ConnAuth::Sasl { app_id, server }) => {
            let msg = match SaslMessage::decode(body) {
                Ok(m) => m,
                Err(e) => return fail(format!("java.lang.IllegalStateException: {e}")),
            };
            if msg.app_id != *app_id {
                return fail(format!(
                    "javax.security.sasl.SaslException: SASL exchange started for {app_id} continued for {}",
                    msg.app_id
                ));
            }
            let Some(secret) = secret(app_id) else {
                return fail(format!(
                    "java.lang.IllegalStateException: Trying to authenticate non-registered app {app_id}: this shuffle service knows no secret for it"
                ));
            };
            match server.0.verify(&msg.token, &secret) {
                Ok(n) => {
                    let app_id = std::mem::take(app_id);
                    *state = ConnAuth::Authenticated { app_id };
                    AuthStep::Reply {
                        body: n.reply,
                        install: n.layer.map(Install::Sasl),
                    }
                }
                Err(e) => fail(format!(
                    "javax.security.sasl.SaslException: authentication of {app_id} failed: {e}"
                )),
            }
        }
        (Some(_), _) => fail(
            "java.lang.IllegalStateException: unexpected authentication message: this connection has already authenticated or skipped authentication"
                .into(),
        ),
        (None, _) => fail(
            "java.lang.IllegalStateException: Expected SaslMessage, received something else (maybe your client does not have SASL enabled?)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests;
