//! The manifests against the running daemons: each daemon is started from its real binary with
//! the config file of its ConfigMap (ports and paths moved to loopback and a temp dir), talking
//! to the fake Kubernetes API server as if in a pod. Then
//! - every readiness and liveness probe of its container answers as Kubernetes expects;
//! - the API calls it makes are all granted by its ClusterRole, and every grant is used (the
//!   history-collector's TokenReviews by an agent that presents a driver pod's token; the
//!   staging server's when it is asked for an upload credential, which it checks with the API
//!   server);
//! - on SIGTERM it exits 0 within the pod's terminationGracePeriodSeconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sidecars_common::fake_kube::FakeApiServer;
use sidecars_deploy_tests::daemon;
use sidecars_deploy_tests::deploy::{self, Workload};
use sidecars_deploy_tests::manifest::Object;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The ConfigMap's config with ports made free, binds on loopback and paths under `tmp`.
/// Returns the new TOML and old port -> new port.
fn localise(text: &str, tmp: &Path, help: &daemon::Help) -> (String, BTreeMap<i64, u16>) {
    let mut table: toml::Table = text.parse().expect("config TOML");
    let mut ports = BTreeMap::new();
    // ports left at their default are listened on too
    for f in help
        .flags
        .iter()
        .filter(|f| f.long == "port" || f.long.ends_with("-port"))
    {
        if !table.contains_key(&f.long) {
            if let Some(d) = f.default.as_deref().and_then(|d| d.parse::<i64>().ok()) {
                table.insert(f.long.clone(), toml::Value::Integer(d));
            }
        }
    }
    let path = |s: &str| -> Option<String> {
        let (scheme, p) = match s.strip_prefix("file://") {
            Some(p) => ("file://", p),
            None => ("", s),
        };
        if !p.starts_with('/') {
            return None;
        }
        let local = tmp.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(&local).expect("create dir");
        Some(format!("{scheme}{}", local.display()))
    };
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Integer(p) if key == "port" || key.ends_with("-port") => {
                let new = free_port();
                ports.insert(*p, new);
                *value = toml::Value::Integer(i64::from(new));
            }
            toml::Value::String(s) if key == "bind" => *s = "127.0.0.1".into(),
            toml::Value::String(s) => {
                if let Some(p) = path(s) {
                    *s = p;
                }
            }
            toml::Value::Array(items) => {
                for item in items.iter_mut() {
                    if let toml::Value::String(s) = item {
                        if let Some(p) = path(s) {
                            *s = p;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (toml::to_string(&table).expect("TOML"), ports)
}

struct Running {
    child: Child,
    name: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn probe_port(c: &Container, p: &Probe) -> i32 {
    let named = |n: &str| {
        c.ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(n))
            .map(|cp| cp.container_port)
            .unwrap_or_else(|| panic!("{}: no port named {n}", c.name))
    };
    let port = |p: &IntOrString| match p {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => named(s),
    };
    if let Some(h) = &p.http_get {
        port(&h.port)
    } else if let Some(g) = &p.grpc {
        g.port
    } else if let Some(t) = &p.tcp_socket {
        port(&t.port)
    } else {
        panic!("{}: probe without a handler", c.name)
    }
}

/// Does the probe succeed now? (What the kubelet would conclude from one attempt.)
async fn probe_ok(p: &Probe, port: u16) -> Result<(), String> {
    if let Some(h) = &p.http_get {
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("http://127.0.0.1:{port}{path}");
        let resp = reqwest::get(&url)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        // the kubelet counts 200-399 as success
        let s = resp.status().as_u16();
        return if (200..400).contains(&s) {
            Ok(())
        } else {
            Err(format!("{url}: HTTP {s}"))
        };
    }
    if let Some(g) = &p.grpc {
        use tonic_health::pb::health_client::HealthClient;
        use tonic_health::pb::HealthCheckRequest;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("grpc connect {port}: {e}"))?;
        let mut client = HealthClient::new(channel);
        let resp = client
            .check(HealthCheckRequest {
                service: g.service.clone().unwrap_or_default(),
            })
            .await
            .map_err(|e| format!("grpc check {port}: {e}"))?;
        let status = resp.into_inner().status;
        // 1 = SERVING
        return if status == 1 {
            Ok(())
        } else {
            Err(format!("grpc status {status}"))
        };
    }
    if p.tcp_socket.is_some() {
        return tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
    }
    Err("no handler".into())
}

fn spark_pods(fake: &FakeApiServer) {
    let pod = |name: &str, role: &str, extra: serde_json::Value| -> Pod {
        let mut labels =
            serde_json::json!({"spark-role": role, "spark-app-selector": "spark-0123456789abcdef"});
        if let (Some(l), serde_json::Value::Object(e)) = (labels.as_object_mut(), extra) {
            l.extend(e);
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "spark-apps", "labels": labels},
            "spec": {"containers": [{"name": format!("spark-kubernetes-{role}")}]},
            // what the kubelet reports for a running container: log followers wait for it
            "status": {"phase": "Running", "containerStatuses": [{
                "name": format!("spark-kubernetes-{role}"), "ready": true, "restartCount": 0,
                "image": "apache/spark:3.5.7", "imageID": "", "state": {"running": {}}
            }]}
        }))
        .expect("pod")
    };
    fake.apply_namespace(
        serde_json::from_value(serde_json::json!({"metadata": {"name": "spark-apps"}}))
            .expect("ns"),
    );
    fake.apply_pod(pod("app-driver", "driver", serde_json::json!({})));
    fake.apply_pod(pod(
        "app-exec-1",
        "executor",
        serde_json::json!({"spark-exec-id": "1"}),
    ));
    fake.append_log(
        "spark-apps",
        "app-driver",
        "spark-kubernetes-driver",
        "driver says hello",
    );
    fake.append_log(
        "spark-apps",
        "app-exec-1",
        "spark-kubernetes-executor",
        "executor says hello",
    );
}

/// (resource, verb) granted to each service account by the rendered ClusterRoles.
fn grants(objects: &[Object]) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let roles: BTreeMap<String, _> = objects
        .iter()
        .filter_map(|o| match o {
            Object::ClusterRole(r) => Some((o.name(), r.clone())),
            _ => None,
        })
        .collect();
    let mut out: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for o in objects {
        if let Object::ClusterRoleBinding(b) = o {
            for s in b.subjects.iter().flatten() {
                let set = out.entry(s.name.clone()).or_default();
                for r in roles[&b.role_ref.name].rules.iter().flatten() {
                    for res in r.resources.iter().flatten() {
                        for v in &r.verbs {
                            set.insert((res.clone(), v.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

async fn exercise(objects: &[Object], w: &Workload<'_>) {
    let c = w.main_container().unwrap();
    let bin = daemon::bin_path(&w.name).unwrap_or_else(|e| panic!("{e:#}"));
    let help = daemon::help(&bin, &[]).unwrap_or_else(|e| panic!("{e:#}"));
    let (_, text) = deploy::container_config(objects, w, c).unwrap_or_else(|e| panic!("{e:#}"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let (local, ports) = localise(&text, tmp.path(), &help);
    let cfg = tmp.path().join("config.toml");
    std::fs::write(&cfg, local).expect("write config");

    let fake = FakeApiServer::start().await;
    spark_pods(&fake);
    let mut cmd = Command::new(&bin);
    cmd.arg("--config").arg(&cfg);
    if help.flag("kubeconfig").is_some() {
        cmd.arg("--kubeconfig").arg(fake.kubeconfig_path());
    }
    cmd.env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut running = Running {
        child,
        name: w.name.clone(),
    };

    // readiness and liveness, as the kubelet would probe them
    let probes: Vec<(&str, &Probe)> = [
        ("readiness", &c.readiness_probe),
        ("liveness", &c.liveness_probe),
        ("startup", &c.startup_probe),
    ]
    .into_iter()
    .filter_map(|(n, p)| p.as_ref().map(|p| (n, p)))
    .collect();
    assert!(
        probes.len() >= 2,
        "{}: readiness and liveness probes",
        w.what()
    );
    for (kind, p) in &probes {
        let port = probe_port(c, p);
        let local = ports[&i64::from(port)];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = running.child.try_wait().expect("wait") {
                panic!(
                    "{} exited ({st}) before its {kind} probe succeeded",
                    running.name
                );
            }
            match probe_ok(p, local).await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    panic!("{}: {kind} probe never succeeded: {e}", w.what())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    // the collector's ingest: a driver's agent presents its pod's token for the configured
    // audience, which the collector checks with a TokenReview
    let _agent = (w.name == "history-collector").then(|| {
        let table: toml::Table = text.parse().expect("config TOML");
        let aud = table
            .get("ingest-audience")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let old = table
            .get("ingest-port")
            .and_then(|v| v.as_integer())
            .expect("the collector's config names its ingest-port");
        let auds: Vec<&str> = aud.split(',').filter(|a| !a.is_empty()).collect();
        let token = fake.issue_token("spark-apps", "default", Some("app-driver"), &auds);
        let events = tmp.path().join("agent-events");
        std::fs::create_dir_all(&events).expect("agent dir");
        std::fs::write(
            events.join("spark-0123456789abcdef"),
            "{\"Event\":\"SparkListenerLogStart\",\"Spark Version\":\"3.5.7\"}\n",
        )
        .expect("event log");
        let token_file = tmp.path().join("agent-token");
        std::fs::write(&token_file, token).expect("token");
        let child = Command::new(&bin)
            .arg("agent")
            .arg("--event-log-dir")
            .arg(&events)
            .args(["--collector", &format!("http://127.0.0.1:{}", ports[&old])])
            .arg("--token-file")
            .arg(&token_file)
            .args(["--poll-interval", "100ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the agent");
        Running {
            child,
            name: "history-collector agent".into(),
        }
    });

    // the staging server reviews tokens only when asked for an upload credential: ask once
    if w.name == "staging-server" {
        fake.add_identity("live-test-token", "live-test", &[]);
        fake.allow("live-test", "create", "pods", "spark-apps");
        let port = ports[&10000];
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/v1/credentials"))
            .bearer_auth("live-test-token")
            .json(&serde_json::json!({"namespace": "spark-apps"}))
            .send()
            .await
            .expect("credential request");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
    // let it do its Kubernetes work for a moment, then compare with its grants
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used: BTreeSet<(String, String)> = fake
        .calls()
        .into_iter()
        .map(|c| (c.resource, c.verb))
        .collect();
    let sa = w.spec.service_account_name.clone().unwrap_or_default();
    let granted = grants(objects).remove(&sa).unwrap_or_default();
    for call in &used {
        assert!(
            granted.contains(call),
            "{} calls {call:?}, which ServiceAccount {sa} is not granted",
            w.what()
        );
    }
    let used_resources: BTreeSet<&str> = used.iter().map(|(r, _)| r.as_str()).collect();
    for (res, _) in &granted {
        assert!(
            used_resources.contains(res.as_str()),
            "{}: ServiceAccount {sa} is granted {res}, which the daemon never asked for (calls: {used:?})",
            w.what()
        );
    }

    // SIGTERM: drain and exit 0 before the kubelet would SIGKILL
    let grace = w.spec.termination_grace_period_seconds.unwrap_or(30);
    let pid = running.child.id().to_string();
    let st = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(u64::try_from(grace).unwrap_or(30));
    loop {
        if let Some(st) = running.child.try_wait().expect("wait") {
            assert!(st.success(), "{}: exit status {st} after SIGTERM", w.what());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: still running {grace}s after SIGTERM",
            w.what()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(name: &str) {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    let ws = deploy::workloads(&objects);
    let w = ws
        .iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no workload {name}"));
    exercise(&objects, w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_server_as_deployed() {
    run("staging-server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffle_service_as_deployed() {
    run("shuffle-service").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_collector_as_deployed() {
    run("history-collector").await;
}
