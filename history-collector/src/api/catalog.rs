//! The set of applications the API and UI serve, each replayed into an [`App`] once and
//! again whenever its log changes.
//!
//! Logs come from two places, merged by log name (`<appId>[_<attemptId>]`):
//! - the local event-log directories (`--event-log-dir`), scanned directly;
//! - the object store's ingest layout (`--storage`, `file://` or `s3://`), where ingest and
//!   the agents put every log: complete files as objects, growing `.inprogress` files as
//!   parts (see [`crate::ingest`]). Listed in two requests per scan, read through
//!   [`LogStore`], so logs whose driver pod and disk are gone are still served.
//!
//! A log in both places is served once: a finished copy wins over one still in progress,
//! then the local file wins over the store's copy (ingest copies from it, so it is never
//! behind). A log is replayed only when its files' sizes or modification times changed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::eventlog::{self, LogSource};
use crate::ingest::layout::LogStore;
use crate::model::App;

/// One replayed log.
#[derive(Debug)]
pub struct Entry {
    pub source: LogSource,
    /// Where the log was found, as a URI (`file:/dir`, `s3://bucket/prefix/eventlogs/<log>`).
    pub dir_uri: String,
    pub app: App,
    /// When the replay finished (ms since the epoch): Spark reports this as the last update
    /// of an application that is still running.
    pub loaded_ms: i64,
    /// The replay could not read all of the log (the store failed mid-read): replay it on
    /// the next scan even if the listing shows no change.
    retry: bool,
    /// How long the replay took, in ms.
    replay_ms: i64,
}

impl Entry {
    /// What Spark shows as "last updated": the log's modification time once the application
    /// finished (for a stored copy, the object's last-modified time), the time of the last
    /// scan while it runs.
    pub fn last_updated(&self) -> i64 {
        if self.app.completed {
            self.source.modified_ms
        } else {
            self.loaded_ms
        }
    }
}

/// Every application found in the event-log directories and in the store.
#[derive(Debug, Default)]
pub struct Catalog {
    dirs: Vec<PathBuf>,
    /// The ingest store and the runtime its async reads are waited on from the blocking scan.
    store: Option<(LogStore, tokio::runtime::Handle)>,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether `a` answers better than `b` for the same log: complete first, then local.
fn better(a: &LogSource, b: &LogSource) -> bool {
    let rank = |s: &LogSource| (!s.in_progress, s.origin.is_local());
    rank(a) > rank(b)
}

impl Catalog {
    /// A catalog over local event-log directories only.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Catalog {
            dirs,
            store: None,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// A catalog over local event-log directories and the logs in the ingest `store`. Call
    /// it from within the Tokio runtime: reads from the store are waited on through it.
    pub fn with_store(dirs: Vec<PathBuf>, store: LogStore) -> Self {
        let store = match tokio::runtime::Handle::try_current() {
            Ok(rt) => Some((store, rt)),
            Err(e) => {
                tracing::error!(storage = %store.store().url(), error = %e, "the catalog was built outside a Tokio runtime: the store's event logs are not served");
                None
            }
        };
        Catalog {
            dirs,
            store,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The ingest store this catalog reads, if any (the UI reads collected pod logs from it).
    pub fn store(&self) -> Option<&LogStore> {
        self.store.as_ref().map(|(s, _)| s)
    }

    /// The store's logs, by log name; `None` when the store could not be listed.
    fn store_sources(&self) -> Option<Vec<(String, LogSource)>> {
        let (store, rt) = self.store.as_ref()?;
        match rt.block_on(store.list_all_eventlogs()) {
            Ok(all) => Some(
                all.into_iter()
                    .flat_map(|(log, files)| {
                        eventlog::stored_sources(store, rt, &log, files)
                            .into_iter()
                            .map(move |s| (log.clone(), s))
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(storage = %store.store().url(), error = %e, "cannot list the stored event logs; keeping what was listed before");
                None
            }
        }
    }

    /// Rescans the directories and the store and replays new or changed logs (blocking:
    /// run it off the async workers, e.g. in `spawn_blocking`). Logs that vanished are
    /// dropped, except the store's while the store cannot be listed.
    pub fn refresh(&self) {
        let mut found: HashMap<String, LogSource> = HashMap::new();
        let mut offer = |key: String, src: LogSource| match found.get(&key) {
            Some(have) if !better(&src, have) => {}
            _ => {
                found.insert(key, src);
            }
        };
        for dir in &self.dirs {
            match eventlog::scan_dir(dir) {
                Ok(srcs) => {
                    for src in srcs {
                        let key = src
                            .log_name()
                            .unwrap_or_else(|| format!("{}/{}", dir.display(), src.name));
                        offer(key, src);
                    }
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot list event log directory")
                }
            }
        }
        let store_listed = match self.store_sources() {
            Some(srcs) => {
                for (log, src) in srcs {
                    offer(log, src);
                }
                true
            }
            None => self.store.is_none(),
        };
        let mut found: Vec<(String, LogSource)> = found.into_iter().collect();
        // a stable order, so a first scan of many logs fills the listing predictably
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut seen = std::collections::HashSet::new();
        for (key, src) in found {
            seen.insert(key.clone());
            let now = now_ms();
            let skip = self
                .entries
                .read()
                .ok()
                .and_then(|m| {
                    m.get(&key).map(|e| {
                        let unchanged = e.source == src && !e.retry;
                        // a log still growing is replayed whole each time it changes: one
                        // that takes long to replay waits a few replay times before the
                        // next, so a huge running log neither hogs the scan nor the store;
                        // a log that just finished is replayed at once
                        let busy = e.source.in_progress
                            && src.in_progress
                            && now < e.loaded_ms + 4 * e.replay_ms;
                        unchanged || busy
                    })
                })
                .unwrap_or(false);
            if skip {
                continue;
            }
            let app = App::load(&src);
            if app.id.is_none() {
                // no application start event (yet): Spark does not list it either
                continue;
            }
            if app.stats.skipped > 0 {
                tracing::info!(log = %key, skipped = app.stats.skipped, "skipped unreadable event log lines");
            }
            let loaded_ms = now_ms();
            let entry = Arc::new(Entry {
                dir_uri: src.origin.uri(),
                retry: app.stats.unreadable > 0,
                source: src,
                app,
                loaded_ms,
                replay_ms: loaded_ms - now,
            });
            if let Ok(mut m) = self.entries.write() {
                m.insert(key, entry);
            }
        }
        if let Ok(mut m) = self.entries.write() {
            m.retain(|k, e| seen.contains(k) || (!store_listed && !e.source.origin.is_local()));
        }
    }

    /// Refreshes now and then every `every` until `stop` fires.
    pub async fn run(self: Arc<Self>, every: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            let me = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.refresh()).await {
                tracing::error!(error = %e, "event log scan failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// All entries.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.entries
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The attempts of one application, newest first.
    pub fn attempts(&self, app_id: &str) -> Vec<Arc<Entry>> {
        let mut v: Vec<_> = self
            .entries()
            .into_iter()
            .filter(|e| e.app.id.as_deref() == Some(app_id))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.app.start_time));
        v
    }
}
