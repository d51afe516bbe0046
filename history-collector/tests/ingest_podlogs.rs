//! Pod-log collection against the fake Kubernetes API server, through the real collector
//! binary: list, watch, pods/log follow, pod deletion, a 410 Gone relist, and a collector
//! restart with no duplicated or dropped lines.

mod ingest_util;

use std::time::{Duration, Instant};

use ingest_util::*;
use sidecars_common::fake_kube::FakeApiServer;

async fn get_text(url: &str) -> Option<String> {
    let r = reqwest::get(url).await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// The served log, with the timestamps taken off.
async fn served_lines(port: u16, app: &str, exec: &str) -> Vec<String> {
    let url = format!("http://127.0.0.1:{port}/logs/{app}/{exec}/stdout");
    let plain = get_text(&url).await.unwrap_or_default();
    let stamped = get_text(&format!("{url}?timestamps=true"))
        .await
        .unwrap_or_default();
    let from_stamped: Vec<String> = stamped
        .lines()
        .map(|l| l.split_once(' ').map_or(l, |(_, r)| r).to_string())
        .collect();
    let lines: Vec<String> = plain.lines().map(str::to_string).collect();
    // without timestamps, the served log is the stored one minus the stamps (when both reads
    // saw the same bytes: a live log may grow between them)
    if lines.len() == from_stamped.len() {
        assert_eq!(lines, from_stamped);
    }
    lines
}

async fn wait_lines(port: u16, app: &str, exec: &str, want: &[String]) {
    let start = Instant::now();
    loop {
        let got = served_lines(port, app, exec).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "log of {app}/{exec}: want {} lines, got {}: {:?}",
            want.len(),
            got.len(),
            got.iter().rev().take(3).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pod_logs_follow_relist_restart_and_delete() {
    let kube = FakeApiServer::start().await;
    let store = tempfile::tempdir().unwrap();
    let storage = format!("file://{}", store.path().display());
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
    let port = free_port();
    // a pod that exists before the collector starts is found by the initial list
    kube.apply_pod(spark_pod(
        "drv",
        "spark-app1",
        "driver",
        None,
        "spark-kubernetes-driver",
    ));
    let mut driver_lines = Vec::new();
    for i in 0..5 {
        let l = format!("driver line {i}");
        kube.append_log("default", "drv", "spark-kubernetes-driver", &l);
        driver_lines.push(l);
    }
    let mut collector = tokio::task::block_in_place(|| start_collector_on(port, &args));
    wait_lines(port, "spark-app1", "driver", &driver_lines).await;

    // a pod created later arrives through the watch; its log is followed live
    kube.apply_pod(spark_pod(
        "exec-1",
        "spark-app1",
        "executor",
        Some("1"),
        "spark-kubernetes-executor",
    ));
    let mut exec_lines = Vec::new();
    for i in 0..20 {
        let l = format!("executor 1 line {i}");
        kube.append_log("default", "exec-1", "spark-kubernetes-executor", &l);
        exec_lines.push(l);
    }
    wait_lines(port, "spark-app1", "1", &exec_lines).await;

    // 410 Gone: the watcher relists and still sees pods created afterwards
    kube.expire_resource_versions();
    kube.apply_pod(spark_pod(
        "exec-2",
        "spark-app1",
        "executor",
        Some("2"),
        "spark-kubernetes-executor",
    ));
    kube.append_log(
        "default",
        "exec-2",
        "spark-kubernetes-executor",
        "executor 2 says hi",
    );
    wait_lines(port, "spark-app1", "2", &["executor 2 says hi".to_string()]).await;

    // collector restart: lines written while it is down, several in the same second
    assert!(tokio::task::block_in_place(|| collector.terminate()).success());
    for i in 0..10 {
        let l = format!("driver while down {i}");
        kube.append_log("default", "drv", "spark-kubernetes-driver", &l);
        driver_lines.push(l);
    }
    collector = tokio::task::block_in_place(|| start_collector_on(port, &args));
    for i in 0..5 {
        let l = format!("driver after restart {i}");
        kube.append_log("default", "drv", "spark-kubernetes-driver", &l);
        driver_lines.push(l);
    }
    wait_lines(port, "spark-app1", "driver", &driver_lines).await;
    wait_lines(port, "spark-app1", "1", &exec_lines).await;

    // deletion ends the follow and completes the stored log (no parts left for it)
    kube.append_log(
        "default",
        "exec-1",
        "spark-kubernetes-executor",
        "last words",
    );
    exec_lines.push("last words".into());
    tokio::time::sleep(Duration::from_millis(600)).await;
    kube.delete_pod("default", "exec-1");
    wait_lines(port, "spark-app1", "1", &exec_lines).await;
    let complete = store
        .path()
        .join("podlogs/spark-app1/1/spark-kubernetes-executor.log");
    let start = Instant::now();
    while !complete.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "executor 1 log never completed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listing = get_text(&format!("http://127.0.0.1:{port}/logs/spark-app1/"))
        .await
        .unwrap();
    assert!(
        listing.contains("1/spark-kubernetes-executor.log"),
        "{listing}"
    );
    assert!(tokio::task::block_in_place(|| collector.terminate()).success());
}
