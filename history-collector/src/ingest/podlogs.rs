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
//!
//! The same watch records how each driver pod ended ([`super::driver_end`]): OOM-killed,
//! evicted, node lost, deleted, or its exit code.

use std::collections::{HashMap, HashSet};
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

use super::driver_end::{self, DriverEnd};
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
        .boxed();
    // the last driver end recorded per application, so each is written once
    let mut ends: HashMap<String, DriverEnd> = HashMap::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            next = pods.try_next() => match next {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pod watch error; retrying");
                    continue;
                }
            },
        };
        let (pod, deleted) = match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
            watcher::Event::Delete(p) => (p, true),
            watcher::Event::Init | watcher::Event::InitDone => continue,
        };
        record_driver_end(&pod, deleted, &store, &mut ends).await;
        if deleted {
            continue;
        }
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

/// Records how a driver pod ended, if it did and that was not recorded yet.
async fn record_driver_end(
    pod: &Pod,
    deleted: bool,
    store: &LogStore,
    ends: &mut HashMap<String, DriverEnd>,
) {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let (Some("driver"), Some(app)) = (label("spark-role"), label("spark-app-selector")) else {
        return;
    };
    let Some(end) = driver_end::classify(pod, deleted) else {
        return;
    };
    if ends.get(app) == Some(&end) {
        return;
    }
    match driver_end::save(store, app, &end).await {
        Ok(false) => {
            tracing::warn!(app = %app, pod = %end.pod, "a pod labelled as this application's driver is not the one its event log came from; its end is not recorded");
            if ends.len() > 100_000 {
                ends.clear();
            }
            ends.insert(app.to_string(), end);
        }
        Ok(true) => {
            tracing::info!(app = %app, pod = %end.pod, reason = %end.reason, "driver pod ended");
            if ends.len() > 100_000 {
                ends.clear();
            }
            ends.insert(app.to_string(), end);
        }
        Err(e) => tracing::warn!(app = %app, error = %e, "cannot record how the driver pod ended"),
    }
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

/// Longest line kept as one; a longer one (a runaway log statement) is stored in pieces of
/// this size, each carrying the line's timestamp, so memory stays bounded and a resume
/// still finds a timestamp on every stored line.
const MAX_LINE: usize = 1 << 20;

/// The lines of `r` without their newline, each with whether it was whole (`false`: a piece
/// of a line longer than `max`, which continues in the next item). Cancel-safe as a stream:
/// a partly read line stays in the stream's state.
fn bounded_lines<R: futures::AsyncBufRead + Unpin + Send + 'static>(
    r: R,
    max: usize,
) -> impl futures::Stream<Item = std::io::Result<(Vec<u8>, bool)>> + Send {
    futures::stream::try_unfold(r, move |mut r| async move {
        let mut line = Vec::new();
        loop {
            let buf = r.fill_buf().await?;
            if buf.is_empty() {
                // the stream ended; a last line without newline is still a line
                return Ok((!line.is_empty()).then_some(((line, true), r)));
            }
            let window = &buf[..buf.len().min(max - line.len())];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&window[..i]);
                r.consume_unpin(i + 1);
                return Ok(Some(((line, true), r)));
            }
            let n = window.len();
            line.extend_from_slice(window);
            r.consume_unpin(n);
            if line.len() >= max {
                return Ok(Some(((line, false), r)));
            }
        }
    })
}

/// The timestamp of a `timestamps=true` log line.
fn line_ts(line: &str) -> Option<Timestamp> {
    line.split_once(' ')?.0.parse().ok()
}

/// The first tail window read to find the resume point; doubled while it holds nothing but
/// lines of the last timestamp.
const RESUME_WINDOW: u64 = 64 << 10;

/// The last stored line's timestamp and how many stored lines at the end carry exactly it.
/// Reads only the stored tail (a window grown until it reaches a line with an earlier
/// timestamp), never the whole log, which may be gigabytes.
async fn resume_point(store: &LogStore, key: &str) -> anyhow::Result<Option<(Timestamp, usize)>> {
    let mut window = RESUME_WINDOW;
    loop {
        let (start, data) = match store.read_tail(key, window).await {
            Ok(t) => t,
            Err(super::layout::LayoutError::Store(
                sidecars_common::objstore::StoreError::NotFound { .. },
            )) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let whole = start == 0;
        // a window that starts inside the file may start inside a line: drop that piece
        let body = if whole {
            &data[..]
        } else {
            data.iter()
                .position(|&b| b == b'\n')
                .map_or(&[][..], |i| &data[i + 1..])
        };
        let (last, bounded) = last_ts_run(&String::from_utf8_lossy(body));
        if bounded || whole {
            return Ok(last);
        }
        window = window.saturating_mul(2);
    }
}

/// The last line's timestamp and how many lines at the end carry it, and whether a line
/// before that run was seen (so the run is complete).
fn last_ts_run(text: &str) -> (Option<(Timestamp, usize)>, bool) {
    let mut last: Option<(Timestamp, usize)> = None;
    for line in text.lines().rev() {
        match (line_ts(line), last) {
            (Some(ts), None) => last = Some((ts, 1)),
            (Some(ts), Some((t, n))) if ts == t => last = Some((t, n + 1)),
            _ => return (last, true),
        }
    }
    (last, false)
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
    let mut lines = bounded_lines(stream, MAX_LINE).boxed();
    // the timestamp of a line cut into pieces, given to the pieces after the first
    let mut cut_ts: Option<String> = None;
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
                Some(Ok((piece, whole))) => {
                    let line = match cut_ts.take() {
                        Some(ts) => format!("{ts} {}", String::from_utf8_lossy(&piece)),
                        None => String::from_utf8_lossy(&piece).into_owned(),
                    };
                    if !whole {
                        cut_ts = line.split_once(' ').map(|(ts, _)| ts.to_string());
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Range;
    use std::sync::atomic::{AtomicU64, Ordering};

    use sidecars_common::objstore::{GetResult, ObjectMeta, ObjectStore, Reader};

    /// Counts the bytes read through `get`.
    #[derive(Debug)]
    struct Counting {
        inner: Arc<dyn ObjectStore>,
        read: AtomicU64,
    }

    #[async_trait::async_trait]
    impl ObjectStore for Counting {
        fn url(&self) -> &str {
            self.inner.url()
        }
        async fn put(
            &self,
            key: &str,
            body: Reader,
        ) -> sidecars_common::objstore::Result<ObjectMeta> {
            self.inner.put(key, body).await
        }
        async fn get(
            &self,
            key: &str,
            range: Option<Range<u64>>,
        ) -> sidecars_common::objstore::Result<GetResult> {
            let got = self.inner.get(key, range).await?;
            self.read
                .fetch_add(got.range.end - got.range.start, Ordering::SeqCst);
            Ok(got)
        }
        async fn head(&self, key: &str) -> sidecars_common::objstore::Result<ObjectMeta> {
            self.inner.head(key).await
        }
        async fn list(&self, prefix: &str) -> sidecars_common::objstore::Result<Vec<ObjectMeta>> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> sidecars_common::objstore::Result<()> {
            self.inner.delete(key).await
        }
    }

    fn line(ts: Timestamp, i: usize) -> String {
        format!("{ts} executor line {i} {}\n", "p".repeat(i % 97))
    }

    #[tokio::test]
    async fn resume_reads_only_the_tail_of_a_huge_log() {
        let dir = tempfile::tempdir().unwrap();
        let inner = sidecars_common::objstore::open(
            &format!("file://{}", dir.path().display()),
            &Default::default(),
        )
        .await
        .unwrap();
        let counting = Arc::new(Counting {
            inner,
            read: AtomicU64::new(0),
        });
        let ls = LogStore::new(counting.clone());
        let key = podlog_key("spark-big", "1", "spark-kubernetes-executor");
        let base = Timestamp::from_second(1_780_000_000).unwrap();
        let last = Timestamp::new(1_780_000_900, 123_456_789).unwrap();
        // 24 MiB of lines with distinct timestamps, then 3000 lines (~400 KiB, more than the
        // first window) all at the last timestamp
        let mut text = String::new();
        let mut i = 0usize;
        while text.len() < 24 << 20 {
            let ts = Timestamp::new(
                base.as_second() + (i / 1000) as i64,
                (i % 1000) as i32 * 1000,
            )
            .unwrap();
            text.push_str(&line(ts, i));
            i += 1;
        }
        for j in 0..3000 {
            text.push_str(&line(last, i + j));
        }
        let mut off = 0;
        for chunk in text.as_bytes().chunks(3 << 20) {
            let body = Box::pin(std::io::Cursor::new(chunk.to_vec()));
            off = ls
                .append(&key, off, chunk.len() as u64, body)
                .await
                .unwrap();
        }
        for complete in [false, true] {
            if complete {
                ls.complete(&key).await.unwrap();
            }
            counting.read.store(0, Ordering::SeqCst);
            let got = resume_point(&ls, &key).await.unwrap();
            assert_eq!(got, Some((last, 3000)), "complete: {complete}");
            let read = counting.read.load(Ordering::SeqCst);
            assert!(
                read < 1 << 20,
                "resume read {read} bytes of a {} byte log (complete: {complete})",
                text.len()
            );
        }
    }

    #[tokio::test]
    async fn huge_lines_come_in_bounded_pieces() {
        let mut text = b"2026-01-01T00:00:00Z short\n2026-01-01T00:00:01Z ".to_vec();
        text.extend(std::iter::repeat_n(b'x', 25));
        text.extend_from_slice(b"\nlast without newline");
        let r = futures::io::BufReader::with_capacity(7, futures::io::Cursor::new(text));
        let got: Vec<(Vec<u8>, bool)> = bounded_lines(r, 16).try_collect().await.unwrap();
        let got: Vec<(String, bool)> = got
            .into_iter()
            .map(|(l, w)| (String::from_utf8(l).unwrap(), w))
            .collect();
        let want = [
            ("2026-01-01T00:00", false),
            (":00Z short", true),
            ("2026-01-01T00:00", false),
            (":01Z xxxxxxxxxxx", false),
            ("xxxxxxxxxxxxxx", true),
            ("last without new", false),
            ("line", true),
        ];
        let want: Vec<(String, bool)> = want.iter().map(|(l, w)| (l.to_string(), *w)).collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn resume_point_of_short_and_missing_logs() {
        let (_dir, ls) = crate::ingest::layout::tests::temp_store().await;
        let key = podlog_key("spark-small", "driver", "c");
        assert_eq!(resume_point(&ls, &key).await.unwrap(), None);
        let t = Timestamp::new(1_780_000_000, 5).unwrap();
        let text = format!("{}{}", line(t, 0), line(t, 1));
        ls.append(
            &key,
            0,
            text.len() as u64,
            Box::pin(std::io::Cursor::new(text.into_bytes())),
        )
        .await
        .unwrap();
        assert_eq!(resume_point(&ls, &key).await.unwrap(), Some((t, 2)));
    }
}
