//! When a driver pod dies before its event log is finished (OOM-killed, evicted, deleted,
//! node lost), the pod watch knows why and the application's UI page says so; the REST API
//! stays exactly what Spark's History Server would answer. Against the fake API server,
//! through the real collector binary.

mod ingest_util;

use std::time::Duration;

use ingest_util::*;
use sidecars_common::fake_kube::FakeApiServer;

fn driver(
    app: &str,
    state: serde_json::Value,
    reason: Option<&str>,
) -> k8s_openapi::api::core::v1::Pod {
    let mut status = serde_json::json!({"phase": "Running", "containerStatuses": [{
        "name": "spark-kubernetes-driver", "ready": true, "restartCount": 0,
        "image": "spark", "imageID": "", "state": state
    }]});
    if let Some(r) = reason {
        status["phase"] = "Failed".into();
        status["reason"] = r.into();
        status["message"] = "The node was low on resource: memory.".into();
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{app}-driver"), "namespace": "apps",
                     "labels": {"spark-role": "driver", "spark-app-selector": app}},
        "spec": {"containers": [{"name": "spark-kubernetes-driver"}]},
        "status": status
    }))
    .unwrap()
}

async fn get(port: u16, path: &str) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_says_why_an_unfinished_driver_ended() {
    let kube = FakeApiServer::start().await;
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    // three drivers that die mid-run, one that finishes
    let apps = ["spark-oom", "spark-evicted", "spark-deleted", "spark-done"];
    for app in apps {
        let full = spark_log(app, app, "alice", &[]);
        let body = if app == "spark-done" {
            full
        } else {
            // no application end: the driver was killed first
            full.lines()
                .filter(|l| !l.contains("ApplicationEnd"))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let name = if app == "spark-done" {
            app.to_string()
        } else {
            format!("{app}.inprogress")
        };
        std::fs::write(src.path().join(name), body).unwrap();
        kube.apply_pod(driver(app, serde_json::json!({"running": {}}), None));
    }
    let storage = format!("file://{}", store.path().display());
    let kubeconfig = kube.kubeconfig_path().to_str().unwrap().to_string();
    let collector = tokio::task::block_in_place(|| {
        start_collector(&[
            "--storage",
            &storage,
            "--event-log-dir",
            src.path().to_str().unwrap(),
            "--kubeconfig",
            &kubeconfig,
            "--poll-interval",
            "200ms",
        ])
    });
    let port = collector.port;
    for _ in 0..300 {
        let list = get(port, "/api/v1/applications").await;
        if apps.iter().all(|a| list.contains(a)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before: Vec<String> = {
        let mut v = Vec::new();
        for a in apps {
            v.push(get(port, &format!("/api/v1/applications/{a}")).await);
        }
        v
    };

    kube.apply_pod(driver(
        "spark-oom",
        serde_json::json!({"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                          "finishedAt": "2026-01-01T00:00:05Z"}}),
        None,
    ));
    kube.apply_pod(driver(
        "spark-evicted",
        serde_json::json!({"terminated": {"reason": "Error", "exitCode": 143}}),
        Some("Evicted"),
    ));
    kube.delete_pod("apps", "spark-deleted-driver");
    kube.apply_pod(driver(
        "spark-done",
        serde_json::json!({"terminated": {"reason": "Completed", "exitCode": 0}}),
        None,
    ));

    for (app, want) in [
        ("spark-oom", "OOMKilled"),
        ("spark-evicted", "Evicted"),
        ("spark-deleted", "Deleted"),
    ] {
        let mut page = String::new();
        for _ in 0..100 {
            page = get(port, &format!("/history/{app}/")).await;
            if page.contains("<b>Kubernetes:</b>") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            page.contains(&format!("<b>Kubernetes:</b> {want}")),
            "{app}: the page does not say {want}:\n{page}"
        );
        assert!(page.contains(&format!("apps/{app}-driver")));
    }
    let oom = get(port, "/history/spark-oom/").await;
    assert!(oom.contains("ran out of memory") && oom.contains("2026-01-01T00:00:05Z"));
    // a finished application needs no explanation
    let done = get(port, "/history/spark-done/").await;
    assert!(!done.contains("driver-reason"), "{done}");
    // and the REST API is what it was: Spark's
    for (i, a) in apps.iter().enumerate() {
        let now = get(port, &format!("/api/v1/applications/{a}")).await;
        // a running application's lastUpdated moves with each scan
        let strip = |s: &str| {
            let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
            for att in v["attempts"].as_array_mut().unwrap() {
                att.as_object_mut().unwrap().remove("lastUpdated");
                att.as_object_mut().unwrap().remove("lastUpdatedEpoch");
            }
            v
        };
        assert_eq!(strip(&now), strip(&before[i]), "{a}");
    }
    // the record outlives the pod and the collector
    assert!(store.path().join("pods/spark-oom/driver.json").exists());
}
