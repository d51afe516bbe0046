//! The collector's directory watcher: copies the `--event-log-dir` directories into the object
//! store. Change notifications (inotify, through the `notify` crate) make a write show up
//! within a fraction of a second; a scan every poll interval stays as the safety net, because
//! the directories are often network or shared volumes (NFS, some CSI drivers) where
//! notifications are not delivered for writes made on another node.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::layout::LogStore;
use super::owners::Owners;
use super::tail::{Sink, StoreSink, TailMetrics, Tailer};
use crate::logdir::admit::Limits;

/// After a change notification, wait this long before scanning, so a burst of writes (Spark
/// flushes after most events) becomes one scan and one stored part instead of dozens.
pub const NOTIFY_DELAY: Duration = Duration::from_millis(250);

/// Watches `dirs` until `stop`, then makes one last pass so bytes written before shutdown
/// are kept.
pub async fn run(
    dirs: Vec<PathBuf>,
    store: LogStore,
    owners: Arc<Owners>,
    interval: Duration,
    metrics: TailMetrics,
    limits: Limits,
    stop: CancellationToken,
) {
    for d in &dirs {
        tracing::info!(dir = %d.display(), "watching event-log directory");
    }
    let sink = Arc::new(StoreSink::new(store, Some(owners)));
    let mut tailer = Tailer::new(dirs.clone(), sink, metrics, limits);
    drive(&mut tailer, &dirs, interval, &stop).await;
    tailer.poll_once().await;
}

/// Runs `tailer` until `stop`: a pass on every change notification under `dirs` (after
/// [`NOTIFY_DELAY`]) and at least one every `interval`. Shared by the collector and the agent.
pub async fn drive<S: Sink + 'static>(
    tailer: &mut Tailer<S>,
    dirs: &[PathBuf],
    interval: Duration,
    stop: &CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut notifier = Notifier::new(tx);
    loop {
        notifier.watch(dirs);
        tailer.poll_once().await;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
            Some(()) = rx.recv() => {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(NOTIFY_DELAY) => {}
                }
                // what arrived during the delay is covered by the pass about to start
                while rx.try_recv().is_ok() {}
            }
        }
    }
}

/// The inotify side: wakes the loop on any change under the watched directories. When a
/// watch cannot be set (directory missing yet, inotify watch limit reached, no inotify), the
/// directory is just polled; the watch is retried on every pass.
struct Notifier {
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    /// Directories whose watch failed, with the error already logged once.
    failed: HashSet<PathBuf>,
}

impl Notifier {
    fn new(tx: mpsc::Sender<()>) -> Self {
        let handler = move |res: notify::Result<notify::Event>| match res {
            // our own reads of the files would otherwise wake us again and again
            Ok(ev) if matches!(ev.kind, EventKind::Access(_)) => {}
            // a full channel already holds a wake-up: nothing is lost by dropping this one
            Ok(_) => {
                let _ = tx.try_send(());
            }
            Err(e) => {
                tracing::debug!(error = %e, "change notification error; polling covers it");
                let _ = tx.try_send(());
            }
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "change notifications unavailable; event-log directories are only polled");
                None
            }
        };
        Self {
            watcher,
            watched: HashSet::new(),
            failed: HashSet::new(),
        }
    }

    fn watch(&mut self, dirs: &[PathBuf]) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        for d in dirs {
            if self.watched.contains(d) {
                continue;
            }
            match w.watch(d, RecursiveMode::Recursive) {
                Ok(()) => {
                    tracing::debug!(dir = %d.display(), "change notifications on");
                    self.failed.remove(d);
                    self.watched.insert(d.clone());
                }
                Err(e) => {
                    if self.failed.insert(d.clone()) {
                        tracing::warn!(dir = %d.display(), error = %e, "cannot watch event-log directory for changes; polling it (will retry the watch)");
                    }
                }
            }
        }
    }
}
