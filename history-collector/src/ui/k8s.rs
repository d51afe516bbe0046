//! What Kubernetes said about an application's driver pod when its event log ends without
//! `SparkListenerApplicationEnd`: the record the pod watch keeps ([`crate::ingest::driver_end`])
//! of why the pod ended (OOMKilled, Evicted, deleted, an exit code). An event log cannot say
//! this itself: the driver was killed before it could write it. Only the UI shows it;
//! `/api/v1` stays what Spark answers.

use std::collections::HashMap;
use std::sync::Arc;

use crate::api::{Catalog, Entry};
use crate::ingest::driver_end;

/// Why a driver pod ended, as Kubernetes reported it, for the pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverEnd {
    /// A short label for the status column: `OOMKilled`, `Evicted`, `Failed (exit 1)`.
    pub reason: String,
    /// Details for the application page: the pod, what Kubernetes said, when.
    pub message: Option<String>,
    /// The driver was killed rather than failing on its own (OOM, eviction, deletion).
    pub killed: bool,
}

impl From<driver_end::DriverEnd> for DriverEnd {
    fn from(d: driver_end::DriverEnd) -> Self {
        let killed = matches!(
            d.reason.as_str(),
            "OOMKilled" | "Evicted" | "NodeLost" | "NodeShutdown" | "Preempted" | "Deleted"
        );
        let reason = match (d.reason.as_str(), d.exit_code) {
            ("Failed", Some(c)) => format!("Failed (exit {c})"),
            _ => d.reason,
        };
        let mut message = format!("pod {}", d.pod);
        if !d.message.is_empty() {
            message.push_str(": ");
            message.push_str(&d.message);
        }
        if let Some(t) = &d.finished_at {
            message.push_str(&format!(" (at {t})"));
        }
        DriverEnd {
            reason,
            message: Some(message),
            killed,
        }
    }
}

/// The recorded end of the driver pod of `entry`'s application, if its log is incomplete and
/// the pod watch recorded one in the store.
pub async fn driver_end(catalog: &Catalog, entry: &Entry) -> Option<DriverEnd> {
    if entry.listing.completed {
        return None;
    }
    let (store, id) = (catalog.store()?, entry.listing.id.as_deref()?);
    match driver_end::load(store, id).await {
        Ok(end) => end.map(DriverEnd::from),
        Err(err) => {
            tracing::debug!(app = %id, error = %err, "cannot read how the driver pod ended");
            None
        }
    }
}

/// [`driver_end`] of each incomplete entry in `entries` (one page of the list), by app id.
pub async fn driver_ends(catalog: &Catalog, entries: &[&Arc<Entry>]) -> HashMap<String, DriverEnd> {
    let wanted = entries
        .iter()
        .filter(|e| !e.listing.completed)
        .map(|e| async move {
            Some((
                e.listing.id.as_deref()?.to_string(),
                driver_end(catalog, e).await?,
            ))
        });
    futures::future::join_all(wanted)
        .await
        .into_iter()
        .flatten()
        .collect()
}
