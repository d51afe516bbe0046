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
//!
//! What is served is held to the rules ingest follows ([`crate::logdir`]): regular files
//! found without following links, no file over the size limit, no sparse or non-Spark file
//! (refused before any replay, left alone until it changes), no line over the line limit.
//! A log is listed only if the application id and attempt inside it are the ones its name
//! says (Spark's `nameForAppAndAttempt`): a file carrying another application's id is not
//! shown in place of, or beside, the real one. A log that shows no application is not
//! replayed again until it changes (and then with a back-off while it keeps changing).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::eventlog::{self, LogSource};
use crate::ingest::layout::LogStore;
use crate::logdir::admit::{self, Admission, AdmitMetrics, Ident, Limits, Refusal, Verdict};
use crate::logdir::names;
use crate::logdir::open::Root;
use crate::model::App;

use crate::clock::now_ms;

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

/// Serving counters, exported on `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct CatalogMetrics {
    /// Files refused before replay (see [`crate::logdir::admit`]).
    pub admit: AdmitMetrics,
    /// Event lines skipped for being longer than the limit.
    pub long_lines: Counter,
    /// Logs not listed: no application in them, or another application's id than their name.
    pub unlisted: Counter,
}

impl CatalogMetrics {
    pub fn register(&self, registry: &mut Registry) {
        self.admit.register(registry, "history_serve");
        registry.register(
            "history_serve_long_lines",
            "Event lines skipped when replaying because they are longer than --max-event-line-size",
            self.long_lines.clone(),
        );
        registry.register(
            "history_serve_unlisted_logs",
            "Event logs not listed: no application start in them, or an application id other than their name says",
            self.unlisted.clone(),
        );
    }
}

/// A log that showed no application (or another's), and when to look again.
#[derive(Debug)]
struct Unlisted {
    source: LogSource,
    retry_at: Instant,
    backoff: Duration,
}

/// Every application found in the event-log directories and in the store.
#[derive(Debug)]
pub struct Catalog {
    dirs: Vec<PathBuf>,
    /// The ingest store and the runtime its async reads are waited on from the blocking scan.
    store: Option<(LogStore, tokio::runtime::Handle)>,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    limits: Limits,
    admission: Mutex<Admission>,
    unlisted: Mutex<HashMap<String, Unlisted>>,
    metrics: CatalogMetrics,
}

/// Whether the application a replay found is the one the log's name says.
fn named_right(key: &str, app: &App) -> bool {
    app.id
        .as_deref()
        .is_some_and(|id| names::log_name_for(id, app.attempt_id.as_deref()) == key)
}

/// Whether `a` answers better than `b` for the same log: complete first, then local.
fn better(a: &LogSource, b: &LogSource) -> bool {
    let rank = |s: &LogSource| (!s.in_progress, s.origin.is_local());
    rank(a) > rank(b)
}

impl Catalog {
    /// A catalog over local event-log directories only, with the default limits.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self::build(dirs, None, Limits::default(), CatalogMetrics::default())
    }

    /// A catalog over local event-log directories and the logs in the ingest `store`. Call
    /// it from within the Tokio runtime: reads from the store are waited on through it.
    pub fn with_store(dirs: Vec<PathBuf>, store: LogStore) -> Self {
        Self::build(
            dirs,
            Some(store),
            Limits::default(),
            CatalogMetrics::default(),
        )
    }

    /// A catalog with every setting: the local `dirs`, the ingest `store` (call it from
    /// within the Tokio runtime then), the `limits` and where to count.
    pub fn build(
        dirs: Vec<PathBuf>,
        store: Option<LogStore>,
        limits: Limits,
        metrics: CatalogMetrics,
    ) -> Self {
        let store = store.and_then(|store| match tokio::runtime::Handle::try_current() {
            Ok(rt) => Some((store, rt)),
            Err(e) => {
                tracing::error!(storage = %store.store().url(), error = %e, "the catalog was built outside a Tokio runtime: the store's event logs are not served");
                None
            }
        });
        Catalog {
            dirs,
            store,
            entries: RwLock::new(HashMap::new()),
            limits,
            admission: Mutex::new(Admission::new("serving", metrics.admit.clone())),
            unlisted: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The ingest store, if the catalog reads one.
    pub fn store(&self) -> Option<&LogStore> {
        self.store.as_ref().map(|(s, _)| s)
    }

    /// The logs of one local directory whose files all pass admission.
    fn dir_sources(
        &self,
        dir: &std::path::Path,
        seen: &mut Vec<String>,
    ) -> std::io::Result<Vec<LogSource>> {
        let found = eventlog::scan_dir(dir)?;
        let root = Root::open(dir)?;
        let mut refused_logs = std::collections::HashSet::new();
        if let Ok(mut adm) = self.admission.lock() {
            for f in &found {
                let key = dir.join(&f.name.rel).to_string_lossy().into_owned();
                seen.push(key.clone());
                let ident = Ident {
                    ino: f.meta.ino,
                    size: f.meta.size,
                    modified_ms: f.meta.modified_ms,
                };
                let limits = self.limits;
                let ok = adm.admit(&key, ident, |head_known| {
                    let file = root.open_file(&f.name.rel)?;
                    admit::check_file(
                        &file,
                        &f.name,
                        f.meta.size,
                        !f.complete,
                        head_known,
                        &limits,
                    )
                });
                if !ok {
                    refused_logs.insert(f.name.log.clone());
                }
            }
        }
        let admitted: Vec<_> = found
            .into_iter()
            .filter(|f| !refused_logs.contains(&f.name.log))
            .collect();
        Ok(eventlog::dir_sources(
            dir,
            admitted,
            self.limits.max_line_bytes,
        ))
    }

    /// The store's logs, by log name; `None` when the store could not be listed. Files over
    /// the size limit keep their log out.
    fn store_sources(&self, seen: &mut Vec<String>) -> Option<Vec<(String, LogSource)>> {
        let (store, rt) = self.store.as_ref()?;
        match rt.block_on(store.list_all_eventlogs()) {
            Ok(all) => Some(
                all.into_iter()
                    .filter(|(log, files)| {
                        let Ok(mut adm) = self.admission.lock() else {
                            return false;
                        };
                        files.iter().all(|f| {
                            let key = format!("{}/{log}/{}", store.store().url(), f.rel);
                            seen.push(key.clone());
                            let ident = Ident {
                                ino: (0, 0),
                                size: f.len,
                                modified_ms: f.modified_ms,
                            };
                            let max = self.limits.max_file_bytes;
                            adm.admit(&key, ident, |_| {
                                Ok(if f.len > max {
                                    Verdict::Refuse(Refusal::TooLarge { size: f.len, max })
                                } else {
                                    Verdict::Accept
                                })
                            })
                        })
                    })
                    .flat_map(|(log, files)| {
                        eventlog::stored_sources(store, rt, &log, files, self.limits.max_line_bytes)
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
        let mut admitted_keys = Vec::new();
        for dir in &self.dirs {
            match self.dir_sources(dir, &mut admitted_keys) {
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
        let store_listed = match self.store_sources(&mut admitted_keys) {
            Some(srcs) => {
                for (log, src) in srcs {
                    offer(log, src);
                }
                true
            }
            None => self.store.is_none(),
        };
        if store_listed {
            let keep: std::collections::HashSet<String> = admitted_keys.into_iter().collect();
            if let Ok(mut adm) = self.admission.lock() {
                adm.retain(|k| keep.contains(k));
            }
        }
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
            if skip || self.left_alone(&key, &src) {
                continue;
            }
            let app = App::load(&src);
            if app.stats.long_lines > 0 {
                self.metrics.long_lines.inc_by(app.stats.long_lines);
            }
            if !named_right(&key, &app) {
                self.unlist(&key, src, &app);
                continue;
            }
            if let Ok(mut u) = self.unlisted.lock() {
                u.remove(&key);
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
        if let Ok(mut u) = self.unlisted.lock() {
            u.retain(|k, _| seen.contains(k));
        }
    }

    /// Whether `src` showed no application (or another's) before and is to be left alone:
    /// it has not changed, or its back-off has not passed.
    fn left_alone(&self, key: &str, src: &LogSource) -> bool {
        let Ok(u) = self.unlisted.lock() else {
            return false;
        };
        u.get(key)
            .is_some_and(|x| x.source == *src || Instant::now() < x.retry_at)
    }

    /// Remembers that `src` is not listed, and says why once.
    fn unlist(&self, key: &str, src: LogSource, app: &App) {
        let Ok(mut u) = self.unlisted.lock() else {
            return;
        };
        let backoff = match u.get(key) {
            Some(x) => (x.backoff * 2).min(Duration::from_secs(60)),
            None => {
                self.metrics.unlisted.inc();
                match &app.id {
                    // no application start event (yet): Spark does not list it either
                    None if src.in_progress => {
                        tracing::debug!(log = %key, "no application start in the event log yet")
                    }
                    None => {
                        tracing::warn!(log = %key, "event log holds no application start; not listed")
                    }
                    Some(id) => tracing::warn!(
                        log = %key,
                        app = %id,
                        attempt = ?app.attempt_id,
                        expected = %names::log_name_for(id, app.attempt_id.as_deref()),
                        "event log carries an application id its name does not; not listed (it could stand in for another application)"
                    ),
                }
                Duration::from_secs(1)
            }
        };
        u.insert(
            key.to_string(),
            Unlisted {
                source: src,
                retry_at: Instant::now() + backoff,
                backoff,
            },
        );
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
