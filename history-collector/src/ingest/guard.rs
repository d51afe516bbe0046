//! The gate every agent request passes before it touches the store: who is it
//! ([`super::auth`]), may it write this log ([`super::driver`]), and does the log belong to
//! it or to nobody yet ([`super::owners`]). Refusals are counted by reason and logged (once a
//! minute per source and reason, so a hostile client cannot flood the log).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::auth::{AuthError, Authenticator, Identity};
use super::driver::DriverCheck;
use super::owners::{OwnerError, Owners};

/// Refused ingest requests, by reason.
#[derive(Clone, Debug, Default)]
pub struct GuardMetrics {
    pub refused: Family<RefusalLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    pub reason: &'static str,
}

impl GuardMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "history_ingest_refused_requests",
            "Agent requests refused (no or bad token, not the log's driver, owned by another source), by reason",
            self.refused.clone(),
        );
    }
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Owner(#[from] OwnerError),
}

impl Refused {
    fn label(&self) -> &'static str {
        match self {
            Refused::Auth(a) => a.label(),
            Refused::Owner(OwnerError::Layout(_)) => "unavailable",
            Refused::Owner(_) => "owned_by_another",
        }
    }
}

/// Authentication, authorisation and ownership, in that order.
pub struct Guard {
    authn: Authenticator,
    drivers: DriverCheck,
    owners: Arc<Owners>,
    metrics: GuardMetrics,
    logged: Mutex<HashMap<(String, &'static str), Instant>>,
}

impl Guard {
    pub fn new(
        authn: Authenticator,
        drivers: DriverCheck,
        owners: Arc<Owners>,
        metrics: GuardMetrics,
    ) -> Self {
        Guard {
            authn,
            drivers,
            owners,
            metrics,
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any agent can be let in (a token file or Kubernetes is configured).
    pub fn enabled(&self) -> bool {
        self.authn.enabled()
    }

    /// The identity behind `token` if it may write the log `log`, claiming the log for it
    /// when nobody owns it yet. `peer` only names the client in logs.
    pub async fn admit(
        &self,
        token: Result<&str, AuthError>,
        log: &str,
        peer: &str,
    ) -> Result<Identity, Refused> {
        let r = self.check(token, log).await;
        if let Err(e) = &r {
            let reason = e.label();
            self.metrics
                .refused
                .get_or_create(&RefusalLabel { reason })
                .inc();
            let now = Instant::now();
            let first = self.logged.lock().map(|mut l| {
                if l.len() > 10_000 {
                    l.clear();
                }
                let key = (peer.to_string(), reason);
                match l.get(&key) {
                    Some(t) if now.duration_since(*t) < Duration::from_secs(60) => false,
                    _ => {
                        l.insert(key, now);
                        true
                    }
                }
            });
            if first.unwrap_or(true) {
                tracing::warn!(peer = %peer, log = %log, error = %e, "agent request refused");
            }
        }
        r
    }

    async fn check(&self, token: Result<&str, AuthError>, log: &str) -> Result<Identity, Refused> {
        let who = self.authn.authenticate(token?).await?;
        let owner = self.owners.owner(log).await.map_err(OwnerError::from)?;
        if let Some(o) = &owner {
            if *o != who {
                tracing::debug!(log = %log, owner = %o, requester = %who, "log owned by another source");
                return Err(OwnerError::Taken {
                    log: log.to_string(),
                    owner: o.clone(),
                }
                .into());
            }
        }
        self.drivers.may_write(&who, log, owner.is_some()).await?;
        if owner.is_none() {
            self.owners.claim(log, &who).await?;
        }
        Ok(who)
    }
}
