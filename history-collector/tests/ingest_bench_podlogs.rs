//! Benchmark (ignored by default; `bash history-collector/bench/ingest.sh podlogs` runs it
//! against a release build of the collector): the collector's memory while it follows 500
//! pod logs at once from the fake Kubernetes API server.

mod ingest_util;

use std::time::{Duration, Instant};

use ingest_util::*;
use sidecars_common::fake_kube::FakeApiServer;

const PODS: usize = 500;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn memory_following_500_pod_logs() {
    let kube = FakeApiServer::start().await;
    for i in 0..PODS {
        let pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("exec-{i}"), "namespace": "default",
                "labels": {"spark-role": "executor", "spark-app-selector": "spark-bench", "spark-exec-id": i.to_string()}},
            "spec": {"containers": [{"name": "spark-kubernetes-executor", "image": "spark"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "spark-kubernetes-executor", "image": "spark", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
        }))
        .unwrap();
        kube.apply_pod(pod);
        kube.append_log(
            "default",
            &format!("exec-{i}"),
            "spark-kubernetes-executor",
            "hello",
        );
    }
    let store = tempfile::tempdir().unwrap();
    let storage = format!("file://{}", store.path().display());
    let kubeconfig = kube.kubeconfig_path().to_str().unwrap().to_string();
    let port = free_port();
    let mut collector = tokio::task::block_in_place(|| {
        start_collector_on(
            port,
            &[
                "--storage",
                &storage,
                "--kubeconfig",
                &kubeconfig,
                "--namespace",
                "default",
                "--pod-log-flush-interval",
                "1s",
            ],
        )
    });
    let idle = rss_kib(collector.child.id());
    let start = Instant::now();
    loop {
        let m = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.lines()
            .any(|l| l == format!("history_podlog_followers {PODS}"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "followers never reached {PODS}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // keep every log busy for a while
    for round in 0..20 {
        for i in 0..PODS {
            kube.append_log(
                "default",
                &format!("exec-{i}"),
                "spark-kubernetes-executor",
                &format!("round {round} {}", "y".repeat(200)),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let busy = rss_kib(collector.child.id());
    println!("followers: {PODS}, RSS before follows: {idle} KiB, RSS while following: {busy} KiB");
    let sample = std::fs::read_to_string(
        store
            .path()
            .join("parts/podlogs/spark-bench/7/spark-kubernetes-executor.log")
            .join(format!("{:020}", 0)),
    );
    assert!(sample.is_ok() || store.path().join("podlogs/spark-bench/7").exists());
    assert!(busy < 512 * 1024, "RSS {busy} KiB for {PODS} followers");
    assert!(tokio::task::block_in_place(|| collector.terminate()).success());
}
