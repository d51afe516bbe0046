//! The set of applications the API serves: event logs found under a directory, each replayed
//! into an [`App`] once and again whenever the log changes (size or modification time).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::eventlog::{self, LogSource};
use crate::model::App;

/// One replayed log.
#[derive(Debug)]
pub struct Entry {
    pub source: LogSource,
    /// The directory the log was found in, as a URI (`file:/dir`).
    pub dir_uri: String,
    pub app: App,
    /// When the replay finished (ms since the epoch): Spark reports this as the last update
    /// of an application that is still running.
    pub loaded_ms: i64,
}

impl Entry {
    /// What Spark shows as "last updated": the log's modification time once the application
    /// finished, the time of the last scan while it runs.
    pub fn last_updated(&self) -> i64 {
        if self.app.completed {
            self.source.modified_ms
        } else {
            self.loaded_ms
        }
    }
}

/// Every application found under the event-log directories.
#[derive(Debug, Default)]
pub struct Catalog {
    dirs: Vec<PathBuf>,
    /// Roots of the ingest layout on a local store (`<root>/eventlogs/<logName>/...`): every
    /// `<logName>` directory holds one log as Spark named it.
    store_roots: Vec<PathBuf>,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Catalog {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Catalog {
            dirs,
            store_roots: Vec::new(),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// A catalog over the copies ingest keeps in a `file://` object store rooted at `root`.
    pub fn over_store(root: PathBuf) -> Self {
        Catalog {
            store_roots: vec![root],
            ..Catalog::default()
        }
    }

    fn all_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.dirs.clone();
        for root in &self.store_roots {
            let base = root.join("eventlogs");
            if let Ok(rd) = std::fs::read_dir(&base) {
                dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
        }
        dirs
    }

    /// Rescans the directories and replays new or changed logs (blocking; run it off the
    /// async workers). Logs that vanished are dropped.
    pub fn refresh(&self) {
        let mut seen = Vec::new();
        for dir in &self.all_dirs() {
            let found = match eventlog::scan_dir(dir) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot list event log directory");
                    continue;
                }
            };
            for src in found {
                let key = format!("{}/{}", dir.display(), src.name);
                seen.push(key.clone());
                let unchanged = self
                    .entries
                    .read()
                    .ok()
                    .and_then(|m| m.get(&key).map(|e| e.source == src))
                    .unwrap_or(false);
                if unchanged {
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
                let entry = Arc::new(Entry {
                    source: src,
                    dir_uri: format!("file:{}", dir.display()),
                    app,
                    loaded_ms: now_ms(),
                });
                if let Ok(mut m) = self.entries.write() {
                    m.insert(key, entry);
                }
            }
        }
        if let Ok(mut m) = self.entries.write() {
            m.retain(|k, _| seen.contains(k));
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
