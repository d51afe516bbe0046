//! Who may upload, and how long uploads live, through the fake Kubernetes API server (the
//! real-cluster version of these runs in the end-to-end tests on the local Kubernetes):
//! - an upload credential needs a Kubernetes token whose identity may create pods in the
//!   namespace (TokenReview + SubjectAccessReview); `spark-stage token` prints it last;
//! - a file read by a pod (the client's address is the pod's) lives while a pod of that
//!   application does, plus the grace; a file no pod claimed goes after `--unclaimed-ttl`; a
//!   pod that names an upload directory in its arguments (a Python main file) claims it; the
//!   emptied upload directories go too.

mod util;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use sidecars_common::fake_kube::FakeApiServer;
use util::*;

fn pod(ns: &str, name: &str, labels: serde_json::Value, ip: &str, args: &[&str]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "spark-kubernetes-driver", "image": "spark", "args": args}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    }))
    .expect("pod")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn issue(port: u16, bearer: &str, ns: &str) -> Reply {
    request(
        port,
        "POST",
        "/api/v1/credentials",
        &[
            ("Authorization", &format!("Bearer {bearer}")),
            ("Content-Type", "application/json"),
        ],
        format!(r#"{{"namespace":"{ns}"}}"#).as_bytes(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_need_an_identity_that_may_create_pods_in_the_namespace() {
    let api = FakeApiServer::start().await;
    api.add_identity("alice-token", "alice", &["devs"]);
    api.add_identity("bob-token", "bob", &[]);
    api.allow("devs", "create", "pods", "team-a");
    let kubeconfig = api.kubeconfig_path().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let srv = blocking(move || start(&d, &["--kubeconfig", &kubeconfig])).await;
    let port = srv.port;
    let (ok, other_ns, bob, unknown, none) = blocking(move || {
        (
            issue(port, "alice-token", "team-a"),
            issue(port, "alice-token", "team-b"),
            issue(port, "bob-token", "team-a"),
            issue(port, "who-knows", "team-a"),
            request(
                port,
                "POST",
                "/api/v1/credentials",
                &[],
                br#"{"namespace":"team-a"}"#,
            )
            .unwrap(),
        )
    })
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let issued: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(issued["namespace"], "team-a");
    assert!(issued["credential"]
        .as_str()
        .unwrap()
        .starts_with("stagetoken."));
    assert_eq!(other_ns.status, 403, "{}", other_ns.text());
    assert!(
        other_ns.text().contains("may not create pods"),
        "{}",
        other_ns.text()
    );
    assert_eq!(bob.status, 403, "{}", bob.text());
    assert_eq!(unknown.status, 401, "{}", unknown.text());
    assert_eq!(none.status, 401, "{}", none.text());
    // the client: the credential alone on stdout's last line, the --conf lines on stderr
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spark-stage"))
        .args([
            "token",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--namespace",
            "team-a",
            "--kube-token",
            "alice-token",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cred = stdout.lines().last().unwrap();
    assert!(cred.starts_with("stagetoken."), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spark.kubernetes.file.upload.path=webhdfs://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("dfs.webhdfs.oauth2.refresh.url=http://127.0.0.1:"),
        "{stderr}"
    );
    // and it works: an access token for it
    let token = blocking({
        let cred = cred.to_string();
        move || access_token(port, &cred)
    })
    .await;
    assert!(token.starts_with("stageaccess."));
    // the API server was asked exactly a TokenReview and a SubjectAccessReview per request
    let reviews = api
        .requests()
        .iter()
        .filter(|(_, p)| p.contains("tokenreviews"))
        .count();
    assert!(reviews >= 4, "{:?}", api.requests());
    drop(srv);
}

fn create(port: u16, token: &str, path: &str, body: &[u8]) -> Reply {
    let auth = format!("Bearer {token}");
    let r = request(
        port,
        "PUT",
        &format!("/webhdfs/v1{path}?op=CREATE&user.name=spark"),
        &[("Authorization", &auth)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 307, "{}", r.text());
    let loc = r.header("location").unwrap().to_string();
    let p = loc.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    request(port, "PUT", &p, &[("Authorization", &auth)], body).unwrap()
}

fn status(port: u16, token: &str, path: &str) -> u16 {
    request(
        port,
        "GET",
        &format!("/webhdfs/v1{path}?op=GETFILESTATUS"),
        &[("Authorization", &format!("Bearer {token}"))],
        &[],
    )
    .unwrap()
    .status
}

fn open(port: u16, token: &str, path: &str) -> Reply {
    request(
        port,
        "GET",
        &format!("/webhdfs/v1{path}?op=OPEN&staging.data=true"),
        &[("Authorization", &format!("Bearer {token}"))],
        &[],
    )
    .unwrap()
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool + Send + 'static) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (done, back) = blocking(move || {
            let d = f();
            (d, f)
        })
        .await;
        f = back;
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_live_while_their_pods_do() {
    let api = FakeApiServer::start().await;
    api.add_identity("alice-token", "alice", &[]);
    api.allow("alice", "create", "pods", "team-a");
    let app = serde_json::json!({"spark-app-selector": "spark-1", "spark-role": "driver"});
    let exec = serde_json::json!({"spark-app-selector": "spark-1", "spark-role": "executor"});
    api.apply_pod(pod("team-a", "driver", app, "127.0.0.1", &["driver"]));
    api.apply_pod(pod("team-a", "exec-1", exec, "127.0.0.1", &["executor"]));
    // same address, other namespace: must not claim team-a's uploads
    api.apply_pod(pod(
        "team-b",
        "intruder",
        serde_json::json!({"spark-app-selector": "spark-9"}),
        "127.0.0.1",
        &[],
    ));
    // a Python application's driver names its main file's upload directory
    api.apply_pod(pod(
        "team-a",
        "py-driver",
        serde_json::json!({"spark-app-selector": "spark-2"}),
        "10.0.0.9",
        &[
            "driver",
            "webhdfs://staging:10000/up/spark-upload-cccc/app.py",
        ],
    ));
    let kubeconfig = api.kubeconfig_path().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let srv = blocking(move || {
        start(
            &d,
            &[
                "--kubeconfig",
                &kubeconfig,
                "--owner-grace",
                "1s",
                "--cleanup-interval",
                "1s",
                "--unclaimed-ttl",
                "4s",
                "--orphan-grace",
                "2s",
            ],
        )
    })
    .await;
    let port = srv.port;
    let token = blocking(move || {
        let r = issue(port, "alice-token", "team-a");
        let cred: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        access_token(port, cred["credential"].as_str().unwrap())
    })
    .await;
    let t = token.clone();
    blocking(move || {
        for (path, body) in [
            ("/up/spark-upload-aaaa/app.jar", &b"jar bytes"[..]),
            ("/up/spark-upload-bbbb/never-read.jar", b"other"),
            ("/up/spark-upload-cccc/app.py", b"print(1)"),
        ] {
            let r = create(port, &t, path, body);
            assert_eq!(r.status, 201, "{path}: {}", r.text());
        }
        // the driver (at 127.0.0.1) reads its jar: the application claims it
        let r = open(port, &t, "/up/spark-upload-aaaa/app.jar");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"jar bytes"[..]));
    })
    .await;
    // the unclaimed file and its directory go after --unclaimed-ttl; the claimed ones stay
    let t = token.clone();
    wait_for("the unclaimed upload to go", 20, move || {
        status(port, &t, "/up/spark-upload-bbbb/never-read.jar") == 404
            && status(port, &t, "/up/spark-upload-bbbb") == 404
    })
    .await;
    let t = token.clone();
    blocking(move || {
        assert_eq!(
            status(port, &t, "/up/spark-upload-aaaa/app.jar"),
            200,
            "a claimed upload was deleted"
        );
        assert_eq!(
            status(port, &t, "/up/spark-upload-cccc/app.py"),
            200,
            "a referenced upload was deleted"
        );
    })
    .await;
    // the driver goes; an executor of the same application still lives: kept
    assert!(api.delete_pod("team-a", "driver"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = token.clone();
    blocking(move || assert_eq!(status(port, &t, "/up/spark-upload-aaaa/app.jar"), 200)).await;
    // the last pod of the application goes: the upload and its directory follow
    assert!(api.delete_pod("team-a", "exec-1"));
    let t = token.clone();
    wait_for("the claimed upload to go with its pods", 20, move || {
        status(port, &t, "/up/spark-upload-aaaa/app.jar") == 404
            && status(port, &t, "/up/spark-upload-aaaa") == 404
    })
    .await;
    assert!(api.delete_pod("team-a", "py-driver"));
    let t = token.clone();
    wait_for("the referenced upload to go with its pod", 20, move || {
        status(port, &t, "/up/spark-upload-cccc/app.py") == 404
    })
    .await;
    let metrics =
        blocking(move || request(port, "GET", "/metrics", &[], &[]).unwrap().text()).await;
    for reason in ["webhdfs_never_claimed", "webhdfs_owner_gone"] {
        assert!(
            metrics.contains(&format!("staging_cleanups_total{{reason=\"{reason}\"}}")),
            "{metrics}"
        );
    }
    // nothing is left in the store but the credential: entries, claims and (two passes
    // later) the contents are gone
    let store = dir.path().join("staging");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<String> = walk(&store)
            .into_iter()
            .filter(|p| !p.contains(".sidecars") && !p.contains("webhdfs/grants/"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(srv);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
