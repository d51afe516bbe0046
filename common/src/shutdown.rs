//! Graceful shutdown: one cancellation signal threaded through every task, plus a tracker of
//! in-flight work that shutdown waits for, up to a deadline.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The shutdown signal and the set of tasks it waits for.
#[derive(Clone)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
    deadline: Duration,
}

impl Shutdown {
    pub fn new(deadline: Duration) -> Self {
        Self {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            deadline,
        }
    }

    /// Cancelled when the daemon should stop taking new work.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Tracks in-flight work (connections, uploads) that shutdown waits for.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Resolves once shutdown has begun.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// Spawns a task that triggers shutdown on SIGTERM or SIGINT.
    pub fn listen_for_signals(&self) {
        let token = self.token.clone();
        tokio::spawn(async move {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for SIGTERM");
                        std::future::pending::<()>().await
                    }
                }
            };
            tokio::select! {
                _ = term => tracing::info!("SIGTERM received, shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
                _ = token.cancelled() => return,
            }
            token.cancel();
        });
    }

    /// Waits for tracked work to finish, up to the deadline. Returns false if it timed out.
    pub async fn drain(&self) -> bool {
        self.tracker.close();
        let n = self.tracker.len();
        if n > 0 {
            tracing::info!(in_flight = n, deadline = ?self.deadline, "waiting for in-flight work");
        }
        let done = tokio::time::timeout(self.deadline, self.tracker.wait())
            .await
            .is_ok();
        if !done {
            tracing::warn!(
                in_flight = self.tracker.len(),
                "shutdown deadline passed with work still in flight"
            );
        }
        done
    }
}
