//! The pods that own bundles and uploads, kept current by a Kubernetes watch (list, then watch
//! from the list's resourceVersion, relisting after 410 Gone) rather than the original's LIST
//! per bundle every 30 s. The cleaner asks it whether any pod in a namespace carries all of a
//! bundle's owner labels; the WebHDFS API asks which pods sit at a client's address (a pod
//! reading an upload claims it), and the cleaner which pods name an upload directory in their
//! spec (a Python application's main file is in its driver's arguments).
//!
//! Until the first list has completed the answer is "unknown", so nothing is deleted on a cold
//! start. Pods deleted while a watch was broken stay in the view until the relist replays them
//! as present or a later Delete arrives; that errs towards keeping bundles, never towards
//! deleting one that is still needed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use crate::cleaner::OwnerPods;
use crate::store::Owner;

/// The label Spark puts on the driver and executors of one application.
pub const APP_LABEL: &str = "spark-app-selector";
/// Spark names each uploaded file's directory `spark-upload-<uuid>`.
pub const UPLOAD_DIR_PREFIX: &str = "spark-upload-";

/// What the view keeps of one pod.
#[derive(Debug, Default, Clone)]
struct PodInfo {
    labels: BTreeMap<String, String>,
    ips: Vec<IpAddr>,
    /// `spark-upload-<uuid>` names in its containers' commands, arguments and environment.
    upload_dirs: BTreeSet<String>,
}

#[derive(Default)]
struct State {
    synced: bool,
    /// (namespace, name) -> what is known of the pod
    pods: HashMap<(String, String), PodInfo>,
}

/// A live view of pods, their labels, addresses and the upload directories they name.
#[derive(Clone, Default)]
pub struct PodView {
    state: Arc<Mutex<State>>,
}

/// The owner a pod stands for: its application (by `spark-app-selector`, so the driver and
/// every executor count), or itself by name.
pub fn owner_of(namespace: &str, name: &str, labels: &BTreeMap<String, String>) -> Owner {
    match labels.get(APP_LABEL) {
        Some(app) => Owner {
            owner_namespace: namespace.to_string(),
            owner_labels: BTreeMap::from([(APP_LABEL.to_string(), app.clone())]),
            owner_type: "Pod".into(),
            owner_name: None,
        },
        None => Owner {
            owner_namespace: namespace.to_string(),
            owner_labels: BTreeMap::new(),
            owner_type: "Pod".into(),
            owner_name: Some(name.to_string()),
        },
    }
}

/// The `spark-upload-<uuid>` words in `text`.
pub fn upload_dirs_in(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(i) = rest.find(UPLOAD_DIR_PREFIX) {
        let tail = &rest[i..];
        let end = tail[UPLOAD_DIR_PREFIX.len()..]
            .find(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
            .map(|e| e + UPLOAD_DIR_PREFIX.len())
            .unwrap_or(tail.len());
        if end > UPLOAD_DIR_PREFIX.len() {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end.max(1)..];
    }
}

fn info_of(p: &Pod) -> PodInfo {
    let labels = p.metadata.labels.clone().unwrap_or_default();
    let mut ips = Vec::new();
    if let Some(status) = &p.status {
        if let Some(ip) = status.pod_ip.as_deref().and_then(|s| s.parse().ok()) {
            ips.push(ip);
        }
        for pip in status.pod_ips.iter().flatten() {
            if let Ok(ip) = pip.ip.parse() {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
    }
    let mut upload_dirs = BTreeSet::new();
    if let Some(spec) = &p.spec {
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for c in containers {
            for s in c.command.iter().flatten().chain(c.args.iter().flatten()) {
                upload_dirs_in(s, &mut upload_dirs);
            }
            for e in c.env.iter().flatten() {
                if let Some(v) = &e.value {
                    upload_dirs_in(v, &mut upload_dirs);
                }
            }
        }
    }
    PodInfo {
        labels,
        ips,
        upload_dirs,
    }
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
                s.pods.insert(key(&p), info_of(&p));
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
        Some(s.pods.iter().any(|((ns, name), info)| {
            *ns == owner.owner_namespace
                && owner.owner_name.as_ref().is_none_or(|n| n == name)
                && owner
                    .owner_labels
                    .iter()
                    .all(|(k, v)| info.labels.get(k) == Some(v))
        }))
    }

    fn owners_at(&self, namespace: &str, ip: IpAddr) -> Vec<Owner> {
        let Ok(s) = self.state.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Owner> = s
            .pods
            .iter()
            .filter(|((ns, _), info)| ns == namespace && info.ips.contains(&ip))
            .map(|((ns, name), info)| owner_of(ns, name, &info.labels))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn owners_referencing(&self, namespace: &str, upload_dir: &str) -> Vec<Owner> {
        let Ok(s) = self.state.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Owner> = s
            .pods
            .iter()
            .filter(|((ns, _), info)| ns == namespace && info.upload_dirs.contains(upload_dir))
            .map(|((ns, name), info)| owner_of(ns, name, &info.labels))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_upload_dirs() {
        let mut out = BTreeSet::new();
        upload_dirs_in(
            "webhdfs://s:1/x/spark-upload-0b7e6c1e-3f7a-4b5e-9d7e-2a1c3f4e5d6c/app.py,spark-upload-,spark-upload-ab",
            &mut out,
        );
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            [
                "spark-upload-0b7e6c1e-3f7a-4b5e-9d7e-2a1c3f4e5d6c",
                "spark-upload-ab"
            ]
        );
    }
}
