//! The pods bound to this node: a watch on `spec.nodeName=<node>` hands every version of each
//! pod to that pod's [`worker::Worker`], started when the pod first appears and finished when
//! it has been deleted and cleaned up.

pub mod process;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::node::NodeCtx;

/// Runs the node's pods until `shutdown` resolves, then stops them all (as at deletion).
pub async fn run(node: Arc<NodeCtx>, shutdown: impl std::future::Future<Output = ()>) {
    let api: Api<Pod> = Api::all(node.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", node.name));
    let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let mut seen_in_list: Vec<String> = Vec::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(uid) = done {
                    workers.remove(&uid);
                }
            }
            ev = stream.try_next() => {
                let ev = match ev {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "watching this node's pods");
                        continue;
                    }
                };
                match ev {
                    Event::Init => seen_in_list.clear(),
                    Event::InitApply(pod) | Event::Apply(pod) => {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        seen_in_list.push(uid.clone());
                        match workers.get(&uid) {
                            Some(tx) => {
                                tx.send_replace(Some(pod));
                            }
                            None => {
                                let (tx, rx) = watch::channel(Some(pod.clone()));
                                workers.insert(uid.clone(), tx);
                                let w = worker::Worker::new(node.clone(), pod, rx);
                                tasks.spawn(async move {
                                    w.run().await;
                                    uid
                                });
                            }
                        }
                    }
                    Event::Delete(pod) => {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        if let Some(tx) = workers.get(&uid) {
                            tx.send_replace(None);
                        }
                    }
                    Event::InitDone => {
                        // pods deleted while the watch was down
                        for (uid, tx) in &workers {
                            if !seen_in_list.contains(uid) {
                                tx.send_replace(None);
                            }
                        }
                    }
                }
            }
        }
    }
    // the node goes away: every pod is stopped as if deleted
    for tx in workers.values() {
        tx.send_replace(None);
    }
    while tasks.join_next().await.is_some() {}
}
