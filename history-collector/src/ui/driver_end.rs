//! The note on an application's page saying how its driver pod ended, when its event log is
//! incomplete and the pod watch recorded why ([`crate::ingest::driver_end`]): OOM-killed,
//! evicted, node lost, deleted. An event log cannot say this itself (the driver was killed
//! before it could write it). Only the UI shows it; `/api/v1` stays what Spark answers.

use std::fmt::Write;

use super::esc;
use crate::api::{Catalog, Entry};
use crate::ingest::driver_end;

/// The HTML note for `e`, or nothing (a complete log, no store, nothing recorded).
pub async fn note(catalog: &Catalog, e: &Entry) -> String {
    if e.app.completed {
        return String::new();
    }
    let (Some(store), Some(id)) = (catalog.store(), e.app.id.as_deref()) else {
        return String::new();
    };
    let end = match driver_end::load(store, id).await {
        Ok(Some(end)) => end,
        Ok(None) => return String::new(),
        Err(err) => {
            tracing::debug!(app = %id, error = %err, "cannot read how the driver pod ended");
            return String::new();
        }
    };
    let mut s = format!(
        r#"<p id="driver-end" class="failed">The driver pod {} ended: <b>{}</b>: {}"#,
        esc(&end.pod),
        esc(&end.reason),
        esc(&end.message),
    );
    if let Some(t) = &end.finished_at {
        let _ = write!(s, " (at {})", esc(t));
    }
    s.push_str(". The event log stops there.</p>");
    s
}
