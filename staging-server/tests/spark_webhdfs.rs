//! Stock `spark-submit --deploy-mode cluster --master k8s://...`, Spark 3.5.7 and 4.3.0, with
//! nothing but `spark.kubernetes.file.upload.path=webhdfs://...` (and, on Spark 4, the OAuth2
//! settings): its upload phase runs for real against the server, and the application it
//! deploys runs for real too, without a cluster:
//!
//! 1. `spark-submit` uploads the local jar, py-file, data file and main file through Hadoop's
//!    WebHDFS client, then creates the driver pod, Service and ConfigMap on an API server
//!    stub here that records them (the upload happens before any pod exists, so this is all
//!    the submission does);
//! 2. what the driver pod would run, run here: `spark-submit --deploy-mode client` with the
//!    recorded `spark.properties` and the pod's arguments, on `local-cluster` (separate
//!    executor JVMs). The driver downloads the main file, jars and py-files, and the
//!    executors the jar, py-file and data file, all through `webhdfs://` with the same
//!    settings, from this server;
//! 3. the job's result proves the executors used the UDF from the jar, imported the module
//!    and read the file; the upload left four `spark-upload-*` directories.
//!
//! Without the credential the same submission fails with an AccessControlException before
//! creating anything. (On the local Kubernetes, the end-to-end test does the same with real
//! pods, and checks the upload directory goes after the driver pod is deleted.)

mod util;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use util::sparkapp::*;
use util::*;

/// Requests the stub API server got: (method, path, body).
type Recorded = Arc<Mutex<Vec<(String, String, String)>>>;

/// A Kubernetes API server stand-in: records every request, and answers a create or an
/// apply with the object sent (plus a uid), anything else 404.
fn api_stub(rt: &tokio::runtime::Runtime) -> (SocketAddr, Recorded) {
    let rec: Recorded = Default::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    async fn any(
        State(rec): State<Recorded>,
        method: Method,
        uri: OriginalUri,
        body: Bytes,
    ) -> axum::response::Response {
        let text = String::from_utf8_lossy(&body).into_owned();
        rec.lock()
            .unwrap()
            .push((method.to_string(), uri.0.to_string(), text.clone()));
        let json = |status: StatusCode, v: serde_json::Value| {
            (
                status,
                [("content-type", "application/json")],
                v.to_string(),
            )
                .into_response()
        };
        if matches!(method, Method::POST | Method::PATCH | Method::PUT) && !body.is_empty() {
            let mut obj: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::json!({}));
            obj["metadata"]["uid"] = "0b7e6c1e-3f7a-4b5e-9d7e-2a1c3f4e5d6c".into();
            obj["metadata"]["resourceVersion"] = "1".into();
            let status = if method == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            return json(status, obj);
        }
        json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": "not here"}),
        )
    }
    let app = axum::Router::new().fallback(any).with_state(rec.clone());
    rt.spawn(async move { axum::serve(listener, app).await });
    (addr, rec)
}

/// Java properties as Spark writes them into the driver's ConfigMap.
fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let unescape = |s: &str| {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let i = l
                .char_indices()
                .find(|&(i, c)| c == '=' && !l[..i].ends_with('\\'))?
                .0;
            Some((unescape(&l[..i]), unescape(&l[i + 1..])))
        })
        .collect()
}

struct Submitted {
    properties: BTreeMap<String, String>,
    driver_args: Vec<String>,
}

/// Runs stock spark-submit in cluster mode against the stub; returns what it created.
fn submit(
    home: &str,
    python: &str,
    app: &App,
    api: SocketAddr,
    rec: &Recorded,
    confs: &[String],
) -> Result<Submitted, String> {
    rec.lock().unwrap().clear();
    let mut cmd = spark_cmd(
        &PathBuf::from(format!("{home}/bin/spark-submit")),
        home,
        python,
    );
    cmd.args([
        "--master",
        &format!("k8s://http://{api}"),
        "--deploy-mode",
        "cluster",
        "--name",
        "webhdfs-e2e",
    ])
    .args(["--conf", "spark.kubernetes.container.image=spark:unused"])
    .args([
        "--conf",
        "spark.kubernetes.submission.waitAppCompletion=false",
    ]);
    for c in confs {
        cmd.args(["--conf", c]);
    }
    cmd.arg("--jars")
        .arg(&app.jar)
        .arg("--py-files")
        .arg(&app.module)
        .arg("--files")
        .arg(&app.data)
        .arg(&app.main);
    let out = cmd.output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(log);
    }
    let rec = rec.lock().unwrap();
    let body = |what: &str| {
        rec.iter()
            .find(|(_, p, _)| p.contains(what))
            .map(|(_, _, b)| serde_json::from_str::<serde_json::Value>(b).unwrap())
            .unwrap_or_else(|| panic!("spark-submit created no {what}: {log}"))
    };
    let cm = body("/configmaps/");
    let properties = parse_properties(cm["data"]["spark.properties"].as_str().unwrap());
    let pod = body("/pods");
    let driver_args = pod["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    Ok(Submitted {
        properties,
        driver_args,
    })
}

/// Runs what the driver pod would: client mode with the submitted properties and arguments,
/// on a local cluster whose executors are separate JVMs.
fn run_driver(home: &str, python: &str, s: &Submitted, work: &Path) -> std::process::Output {
    let props = work.join("spark.properties");
    let mut text = String::new();
    for (k, v) in &s.properties {
        // the cluster's addresses and the submission's own settings stay behind
        if k.starts_with("spark.driver.") || k == "spark.master" || k == "spark.submit.deployMode" {
            continue;
        }
        text.push_str(&format!("{k}={}\n", v.replace('\\', "\\\\")));
    }
    std::fs::write(&props, text).unwrap();
    // driver --properties-file F --class C <primary resource> [args...]
    let a = &s.driver_args;
    assert_eq!(a[0], "driver", "{a:?}");
    let class = &a[a.iter().position(|x| x == "--class").unwrap() + 1];
    let primary = &a[a.iter().position(|x| x == "--class").unwrap() + 2..];
    spark_cmd(
        &PathBuf::from(format!("{home}/bin/spark-submit")),
        home,
        python,
    )
    .args([
        "--master",
        "local-cluster[2,1,1024]",
        "--deploy-mode",
        "client",
    ])
    .arg("--properties-file")
    .arg(&props)
    .args([
        "--conf",
        "spark.driver.host=127.0.0.1",
        "--conf",
        "spark.driver.bindAddress=127.0.0.1",
    ])
    .args(["--class", class])
    .args(primary)
    .output()
    .unwrap()
}

fn end_to_end(home_var: &str, python_var: &str, oauth: bool) {
    let home = need_env(home_var);
    let python = need_env(python_var);
    let app = build_app(&home);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (api, rec) = api_stub(&rt);
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start_admin(&dir.path().join("data"), &[]);
    let cred = credential(srv.port, &admin, "default");
    let base = format!("webhdfs://127.0.0.1:{}", srv.port);
    let confs: Vec<String> = if oauth {
        let mut c = vec![format!("spark.kubernetes.file.upload.path={base}/uploads")];
        for (k, v) in oauth_conf(srv.port, "http", &cred) {
            c.push(format!("spark.hadoop.{k}={v}"));
        }
        c
    } else {
        vec![format!(
            "spark.kubernetes.file.upload.path={base}/{cred}/uploads"
        )]
    };
    // without the credential, the upload is refused and nothing is created
    let without: Vec<String> = vec![format!("spark.kubernetes.file.upload.path={base}/uploads")];
    let log = match submit(&home, &python, &app, api, &rec, &without) {
        Ok(_) => panic!("a submission without a credential succeeded"),
        Err(log) => log,
    };
    assert!(log.contains("AccessControlException"), "{log}");
    assert!(
        !rec.lock().unwrap().iter().any(|(m, _, _)| m == "POST"),
        "a pod was created although the upload failed"
    );
    // with it
    let submitted =
        submit(&home, &python, &app, api, &rec, &confs).unwrap_or_else(|log| panic!("{log}"));
    for key in ["spark.jars", "spark.files", "spark.submit.pyFiles"] {
        let v = &submitted.properties[key];
        assert!(
            v.starts_with(&base) && v.contains("/spark-upload-"),
            "{key}={v}"
        );
    }
    let out = run_driver(&home, &python, &submitted, dir.path());
    check_output(
        out,
        &format!("the driver of a {home_var} cluster-mode submission"),
    );
    // four files, each in its own spark-upload directory, all read by the driver or executors
    let token = access_token(srv.port, &cred);
    let r = request(
        srv.port,
        "GET",
        "/webhdfs/v1/uploads?op=LISTSTATUS",
        &[("Authorization", &format!("Bearer {token}"))],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let listed: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let dirs = listed["FileStatuses"]["FileStatus"].as_array().unwrap();
    assert_eq!(dirs.len(), 4, "{listed}");
    let metrics = request(srv.port, "GET", "/metrics", &[], &[])
        .unwrap()
        .text();
    let reads: u64 = metrics
        .lines()
        .find(|l| l.starts_with("staging_downloads_total{kind=\"webhdfs\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        reads >= 6,
        "driver and executors read only {reads} times:\n{metrics}"
    );
}

#[test]
fn spark4_cluster_mode_upload_with_oauth2_reaches_driver_and_executors() {
    end_to_end("SPARK4_HOME", "SPARK4_PYTHON", true);
}

#[test]
fn spark35_cluster_mode_upload_with_the_path_credential_reaches_driver_and_executors() {
    end_to_end("SPARK35_HOME", "SPARK35_PYTHON", false);
}
