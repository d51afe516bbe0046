//! What Kubernetes said about an application's driver pod when its event log ends without
//! `SparkListenerApplicationEnd` (OOMKilled, Evicted, deleted, exit code ...).
//!
//! SLOT(history branch): the pod watcher of the `history` branch records why a driver pod
//! ended; [`driver_reason`] is where the UI asks for it. Until that lands it knows nothing
//! and every incomplete application shows as "incomplete" without a reason. The application
//! list and the application page already show whatever this returns.

use crate::api::{Catalog, Entry};

/// Why a driver pod ended, as Kubernetes reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverEnd {
    /// A short label for the status column: `OOMKilled`, `Evicted`, `Error (exit 137)`.
    pub reason: String,
    /// Details for the application page (the pod's message, the container's last state).
    pub message: Option<String>,
    /// The driver was killed rather than failing on its own (OOM, eviction, deletion).
    pub killed: bool,
}

/// The recorded end of the driver pod of `entry`'s application, if Kubernetes told us.
///
/// SLOT(history branch): fill from the pod watcher (`catalog` is passed so the watcher's
/// record can hang off it without changing `ui::router`'s signature).
pub fn driver_reason(_catalog: &Catalog, _entry: &Entry) -> Option<DriverEnd> {
    None
}
