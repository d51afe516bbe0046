//! Attacks on the agents' gRPC ingest, made with a gRPC client of our own as any pod on the
//! cluster could: no token, a wrong token, another source's log, a log the token's pod is not
//! the driver of, an impostor driver pod, garbage, a huge file, the ingest asked on the UI
//! port. Against the real collector binary, with shared tokens and with Kubernetes tokens
//! checked by TokenReview against the fake API server. The legitimate agent keeps shipping
//! its log throughout.

mod ingest_util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ingest_util::*;
use sidecars_common::fake_kube::FakeApiServer;
use sidecars_proto::history::event_log_ingest_client::EventLogIngestClient;
use sidecars_proto::history::{AppendChunk, FileRef};
use tonic::Code;

const TOKEN_A: &str = "team-a-token-0123456789abcdef";
const TOKEN_B: &str = "team-b-token-0123456789abcdef";

fn file_ref(log: &str, rel: &str) -> FileRef {
    FileRef {
        log_name: log.into(),
        relative_path: rel.into(),
    }
}

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

async fn client(port: u16) -> EventLogIngestClient<tonic::transport::Channel> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    EventLogIngestClient::new(ch)
}

/// Appends `data` at `offset` of `rel` (in log `log`) as `token`; the status code.
async fn append(
    port: u16,
    token: Option<&str>,
    log: &str,
    rel: &str,
    offset: u64,
    data: &[u8],
    complete: bool,
) -> Code {
    let msgs = vec![
        AppendChunk {
            file: Some(file_ref(log, rel)),
            offset,
            length: data.len() as u64,
            complete,
            data: Default::default(),
        },
        AppendChunk {
            data: data.to_vec(),
            ..Default::default()
        },
    ];
    let req = with_token(futures::stream::iter(msgs), token);
    match client(port).await.append(req).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

async fn remove(port: u16, token: Option<&str>, log: &str, rel: &str) -> Code {
    match client(port)
        .await
        .remove(with_token(file_ref(log, rel), token))
        .await
    {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

fn start_agent(dir: &Path, port: u16, token_file: &Path) -> Daemon {
    let child = Command::new(bin())
        .arg("agent")
        .arg("--event-log-dir")
        .arg(dir)
        .args(["--collector", &format!("http://127.0.0.1:{port}")])
        .arg("--token-file")
        .arg(token_file)
        .args(["--poll-interval", "100ms", "--shutdown-timeout", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start agent");
    Daemon { child, port }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn event(n: u32) -> String {
    format!("{{\"Event\":\"SparkListenerLogStart\",\"n\":{n}}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_tokens_let_in_only_the_owner_on_the_ingest_port() {
    let store = tempfile::tempdir().unwrap();
    let tokens = tempfile::tempdir().unwrap();
    let list = tokens.path().join("tokens");
    std::fs::write(&list, format!("team-a {TOKEN_A}\nteam-b {TOKEN_B}\n")).unwrap();
    let a_file = tokens.path().join("a");
    std::fs::write(&a_file, TOKEN_A).unwrap();
    let (port, ingest) = (free_port(), free_port());
    let storage = format!("file://{}", store.path().display());
    let _collector = tokio::task::block_in_place(|| {
        start_collector_on(
            port,
            &[
                "--storage",
                &storage,
                "--ingest-port",
                &ingest.to_string(),
                "--ingest-token-file",
                list.to_str().unwrap(),
                "--max-event-log-file-size",
                "1MiB",
            ],
        )
    });
    wait_for("ingest port", || {
        std::net::TcpStream::connect(("127.0.0.1", ingest)).is_ok()
    })
    .await;

    // the legitimate agent (team a) ships its log while the attacks go on
    let src = tempfile::tempdir().unwrap();
    let legit = spark_log("app-legit", "legit", "alice", &[]);
    std::fs::write(src.path().join("app-legit"), &legit).unwrap();
    let _agent = start_agent(src.path(), ingest, &a_file);

    let e0 = event(0);
    // nobody without a token, or with a wrong one
    assert_eq!(
        append(
            ingest,
            None,
            "app-x",
            "app-x.inprogress",
            0,
            e0.as_bytes(),
            false
        )
        .await,
        Code::Unauthenticated
    );
    assert_eq!(
        append(
            ingest,
            Some("team-c-token-0123456789abcdef"),
            "app-x",
            "app-x.inprogress",
            0,
            e0.as_bytes(),
            false
        )
        .await,
        Code::Unauthenticated
    );
    // team a writes app-x: it owns it now
    assert_eq!(
        append(
            ingest,
            Some(TOKEN_A),
            "app-x",
            "app-x.inprogress",
            0,
            e0.as_bytes(),
            false
        )
        .await,
        Code::Ok
    );
    let key = "eventlogs/app-x/app-x.inprogress";
    assert_eq!(stored(store.path(), key).unwrap(), e0.as_bytes());
    // team b can neither add to it, complete it, nor remove it; nor can anyone anonymous
    let e1 = event(1);
    let at = e0.len() as u64;
    assert_eq!(
        append(
            ingest,
            Some(TOKEN_B),
            "app-x",
            "app-x.inprogress",
            at,
            e1.as_bytes(),
            false
        )
        .await,
        Code::PermissionDenied
    );
    assert_eq!(
        append(
            ingest,
            Some(TOKEN_B),
            "app-x",
            "app-x",
            0,
            b"{\"Event\":\"x\"}\n",
            true
        )
        .await,
        Code::PermissionDenied
    );
    assert_eq!(
        remove(ingest, Some(TOKEN_B), "app-x", "app-x.inprogress").await,
        Code::PermissionDenied
    );
    assert_eq!(
        remove(ingest, None, "app-x", "app-x.inprogress").await,
        Code::Unauthenticated
    );
    assert_eq!(stored(store.path(), key).unwrap(), e0.as_bytes());
    // the owner goes on
    assert_eq!(
        append(
            ingest,
            Some(TOKEN_A),
            "app-x",
            "app-x.inprogress",
            at,
            e1.as_bytes(),
            false
        )
        .await,
        Code::Ok
    );
    // not a Spark log, a status marker with content, a file over the limit
    assert_eq!(
        append(
            ingest,
            Some(TOKEN_A),
            "app-y",
            "app-y",
            0,
            b"#!/bin/sh\nrm -rf /\n",
            true
        )
        .await,
        Code::InvalidArgument
    );
    assert_eq!(
        append(
            ingest,
            Some(TOKEN_A),
            "app-z",
            "eventlog_v2_app-z/appstatus_app-z",
            0,
            e0.as_bytes(),
            true
        )
        .await,
        Code::InvalidArgument
    );
    let huge = event(2).repeat(100_000);
    assert_eq!(
        append(
            ingest,
            Some(TOKEN_A),
            "app-w",
            "app-w",
            0,
            huge.as_bytes(),
            true
        )
        .await,
        Code::ResourceExhausted
    );
    assert!(stored(store.path(), "eventlogs/app-y/app-y").is_none());
    assert!(stored(store.path(), "eventlogs/app-w/app-w").is_none());
    // the ingest is not on the UI's port
    assert_ne!(
        append(
            port,
            Some(TOKEN_A),
            "app-v",
            "app-v",
            0,
            e0.as_bytes(),
            true
        )
        .await,
        Code::Ok
    );
    assert!(stored(store.path(), "eventlogs/app-v/app-v").is_none());

    // the legitimate agent's log got through, whole, and is served
    let want = legit.as_bytes().to_vec();
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), "the agent's log stored", || {
            stored(store.path(), "eventlogs/app-legit/app-legit").as_deref() == Some(&want[..])
        })
    });
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), "the agent's log served", || {
            http_get(&format!("http://127.0.0.1:{port}/api/v1/applications")).contains("app-legit")
        })
    });
    let refused = |r: &str| {
        metric(
            port,
            &format!("history_ingest_refused_requests_total{{reason=\"{r}\"}}"),
        )
    };
    assert!(refused("no_token") >= 2.0 && refused("bad_token") >= 1.0);
    assert!(refused("owned_by_another") >= 3.0);
}

fn driver_pod(ns: &str, name: &str, sa: &str, app: &str) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"spark-role": "driver", "spark-app-selector": app}},
        "spec": {"serviceAccountName": sa, "containers": [{"name": "spark-kubernetes-driver"}]},
        "status": {"phase": "Running"}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_tokens_are_checked_with_the_api_server() {
    let kube = FakeApiServer::start().await;
    let aud = "spark-sidecars-history";
    kube.apply_pod(driver_pod("apps", "drv-a", "spark", "spark-aaa"));
    kube.apply_pod(driver_pod("apps", "drv-b", "spark", "spark-bbb"));
    let plain: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "intruder", "namespace": "other"},
        "spec": {"containers": [{"name": "c"}]}
    }))
    .unwrap();
    kube.apply_pod(plain);
    let tok_a = kube.issue_token("apps", "spark", Some("drv-a"), &[aud]);
    let tok_a_api = kube.issue_token("apps", "spark", Some("drv-a"), &[]);
    let tok_intruder = kube.issue_token("other", "default", Some("intruder"), &[aud]);

    let store = tempfile::tempdir().unwrap();
    let storage = format!("file://{}", store.path().display());
    let (port, ingest) = (free_port(), free_port());
    let kubeconfig = kube.kubeconfig_path().to_str().unwrap().to_string();
    let _collector = tokio::task::block_in_place(|| {
        start_collector_on(
            port,
            &[
                "--storage",
                &storage,
                "--kubeconfig",
                &kubeconfig,
                "--ingest-port",
                &ingest.to_string(),
            ],
        )
    });
    wait_for("ingest port", || {
        std::net::TcpStream::connect(("127.0.0.1", ingest)).is_ok()
    })
    .await;
    let e0 = event(0);
    // the driver's own token, for the collector's audience: in
    assert_eq!(
        append(
            ingest,
            Some(&tok_a),
            "spark-aaa",
            "spark-aaa.inprogress",
            0,
            e0.as_bytes(),
            false
        )
        .await,
        Code::Ok
    );
    assert!(kube
        .calls()
        .iter()
        .any(|c| c.resource == "tokenreviews" && c.verb == "create"));
    // the same pod's token for the API server's audience: not for us
    assert_eq!(
        append(
            ingest,
            Some(&tok_a_api),
            "spark-aaa",
            "spark-aaa.inprogress",
            0,
            e0.as_bytes(),
            false
        )
        .await,
        Code::Unauthenticated
    );
    // the driver of spark-aaa may not write spark-bbb, a pod that drives nothing writes nothing
    assert_eq!(
        append(
            ingest,
            Some(&tok_a),
            "spark-bbb",
            "spark-bbb",
            0,
            e0.as_bytes(),
            true
        )
        .await,
        Code::PermissionDenied
    );
    assert_eq!(
        append(
            ingest,
            Some(&tok_intruder),
            "spark-aaa",
            "spark-aaa.inprogress",
            e0.len() as u64,
            e0.as_bytes(),
            false
        )
        .await,
        Code::PermissionDenied
    );
    assert_eq!(
        remove(
            ingest,
            Some(&tok_intruder),
            "spark-aaa",
            "spark-aaa.inprogress"
        )
        .await,
        Code::PermissionDenied
    );
    // an impostor labels a pod of its own as the driver of spark-aaa: the log is owned already
    kube.apply_pod(driver_pod("other", "fake-drv", "default", "spark-aaa"));
    let tok_fake = kube.issue_token("other", "default", Some("fake-drv"), &[aud]);
    assert_eq!(
        append(
            ingest,
            Some(&tok_fake),
            "spark-aaa",
            "spark-aaa.inprogress",
            e0.len() as u64,
            e0.as_bytes(),
            false
        )
        .await,
        Code::PermissionDenied
    );
    // ... and for an id not owned yet, two claimants means nobody gets it
    kube.apply_pod(driver_pod("other", "fake-drv-b", "default", "spark-bbb"));
    let tok_b = kube.issue_token("apps", "spark", Some("drv-b"), &[aud]);
    assert_eq!(
        append(
            ingest,
            Some(&tok_b),
            "spark-bbb",
            "spark-bbb",
            0,
            e0.as_bytes(),
            true
        )
        .await,
        Code::PermissionDenied
    );
    assert!(stored(store.path(), "eventlogs/spark-bbb/spark-bbb").is_none());
    assert_eq!(
        stored(store.path(), "eventlogs/spark-aaa/spark-aaa.inprogress").unwrap(),
        e0.as_bytes()
    );

    // the real agent with the driver's token file ships the rest and the finished log
    let src = tempfile::tempdir().unwrap();
    let log = spark_log("spark-aaa", "legit", "alice", &[]);
    std::fs::write(src.path().join("spark-aaa"), &log).unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let tf = secrets.path().join("token");
    std::fs::write(&tf, &tok_a).unwrap();
    let _agent = start_agent(src.path(), ingest, &tf);
    let want = log.into_bytes();
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), "the driver's log stored", || {
            stored(store.path(), "eventlogs/spark-aaa/spark-aaa").as_deref() == Some(&want[..])
        })
    });
}
