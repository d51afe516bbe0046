//! Where the read side is assembled: the catalog and its rescans, the REST API, the UI and the
//! container-log routes, behind the access layer ([`crate::access`]: who the user is) and,
//! for the UI and the container logs, the [`gate`] (whether they may view the application;
//! the API checks that itself, path by path, as Spark's does). The layers below never build
//! each other's routes; they meet here (the binary adds ingest and the admin endpoints).

pub mod gate;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::access::{viewer, AccessConfig};
use crate::api;
use crate::catalog::{Catalog, CatalogMetrics, Settings};
use crate::ingest::layout::LogStore;
use crate::{logs, ui};

/// The API, the UI and (with a store) the container logs over `catalog`, each request
/// passing the access layer `access`.
pub fn router(catalog: Arc<Catalog>, store: Option<LogStore>, access: AccessConfig) -> Router {
    let mut pages = ui::router(catalog.clone());
    if let Some(store) = store {
        pages = pages.merge(logs::router(store));
    }
    let pages = pages.layer(axum::middleware::from_fn_with_state(
        catalog.clone(),
        gate::gate,
    ));
    api::router(catalog)
        .merge(pages)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(access),
            viewer::layer,
        ))
}

/// A catalog over `dirs` and `store`, rescanned every `every` until `stop`, and the task
/// that rescans it (it ends after `stop`, once the listing index is written). Call it within
/// the Tokio runtime.
pub fn catalog(
    dirs: &[PathBuf],
    store: Option<LogStore>,
    settings: Settings,
    metrics: CatalogMetrics,
    every: Duration,
    stop: CancellationToken,
) -> (Arc<Catalog>, tokio::task::JoinHandle<()>) {
    let catalog = Arc::new(Catalog::build(dirs.to_vec(), store, settings, metrics));
    let scans = tokio::spawn(catalog.clone().run(every, stop));
    (catalog, scans)
}

/// The API and the UI over `event_log_dirs` and, when `storage_url` is a `file://` URL, the
/// copies ingest keeps there, with ACLs off and the default limits; rescanned every `every`
/// until `stop`. Call it within the Tokio runtime.
pub fn service(
    event_log_dirs: &[PathBuf],
    storage_url: &str,
    every: Duration,
    stop: CancellationToken,
) -> Router {
    let store = match storage_url.strip_prefix("file://") {
        Some(path) => match sidecars_common::objstore::FileStore::new(path) {
            Ok(fs) => Some(LogStore::new(Arc::new(fs))),
            Err(e) => {
                tracing::warn!(storage = %storage_url, error = %e, "cannot open the store: its event logs are not served");
                None
            }
        },
        None => None,
    };
    let (catalog, _scans) = catalog(
        event_log_dirs,
        store.clone(),
        Settings::default(),
        CatalogMetrics::default(),
        every,
        stop,
    );
    router(catalog, store, AccessConfig::open())
}
