//! The set of applications the API and UI serve. Each log is listed from its listing
//! fields ([`Listing`]: read once, and again whenever the log changes, or taken from the
//! persisted [`index`] after a restart); its whole state ([`App`]) is replayed only when a
//! page or API path of it is asked for, and kept within a memory bound ([`loaded`]). Logs
//! past the [`retention`] limits are deleted.
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
//! behind). A log is read again only when its files' sizes or modification times changed.
//!
//! What is served is held to the rules ingest follows ([`crate::logdir`]): regular files
//! found without following links, no file over the size limit, no sparse or non-Spark file
//! (refused before any replay, left alone until it changes), no line over the line limit.
//! A log is listed only if the application id and attempt inside it are the ones its name
//! says (Spark's `nameForAppAndAttempt`): a file carrying another application's id is not
//! shown in place of, or beside, the real one. A log that shows no application is not
//! replayed again until it changes (and then with a back-off while it keeps changing).

pub mod index;
mod listed;
pub mod loaded;
pub mod retention;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::eventlog::{self, LogSource, Origin, SourceFile, StoreAt};
use crate::ingest::layout::{self, LogStore};
use crate::logdir::admit::{self, Admission, AdmitMetrics, Ident, Limits, Refusal, Verdict};
use crate::logdir::names;
use crate::logdir::open::Root;
use crate::model::listing::Listing;
use crate::model::App;
use index::Row;
use listed::Listed;
use loaded::{Loaded, ReplayBound, ReplayMetrics};
use retention::{Candidate, Retention};

use crate::clock::now_ms;
use crate::malloc::give_back_free_memory;

/// One listed log.
#[derive(Debug)]
pub struct Entry {
    /// Its name in the catalog (`<appId>[_<attemptId>]`).
    pub key: CompactString,
    pub source: LogSource,
    /// What the application list shows of it.
    pub listing: Listing,
    /// When its listing was read (ms since the epoch): Spark reports this as the last update
    /// of an application that is still running.
    pub loaded_ms: i64,
    /// The read could not get all of the log (the store failed mid-read): read it on the
    /// next scan even if the files show no change.
    retry: bool,
    /// How long reading the listing took, in ms.
    read_ms: u32,
}

impl Entry {
    /// Where the log was found, as a URI (`file:/dir`, `s3://bucket/prefix/eventlogs/<log>`).
    pub fn dir_uri(&self) -> String {
        self.source.origin.uri()
    }

    /// What Spark shows as "last updated": the log's modification time once the application
    /// finished (for a stored copy, the object's last-modified time), the time of the last
    /// scan while it runs.
    pub fn last_updated(&self) -> i64 {
        if self.listing.completed {
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
    /// Logs whose listing fields were read from the log.
    pub listing_reads: Counter,
    /// Logs listed from the persisted index without reading them.
    pub index_rows_used: Counter,
    /// Logs deleted by retention.
    pub retention_deleted: Counter,
    /// Whole replays for requests, and the replays kept.
    pub replay: ReplayMetrics,
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
        registry.register(
            "history_serve_listing_reads",
            "Event logs read for their listing fields (new or changed logs)",
            self.listing_reads.clone(),
        );
        registry.register(
            "history_serve_index_rows_used",
            "Event logs listed from the persisted listing index without reading them",
            self.index_rows_used.clone(),
        );
        registry.register(
            "history_serve_retention_deleted_logs",
            "Event logs deleted by the retention limits",
            self.retention_deleted.clone(),
        );
        self.replay.register(registry);
    }
}

/// How the catalog serves: limits on what it reads, what it keeps replayed, what it keeps.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    pub limits: Limits,
    pub replay: ReplayBound,
    pub retention: Retention,
}

/// The persisted index as the catalog uses it.
#[derive(Debug, Default)]
struct IndexState {
    /// Whether it was read (once, at the first scan).
    read: bool,
    /// The listing changed since the index was last written.
    dirty: bool,
    written: Option<Instant>,
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
    /// The ingest store and the runtime its async reads are waited on from the blocking scan
    /// (shared with every log read from it).
    store: Option<Arc<StoreAt>>,
    entries: RwLock<Listed>,
    limits: Limits,
    admission: Mutex<Admission>,
    unlisted: Mutex<HashMap<String, Unlisted>>,
    metrics: CatalogMetrics,
    loaded: Loaded,
    /// Whole replays running at once (each may use a few cores and its log's memory).
    replays: tokio::sync::Semaphore,
    index: Mutex<IndexState>,
    retention: Retention,
    /// Threads reading listings at once (each reads one log at a time).
    scan_threads: usize,
}

/// Whether the application a replay found is the one the log's name says.
fn named_right(key: &str, app: &Listing) -> bool {
    app.id
        .as_deref()
        .is_some_and(|id| names::log_name_for(id, app.attempt_id.as_deref()) == key)
}

/// The URIs of the places a catalog reads: each local directory's, and the store's for a
/// log as the text before and after its name.
struct Places {
    dirs: Vec<String>,
    store: Option<(String, String)>,
}

/// A log a scan found, by its best copy.
enum Found {
    /// The copy the catalog lists it from (unchanged since).
    Listed(Arc<Entry>),
    /// Another copy, or one that changed.
    Other(Box<LogSource>),
    /// A copy to read.
    ToRead(Box<LogSource>),
    /// Moved out to be read.
    Taken,
}

impl Found {
    fn source(&self) -> Option<&LogSource> {
        match self {
            Found::Listed(e) => Some(&e.source),
            Found::Other(s) | Found::ToRead(s) => Some(s),
            Found::Taken => None,
        }
    }

    /// Marks the copy to be read.
    fn mark_to_read(&mut self) {
        *self = match std::mem::replace(self, Found::Taken) {
            Found::Listed(e) => Found::ToRead(Box::new(e.source.clone())),
            Found::Other(s) | Found::ToRead(s) => Found::ToRead(s),
            Found::Taken => Found::Taken,
        };
    }

    /// The copy marked to be read, moved out.
    fn take_to_read(&mut self) -> Option<LogSource> {
        match std::mem::replace(self, Found::Taken) {
            Found::ToRead(s) => Some(*s),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// Whether `a` answers better than `b` for the same log: complete first, then local.
fn better(a: &LogSource, b: &LogSource) -> bool {
    let rank = |s: &LogSource| (!s.in_progress, s.origin.is_local());
    rank(a) > rank(b)
}

impl Catalog {
    /// A catalog over local event-log directories only, with the default limits.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self::build(dirs, None, Settings::default(), CatalogMetrics::default())
    }

    /// A catalog over local event-log directories and the logs in the ingest `store`. Call
    /// it from within the Tokio runtime: reads from the store are waited on through it.
    pub fn with_store(dirs: Vec<PathBuf>, store: LogStore) -> Self {
        Self::build(
            dirs,
            Some(store),
            Settings::default(),
            CatalogMetrics::default(),
        )
    }

    /// A catalog with every setting: the local `dirs`, the ingest `store` (call it from
    /// within the Tokio runtime then; the listing index is kept there), the `settings` and
    /// where to count.
    pub fn build(
        dirs: Vec<PathBuf>,
        store: Option<LogStore>,
        settings: Settings,
        metrics: CatalogMetrics,
    ) -> Self {
        let limits = settings.limits;
        let store = store.and_then(|store| match tokio::runtime::Handle::try_current() {
            Ok(rt) => Some(Arc::new(StoreAt { store, rt })),
            Err(e) => {
                tracing::error!(storage = %store.store().url(), error = %e, "the catalog was built outside a Tokio runtime: the store's event logs are not served");
                None
            }
        });
        Catalog {
            dirs,
            store,
            entries: RwLock::new(Listed::default()),
            limits,
            admission: Mutex::new(Admission::new("serving", metrics.admit.clone())),
            unlisted: Mutex::new(HashMap::new()),
            loaded: Loaded::new(settings.replay, metrics.replay.clone()),
            replays: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().div_ceil(2).max(2)),
            ),
            metrics,
            index: Mutex::new(IndexState::default()),
            retention: settings.retention,
            scan_threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
        }
    }

    /// The ingest store, if the catalog reads one.
    pub fn store(&self) -> Option<&LogStore> {
        self.store.as_ref().map(|at| &at.store)
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

    /// Hands each of the store's logs to `offer` (by log name); false when the store could
    /// not be listed. Files over the size limit keep their log out. Only files refused, now
    /// or before, are remembered (and their keys pushed to `seen`): the check is their size.
    fn store_sources(
        &self,
        seen: &mut Vec<String>,
        mut offer: impl FnMut(&str, LogSource),
    ) -> bool {
        let Some(at) = self.store.as_ref() else {
            return false;
        };
        let (store, rt) = (&at.store, &at.rt);
        let Ok(mut adm) = self.admission.lock() else {
            return false;
        };
        let refused_before = adm.any_refused();
        let max = self.limits.max_file_bytes;
        // each log as the listing goes: the listing of every stored log is never held
        let listed = rt.block_on(store.each_eventlog(|log, files| {
            let admitted = files.iter().all(|f| {
                let over = f.len > max;
                if !over && !refused_before {
                    return true;
                }
                let key = format!("{}/{log}/{}", store.store().url(), f.rel);
                if !over && !adm.is_refused(&key) {
                    return true;
                }
                seen.push(key.clone());
                let ident = Ident {
                    ino: (0, 0),
                    size: f.len,
                    modified_ms: f.modified_ms,
                };
                adm.admit(&key, ident, |_| {
                    Ok(if over {
                        Verdict::Refuse(Refusal::TooLarge { size: f.len, max })
                    } else {
                        Verdict::Accept
                    })
                })
            });
            if admitted {
                for src in eventlog::stored_sources(at, &log, files, self.limits.max_line_bytes) {
                    offer(&log, src);
                }
            }
        }));
        match listed {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(storage = %store.store().url(), error = %e, "cannot list the stored event logs; keeping what was listed before");
                false
            }
        }
    }

    /// Rescans the directories and the store, lists new or changed logs, applies the
    /// retention limits and writes the index when the listing changed (blocking: run it off
    /// the async workers, e.g. in `spawn_blocking`). Logs that vanished are dropped, except
    /// the store's while the store cannot be listed.
    pub fn refresh(&self) {
        self.read_index();
        // every copy found, by log; a copy the catalog lists its log from already is held by
        // its entry, not copied (at 100,000 logs a rescan holds little more than their keys)
        let mut found: Vec<(CompactString, Found)> =
            Vec::with_capacity(self.entries.read().map_or(0, |m| m.len()));
        // every copy of each log, for retention to delete them all
        let mut copies: HashMap<String, Vec<LogSource>> = HashMap::new();
        let mut offer = |key: &str, src: LogSource| {
            if self.retention.enabled() {
                copies.entry(key.to_string()).or_default().push(src.clone());
            }
            let listed = self
                .entries
                .read()
                .ok()
                .and_then(|m| m.get(key).filter(|e| e.source == src).cloned());
            let f = match listed {
                Some(e) => Found::Listed(e),
                None => Found::Other(Box::new(src)),
            };
            found.push((key.into(), f));
        };
        let mut admitted_keys = Vec::new();
        for dir in &self.dirs {
            match self.dir_sources(dir, &mut admitted_keys) {
                Ok(srcs) => {
                    for src in srcs {
                        let key = src
                            .log_name()
                            .unwrap_or_else(|| format!("{}/{}", dir.display(), src.name));
                        offer(&key, src);
                    }
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot list event log directory")
                }
            }
        }
        let store_listed =
            self.store_sources(&mut admitted_keys, &mut offer) || self.store.is_none();
        if store_listed {
            let keep: std::collections::HashSet<String> = admitted_keys.into_iter().collect();
            if let Ok(mut adm) = self.admission.lock() {
                adm.retain(|k| keep.contains(k));
            }
        }
        // by log, in a stable order, so a first scan of many logs fills the listing
        // predictably; each log's best copy kept (the first found of equally good ones)
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|later, kept| {
            if later.0 != kept.0 {
                return false;
            }
            if let (Some(l), Some(k)) = (later.1.source(), kept.1.source()) {
                if better(l, k) {
                    std::mem::swap(later, kept);
                }
            }
            true
        });
        let present = |found: &[(CompactString, Found)], k: &str| {
            found.binary_search_by(|(x, _)| x.as_str().cmp(k)).is_ok()
        };
        let mut changed = false;
        let mut to_read = 0;
        for (key, f) in found.iter_mut() {
            let Some(src) = f.source() else { continue };
            let now = now_ms();
            let skip = self
                .entries
                .read()
                .ok()
                .and_then(|m| {
                    m.get(key.as_str()).map(|e| {
                        let unchanged = e.source == *src && !e.retry;
                        // a log still growing is read again each time it changes: one that
                        // takes long to read waits a few read times before the next, so a
                        // huge running log neither hogs the scan nor the store; a log that
                        // just finished is read at once
                        let busy = e.source.in_progress
                            && src.in_progress
                            && now < e.loaded_ms + 4 * i64::from(e.read_ms);
                        unchanged || busy
                    })
                })
                .unwrap_or(false);
            if skip || self.left_alone(key, src) {
                continue;
            }
            self.loaded.forget_unless(key, Some(src));
            f.mark_to_read();
            to_read += 1;
        }
        changed |= to_read > 0;
        if to_read >= 1024 {
            // many to read (a first scan): what the store's listing took goes back before
            // the reading threads build their entries
            give_back_free_memory();
        }
        self.read_listings(&mut found, to_read);
        if let Ok(mut m) = self.entries.write() {
            let before = m.len();
            m.retain(|e| {
                let keep =
                    present(&found, &e.key) || (!store_listed && !e.source.origin.is_local());
                if !keep {
                    self.loaded.forget_unless(&e.key, None);
                }
                keep
            });
            changed |= m.len() != before;
        }
        if let Ok(mut u) = self.unlisted.lock() {
            u.retain(|k, _| present(&found, k));
        }
        if self.retention.enabled() {
            changed |= self.apply_retention(&copies);
        }
        if let Ok(mut ix) = self.index.lock() {
            ix.dirty |= changed;
        }
        // what the scan found is not held while the index is written
        drop((found, copies));
        self.write_index(false);
        give_back_free_memory();
    }

    /// Reads the listing of each new or changed log and lists it (or says why not), on a
    /// few threads at once: each log is read on its own.
    fn read_listings(&self, found: &mut [(CompactString, Found)], count: usize) {
        // the logs to read are taken from where the scan found them, one at a time: never
        // copied into a list of their own
        let queue = Mutex::new(
            found
                .iter_mut()
                .filter_map(|(key, f)| Some((key.clone(), f.take_to_read()?))),
        );
        let read_one = |key: CompactString, src: LogSource| {
            let started = now_ms();
            let (listing, stats) = Listing::scan(&src);
            self.metrics.listing_reads.inc();
            if stats.long_lines > 0 {
                self.metrics.long_lines.inc_by(stats.long_lines);
            }
            if !named_right(&key, &listing) {
                self.unlist(&key, src, &listing);
                return;
            }
            if let Ok(mut u) = self.unlisted.lock() {
                u.remove(key.as_str());
            }
            let loaded_ms = now_ms();
            let entry = Arc::new(Entry {
                key: key.clone(),
                retry: stats.unreadable > 0,
                source: src,
                listing,
                loaded_ms,
                read_ms: u32::try_from((loaded_ms - started).max(0)).unwrap_or(u32::MAX),
            });
            if let Ok(mut m) = self.entries.write() {
                m.insert(entry);
            }
        };
        let work = || {
            while let Some((key, src)) = queue.lock().ok().and_then(|mut q| q.next()) {
                read_one(key, src);
            }
        };
        let threads = self.scan_threads.min(count);
        if threads <= 1 {
            return work();
        }
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(work);
            }
            work();
        });
    }

    /// Reads the persisted index, once.
    fn read_index(&self) {
        let Some(StoreAt { store, rt }) = self.store.as_deref() else {
            return;
        };
        let Ok(mut ix) = self.index.lock() else {
            return;
        };
        if ix.read {
            return;
        }
        ix.read = true;
        let t = Instant::now();
        let Some(data) = rt.block_on(index::fetch(store.store().as_ref())) else {
            return;
        };
        // listed at once, before the scan that checks them against the logs (which drops the
        // rows of logs gone and reads those that changed), as Spark's History Server lists
        // from its listing database; one row of the index is held at a time
        let (mut rows, mut early) = (0u64, 0u64);
        let places = self.places();
        // built aside and listed at once: requests are neither kept waiting for the whole
        // index nor shown part of it
        let mut read = Listed::default();
        let decoded = index::decode(&data, |row| {
            rows += 1;
            let Some(source) = self.source_of(&row, &places) else {
                return;
            };
            read.insert(Arc::new(Entry {
                key: row.key.as_ref().into(),
                retry: false,
                source,
                listing: row.listing.into_owned(),
                loaded_ms: row.loaded_ms,
                read_ms: 0,
            }));
        });
        if let Ok(mut m) = self.entries.write() {
            if m.is_empty() {
                early = read.len() as u64;
                *m = read;
            } else {
                for e in read.into_values() {
                    if !m.contains(&e.key) {
                        early += 1;
                        m.insert(e);
                    }
                }
            }
        }
        let url = store.store().object_url(index::INDEX_KEY);
        match decoded {
            Ok(0) => {}
            Ok(bad) => {
                tracing::warn!(index = %url, bad, "listing index rows that do not parse were left out; their logs are read again")
            }
            Err(e) => {
                tracing::warn!(index = %url, error = %e, rows, "the listing index is damaged past its first rows; the logs it does not list are read again")
            }
        }
        self.metrics.index_rows_used.inc_by(early);
        tracing::info!(
            rows,
            listed = early,
            ms = t.elapsed().as_millis() as u64,
            "read the listing index"
        );
    }

    /// The URIs of the places this catalog reads (see [`Catalog::source_of`]).
    fn places(&self) -> Places {
        let dirs = self
            .dirs
            .iter()
            .map(|d| Origin::Dir(d.clone()).uri())
            .collect();
        let store = self.store.as_ref().and_then(|at| {
            const MARK: &str = "_";
            let uri = Origin::Store {
                at: at.clone(),
                log: MARK.into(),
            }
            .uri();
            let at = uri.rfind(MARK)?;
            Some((uri[..at].to_string(), uri[at + MARK.len()..].to_string()))
        });
        Places { dirs, store }
    }

    /// The log a row of the index was read from, if it names a place this catalog reads.
    /// `places` are the URIs of the local directories and the store's of a log named `_`
    /// ([`Catalog::places`]), so that most rows are matched without formatting any.
    fn source_of(&self, row: &Row<'_>, places: &Places) -> Option<LogSource> {
        let origin = match places.dirs.iter().position(|d| *d == row.origin) {
            Some(i) => Origin::Dir(self.dirs[i].clone()),
            None => {
                let o = Origin::Store {
                    at: self.store.clone()?,
                    log: row.key.as_ref().into(),
                };
                // the store's URI of a log ends with its name: the rest is the same for all
                let quick = places.store.as_ref().and_then(|(head, tail)| {
                    row.origin
                        .strip_prefix(head.as_str())?
                        .strip_suffix(tail.as_str())
                }) == Some(row.key.as_ref());
                (quick || o.uri() == row.origin).then_some(o)?
            }
        };
        let files: Vec<SourceFile> = row
            .files
            .iter()
            .map(|(rel, len, modified_ms)| SourceFile {
                rel: rel.as_ref().into(),
                len: *len,
                modified_ms: *modified_ms,
            })
            .collect();
        Some(LogSource {
            origin,
            name: row.name.as_ref().into(),
            in_progress: row.in_progress,
            max_line_bytes: eventlog::line_limit(self.limits.max_line_bytes),
            modified_ms: files.last()?.modified_ms,
            files,
        })
    }

    /// Writes the index if the listing changed, at most every [`index::WRITE_EVERY`] unless
    /// `now`.
    fn write_index(&self, now: bool) {
        let Some(StoreAt { store, rt }) = self.store.as_deref() else {
            return;
        };
        let Ok(mut ix) = self.index.lock() else {
            return;
        };
        let due = ix
            .written
            .is_none_or(|w| now || w.elapsed() >= index::WRITE_EVERY);
        if !ix.dirty || !due {
            return;
        }
        let entries = self.entries();
        let written = index::encode_to_file(
            entries
                .iter()
                .map(|e| Row::of(&e.key, &e.source, e.loaded_ms, &e.listing)),
        )
        .map_err(anyhow::Error::from)
        .and_then(|file| rt.block_on(index::write(store.store().as_ref(), file)));
        match written {
            Ok(()) => {
                ix.dirty = false;
                ix.written = Some(Instant::now());
                tracing::debug!(rows = entries.len(), "wrote the listing index");
            }
            Err(e) => {
                // tried again after the next scan
                ix.written = Some(Instant::now());
                tracing::warn!(index = %store.store().object_url(index::INDEX_KEY), error = %e, "cannot write the listing index");
            }
        }
    }

    /// Deletes every copy of the logs past the retention limits (and the container logs of
    /// applications left with no attempt); whether any was deleted.
    fn apply_retention(&self, copies: &HashMap<String, Vec<LogSource>>) -> bool {
        let all: Vec<Candidate> = self
            .entries()
            .iter()
            .map(|e| Candidate {
                key: e.key.to_string(),
                last_updated: e.last_updated(),
                completed: e.listing.completed,
                bytes: copies
                    .get(e.key.as_str())
                    .map_or(e.source.size(), |c| c.iter().map(LogSource::size).sum()),
            })
            .collect();
        let doomed = self.retention.doomed(&all, now_ms());
        if doomed.is_empty() {
            return false;
        }
        let mut gone_apps = Vec::new();
        for key in &doomed {
            let mut ok = true;
            for src in copies.get(key).into_iter().flatten() {
                if let Err(e) = self.delete(src) {
                    ok = false;
                    tracing::warn!(log = %key, from = %src.origin.uri(), error = %e, "cannot delete an event log past the retention limits; trying again after the next scan");
                }
            }
            if !ok {
                continue;
            }
            self.metrics.retention_deleted.inc();
            let removed = self
                .entries
                .write()
                .ok()
                .and_then(|mut m| m.remove(key.as_str()));
            self.loaded.forget_unless(key, None);
            if let Some(e) = removed {
                tracing::info!(log = %key, last_updated = e.last_updated(), completed = e.listing.completed, "deleted an event log past the retention limits");
                gone_apps.extend(e.listing.id.clone());
            }
        }
        // an application's container logs go with its last attempt
        if let Some(StoreAt { store, rt }) = self.store.as_deref() {
            for app in gone_apps {
                if !self.attempts(&app).is_empty() {
                    continue;
                }
                let removed = rt.block_on(async {
                    for f in store.list_podlogs(&app).await? {
                        store
                            .remove(&format!("{}/{app}/{}", layout::PODLOGS, f.rel))
                            .await?;
                    }
                    anyhow::Ok(())
                });
                if let Err(e) = removed {
                    tracing::warn!(app = %app, error = %e, "cannot delete the container logs of an application past the retention limits");
                }
            }
        }
        true
    }

    /// Deletes one copy of a log: its files in a local directory (never through a link), or
    /// its objects in the store.
    fn delete(&self, src: &LogSource) -> anyhow::Result<()> {
        match &src.origin {
            Origin::Dir(dir) => {
                let root = Root::open(dir)?;
                let rolling = names::rolling_dir(&src.name).is_some();
                if rolling {
                    // every file of the rolling directory (events, status marker), then it
                    let fd = root.open_dir(&src.name)?;
                    let mut d = nix::dir::Dir::from_fd(fd)?;
                    let inside: Vec<String> = d
                        .iter()
                        .filter_map(Result::ok)
                        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
                        .filter(|n| n != "." && n != "..")
                        .collect();
                    for name in inside {
                        root.remove(&format!("{}/{name}", src.name), false)?;
                    }
                    root.remove(&src.name, true)?;
                } else {
                    for f in &src.files {
                        match root.remove(&f.rel, false) {
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            r => r?,
                        }
                    }
                }
                Ok(())
            }
            Origin::Store { at, log } => at.rt.block_on(async {
                let store = &at.store;
                for f in store.list_files(log).await? {
                    store.remove(&layout::eventlog_key(log, &f.rel)).await?;
                }
                Ok(())
            }),
        }
    }

    /// The whole state of the application `entry` lists, replayed from its log unless a
    /// kept replay answers for it (see [`loaded`]). Blocking: see [`Catalog::app`].
    pub fn replayed(&self, entry: &Entry) -> Arc<App> {
        self.loaded.get(&entry.key, &entry.source, || {
            let app = App::load_as_of(&entry.source, entry.loaded_ms);
            if app.stats.skipped > 0 {
                tracing::info!(log = %entry.key, skipped = app.stats.skipped, "skipped unreadable event log lines");
            }
            app
        })
    }

    /// [`Catalog::replayed`] for async callers: the replay runs on the blocking pool, a few
    /// at a time.
    pub async fn app(self: &Arc<Self>, entry: &Arc<Entry>) -> Arc<App> {
        let _permit = self.replays.acquire().await;
        let (me, e) = (self.clone(), entry.clone());
        match tokio::task::spawn_blocking(move || me.replayed(&e)).await {
            Ok(app) => app,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
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
    fn unlist(&self, key: &str, src: LogSource, app: &Listing) {
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

    /// Refreshes now and then every `every` until `stop` fires. A scan that takes long (a
    /// store of very many logs) waits twice its own time before the next, so scanning takes
    /// at most about a third of one core however many logs there are.
    pub async fn run(self: Arc<Self>, every: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            let me = self.clone();
            let t = Instant::now();
            if let Err(e) = tokio::task::spawn_blocking(move || me.refresh()).await {
                tracing::error!(error = %e, "event log scan failed");
            }
            let pause = every.max(t.elapsed() * 2);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        // what changed since the last write goes to the index before the process ends
        let me = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || me.write_index(true)).await {
            tracing::error!(error = %e, "writing the listing index failed");
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
            .filter(|e| e.listing.id.as_deref() == Some(app_id))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.listing.start_time));
        v
    }
}
