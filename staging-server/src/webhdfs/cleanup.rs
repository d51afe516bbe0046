//! Cleanup of WebHDFS uploads, one pass at a time (run by [`crate::cleaner`]):
//!
//! - a file some pod has claimed (see [`super::claims`]; the pods that name its upload
//!   directory in their spec claim it here) lives while a pod of a claiming owner exists,
//!   plus `--owner-grace`; while the pod watch cannot tell, it is kept;
//! - a file no pod has claimed is deleted `--unclaimed-ttl` after it was written;
//! - any file older than `--max-age` (when set);
//! - every file of a credential that expired more than `--owner-grace` ago, then the
//!   credential (nothing can read its files any more);
//! - entries of a grant that does not exist, after `--orphan-grace`;
//! - directories left empty: at once when this pass emptied them, else after
//!   `--unclaimed-ttl`;
//! - blobs (`blobs/<sha256>`) no entry refers to, once two passes in a row found them
//!   unreferenced and they are older than `--orphan-grace` (an entry may be being written
//!   on another replica); the sweep holds the blob lock exclusively, so an upload that found a blob
//!   to share cannot lose it between its check and its entry.
//!
//! Everything is read from the store each pass (entries and claims are cached by key and
//! modification time, so a pass reads only what changed), so replicas sharing a bucket agree
//! and a restart loses nothing but the grace timers, which only ever keep files longer.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sidecars_common::objstore::StoreError;

use super::tree::{self, Entry, HdfsPath, Kind};
use super::WebHdfs;
use crate::auth::grants::Grant;
use crate::cleaner::OwnerPods;
use crate::owners::UPLOAD_DIR_PREFIX;
use crate::store::Owner;

/// The cleanup settings that apply to uploads.
#[derive(Clone, Debug)]
pub struct Policy {
    pub unclaimed_ttl: Duration,
    pub owner_grace: Duration,
    pub orphan_grace: Duration,
    pub max_age: Option<Duration>,
}

/// A directory emptied by a pass goes once it is at least this old (a directory made just
/// before its first file is written must not vanish in between).
const EMPTIED_DIR_MIN_AGE: Duration = Duration::from_secs(5);

/// What a pass found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// (reason, count) of files deleted.
    pub deleted: Vec<(&'static str, String)>,
    /// Bytes of the files kept, by namespace.
    pub usage: HashMap<String, u64>,
    pub files: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// State kept between passes.
#[derive(Default)]
pub struct Cleaner {
    /// Entry objects read, by key, with the modification time they were read at.
    entries: HashMap<String, (DateTime<Utc>, Entry)>,
    /// When each claimed file was first seen with no live owner.
    gone_since: HashMap<String, DateTime<Utc>>,
    /// Blobs unreferenced at the last pass.
    blob_candidates: HashSet<String>,
}

fn older_than(t: DateTime<Utc>, now: DateTime<Utc>, d: Duration) -> bool {
    now.signed_duration_since(t)
        .to_std()
        .is_ok_and(|age| age > d)
}

/// One listed entry.
struct Listed {
    key: String,
    grant: String,
    path: HdfsPath,
    entry: Entry,
}

impl Cleaner {
    /// Reads every entry (through the cache), dropping cache lines of entries gone.
    async fn list_entries(&mut self, wh: &WebHdfs) -> Result<Vec<Listed>, StoreError> {
        let listed = wh.tree.objects().list_shallow("webhdfs/tree/").await?;
        let mut out = Vec::with_capacity(listed.len());
        let mut seen = HashSet::with_capacity(listed.len());
        for o in listed {
            let Some((grant, path)) = tree::parse_entry_key(&o.key) else {
                continue;
            };
            seen.insert(o.key.clone());
            let cached = self
                .entries
                .get(&o.key)
                .filter(|(t, _)| *t == o.last_modified)
                .map(|(_, e)| e.clone());
            let entry = match cached {
                Some(e) => e,
                None => match wh.tree.read_key(&o.key).await? {
                    Some(e) => {
                        self.entries
                            .insert(o.key.clone(), (o.last_modified, e.clone()));
                        e
                    }
                    None => continue,
                },
            };
            out.push(Listed {
                key: o.key,
                grant,
                path,
                entry,
            });
        }
        self.entries.retain(|k, _| seen.contains(k));
        Ok(out)
    }

    /// One pass at time `now`.
    pub async fn pass(
        &mut self,
        wh: &WebHdfs,
        policy: &Policy,
        pods: Option<&dyn OwnerPods>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let mut out = Outcome::default();
        // the credentials
        let mut grants: HashMap<String, Grant> = HashMap::new();
        for o in wh.tree.objects().list_shallow("webhdfs/grants/").await? {
            let Some(id) = o
                .key
                .strip_prefix("webhdfs/grants/")
                .and_then(|k| k.strip_suffix(".json"))
            else {
                continue;
            };
            if let Some(g) = wh.grants.get(id).await? {
                grants.insert(id.to_string(), g);
            }
        }
        let entries = self.list_entries(wh).await?;
        let claims = wh.claims.all().await?;
        let mut deleted_keys: HashSet<String> = HashSet::new();
        // directories a deletion of this pass emptied (their parents' turn comes after them)
        let mut emptied: HashSet<(String, HdfsPath)> = HashSet::new();
        let mut live_files = HashSet::new();

        for l in entries.iter().filter(|l| l.entry.kind == Kind::File) {
            let reason = match grants.get(&l.grant) {
                None => older_than(l.entry.created, now, policy.orphan_grace).then_some("orphan"),
                Some(g) if g.expired(now) && older_than(g.expires, now, policy.owner_grace) => {
                    Some("credential_expired")
                }
                Some(g) => self.verdict(wh, g, l, &claims, policy, pods, now).await,
            };
            let Some(reason) = reason else {
                live_files.insert(l.entry.id.clone());
                *out.usage
                    .entry(
                        grants
                            .get(&l.grant)
                            .map(|g| g.namespace.clone())
                            .unwrap_or_default(),
                    )
                    .or_default() += l.entry.size;
                out.files += 1;
                continue;
            };
            if let Err(e) = wh.tree.objects().delete(&l.key).await {
                tracing::warn!(error = %e, key = %l.key, "cannot delete an upload");
                continue;
            }
            if let Err(e) = wh.claims.remove_file(&l.grant, &l.entry.id).await {
                tracing::warn!(error = %e, "cannot delete the claims of an upload");
            }
            tracing::info!(grant = %l.grant, path = %l.path.shown(), reason, "upload deleted");
            self.gone_since.remove(&l.entry.id);
            deleted_keys.insert(l.key.clone());
            if let Some(parent) = l.path.parent() {
                emptied.insert((l.grant.clone(), parent));
            }
            out.deleted.push((reason, l.path.to_string()));
        }
        self.gone_since.retain(|id, _| live_files.contains(id));

        // directories: deepest first, so a parent sees its children gone
        let remaining: Vec<&Listed> = entries
            .iter()
            .filter(|l| !deleted_keys.contains(&l.key))
            .collect();
        let mut children: HashMap<(String, HdfsPath), usize> = HashMap::new();
        for l in &remaining {
            if let Some(parent) = l.path.parent() {
                *children.entry((l.grant.clone(), parent)).or_default() += 1;
            }
        }
        let mut dirs: Vec<&Listed> = remaining
            .iter()
            .copied()
            .filter(|l| l.entry.kind == Kind::Directory)
            .collect();
        dirs.sort_by_key(|l| std::cmp::Reverse(l.path.parts().len()));
        let mut gone_dirs: HashSet<(String, HdfsPath)> = HashSet::new();
        for d in dirs {
            let key = (d.grant.clone(), d.path.clone());
            if children.get(&key).copied().unwrap_or(0) > 0 {
                continue;
            }
            let grant_gone = match grants.get(&d.grant) {
                None => older_than(d.entry.created, now, policy.orphan_grace),
                Some(g) => g.expired(now) && older_than(g.expires, now, policy.owner_grace),
            };
            let drop_it = grant_gone
                || (emptied.contains(&key)
                    && older_than(d.entry.created, now, EMPTIED_DIR_MIN_AGE))
                || older_than(d.entry.created, now, policy.unclaimed_ttl);
            if !drop_it {
                continue;
            }
            if let Err(e) = wh.tree.objects().delete(&d.key).await {
                tracing::warn!(error = %e, key = %d.key, "cannot delete an upload directory");
                continue;
            }
            tracing::info!(grant = %d.grant, path = %d.path.shown(), "empty upload directory deleted");
            if let Some(parent) = d.path.parent() {
                let pk = (d.grant.clone(), parent);
                if let Some(n) = children.get_mut(&pk) {
                    *n = n.saturating_sub(1);
                }
                emptied.insert(pk);
            }
            gone_dirs.insert(key);
        }

        // credentials past their expiry and grace, once nothing of theirs is left
        for (id, g) in &grants {
            if g.expired(now) && older_than(g.expires, now, policy.owner_grace) {
                let left = remaining.iter().any(|l| {
                    l.grant == *id && !gone_dirs.contains(&(l.grant.clone(), l.path.clone()))
                });
                if !left {
                    wh.grants.delete(id).await?;
                    tracing::info!(grant = %id, namespace = %g.namespace, "expired credential deleted");
                }
            }
        }

        self.sweep_blobs(wh, now, policy.orphan_grace, &mut out)
            .await?;
        Ok(out)
    }

    /// Whether a live grant's file goes, and why.
    #[allow(clippy::too_many_arguments)]
    async fn verdict(
        &mut self,
        wh: &WebHdfs,
        grant: &Grant,
        l: &Listed,
        claims: &HashMap<(String, String), Vec<Owner>>,
        policy: &Policy,
        pods: Option<&dyn OwnerPods>,
        now: DateTime<Utc>,
    ) -> Option<&'static str> {
        if let Some(max) = policy.max_age {
            if older_than(l.entry.created, now, max) {
                return Some("max_age");
            }
        }
        let mut owners: Vec<Owner> = claims
            .get(&(l.grant.clone(), l.entry.id.clone()))
            .cloned()
            .unwrap_or_default();
        if let Some(pods) = pods {
            // pods that name the file's upload directory claim it
            for dir in l
                .path
                .parts()
                .iter()
                .filter(|c| c.starts_with(UPLOAD_DIR_PREFIX))
            {
                for o in pods.owners_referencing(&grant.namespace, dir) {
                    if !owners.contains(&o) {
                        if let Err(e) = wh.claims.record(&l.grant, &l.entry.id, &o).await {
                            tracing::warn!(error = %e, "cannot record a claim");
                        }
                        owners.push(o);
                    }
                }
            }
        }
        if owners.is_empty() {
            return older_than(l.entry.created, now, policy.unclaimed_ttl)
                .then_some("never_claimed");
        }
        let Some(pods) = pods else {
            // claimed, but no pod watch to say whether the owners live: kept (until --max-age)
            return None;
        };
        let answers: Vec<Option<bool>> = owners.iter().map(|o| pods.any_alive(o)).collect();
        if answers.contains(&Some(true)) || answers.contains(&None) {
            self.gone_since.remove(&l.entry.id);
            return None;
        }
        let since = *self.gone_since.entry(l.entry.id.clone()).or_insert(now);
        older_than(since, now, policy.owner_grace).then_some("owner_gone")
    }

    /// Deletes blobs unreferenced in this pass and the last one. Holds the blob lock
    /// exclusively from listing the entries to deleting.
    async fn sweep_blobs(
        &mut self,
        wh: &WebHdfs,
        now: DateTime<Utc>,
        min_age: Duration,
        out: &mut Outcome,
    ) -> Result<(), StoreError> {
        let _gc = wh.gc.write().await;
        let referenced: HashSet<String> = self
            .list_entries(wh)
            .await?
            .into_iter()
            .filter(|l| l.entry.kind == Kind::File)
            .map(|l| l.entry.sha256)
            .collect();
        let blobs = wh.tree.objects().list_shallow("blobs/").await?;
        let mut candidates = HashSet::new();
        for b in blobs {
            let Some(sha) = b.key.strip_prefix("blobs/") else {
                continue;
            };
            if referenced.contains(sha) {
                out.blobs += 1;
                out.blob_bytes += b.size;
                continue;
            }
            if self.blob_candidates.contains(sha) && older_than(b.last_modified, now, min_age) {
                if let Err(e) = wh.tree.objects().delete(&b.key).await {
                    tracing::warn!(error = %e, key = %b.key, "cannot delete a blob");
                } else {
                    tracing::debug!(sha256 = sha, "unreferenced blob deleted");
                    continue;
                }
            }
            candidates.insert(sha.to_string());
            out.blobs += 1;
            out.blob_bytes += b.size;
        }
        self.blob_candidates = candidates;
        Ok(())
    }
}
