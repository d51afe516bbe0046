//! Who owns each stored event log: the first source to write a log name owns it, and no
//! other source may write or remove anything under that name afterwards. A record per log,
//! `owners/<logName>`, holds the owner's [`Identity`] as JSON; it is written before the
//! log's first byte is stored, so every stored log has one (logs stored before owners were
//! recorded are the exception: see [`Owners::claim`]).
//!
//! What is owned is really the application id: the logs of one application's attempts
//! (`<appId>`, `<appId>_<attempt>`) go to one source, so nobody can slip an "attempt" of their
//! own in beside another source's application (where it would be shown as its newest
//! attempt). A name cannot tell `app_1` the application from `app` attempt `1`, so a claim is
//! refused while any log it could be an attempt of, or any log that could be an attempt of
//! it, is another source's.
//!
//! One collector writes the store (the Deployment runs one replica), so a process-wide lock
//! around a claim is enough to keep two first writers from both winning.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use sidecars_common::objstore::{self, StoreError};

use super::auth::Identity;
use super::layout::{check_component, LayoutError, LogStore};
use crate::logdir::names;

/// Prefix of the ownership records.
pub const OWNERS: &str = "owners";

fn owner_key(log: &str) -> String {
    format!("{OWNERS}/{log}")
}

/// Why a claim is refused.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("the event log {log} belongs to another source")]
    Taken { log: String, owner: Identity },
    #[error("the event log {log} was stored before owners were recorded; only the directory watcher may add to it")]
    Unowned { log: String },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// The ownership records, cached.
#[derive(Debug)]
pub struct Owners {
    store: LogStore,
    known: Mutex<HashMap<String, Identity>>,
    claiming: tokio::sync::Mutex<()>,
}

impl Owners {
    pub fn new(store: LogStore) -> Self {
        Owners {
            store,
            known: Mutex::new(HashMap::new()),
            claiming: tokio::sync::Mutex::new(()),
        }
    }

    /// The owner of `log`, if it has one.
    pub async fn owner(&self, log: &str) -> Result<Option<Identity>, LayoutError> {
        check_component(log)?;
        if let Some(who) = self.known.lock().ok().and_then(|k| k.get(log).cloned()) {
            return Ok(Some(who));
        }
        let key = owner_key(log);
        let data = match self.store.store().get(&key, None).await {
            Ok(got) => {
                let mut buf = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(
                    &mut tokio::io::AsyncReadExt::take(got.body, 64 << 10),
                    &mut buf,
                )
                .await
                .map_err(|source| StoreError::Io {
                    url: self.store.store().object_url(&key),
                    source,
                })?;
                buf
            }
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let who: Identity = serde_json::from_slice(&data).map_err(|e| LayoutError::BadName {
            name: key.clone(),
            reason: if e.is_eof() {
                "truncated ownership record"
            } else {
                "unreadable ownership record"
            },
        })?;
        if let Ok(mut k) = self.known.lock() {
            k.insert(log.to_string(), who.clone());
        }
        Ok(Some(who))
    }

    /// Makes `who` the owner of `log` unless it has one; fails if another source owns it.
    /// A log with stored files but no record (stored by a collector that did not record
    /// owners) can be claimed by the directory watcher only: an agent could otherwise take
    /// over, and then remove, a log that was never its own.
    pub async fn claim(&self, log: &str, who: &Identity) -> Result<(), OwnerError> {
        let _one_at_a_time = self.claiming.lock().await;
        match self.owner(log).await? {
            Some(o) if &o == who => return Ok(()),
            Some(owner) => {
                return Err(OwnerError::Taken {
                    log: log.to_string(),
                    owner,
                })
            }
            None => {}
        }
        if let Some((other, owner)) = self.related_owner(log, who).await? {
            tracing::warn!(log = %log, related = %other, owner = %owner, requester = %who, "refusing a log of an application id another source owns");
            return Err(OwnerError::Taken {
                log: log.to_string(),
                owner,
            });
        }
        if *who != Identity::Directory && !self.store.list_files(log).await?.is_empty() {
            return Err(OwnerError::Unowned {
                log: log.to_string(),
            });
        }
        let json = serde_json::to_vec(who).map_err(|_| LayoutError::BadName {
            name: log.to_string(),
            reason: "identity cannot be recorded",
        })?;
        objstore::put_bytes(
            self.store.store().as_ref(),
            &owner_key(log),
            Bytes::from(json),
        )
        .await
        .map_err(LayoutError::from)?;
        tracing::info!(log = %log, owner = %who, "event log claimed");
        if let Ok(mut k) = self.known.lock() {
            k.insert(log.to_string(), who.clone());
        }
        Ok(())
    }
}

impl Owners {
    /// A log of the same application id as `log` (one `log` could be an attempt of, or an
    /// attempt of `log`) owned by someone other than `who`, and its owner.
    async fn related_owner(
        &self,
        log: &str,
        who: &Identity,
    ) -> Result<Option<(String, Identity)>, LayoutError> {
        for parent in names::app_ids_of(log).into_iter().skip(1) {
            if check_component(parent).is_err() {
                continue;
            }
            if let Some(o) = self.owner(parent).await? {
                if o != *who {
                    return Ok(Some((parent.to_string(), o)));
                }
            }
        }
        let prefix = format!("{}_", owner_key(log));
        for m in self.store.store().list(&prefix).await? {
            let Some(child) = m.key.strip_prefix(&format!("{OWNERS}/")) else {
                continue;
            };
            // only a name `log` + `_<attempt>` (no deeper `_`-suffixes of other ids matter)
            if child.contains('/') || names::app_ids_of(child).get(1) != Some(&log) {
                continue;
            }
            if let Some(o) = self.owner(child).await? {
                if o != *who {
                    return Ok(Some((child.to_string(), o)));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::layout::eventlog_key;

    #[tokio::test]
    async fn first_writer_owns_a_log() {
        let (_dir, ls) = crate::ingest::layout::tests::temp_store().await;
        let a = Identity::Token { name: "a".into() };
        let b = Identity::Kubernetes {
            namespace: "x".into(),
            service_account: "spark".into(),
            pod: None,
        };
        let owners = Owners::new(ls.clone());
        owners.claim("app-1", &a).await.unwrap();
        owners.claim("app-1", &a).await.unwrap();
        assert!(matches!(
            owners.claim("app-1", &b).await,
            Err(OwnerError::Taken { .. })
        ));
        // the record outlives the process
        let again = Owners::new(ls.clone());
        assert_eq!(again.owner("app-1").await.unwrap(), Some(a.clone()));
        assert!(again.claim("app-1", &b).await.is_err());
        // a log stored without a record: the directory watcher's only
        ls.put_complete(
            &eventlog_key("app-2", "app-2"),
            3,
            Box::pin(std::io::Cursor::new(b"{}\n".to_vec())),
        )
        .await
        .unwrap();
        assert!(matches!(
            owners.claim("app-2", &b).await,
            Err(OwnerError::Unowned { .. })
        ));
        owners.claim("app-2", &Identity::Directory).await.unwrap();
        assert!(owners.claim("../x", &a).await.is_err());
        // an application id is one source's, whatever attempt a log names
        assert!(matches!(
            owners.claim("app-1_1", &b).await,
            Err(OwnerError::Taken { .. })
        ));
        owners.claim("app-1_1", &a).await.unwrap();
        owners.claim("app-3_2", &b).await.unwrap();
        assert!(matches!(
            owners.claim("app-3", &a).await,
            Err(OwnerError::Taken { .. })
        ));
        owners.claim("app-3", &b).await.unwrap();
        // another id that merely shares a prefix is not related
        owners.claim("app-3_2x_y", &a).await.unwrap();
    }
}
