//! Application cleanup. Spark has no wire message for "application finished", so the service
//! finds out on its own: on Kubernetes by watching driver pods (`spark-role=driver`, app id in
//! the `spark-app-selector` label) and removing an app once its driver pod is gone or has
//! finished; everywhere, by a TTL after the app was last heard from.
//!
//! Drivers can also go away while the service is down. So at start one list of driver pods
//! is compared with the registrations restored from `--state-dir`: a restored app with no
//! running driver pod is removed then.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use tokio_util::sync::CancellationToken;

use crate::service::Service;

pub const APP_LABEL: &str = "spark-app-selector";
pub const DRIVER_SELECTOR: &str = "spark-role=driver";

/// Removes apps idle for longer than `ttl`, checking every `every`.
pub async fn ttl_loop(
    service: Arc<Service>,
    ttl: Duration,
    every: Duration,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => service.expire_idle(ttl).await,
            _ = token.cancelled() => return,
        }
    }
}

fn app_id(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(APP_LABEL)
        .map(String::as_str)
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Lists driver pods once and removes each app in `restored` (registered before this start)
/// that has no running driver pod: its driver went away while the service was down, so no
/// watch event will ever name it. A failed list removes nothing.
pub async fn remove_orphans(
    service: &Service,
    client: &kube::Client,
    namespaces: &[String],
    restored: HashSet<String>,
) {
    if restored.is_empty() {
        return;
    }
    let mut live = HashSet::new();
    let params = kube::api::ListParams::default().labels(DRIVER_SELECTOR);
    for api in sidecars_common::kube::pod_apis(client, namespaces) {
        match api.list(&params).await {
            Ok(pods) => live.extend(
                pods.items
                    .iter()
                    .filter(|p| !finished(p))
                    .filter_map(|p| app_id(p).map(str::to_owned)),
            ),
            Err(e) => {
                service.metrics.error("kube_watch");
                tracing::warn!(error = %e, "cannot list driver pods; restored applications are kept");
                return;
            }
        }
    }
    for app in restored.difference(&live) {
        service
            .remove_app(app, "no running driver pod after a restart")
            .await;
    }
}

/// Watches driver pods and removes each app whose driver pod is deleted or has finished.
/// `restored` holds the apps registered before this start, checked once by [`remove_orphans`].
pub async fn driver_watch(
    service: Arc<Service>,
    client: kube::Client,
    namespaces: Vec<String>,
    restored: HashSet<String>,
    token: CancellationToken,
) {
    let config = watcher::Config::default().labels(DRIVER_SELECTOR);
    let mut events = sidecars_common::kube::watch_pods(&client, &namespaces, config)
        .default_backoff()
        .boxed();
    tokio::select! {
        _ = remove_orphans(&service, &client, &namespaces, restored) => {}
        _ = token.cancelled() => return,
    }
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = token.cancelled() => return,
        };
        let Some(ev) = ev else { return };
        match ev {
            Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                if finished(&pod) {
                    if let Some(app) = app_id(&pod) {
                        service.remove_app(app, "driver pod finished").await;
                    }
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(app) = app_id(&pod) {
                    service.remove_app(app, "driver pod deleted").await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                service.metrics.error("kube_watch");
                tracing::warn!(error = %e, "driver pod watch failed; retrying");
            }
        }
    }
}
