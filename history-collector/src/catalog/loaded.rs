//! The applications kept replayed: the catalog lists every log from its listing fields and
//! replays an application's whole log only when one of its pages or API paths is asked for.
//! What was replayed is kept for the next request, least recently used first out, within a
//! bound on the estimated heap (see [`App::approx_bytes`]) and on the number of applications
//! (each holds an open spill file). One replay per log at a time: a second request for the
//! same log waits for the first one's result instead of replaying it again.
//!
//! A kept replay answers only for the log it was made from: once the log changed it is
//! replayed again, except that a log still growing that took long to replay is reused for
//! a few of its replay times (the same rule the listing scan follows).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::clock::now_ms;
use crate::eventlog::LogSource;
use crate::model::App;

/// How much the kept replays may hold.
#[derive(Clone, Copy, Debug)]
pub struct ReplayBound {
    /// Estimated heap bytes of all kept applications.
    pub max_bytes: u64,
    /// Applications kept.
    pub max_apps: usize,
}

impl Default for ReplayBound {
    fn default() -> Self {
        ReplayBound {
            max_bytes: 1 << 30,
            max_apps: 64,
        }
    }
}

/// Replay counters, exported on `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct ReplayMetrics {
    pub replays: Counter,
    pub hits: Counter,
    pub evictions: Counter,
    pub kept_apps: Gauge,
    pub kept_bytes: Gauge,
}

impl ReplayMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "history_serve_replays",
            "Whole event logs replayed to answer a request",
            self.replays.clone(),
        );
        registry.register(
            "history_serve_replay_hits",
            "Requests answered from an application kept replayed",
            self.hits.clone(),
        );
        registry.register(
            "history_serve_replay_evictions",
            "Replayed applications dropped to stay within --replay-cache-bytes and --replay-cache-apps",
            self.evictions.clone(),
        );
        registry.register(
            "history_serve_replayed_apps",
            "Applications kept replayed",
            self.kept_apps.clone(),
        );
        registry.register(
            "history_serve_replayed_bytes",
            "Estimated heap bytes of the applications kept replayed",
            self.kept_bytes.clone(),
        );
    }
}

/// One kept replay.
#[derive(Debug)]
struct Slot {
    source: LogSource,
    app: Arc<App>,
    bytes: u64,
    /// When it was last handed out (a tick of [`Kept::clock`]).
    used: u64,
    loaded_ms: i64,
    replay_ms: i64,
}

#[derive(Debug, Default)]
struct Kept {
    slots: HashMap<String, Slot>,
    bytes: u64,
    clock: u64,
}

impl Kept {
    fn take(&mut self, key: &str) -> Option<Slot> {
        let slot = self.slots.remove(key)?;
        self.bytes -= slot.bytes;
        Some(slot)
    }
}

/// The kept replays (see the module's text).
#[derive(Debug)]
pub struct Loaded {
    bound: ReplayBound,
    kept: Mutex<Kept>,
    /// One lock per log being replayed.
    flights: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    metrics: ReplayMetrics,
}

/// Whether a replay made from `kept` still answers for `now_src`.
fn still_good(slot: &Slot, src: &LogSource, now: i64) -> bool {
    slot.source == *src
        || (slot.source.in_progress
            && src.in_progress
            && slot.source.origin == src.origin
            && now < slot.loaded_ms + 4 * slot.replay_ms)
}

impl Loaded {
    pub fn new(bound: ReplayBound, metrics: ReplayMetrics) -> Self {
        Loaded {
            bound,
            kept: Mutex::new(Kept::default()),
            flights: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn lookup(&self, key: &str, src: &LogSource) -> Option<Arc<App>> {
        let mut kept = self.kept.lock().ok()?;
        kept.clock += 1;
        let tick = kept.clock;
        let slot = kept.slots.get_mut(key)?;
        if !still_good(slot, src, now_ms()) {
            return None;
        }
        slot.used = tick;
        Some(slot.app.clone())
    }

    /// The application replayed from `src` (kept under `key`), replaying it with `replay`
    /// if no kept replay answers for it. Blocking: call it off the async workers.
    pub fn get(&self, key: &str, src: &LogSource, replay: impl FnOnce() -> App) -> Arc<App> {
        if let Some(app) = self.lookup(key, src) {
            self.metrics.hits.inc();
            return app;
        }
        let flight = match self.flights.lock() {
            Ok(mut f) => f.entry(key.to_string()).or_default().clone(),
            Err(_) => Arc::new(Mutex::new(())),
        };
        let _one = flight.lock();
        // whoever held the lock before may have replayed it
        if let Some(app) = self.lookup(key, src) {
            self.metrics.hits.inc();
            return app;
        }
        let started = now_ms();
        let app = Arc::new(replay());
        let loaded_ms = now_ms();
        self.metrics.replays.inc();
        self.keep(
            key,
            Slot {
                source: src.clone(),
                bytes: app.approx_bytes(),
                app: app.clone(),
                used: 0,
                loaded_ms,
                replay_ms: loaded_ms - started,
            },
        );
        if let Ok(mut f) = self.flights.lock() {
            // only the last one out removes the lock
            if Arc::strong_count(&flight) <= 2 {
                f.remove(key);
            }
        }
        app
    }

    fn keep(&self, key: &str, mut slot: Slot) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        kept.take(key);
        kept.clock += 1;
        slot.used = kept.clock;
        let bytes = slot.bytes;
        // one application over the whole bound is served but not kept
        if bytes <= self.bound.max_bytes && self.bound.max_apps > 0 {
            while kept.bytes + bytes > self.bound.max_bytes
                || kept.slots.len() >= self.bound.max_apps
            {
                let Some(oldest) = kept
                    .slots
                    .iter()
                    .min_by_key(|(_, s)| s.used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                kept.take(&oldest);
                self.metrics.evictions.inc();
            }
            kept.bytes += bytes;
            kept.slots.insert(key.to_string(), slot);
        }
        self.metrics.kept_apps.set(kept.slots.len() as i64);
        self.metrics.kept_bytes.set(kept.bytes as i64);
    }

    /// Drops the replay kept for `key` unless it still answers for `src` (`None`: the log
    /// is gone).
    pub fn forget_unless(&self, key: &str, src: Option<&LogSource>) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let stale = kept
            .slots
            .get(key)
            .is_some_and(|s| src.is_none_or(|src| !still_good(s, src, now_ms())));
        if stale {
            kept.take(key);
        }
        self.metrics.kept_apps.set(kept.slots.len() as i64);
        self.metrics.kept_bytes.set(kept.bytes as i64);
    }
}
