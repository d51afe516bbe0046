//! Cleanup tied to owner pods, through the fake Kubernetes API server: a used bundle lives while
//! a pod with its owner labels exists in its namespace, and goes once that pod is deleted and
//! the grace period has passed.

mod util;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use sidecars_common::fake_kube::FakeApiServer;
use util::*;

fn pod(ns: &str, name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "spark-kubernetes-driver", "image": "spark"}]}
    }))
    .expect("pod")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn used_bundle_lives_while_owner_pods_exist() {
    let api = FakeApiServer::start().await;
    let owner_labels =
        serde_json::json!({"spark-app-selector": "spark-123", "spark-role": "driver"});
    api.apply_pod(pod("spark", "driver", owner_labels.clone()));
    // Same labels in another namespace, and another app in the same one: neither owns it.
    api.apply_pod(pod("other", "driver", owner_labels));
    api.apply_pod(pod(
        "spark",
        "unrelated",
        serde_json::json!({"spark-app-selector": "spark-999"}),
    ));
    let kubeconfig = api.kubeconfig_path().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let port = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || {
            let srv = start(
                &d,
                &[
                    "--kubeconfig",
                    &kubeconfig,
                    "--owner-grace",
                    "1s",
                    "--cleanup-interval",
                    "1s",
                ],
            );
            let port = srv.port;
            (srv, port)
        }
    })
    .await
    .unwrap();
    let (srv, port) = port;
    let blocking = |f: Box<dyn FnOnce() -> Reply + Send>| tokio::task::spawn_blocking(f);
    let r = blocking(Box::new(move || upload(port, &targz(&[("a.jar", b"1")]))))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let id = v["resourceId"].as_str().unwrap().to_string();
    let secret = v["resourceSecret"].as_str().unwrap().to_string();
    let get = {
        let (id, secret) = (id.clone(), secret.clone());
        move || {
            let (id, secret) = (id.clone(), secret.clone());
            Box::new(move || {
                request(
                    port,
                    "GET",
                    &format!("/api/v0/resources/{id}"),
                    &[("Authorization", &secret)],
                    &[],
                )
                .unwrap()
            }) as Box<dyn FnOnce() -> Reply + Send>
        }
    };
    assert_eq!(blocking(get()).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        blocking(get()).await.unwrap().status,
        200,
        "bundle deleted while its owner pod exists"
    );
    assert!(api.delete_pod("spark", "driver"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = blocking(get()).await.unwrap().status;
        if status == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bundle outlived its owner pod (status {status})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let metrics = blocking(Box::new(move || {
        request(port, "GET", "/metrics", &[], &[]).unwrap()
    }))
    .await
    .unwrap()
    .text();
    assert!(
        metrics.contains("staging_cleanups_total{reason=\"owner_gone\"} 1"),
        "{metrics}"
    );
    // The server used a watch, not a LIST per bundle per pass.
    let watches = api
        .requests()
        .iter()
        .filter(|(_, p)| p.contains("watch=true") || p.contains("watch=1"))
        .count();
    assert!(watches >= 1, "no watch request: {:?}", api.requests());
    drop(srv);
}
