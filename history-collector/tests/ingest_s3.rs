//! Ingest into `s3://` on a real S3 server (Garage, `$GARAGE_BIN`), through the real collector
//! binary: a growing event log (plain single file and rolling zstd) and a followed pod log.
//! While the sources grow, every stored copy read back from S3 is a consistent prefix; the
//! collector is restarted (SIGTERM, then kill -9) mid-stream; in the end the stored copies
//! are byte-identical, with no gap, no duplicate and no parts left.

mod ingest_util;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use history_collector::ingest::layout::{eventlog_key, podlog_key, LayoutError, LogStore};
use ingest_util::*;
use sidecars_common::fake_kube::FakeApiServer;
use sidecars_common::objstore::testing::Garage;
use sidecars_common::objstore::StoreError;

fn garage() -> Garage {
    Garage::start().unwrap_or_else(|e| panic!("the S3 ingest tests need Garage: {e:#}"))
}

/// The stored bytes of `key`, `None` when nothing is stored yet or a read raced a merge of
/// parts (the next look sees the merged part).
async fn stored_s3(ls: &LogStore, key: &str) -> Option<Vec<u8>> {
    match ls.read_all(key).await {
        Ok(b) => Some(b.to_vec()),
        Err(LayoutError::Store(StoreError::NotFound { .. })) => None,
        Err(e) => {
            eprintln!("read of {key} failed (retried): {e}");
            None
        }
    }
}

/// Checks every stored copy against its source: a prefix, cut on a line or zstd-frame
/// boundary. Returns how many copies were checked.
async fn check_consistent_prefixes(ls: &LogStore, src: &std::path::Path) -> usize {
    let mut checked = 0;
    for rel in source_files(src).into_keys() {
        let key = eventlog_key(&log_name(&rel), &rel);
        // stored first, source second: the source only grows in between
        let Some(stored) = stored_s3(ls, &key).await else {
            continue;
        };
        let Ok(source) = std::fs::read(src.join(&rel)) else {
            continue;
        };
        assert!(
            source.starts_with(&stored),
            "{rel}: the stored copy ({} bytes) is not a prefix of the source ({} bytes)",
            stored.len(),
            source.len()
        );
        if rel.ends_with(".zstd") {
            zstd::stream::decode_all(&stored[..]).unwrap_or_else(|e| {
                panic!(
                    "{rel}: stored copy ({} bytes) is not whole zstd frames: {e}",
                    stored.len()
                )
            });
        } else {
            assert!(
                stored.is_empty() || stored.ends_with(b"\n"),
                "{rel}: stored copy ({} bytes) ends inside a line",
                stored.len()
            );
        }
        checked += 1;
    }
    checked
}

async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stored_len(ls: &LogStore, key: &str) -> u64 {
    ls.stored(key).await.map_or(0, |s| s.len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eventlogs_to_s3_across_collector_restarts() {
    let garage = garage();
    let env = garage.env();
    let ls = LogStore::new(
        garage
            .open("history")
            .await
            .expect("open the Garage bucket"),
    );
    let storage = garage.url("history");
    let src = tempfile::tempdir().unwrap();
    let src_dir = src.path().to_str().unwrap().to_string();
    let args = [
        "--storage",
        &storage,
        "--event-log-dir",
        &src_dir,
        "--poll-interval",
        "200ms",
    ];
    let port = free_port();
    let mut collector = tokio::task::block_in_place(|| start_collector_env(port, &args, &env));

    // a driver writing a plain single-file log and a rolling zstd log, each write split so
    // the collector often sees half a line or half a frame
    let single = src.path().join("app-s3.inprogress");
    let rolling = src.path().join("eventlog_v2_app-z");
    std::fs::create_dir(&rolling).unwrap();
    std::fs::write(rolling.join("appstatus_app-z.inprogress"), b"").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (single, rolling, stop) = (single.clone(), rolling.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(&single).unwrap();
            let mut index = 1;
            let mut r = std::fs::File::create(rolling.join("events_1_app-z.zstd")).unwrap();
            let mut i = 0u64;
            let mut frame = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let line = format!(
                    "{{\"Event\":\"SparkListenerTaskEnd\",\"n\":{i},\"pad\":\"{}\"}}\n",
                    "x".repeat((i % 300) as usize)
                );
                let (a, b) = line.split_at(line.len() / 2);
                f.write_all(a.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_micros(300));
                f.write_all(b.as_bytes()).unwrap();
                frame.extend_from_slice(line.as_bytes());
                i += 1;
                if i.is_multiple_of(20) {
                    let z = zstd::bulk::compress(&frame, 3).unwrap();
                    frame.clear();
                    let (a, b) = z.split_at(z.len() / 2);
                    r.write_all(a).unwrap();
                    std::thread::sleep(Duration::from_micros(300));
                    r.write_all(b).unwrap();
                }
                if i.is_multiple_of(1500) {
                    index += 1;
                    r = std::fs::File::create(rolling.join(format!("events_{index}_app-z.zstd")))
                        .unwrap();
                }
            }
            i
        })
    };
    // a checker reading S3 all along, across the restarts
    let checks = Arc::new(AtomicUsize::new(0));
    let checker = {
        let (ls, stop, checks) = (ls.clone(), stop.clone(), checks.clone());
        let src = src.path().to_path_buf();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let n = check_consistent_prefixes(&ls, &src).await;
                checks.fetch_add(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let single_key = eventlog_key("app-s3", "app-s3.inprogress");
    wait_for(Duration::from_secs(30), "first bytes in S3", || async {
        stored_len(&ls, &single_key).await > 20_000
    })
    .await;
    // graceful restart mid-stream
    assert!(tokio::task::block_in_place(|| collector.terminate()).success());
    let before = stored_len(&ls, &single_key).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    collector = tokio::task::block_in_place(|| start_collector_env(port, &args, &env));
    wait_for(
        Duration::from_secs(30),
        "copying to resume after a restart",
        || async { stored_len(&ls, &single_key).await > before + 20_000 },
    )
    .await;
    // kill -9 mid-stream: whatever step of a put or merge it hits, the next one resumes
    let _ = collector.child.kill();
    let _ = collector.child.wait();
    let before = stored_len(&ls, &single_key).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    collector = tokio::task::block_in_place(|| start_collector_env(port, &args, &env));
    wait_for(
        Duration::from_secs(30),
        "copying to resume after kill -9",
        || async { stored_len(&ls, &single_key).await > before + 20_000 },
    )
    .await;

    // let the rolling log roll twice, so there are rolled files and a live one
    let third = rolling.join("events_3_app-z.zstd");
    wait_for(
        Duration::from_secs(60),
        "the rolling log to roll",
        || async { third.exists() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let lines = writer.join().unwrap();
    checker.await.expect("prefix checker");
    assert!(lines > 3000, "the writer wrote only {lines} lines");
    assert!(
        checks.load(Ordering::SeqCst) > 10,
        "the stored copies were hardly ever checked"
    );
    // the application ends: Spark renames and finalises
    std::fs::rename(&single, src.path().join("app-s3")).unwrap();
    std::fs::rename(
        rolling.join("appstatus_app-z.inprogress"),
        rolling.join("appstatus_app-z"),
    )
    .unwrap();
    let source = source_files(src.path());
    assert!(source.len() >= 5, "{:?}", source.keys());
    wait_for(
        Duration::from_secs(60),
        "complete copies in S3 equal to the sources",
        || async {
            for (rel, data) in &source {
                let key = eventlog_key(&log_name(rel), rel);
                match ls.stored(&key).await {
                    Ok(s) if s.complete => {}
                    _ => return false,
                }
                if stored_s3(&ls, &key).await.as_ref() != Some(data) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    // exactly Spark's files (no stale `.inprogress`), and no parts left behind
    let mut stored_rels = Vec::new();
    for log in ls.list_logs().await.unwrap() {
        for f in ls.list_files(&log).await.unwrap() {
            assert!(f.complete, "{log}/{} is not complete", f.rel);
            stored_rels.push(f.rel);
        }
    }
    stored_rels.sort();
    assert_eq!(stored_rels, source.keys().cloned().collect::<Vec<_>>());
    let parts = ls.store().list("parts/").await.unwrap();
    assert!(parts.is_empty(), "parts left: {parts:?}");
    assert!(tokio::task::block_in_place(|| collector.terminate()).success());
}

/// The stored pod log's lines without their timestamps, read from S3.
async fn podlog_lines(ls: &LogStore, key: &str) -> Vec<String> {
    let data = stored_s3(ls, key).await.unwrap_or_default();
    String::from_utf8_lossy(&data)
        .lines()
        .map(|l| l.split_once(' ').map_or(l, |(_, r)| r).to_string())
        .collect()
}

async fn wait_podlog(ls: &LogStore, key: &str, want: &[String]) {
    let start = Instant::now();
    loop {
        let got = podlog_lines(ls, key).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{key}: want {} lines, got {}: last {:?}",
            want.len(),
            got.len(),
            got.iter().rev().take(3).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn podlogs_to_s3_across_collector_restarts() {
    let garage = garage();
    let env = garage.env();
    let ls = LogStore::new(
        garage
            .open("history")
            .await
            .expect("open the Garage bucket"),
    );
    let storage = garage.url("history");
    let kube = FakeApiServer::start().await;
    let kubeconfig = kube.kubeconfig_path().to_str().unwrap().to_string();
    let args = [
        "--storage",
        &storage,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "default",
        "--pod-log-flush-interval",
        "200ms",
    ];
    let (pod, container) = ("exec-7", "spark-kubernetes-executor");
    kube.apply_pod(spark_pod(pod, "spark-s3", "executor", Some("7"), container));
    let key = podlog_key("spark-s3", "7", container);
    let mut want = Vec::new();
    let say = |kube: &FakeApiServer, want: &mut Vec<String>, n: usize, what: &str| {
        for i in 0..n {
            let l = format!("{what} {i}");
            kube.append_log("default", pod, container, &l);
            want.push(l);
        }
    };
    say(&kube, &mut want, 50, "before start");
    let port = free_port();
    let mut collector = tokio::task::block_in_place(|| start_collector_env(port, &args, &env));
    wait_podlog(&ls, &key, &want).await;

    // graceful restart, lines written while it is down (many in the same second)
    assert!(tokio::task::block_in_place(|| collector.terminate()).success());
    say(&kube, &mut want, 30, "while down");
    collector = tokio::task::block_in_place(|| start_collector_env(port, &args, &env));
    say(&kube, &mut want, 10, "after restart");
    wait_podlog(&ls, &key, &want).await;

    // kill -9 with lines still buffered: they are fetched again from the stored tail's time
    say(&kube, &mut want, 20, "just before kill");
    let _ = collector.child.kill();
    let _ = collector.child.wait();
    say(&kube, &mut want, 30, "while dead");
    collector = tokio::task::block_in_place(|| start_collector_env(port, &args, &env));
    say(&kube, &mut want, 10, "after kill");
    wait_podlog(&ls, &key, &want).await;

    // the pod goes away: the log becomes one complete object, exactly the lines, once each
    say(&kube, &mut want, 5, "last words");
    tokio::time::sleep(Duration::from_millis(600)).await;
    kube.delete_pod("default", pod);
    wait_for(
        Duration::from_secs(30),
        "the pod log to complete",
        || async { ls.stored(&key).await.is_ok_and(|s| s.complete) },
    )
    .await;
    assert_eq!(podlog_lines(&ls, &key).await, want);
    let parts = ls.store().list("parts/").await.unwrap();
    assert!(parts.is_empty(), "parts left: {parts:?}");
    assert!(tokio::task::block_in_place(|| collector.terminate()).success());
}
