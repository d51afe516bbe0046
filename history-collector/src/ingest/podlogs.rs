//! Pod logs: watches Spark pods (label `spark-role`) through `kube::runtime::watcher` and
//! follows each container's log (`pods/log?follow=true&timestamps=true`) into
//! `podlogs/<appId>/<executorId>/<container>.log` (app id from `spark-app-selector`, executor
//! id from `spark-exec-id`, `driver` for the driver).
//!
//! Lines are stored as the API sends them, with their RFC 3339 timestamp first (as
//! `kubectl logs --timestamps`), because that timestamp is what makes a resume exact: after a
//! restart the follower reads the last stored line's timestamp T, asks for `sinceTime`
//! = T rounded down to the second (the API's precision), and drops lines older than T and the
//! lines at exactly T it already has. A log is completed once its pod is gone or finished.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::LogParams;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::layout::{check_component, podlog_key, LogStore};

/// Pod-log counters.
#[derive(Clone, Debug, Default)]
pub struct PodLogMetrics {
    pub bytes: Counter,
    pub followers: Gauge,
}

impl PodLogMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "history_podlog_bytes",
            "Pod-log bytes stored",
            self.bytes.clone(),
        );
        registry.register(
            "history_podlog_followers",
            "Container logs being followed",
            self.followers.clone(),
        );
    }
}

/// Buffered lines are stored at least this often, and when this many bytes are buffered.
const FLUSH_BYTES: usize = 1 << 20;

/// Watches pods in `namespaces` (all if empty) until `stop`, following each container's log.
pub async fn run(
    client: Client,
    namespaces: Vec<String>,
    store: LogStore,
    metrics: PodLogMetrics,
    flush_every: Duration,
    stop: CancellationToken,
) {
    let active: Arc<Mutex<HashSet<String>>> = Arc::default();
    let tracker = tokio_util::task::TaskTracker::new();
    let cfg = watcher::Config::default().labels("spark-role");
    let mut pods = sidecars_common::kube::watch_pods(&client, &namespaces, cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    loop {
        let pod = tokio::select! {
            _ = stop.cancelled() => break,
            next = pods.try_next() => match next {
                Ok(Some(pod)) => pod,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pod watch error; retrying");
                    continue;
                }
            },
        };
        for f in followers_for(&pod) {
            let id = format!("{}/{}", f.uid, f.container);
            let fresh = active
                .lock()
                .map(|mut a| a.insert(id.clone()))
                .unwrap_or(false);
            if !fresh {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(client.clone(), &f.namespace);
            let (store, metrics, stop) = (store.clone(), metrics.clone(), stop.clone());
            // the id stays in `active`: a follower runs until its log is complete
            tracker.spawn(async move {
                metrics.followers.inc();
                follow(api, &f, &store, &metrics, flush_every, &stop).await;
                metrics.followers.dec();
            });
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// One container log to follow.
#[derive(Clone, Debug)]
struct Follower {
    namespace: String,
    pod: String,
    uid: String,
    container: String,
    key: String,
}

fn followers_for(pod: &Pod) -> Vec<Follower> {
    let md = &pod.metadata;
    let labels = md.labels.clone().unwrap_or_default();
    let (Some(ns), Some(name), Some(uid)) = (md.namespace.clone(), md.name.clone(), md.uid.clone())
    else {
        return Vec::new();
    };
    let Some(app) = labels.get("spark-app-selector") else {
        return Vec::new();
    };
    let exec = match labels.get("spark-role").map(String::as_str) {
        Some("driver") => "driver".to_string(),
        _ => match labels.get("spark-exec-id") {
            Some(e) => e.clone(),
            None => return Vec::new(),
        },
    };
    if check_component(app).is_err() || check_component(&exec).is_err() {
        tracing::warn!(pod = %name, "Spark pod with unusable app or executor id label; not collecting its logs");
        return Vec::new();
    }
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    statuses
        .into_iter()
        .filter(|c| {
            c.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        })
        .filter(|c| check_component(&c.name).is_ok())
        .map(|c| Follower {
            namespace: ns.clone(),
            pod: name.clone(),
            uid: uid.clone(),
            key: podlog_key(app, &exec, &c.name),
            container: c.name,
        })
        .collect()
}

/// The timestamp of a `timestamps=true` log line.
fn line_ts(line: &str) -> Option<Timestamp> {
    line.split_once(' ')?.0.parse().ok()
}

/// The last stored line's timestamp and how many stored lines at the end carry exactly it.
async fn resume_point(store: &LogStore, key: &str) -> anyhow::Result<Option<(Timestamp, usize)>> {
    let data = match store.read_all(key).await {
        Ok(d) => d,
        Err(super::layout::LayoutError::Store(
            sidecars_common::objstore::StoreError::NotFound { .. },
        )) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8_lossy(&data);
    let mut last: Option<(Timestamp, usize)> = None;
    for line in text.lines().rev() {
        match (line_ts(line), last) {
            (Some(ts), None) => last = Some((ts, 1)),
            (Some(ts), Some((t, n))) if ts == t => last = Some((t, n + 1)),
            _ => break,
        }
    }
    Ok(last)
}

async fn follow(
    api: Api<Pod>,
    f: &Follower,
    store: &LogStore,
    metrics: &PodLogMetrics,
    flush_every: Duration,
    stop: &CancellationToken,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match follow_once(&api, f, store, metrics, flush_every, stop).await {
            Ok(true) => return,
            Ok(false) if stop.is_cancelled() => return,
            Ok(false) => backoff = Duration::from_millis(500),
            Err(e) => {
                tracing::warn!(pod = %f.pod, container = %f.container, error = %format!("{e:#}"), "pod log follow failed; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Follows until the stream ends; true when the log is complete (pod gone or finished).
async fn follow_once(
    api: &Api<Pod>,
    f: &Follower,
    store: &LogStore,
    metrics: &PodLogMetrics,
    flush_every: Duration,
    stop: &CancellationToken,
) -> anyhow::Result<bool> {
    let stored = store.stored(&f.key).await?;
    if stored.complete {
        return Ok(true);
    }
    let resume = resume_point(store, &f.key).await?;
    let lp = LogParams {
        container: Some(f.container.clone()),
        follow: true,
        timestamps: true,
        since_time: resume.map(|(ts, _)| Timestamp::from_second(ts.as_second()).unwrap_or(ts)),
        ..Default::default()
    };
    let stream = match api.log_stream(&f.pod, &lp).await {
        Ok(s) => s,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            store.complete(&f.key).await?;
            return Ok(true);
        }
        Err(e) => return Err(e.into()),
    };
    let mut lines = stream.lines();
    let mut offset = stored.len;
    let mut buf: Vec<u8> = Vec::new();
    let mut skip_same = resume.map_or(0, |(_, n)| n);
    let mut tick = tokio::time::interval(flush_every);
    let mut ended = false;
    while !ended {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
            line = lines.next() => match line {
                Some(Ok(line)) => {
                    if let (Some((t, _)), Some(ts)) = (resume, line_ts(&line)) {
                        if ts < t {
                            continue;
                        }
                        if ts == t && skip_same > 0 {
                            skip_same -= 1;
                            continue;
                        }
                    }
                    buf.extend_from_slice(line.as_bytes());
                    buf.push(b'\n');
                    if buf.len() < FLUSH_BYTES {
                        continue;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(pod = %f.pod, error = %e, "pod log stream broke");
                    ended = true;
                }
                None => ended = true,
            },
        }
        if !buf.is_empty() {
            let len = buf.len() as u64;
            let body = std::mem::take(&mut buf);
            offset = store
                .append(&f.key, offset, len, Box::pin(std::io::Cursor::new(body)))
                .await?;
            metrics.bytes.inc_by(len);
        }
    }
    if stop.is_cancelled() {
        return Ok(false);
    }
    let done = match api.get_opt(&f.pod).await? {
        None => true,
        Some(p) => {
            p.metadata.uid.as_deref() != Some(f.uid.as_str())
                || p.status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .is_some_and(|ph| ph == "Succeeded" || ph == "Failed")
        }
    };
    if done {
        store.complete(&f.key).await?;
        tracing::info!(pod = %f.pod, container = %f.container, bytes = offset, "pod log stored complete");
    }
    Ok(done)
}
