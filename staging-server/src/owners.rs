//! The pods that own bundles, kept current by a Kubernetes watch (list, then watch from the
//! list's resourceVersion, relisting after 410 Gone) rather than the original's LIST per bundle
//! every 30 s. The cleaner asks it whether any pod in a namespace carries all of a bundle's
//! owner labels.
//!
//! Until the first list has completed the answer is "unknown", so nothing is deleted on a cold
//! start. Pods deleted while a watch was broken stay in the view until the relist replays them
//! as present or a later Delete arrives; that errs towards keeping bundles, never towards
//! deleting one that is still needed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use crate::cleaner::OwnerPods;
use crate::store::Owner;

#[derive(Default)]
struct State {
    synced: bool,
    /// (namespace, name) -> labels
    pods: HashMap<(String, String), BTreeMap<String, String>>,
}

/// A live view of pods and their labels.
#[derive(Clone, Default)]
pub struct PodView {
    state: Arc<Mutex<State>>,
}

impl PodView {
    /// Starts watching pods in `namespaces` (all when empty) until `stop` is cancelled.
    pub fn watch(
        client: kube::Client,
        namespaces: Vec<String>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        let view = PodView::default();
        let v = view.clone();
        tokio::spawn(async move {
            let mut events =
                sidecars_common::kube::watch_pods(&client, &namespaces, watcher::Config::default())
                    .default_backoff()
                    .boxed();
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = events.next() => ev,
                };
                match ev {
                    Some(Ok(ev)) => v.apply(ev),
                    Some(Err(e)) => tracing::warn!(error = %e, "pod watch error; retrying"),
                    None => return,
                }
            }
        });
        view
    }

    fn apply(&self, ev: Event<Pod>) {
        let Ok(mut s) = self.state.lock() else { return };
        let key = |p: &Pod| {
            (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            )
        };
        match ev {
            Event::Apply(p) | Event::InitApply(p) => {
                let labels = p.metadata.labels.clone().unwrap_or_default();
                s.pods.insert(key(&p), labels);
            }
            Event::Delete(p) => {
                s.pods.remove(&key(&p));
            }
            Event::Init => {}
            Event::InitDone => s.synced = true,
        }
    }
}

impl OwnerPods for PodView {
    fn any_alive(&self, owner: &Owner) -> Option<bool> {
        let s = self.state.lock().ok()?;
        if !s.synced {
            return None;
        }
        Some(s.pods.iter().any(|((ns, _), labels)| {
            *ns == owner.owner_namespace
                && owner
                    .owner_labels
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
        }))
    }
}
