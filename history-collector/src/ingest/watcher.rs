//! The collector's directory watcher: polls the `--event-log-dir` directories and copies into
//! the object store. Polling (not inotify) because the directories are often network or
//! shared volumes where change notifications are not delivered.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::layout::LogStore;
use super::tail::{StoreSink, TailMetrics, Tailer};

/// Polls `dirs` every `interval` until `stop`, then makes one last pass so bytes written
/// before shutdown are kept.
pub async fn run(
    dirs: Vec<PathBuf>,
    store: LogStore,
    interval: Duration,
    metrics: TailMetrics,
    stop: CancellationToken,
) {
    for d in &dirs {
        tracing::info!(dir = %d.display(), "watching event-log directory");
    }
    let mut tailer = Tailer::new(dirs, Arc::new(StoreSink { store }), metrics);
    loop {
        tailer.poll_once().await;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    tailer.poll_once().await;
}
