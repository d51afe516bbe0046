//! Claims: which pods an uploaded file belongs to. A pod claims a file by reading it (the
//! client's address is a pod's address in the grant's namespace) or by naming its upload
//! directory in its spec; the claim is recorded as its own small object,
//!
//! ```text
//! webhdfs/claims/<grant>/<file id>/<owner hash>.json    the Owner (namespace, labels or name)
//! ```
//!
//! so that claims from any replica, and from before a restart, count, and so that recording
//! one never rewrites anything shared (a put of the same claim twice is harmless). The owner
//! is the pod's application (`spark-app-selector`), so the file lives while the driver or any
//! executor of that application does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sha2::Digest;
use sidecars_common::objstore::{self, ObjectStore, StoreError};

use crate::store::Owner;

/// Claims remembered as already stored (beyond this the set is cleared and claims may be
/// written again, which is harmless).
const REMEMBERED: usize = 100_000;

pub fn claims_prefix(grant: &str, file_id: &str) -> String {
    format!("webhdfs/claims/{grant}/{file_id}/")
}

fn owner_hash(owner: &Owner) -> String {
    let json = serde_json::to_vec(owner).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&json)[..12])
}

pub fn claim_key(grant: &str, file_id: &str, owner: &Owner) -> String {
    format!(
        "{}{}.json",
        claims_prefix(grant, file_id),
        owner_hash(owner)
    )
}

/// The grant and file id of a claim key.
pub fn parse_claim_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("webhdfs/claims/")?;
    let mut it = rest.splitn(3, '/');
    let (grant, file, _) = (it.next()?, it.next()?, it.next()?);
    Some((grant, file))
}

/// Records and reads claims.
#[derive(Clone, Debug)]
pub struct Claims {
    objects: Arc<dyn ObjectStore>,
    stored: Arc<Mutex<HashSet<String>>>,
    /// Claim objects already read, by key (claims never change).
    read: Arc<Mutex<HashMap<String, Owner>>>,
}

impl Claims {
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self {
            objects,
            stored: Default::default(),
            read: Default::default(),
        }
    }

    /// Records that `owner` claims the file `file_id` of `grant` (unless already known).
    pub async fn record(
        &self,
        grant: &str,
        file_id: &str,
        owner: &Owner,
    ) -> Result<(), StoreError> {
        let key = claim_key(grant, file_id, owner);
        {
            let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
            if stored.contains(&key) {
                return Ok(());
            }
            if stored.len() >= REMEMBERED {
                stored.clear();
            }
        }
        let body = serde_json::to_vec(owner).unwrap_or_default();
        objstore::put_bytes(&*self.objects, &key, body.into()).await?;
        tracing::info!(grant, file = file_id, namespace = %owner.owner_namespace, labels = ?owner.owner_labels, pod = ?owner.owner_name, "upload claimed");
        self.stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        Ok(())
    }

    /// Every claim, by (grant, file id).
    pub async fn all(&self) -> Result<HashMap<(String, String), Vec<Owner>>, StoreError> {
        let listed = self.objects.list_shallow("webhdfs/claims/").await?;
        let mut out: HashMap<(String, String), Vec<Owner>> = HashMap::new();
        let mut keep = HashSet::new();
        for o in listed {
            let Some((grant, file)) = parse_claim_key(&o.key) else {
                continue;
            };
            keep.insert(o.key.clone());
            let cached = self
                .read
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&o.key)
                .cloned();
            let owner = match cached {
                Some(owner) => owner,
                None => match objstore::get_bytes(&*self.objects, &o.key).await {
                    Ok(b) => match serde_json::from_slice::<Owner>(&b) {
                        Ok(owner) => {
                            self.read
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(o.key.clone(), owner.clone());
                            owner
                        }
                        Err(_) => continue,
                    },
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                },
            };
            out.entry((grant.to_string(), file.to_string()))
                .or_default()
                .push(owner);
        }
        self.read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep.contains(k));
        Ok(out)
    }

    /// Deletes the claims of one file.
    pub async fn remove_file(&self, grant: &str, file_id: &str) -> Result<(), StoreError> {
        for o in self
            .objects
            .list_shallow(&claims_prefix(grant, file_id))
            .await?
        {
            self.objects.delete(&o.key).await?;
            self.stored
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&o.key);
        }
        Ok(())
    }
}
