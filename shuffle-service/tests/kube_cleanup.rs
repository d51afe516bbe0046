//! Application cleanup driven by Kubernetes: the binary watches driver pods on a fake API
//! server (the real JSON/watch protocol, reached through a kubeconfig) and removes an app's
//! registrations and directories once its driver pod is deleted or has finished.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use shuffle_service::protocol::{BlockTransferMessage, ExecutorShuffleInfo, Message};
use sidecars_common::fake_kube::FakeApiServer;
use support::{free_port, metric, Daemon};

fn register(port: u16, app: &str, dir: &Path) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = BlockTransferMessage::RegisterExecutor {
        app_id: app.into(),
        exec_id: "1".into(),
        info: ExecutorShuffleInfo {
            local_dirs: vec![dir.display().to_string()],
            sub_dirs_per_local_dir: 64,
            shuffle_manager: "org.apache.spark.shuffle.sort.SortShuffleManager".into(),
        },
    }
    .encode()
    .freeze();
    s.write_all(
        &Message::RpcRequest {
            request_id: 1,
            body,
        }
        .encode(),
    )
    .expect("send");
    let mut len = [0u8; 8];
    s.read_exact(&mut len).expect("reply length");
    let mut payload = vec![0u8; u64::from_be_bytes(len) as usize - 8];
    s.read_exact(&mut payload).expect("reply");
    assert_eq!(
        Message::decode(Bytes::from(payload)).expect("decode"),
        Message::RpcResponse {
            request_id: 1,
            body: Bytes::new()
        }
    );
}

fn driver_pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"spark-role": "driver", "spark-app-selector": app}
        },
        "status": {"phase": "Running"}
    }))
    .expect("pod")
}

fn wait_gone(dir: &Path, daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while dir.exists() {
        assert!(
            Instant::now() < deadline,
            "{} not removed; log:\n{}",
            dir.display(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_pod_deletion_or_completion_removes_the_app() {
    let api = FakeApiServer::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    let (gone, done, kept) = (
        support::bm(&root, 1),
        support::bm(&root, 2),
        support::bm(&root, 3),
    );
    for d in [&gone, &done, &kept] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    api.apply_pod(driver_pod("drv-gone", "spark-gone"));
    api.apply_pod(driver_pod("drv-done", "spark-done"));
    api.apply_pod(driver_pod("drv-kept", "spark-kept"));
    let port = free_port();
    let kubeconfig = api.kubeconfig_path().display().to_string();
    let daemon = tokio::task::block_in_place(|| {
        Daemon::start_with(
            port,
            &root,
            &tmp.path().join("state"),
            &tmp.path().join("svc.log"),
            &["--kubeconfig", &kubeconfig],
        )
    });
    tokio::task::block_in_place(|| {
        register(port, "spark-gone", &gone);
        register(port, "spark-done", &done);
        register(port, "spark-kept", &kept);
    });

    assert!(api.delete_pod("default", "drv-gone"));
    tokio::task::block_in_place(|| wait_gone(&gone, &daemon));
    assert!(api.set_pod_phase("default", "drv-done", "Succeeded"));
    tokio::task::block_in_place(|| wait_gone(&done, &daemon));

    tokio::task::block_in_place(|| {
        std::thread::sleep(Duration::from_millis(500));
        assert!(kept.exists(), "a running app's dirs must stay");
        assert_eq!(
            metric(daemon.admin_port, "shuffle_registered_executors"),
            1.0
        );
        daemon.stop();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_whose_driver_went_away_while_down_are_removed_at_start() {
    let api = FakeApiServer::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    let state = tmp.path().join("state");
    let (orphan, finished, alive) = (
        support::bm(&root, 4),
        support::bm(&root, 5),
        support::bm(&root, 6),
    );
    for d in [&orphan, &finished, &alive] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    api.apply_pod(driver_pod("drv-orphan", "spark-orphan"));
    api.apply_pod(driver_pod("drv-finished", "spark-finished"));
    api.apply_pod(driver_pod("drv-alive", "spark-alive"));
    let kubeconfig = api.kubeconfig_path().display().to_string();
    let start = |port: u16, log: &str| {
        Daemon::start_with(
            port,
            &root,
            &state,
            &tmp.path().join(log),
            &["--kubeconfig", &kubeconfig],
        )
    };
    let port = free_port();
    let mut first = tokio::task::block_in_place(|| start(port, "first.log"));
    tokio::task::block_in_place(|| {
        register(port, "spark-orphan", &orphan);
        register(port, "spark-finished", &finished);
        register(port, "spark-alive", &alive);
        first.kill9();
    });

    // While the service is down, one driver pod is deleted and another finishes.
    assert!(api.delete_pod("default", "drv-orphan"));
    assert!(api.set_pod_phase("default", "drv-finished", "Failed"));

    let port = free_port();
    let second = tokio::task::block_in_place(|| start(port, "second.log"));
    tokio::task::block_in_place(|| {
        wait_gone(&orphan, &second);
        wait_gone(&finished, &second);
        std::thread::sleep(Duration::from_millis(500));
        assert!(alive.exists(), "a running app's dirs must stay");
        assert_eq!(
            metric(second.admin_port, "shuffle_registered_executors"),
            1.0
        );
        second.stop();
    });
}
