//! The cleaner: deletes bundles nobody needs any more.
//!
//! - never downloaded: gone `--initial-access-timeout` after upload (default 30m);
//! - downloaded at least once: kept while a pod matching its owner labels exists in its
//!   namespace (answered by an [`OwnerPods`] view, kept current by a Kubernetes watch), and
//!   deleted once none has existed for `--owner-grace`; without Kubernetes, kept until the
//!   maximum age;
//! - any bundle older than `--max-age` (when set);
//! - objects of uploads that died before their `meta.json` was written, after `--orphan-grace`.
//!
//! WebHDFS uploads follow their own rules, in the same pass ([`crate::webhdfs::cleanup`]).
//!
//! Each pass reads the state from the object store, so several replicas sharing one S3 bucket
//! agree, and a restart loses nothing. The pass also refreshes the gauges and each namespace's
//! stored bytes (what `--namespace-quota` is checked against).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::limits::Usage;
use crate::metrics::Metrics;
use crate::store::{self, Bundles, Owner};
use crate::webhdfs::{cleanup, WebHdfs};

/// What the server knows of pods (the Kubernetes watch, see [`crate::owners`]).
pub trait OwnerPods: Send + Sync {
    /// Whether pods matching `owner` exist. `None`: cannot tell (not synced yet).
    fn any_alive(&self, owner: &Owner) -> Option<bool>;

    /// The owners of the pods in `namespace` at address `ip` (who is reading an upload).
    fn owners_at(&self, _namespace: &str, _ip: std::net::IpAddr) -> Vec<Owner> {
        Vec::new()
    }

    /// The owners of the pods in `namespace` whose spec names the upload directory
    /// `upload_dir` (`spark-upload-<uuid>`).
    fn owners_referencing(&self, _namespace: &str, _upload_dir: &str) -> Vec<Owner> {
        Vec::new()
    }
}

/// Cleanup settings.
#[derive(Clone, Debug)]
pub struct Policy {
    pub initial_access_timeout: Duration,
    pub max_age: Option<Duration>,
    pub owner_grace: Duration,
    pub orphan_grace: Duration,
}

pub struct Cleaner {
    bundles: Bundles,
    policy: Policy,
    owners: Option<Arc<dyn OwnerPods>>,
    metrics: Arc<Metrics>,
    usage: Arc<Usage>,
    webhdfs: Option<(Arc<WebHdfs>, cleanup::Policy, cleanup::Cleaner)>,
    /// When each used bundle was first seen without owner pods (in memory on purpose: after a
    /// restart the grace period starts again, which only ever keeps bundles longer).
    owner_gone_since: HashMap<String, DateTime<Utc>>,
}

fn older_than(t: DateTime<Utc>, now: DateTime<Utc>, d: Duration) -> bool {
    now.signed_duration_since(t)
        .to_std()
        .is_ok_and(|age| age > d)
}

impl Cleaner {
    pub fn new(
        bundles: Bundles,
        policy: Policy,
        owners: Option<Arc<dyn OwnerPods>>,
        metrics: Arc<Metrics>,
        usage: Arc<Usage>,
    ) -> Self {
        Self {
            bundles,
            policy,
            owners,
            metrics,
            usage,
            webhdfs: None,
            owner_gone_since: HashMap::new(),
        }
    }

    /// Cleans WebHDFS uploads too, with `policy`.
    pub fn with_webhdfs(mut self, webhdfs: Arc<WebHdfs>, policy: cleanup::Policy) -> Self {
        self.webhdfs = Some((webhdfs, policy, cleanup::Cleaner::default()));
        self
    }

    /// Runs passes every `interval` until `stop` is cancelled.
    pub async fn run(mut self, interval: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.pass(Utc::now()).await {
                tracing::warn!(error = %e, "cleanup pass failed; retrying next interval");
            }
        }
    }

    /// One pass at time `now`. Returns the ids of the bundles deleted.
    pub async fn pass(&mut self, now: DateTime<Utc>) -> Result<Vec<String>, store::Error> {
        let (deleted, mut usage) = self.bundle_pass(now).await?;
        if let Some((wh, policy, cleaner)) = &mut self.webhdfs {
            let out = cleaner
                .pass(wh, policy, self.owners.as_deref(), now)
                .await?;
            for (reason, _) in &out.deleted {
                self.metrics.cleanup(&format!("webhdfs_{reason}"));
            }
            self.metrics.webhdfs_files.set(out.files as i64);
            self.metrics.blobs.set(out.blobs as i64);
            self.metrics.blob_bytes.set(out.blob_bytes as i64);
            for (ns, bytes) in out.usage {
                *usage.entry(ns).or_default() += bytes;
            }
        }
        self.usage.set_stored(usage);
        Ok(deleted)
    }

    /// The bundles' part of a pass: the ids deleted, and the bytes kept by namespace.
    async fn bundle_pass(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(Vec<String>, HashMap<String, u64>), store::Error> {
        let objects = self.bundles.objects.list("bundles/").await?;
        struct Seen {
            has_meta: bool,
            newest: DateTime<Utc>,
            bytes: u64,
        }
        let mut by_id: BTreeMap<String, Seen> = BTreeMap::new();
        for o in &objects {
            let Some(id) = o
                .key
                .strip_prefix("bundles/")
                .and_then(|r| r.split('/').next())
            else {
                continue;
            };
            let s = by_id.entry(id.to_string()).or_insert(Seen {
                has_meta: false,
                newest: o.last_modified,
                bytes: 0,
            });
            s.has_meta |= o.key.ends_with("/meta.json") && o.key == store::meta_key(id);
            s.newest = s.newest.max(o.last_modified);
            s.bytes += o.size;
        }
        let mut deleted = Vec::new();
        let (mut kept, mut kept_bytes) = (0i64, 0i64);
        let mut usage: HashMap<String, u64> = HashMap::new();
        for (id, seen) in by_id {
            let reason = if !seen.has_meta {
                older_than(seen.newest, now, self.policy.orphan_grace).then_some("orphan")
            } else {
                match self.bundles.meta(&id).await {
                    Ok(meta) => {
                        let v = self.verdict(&meta, now);
                        if v.is_none() {
                            *usage.entry(meta.owner.owner_namespace.clone()).or_default() +=
                                seen.bytes;
                        }
                        v
                    }
                    Err(store::Error::NotFound(_)) => None,
                    Err(e) => {
                        tracing::warn!(bundle = %id, error = %e, "cannot read bundle metadata; keeping it");
                        None
                    }
                }
            };
            match reason {
                Some(reason) => {
                    if let Err(e) = self.bundles.delete(&id).await {
                        tracing::warn!(bundle = %id, error = %e, "cannot delete bundle");
                        continue;
                    }
                    tracing::info!(bundle = %id, reason, "bundle deleted");
                    self.metrics.cleanup(reason);
                    self.owner_gone_since.remove(&id);
                    deleted.push(id);
                }
                None if seen.has_meta => {
                    kept += 1;
                    kept_bytes += seen.bytes as i64;
                }
                None => {}
            }
        }
        self.metrics.bundles.set(kept);
        self.metrics.bytes_stored.set(kept_bytes);
        Ok((deleted, usage))
    }

    fn verdict(&mut self, meta: &store::BundleMeta, now: DateTime<Utc>) -> Option<&'static str> {
        if let Some(max) = self.policy.max_age {
            if older_than(meta.created, now, max) {
                return Some("max_age");
            }
        }
        if meta.first_access.is_none() {
            return older_than(meta.created, now, self.policy.initial_access_timeout)
                .then_some("never_used");
        }
        let alive = self.owners.as_ref().and_then(|o| o.any_alive(&meta.owner));
        match alive {
            Some(false) => {
                let since = *self
                    .owner_gone_since
                    .entry(meta.resource_id.clone())
                    .or_insert(now);
                older_than(since, now, self.policy.owner_grace).then_some("owner_gone")
            }
            Some(true) => {
                self.owner_gone_since.remove(&meta.resource_id);
                None
            }
            None => None,
        }
    }
}
