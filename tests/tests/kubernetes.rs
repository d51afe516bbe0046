//! The whole system on a real Kubernetes (scripts/kube-local.sh: Kubernetes 1.20 control plane,
//! two nodes of sidecars-kubelet), deploy/ installed as docs/spark-on-k8s.md says, and stock
//! `spark-submit --deploy-mode cluster` of Spark 3.5.7 and 4.3.0. One cluster for the whole
//! binary; the tests take turns. Needs root (network namespaces) and everything
//! scripts/install-test-tools.sh installs; run through scripts/test.sh.

#[path = "kubernetes/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../../shuffle-service/tests/support/client.rs"]
mod probe;

use std::time::Duration;

use shuffle_service::protocol::BlockTransferMessage;

use cluster::{
    cluster, http_get, local_pi_jar, serial, Cluster, Spark, APPS, NODES, SPARK35, SPARK4,
};

fn pi_of(log: &str) -> f64 {
    let line = log
        .lines()
        .find(|l| l.starts_with("Pi is roughly "))
        .unwrap_or_else(|| panic!("no \"Pi is roughly\" in the driver's log:\n{log}"));
    line["Pi is roughly ".len()..]
        .trim()
        .parse()
        .expect("a number")
}

/// Stock SparkPi-style JVM job and Spark's own pi.py in cluster mode: the driver pod runs
/// `spark-submit` through the image's entrypoint, executors come up on the nodes, register
/// with the driver through its Service name, the result is in the driver's log as `kubectl
/// logs` shows it, and Spark deletes its executors at the end.
fn spark_pi(spark: Spark) {
    let _turn = serial();
    let c = cluster();
    let jar = local_pi_jar(spark);
    let jar_url = format!("local://{}", jar.display());
    let name = format!("pi-jvm-{}", spark.tag());
    let driver = c.run_to_success(
        spark,
        &name,
        &[
            "--conf",
            "spark.executor.instances=2",
            "--class",
            "LocalPi",
            &jar_url,
            "4",
        ],
    );
    let log = c.logs(APPS, &driver, "spark-kubernetes-driver");
    let pi = pi_of(&log);
    assert!((3.0..3.3).contains(&pi), "pi = {pi}");
    assert!(
        log.matches("Registered executor").count() >= 2,
        "two executors should have registered:\n{log}"
    );
    // Spark deleted its executors; the kubelets stopped them
    c.wait("the executors to be gone", Duration::from_secs(60), || {
        c.get(
            APPS,
            &format!("pods -l spark-app-name={name},spark-role=executor"),
            "{.items}",
        )
        .trim()
        .eq("[]")
        .then_some(())
    });
    c.delete_app(&name);

    let name = format!("pi-py-{}", spark.tag());
    let driver = c.run_to_success(
        spark,
        &name,
        &[
            "--conf",
            "spark.executor.instances=2",
            "local:///opt/spark/examples/src/main/python/pi.py",
            "4",
        ],
    );
    let pi = pi_of(&c.logs(APPS, &driver, "spark-kubernetes-driver"));
    assert!((3.0..3.3).contains(&pi), "pi = {pi}");
    c.delete_app(&name);
}

#[test]
fn spark_pi_cluster_mode_spark35() {
    spark_pi(SPARK35);
}

#[test]
fn spark_pi_cluster_mode_spark4() {
    spark_pi(SPARK4);
}

/// The settings of the shuffle tests on top of deploy/spark/spark-defaults.conf: executors go
/// away 3 s after they idle, none stays, and a single fetch failure fails the job (so nothing
/// passes by recomputing lost map output).
const SHUFFLE_CONF: &[&str] = &[
    "--properties-file",
    "deploy/spark/spark-defaults.conf",
    "--conf",
    "spark.dynamicAllocation.minExecutors=0",
    "--conf",
    "spark.dynamicAllocation.initialExecutors=4",
    "--conf",
    "spark.dynamicAllocation.maxExecutors=4",
    "--conf",
    "spark.dynamicAllocation.executorIdleTimeout=3s",
    "--conf",
    "spark.dynamicAllocation.schedulerBacklogTimeout=1s",
    "--conf",
    "spark.stage.maxConsecutiveAttempts=1",
    "--conf",
    "spark.task.maxFailures=1",
];

/// A counter or gauge of a node's shuffle service (its admin port on the node's address).
fn shuffle_metric(node_ip: &str, name: &str) -> f64 {
    let (_, body) = http_get(node_ip, 7338, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or_else(|| panic!("no {name} in {node_ip}'s metrics:\n{body}"))
}

/// Block-manager directories under a node's /var/spark/local that hold files (shuffle or
/// cached blocks). Executors that dynamic allocation stops before they registered with the
/// shuffle service leave empty ones behind, which no service can attribute to an application.
fn local_dirs(c: &Cluster, node: &str) -> Vec<String> {
    fn has_files(p: &std::path::Path) -> bool {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let t = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                !t || has_files(&e.path())
            })
    }
    let dir = c.node_host_dir(node).join("var/spark/local");
    std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name().to_string_lossy().starts_with("blockmgr-") && has_files(&e.path())
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn assert_cleaned_up(c: &Cluster, why: &str) {
    for (node, ip) in NODES {
        c.wait(
            &format!("{node}'s shuffle service to drop the app ({why})"),
            Duration::from_secs(90),
            || {
                (local_dirs(c, node).is_empty()
                    && shuffle_metric(ip, "shuffle_registered_executors") == 0.0)
                    .then_some(())
            },
        );
    }
}

fn shuffle_app(spark: Spark) -> String {
    let dir = std::env::temp_dir().join("sidecars-kube-e2e-py");
    std::fs::create_dir_all(&dir).unwrap();
    let src = cluster::crate_dir().join("spark-apps/shuffle_da.py");
    let dst = dir.join(format!("shuffle_da_{}.py", spark.tag()));
    std::fs::copy(src, &dst).unwrap();
    cluster::make_readable(&dir);
    format!("local://{}", dst.display())
}

/// Dynamic allocation down to zero executors between stages on two nodes: the reduce stage and
/// the DISK_ONLY blocks are served by the shuffle services after the executors that wrote them
/// are gone; executors registered on both nodes; once the driver has finished, every node's
/// service has removed the application's registrations and files; and the application's
/// history outlives its pods.
fn shuffle_with_dynamic_allocation(spark: Spark) {
    let _turn = serial();
    let c = cluster();
    let name = format!("shuffle-da-{}", spark.tag());
    let app = shuffle_app(spark);
    let sent_before: f64 = NODES
        .iter()
        .map(|(_, ip)| shuffle_metric(ip, "shuffle_blocks_sent_total"))
        .sum();
    let regs_before: Vec<f64> = NODES
        .iter()
        .map(|(_, ip)| shuffle_metric(ip, "shuffle_registrations_total"))
        .collect();
    let mut args: Vec<&str> = SHUFFLE_CONF.to_vec();
    args.push(&app);
    let driver = c.run_to_success(spark, &name, &args);
    let log = c.logs(APPS, &driver, "spark-kubernetes-driver");
    assert!(log.contains("RESULT OK"), "{log}");
    let hosts = log
        .lines()
        .find_map(|l| l.strip_prefix("HOSTS "))
        .unwrap_or_default();
    assert_eq!(
        hosts.split_whitespace().count(),
        2,
        "executors should have run on both nodes: {hosts:?}"
    );
    for (i, (node, ip)) in NODES.iter().enumerate() {
        let regs = shuffle_metric(ip, "shuffle_registrations_total");
        assert!(
            regs > regs_before[i],
            "no executor registered with {node}'s shuffle service"
        );
    }
    let sent: f64 = NODES
        .iter()
        .map(|(_, ip)| shuffle_metric(ip, "shuffle_blocks_sent_total"))
        .sum();
    assert!(
        sent > sent_before,
        "no block was fetched through a shuffle service"
    );
    assert_cleaned_up(c, "driver finished");
    assert_history_outlives_pods(c, &name, &driver, "RESULT OK");
}

/// The driver pod deleted while the application holds shuffle files on the nodes: every
/// node's shuffle service removes its registrations and files.
fn shuffle_cleanup_on_driver_deletion(spark: Spark) {
    let _turn = serial();
    let c = cluster();
    let name = format!("shuffle-del-{}", spark.tag());
    let app = shuffle_app(spark);
    let mut args: Vec<&str> = vec![
        "--name",
        &name,
        "--conf",
        "spark.kubernetes.submission.waitAppCompletion=false",
    ];
    args.extend_from_slice(SHUFFLE_CONF);
    args.push(&app);
    args.push("600");
    let out = c.spark_submit(spark, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let driver = c.wait("the driver pod", Duration::from_secs(60), || {
        Some(c.driver_pod(&name)).filter(|d| !d.is_empty())
    });
    c.wait(
        "the job to hold its shuffle files",
        Duration::from_secs(420),
        || {
            let log = c.kubectl(&["-n", APPS, "logs", &driver, "-c", "spark-kubernetes-driver"]);
            String::from_utf8_lossy(&log.stdout)
                .contains("RESULT OK")
                .then_some(())
        },
    );
    let held: usize = NODES.iter().map(|(n, _)| local_dirs(c, n).len()).sum();
    assert!(
        held > 0,
        "no shuffle files on any node while the application runs"
    );
    c.kubectl_ok(&["-n", APPS, "delete", "pod", &driver, "--wait=false"]);
    assert_cleaned_up(c, "driver deleted");
    c.delete_app(&name);
}

#[test]
fn shuffle_with_dynamic_allocation_spark35() {
    shuffle_with_dynamic_allocation(SPARK35);
}

#[test]
fn shuffle_with_dynamic_allocation_spark4() {
    shuffle_with_dynamic_allocation(SPARK4);
}

#[test]
fn shuffle_cleanup_on_driver_deletion_spark35() {
    shuffle_cleanup_on_driver_deletion(SPARK35);
}

#[test]
fn shuffle_cleanup_on_driver_deletion_spark4() {
    shuffle_cleanup_on_driver_deletion(SPARK4);
}

/// One executor pod as the test saw it while it ran: its application, executor id, node and
/// the `spark.authenticate` secret Spark put in its spec.
#[derive(Debug, Clone)]
struct ExecutorSeen {
    app: String,
    exec: String,
    node: String,
    secret: String,
}

/// The executor pods of `APPS` now (those that have an app id and a secret).
fn executors_now(c: &Cluster) -> Vec<ExecutorSeen> {
    let jp = r#"{range .items[*]}{.metadata.labels.spark-app-selector}{"\t"}{.metadata.labels.spark-exec-id}{"\t"}{.spec.nodeName}{"\t"}{.spec.containers[*].env[?(@.name=="_SPARK_AUTH_SECRET")].value}{"\n"}{end}"#;
    c.get(APPS, "pods -l spark-role=executor", jp)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4 && f.iter().all(|x| !x.is_empty())).then(|| ExecutorSeen {
                app: f[0].into(),
                exec: f[1].into(),
                node: f[2].into(),
                secret: f[3].into(),
            })
        })
        .collect()
}

/// A connection to `node_ip`'s shuffle service, authenticated as `app` with `secret` by SASL
/// (what Spark does with spark.authenticate=true), or the refusal.
fn shuffle_client(node_ip: &str, app: &str, secret: &str) -> Result<probe::Client, String> {
    let s = std::net::TcpStream::connect((node_ip, 7337)).expect("connect to the shuffle port");
    let mut c = probe::Client::from_stream(s);
    c.auth_sasl(app, secret, false).map(|()| c)
}

fn local_dirs_of(app: &str, exec: &str) -> BlockTransferMessage {
    BlockTransferMessage::GetLocalDirsForExecutors {
        app_id: app.into(),
        exec_ids: vec![exec.into()],
    }
}

/// Two applications at once, one on Spark 3.5.7 and one on 4.3.0, each with the secret Spark
/// generated for it (spark.authenticate=true from deploy/spark), which every node's shuffle
/// service learned from that application's executor pods. Both read their map output and
/// DISK_ONLY blocks through the services after dynamic allocation removed their executors.
/// Then, while both hold files on the nodes, a client on the node network holding one
/// application's secret: cannot authenticate as the other application; once authenticated as
/// its own, is refused every request that names the other one (its executors' dirs, its
/// blocks, removing them) while the same requests for its own application are answered; and
/// a client with no secret is refused both. Deleting the drivers removes both applications.
#[test]
fn two_authenticated_applications_each_read_only_their_own_blocks() {
    let _turn = serial();
    let c = cluster();
    let apps = [SPARK35, SPARK4];
    let names: Vec<String> = apps.iter().map(|s| format!("iso-{}", s.tag())).collect();
    for (spark, name) in apps.iter().zip(&names) {
        let app = shuffle_app(*spark);
        let mut args: Vec<&str> = vec![
            "--name",
            name,
            "--conf",
            "spark.kubernetes.submission.waitAppCompletion=false",
        ];
        args.extend_from_slice(SHUFFLE_CONF);
        // two applications on a small machine: two executors each
        args.extend([
            "--conf",
            "spark.dynamicAllocation.initialExecutors=2",
            "--conf",
            "spark.dynamicAllocation.maxExecutors=2",
        ]);
        args.push(&app);
        args.push("600");
        let out = c.spark_submit(*spark, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let drivers: Vec<String> = names
        .iter()
        .map(|n| {
            c.wait("the driver pod", Duration::from_secs(60), || {
                Some(c.driver_pod(n)).filter(|d| !d.is_empty())
            })
        })
        .collect();
    let app_ids: Vec<String> = drivers
        .iter()
        .map(|d| {
            c.wait("the driver's app id", Duration::from_secs(60), || {
                Some(c.get(
                    APPS,
                    &format!("pod/{d}"),
                    "{.metadata.labels.spark-app-selector}",
                ))
                .filter(|a| !a.is_empty())
            })
        })
        .collect();
    // Executors live only while the first stages run: record them (and the secrets in their
    // specs, as an admin sees them) while waiting for both jobs to finish their reads.
    let mut seen: Vec<ExecutorSeen> = Vec::new();
    c.wait(
        "both jobs to read their blocks through the shuffle services",
        Duration::from_secs(600),
        || {
            for e in executors_now(c) {
                if !seen.iter().any(|s| s.app == e.app && s.exec == e.exec) {
                    seen.push(e);
                }
            }
            drivers
                .iter()
                .all(|d| {
                    let log = c.kubectl(&["-n", APPS, "logs", d, "-c", "spark-kubernetes-driver"]);
                    String::from_utf8_lossy(&log.stdout).contains("RESULT OK")
                })
                .then_some(())
        },
    );
    let secret_of = |app: &str| -> String {
        let s: Vec<&str> = seen
            .iter()
            .filter(|e| e.app == app)
            .map(|e| e.secret.as_str())
            .collect();
        assert!(
            !s.is_empty(),
            "never saw an executor pod of {app}: {seen:?}"
        );
        assert!(
            s.iter().all(|x| *x == s[0]),
            "executors of {app} disagree on the secret"
        );
        s[0].to_owned()
    };
    let secrets: Vec<String> = app_ids.iter().map(|a| secret_of(a)).collect();
    assert_ne!(
        secrets[0], secrets[1],
        "each application has its own secret"
    );
    for (node, ip) in NODES {
        assert!(
            shuffle_metric(ip, "shuffle_secrets_learned") >= 2.0,
            "{node}'s service has not learned both applications' secrets"
        );
    }

    let mut answered = [0usize; 2];
    for (me, other) in [(0usize, 1usize), (1, 0)] {
        let (my_app, my_secret) = (&app_ids[me], &secrets[me]);
        let other_app = &app_ids[other];
        for (node, ip) in NODES {
            // my secret does not open the other application
            let e = shuffle_client(ip, other_app, my_secret)
                .err()
                .unwrap_or_else(|| {
                    panic!("{node}: {my_app}'s secret authenticated as {other_app}")
                });
            assert!(
                e.contains(&format!("authentication of {other_app} failed")),
                "{node}: {e}"
            );
            // no secret at all: refused for both
            for app in [my_app, other_app] {
                let s = std::net::TcpStream::connect((ip, 7337)).expect("connect");
                let mut anon = probe::Client::from_stream(s);
                let e = anon
                    .rpc(&local_dirs_of(app, "1"))
                    .expect_err("an unauthenticated request was answered");
                assert!(e.contains("Expected SaslMessage"), "{node}: {e}");
            }
            let mut mine = shuffle_client(ip, my_app, my_secret)
                .unwrap_or_else(|e| panic!("{node}: {my_app} with its own secret: {e}"));
            for ex in seen.iter().filter(|e| &e.app == other_app) {
                for m in [
                    local_dirs_of(other_app, &ex.exec),
                    BlockTransferMessage::OpenBlocks {
                        app_id: other_app.clone(),
                        exec_id: ex.exec.clone(),
                        block_ids: vec!["shuffle_0_0_0".into(), "rdd_2_0".into()],
                    },
                    BlockTransferMessage::RemoveBlocks {
                        app_id: other_app.clone(),
                        exec_id: ex.exec.clone(),
                        block_ids: vec!["rdd_2_0".into()],
                    },
                ] {
                    let e = mine
                        .rpc(&m)
                        .expect_err("a request for another application was answered");
                    assert!(
                        e.contains(&format!("not authorized for application {other_app}")),
                        "{node}: {e}"
                    );
                }
            }
            // the same connection is answered for its own executors registered on this node
            for ex in seen.iter().filter(|e| &e.app == my_app && e.node == node) {
                let body = mine
                    .rpc(&local_dirs_of(my_app, &ex.exec))
                    .unwrap_or_else(|e| {
                        panic!(
                            "{node}: {my_app} asking for its own executor {}: {e}",
                            ex.exec
                        )
                    });
                match BlockTransferMessage::decode(&body).expect("a reply") {
                    BlockTransferMessage::LocalDirsForExecutors { dirs } => {
                        assert_eq!(dirs.len(), 1);
                        assert!(
                            dirs[0].1.iter().all(|d| d.contains("/blockmgr-")),
                            "{dirs:?}"
                        );
                        answered[me] += 1;
                    }
                    other => panic!("not LocalDirsForExecutors: {other:?}"),
                }
            }
        }
    }
    assert!(
        answered.iter().all(|n| *n > 0),
        "each application reads its own executors' dirs: {answered:?} (executors seen: {seen:?})"
    );
    for d in &drivers {
        c.kubectl_ok(&["-n", APPS, "delete", "pod", d, "--wait=false"]);
    }
    assert_cleaned_up(c, "both drivers deleted");
    for n in &names {
        c.delete_app(n);
    }
}

/// History after the pods are gone (the application ran with deploy/spark's driver template):
/// the driver's agent sidecar shipped the event log and the collector followed the pods' logs;
/// once every pod of the application is deleted, the UI lists the application, `/api/v1`
/// answers for it, its executor log links (recorded in the event log by Spark) answer with the
/// logs, and so does the driver's log (holding `driver_marker`).
fn assert_history_outlives_pods(c: &Cluster, name: &str, driver: &str, driver_marker: &str) {
    let app = c.get(
        APPS,
        &format!("pod/{driver}"),
        "{.metadata.labels.spark-app-selector}",
    );
    assert!(app.starts_with("spark-"), "app id {app:?}");
    c.delete_app(name);
    c.wait(
        "every pod of the application to be gone",
        Duration::from_secs(120),
        || {
            c.get(APPS, &format!("pods -l spark-app-name={name}"), "{.items}")
                .trim()
                .eq("[]")
                .then_some(())
        },
    );

    let hc = c.get(
        "spark-sidecars",
        "pods -l app.kubernetes.io/name=history-collector",
        "{.items[0].status.podIP}",
    );
    let (status, index) = http_get(&hc, 18080, "/");
    assert_eq!(status, 200, "{index}");
    assert!(index.contains(&app), "the UI does not list {app}:\n{index}");
    let (status, apps) = http_get(&hc, 18080, "/api/v1/applications");
    assert_eq!(status, 200);
    assert!(apps.contains(&app), "{apps}");
    let (status, execs) = http_get(
        &hc,
        18080,
        &format!("/api/v1/applications/{app}/allexecutors"),
    );
    assert_eq!(status, 200, "{execs}");
    let execs: serde_json::Value = serde_json::from_str(&execs).expect("executors JSON");
    let links: Vec<(String, Option<String>)> = execs
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap_or_default().to_string(),
                e["executorLogs"]["stdout"].as_str().map(str::to_string),
            )
        })
        .collect();
    let mut with_links: Vec<(String, String)> = links
        .iter()
        .filter_map(|(id, u)| u.clone().map(|u| (id.clone(), u)))
        .collect();
    assert!(
        with_links.iter().any(|(id, _)| id != "driver"),
        "the executors should have log links: {links:?}"
    );
    // Spark on Kubernetes records no driver log link; the collector has the log at this path
    with_links.push((
        "driver".into(),
        format!("http://history-collector.spark-sidecars.svc:18080/logs/{app}/driver/stdout"),
    ));
    for (id, url) in &with_links {
        // the links name the collector's Service; from here we go to its pod
        let path = url
            .strip_prefix("http://history-collector.spark-sidecars.svc:18080")
            .unwrap_or_else(|| panic!("unexpected log link {url}"));
        let (status, body) = http_get(&hc, 18080, path);
        assert_eq!(status, 200, "{url}: {body}");
        let marker = if id == "driver" {
            driver_marker
        } else {
            "CoarseGrainedExecutorBackend"
        };
        assert!(
            body.contains(marker),
            "{url} should show the {id} log ({marker}):\n{body}"
        );
    }
}

/// The staged application's files, copied into a directory only root can read: the driver and
/// executors (uid 185) can only get them through the staging server.
fn staged_files(spark: Spark) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let src = cluster::crate_dir().join("spark-apps/staged");
    for f in ["main.py", "helper.py", "data.txt"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let classes = dir.path().join("classes");
    std::fs::create_dir(&classes).unwrap();
    let cp = format!("{}/jars/*", spark.home().display());
    let st = std::process::Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .args(["-cp", &cp])
        .arg(src.join("StagedUpper.java"))
        .status()
        .unwrap();
    assert!(st.success(), "javac StagedUpper.java");
    let st = std::process::Command::new("jar")
        .arg("cf")
        .arg(dir.path().join("staged.jar"))
        .arg("-C")
        .arg(&classes)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "jar");
    dir
}

/// What the staged application (tests/spark-apps/staged/main.py) printed: the data file, the
/// py-file module and the jar's class, read on the driver and on executors.
fn assert_staged(mode: &str, log: &str) {
    let json = log
        .lines()
        .find_map(|l| l.strip_prefix("STAGED "))
        .unwrap_or_else(|| panic!("{mode}: no STAGED line:\n{log}"));
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["driver_data"], "staged data 42", "{mode}: {json}");
    assert_eq!(v["driver_helper"], 42, "{mode}: {json}");
    assert_eq!(v["driver_jar"], "staged-JAR", "{mode}: {json}");
    assert_eq!(
        v["executors"],
        serde_json::json!([
            [0, "staged data 42"],
            [2, "staged data 42"],
            [4, "staged data 42"],
            [6, "staged data 42"]
        ]),
        "{mode}: {json}"
    );
    assert_eq!(
        v["executors_jar"],
        serde_json::json!(["staged-0", "staged-1", "staged-2"]),
        "{mode}: {json}"
    );
}

/// `spark-stage submit` in both modes, with a local main file, --py-files, --files and --jars
/// that driver and executors use: the submission goes to the staging server (from this
/// machine, at its pod address), the pods fetch from its Service.
fn staging(spark: Spark) {
    let _turn = serial();
    let c = cluster();
    let files = staged_files(spark);
    let f = |n: &str| files.path().join(n).display().to_string();
    let pod_ip = c.pod_ip("spark-sidecars", "app.kubernetes.io/name=staging-server");
    let bin = std::path::PathBuf::from(std::env::var("SIDECARS_BIN_DIR").unwrap());
    for mode in ["urls", "init-container"] {
        let name = format!(
            "staged-{}-{}",
            mode.split('-').next().unwrap_or(mode),
            spark.tag()
        );
        let out = std::process::Command::new(bin.join("spark-stage"))
            .args(["submit", "--server", &format!("http://{pod_ip}:10000")])
            .args([
                "--internal-server",
                "http://staging-server.spark-sidecars.svc:10000",
            ])
            .args(["--mode", mode, "--kubectl-apply"])
            .arg("--spark-submit")
            .arg(spark.home().join("bin/spark-submit"))
            .arg("--")
            .args([
                "--master",
                cluster::API,
                "--deploy-mode",
                "cluster",
                "--name",
                &name,
            ])
            .args(["--conf", &format!("spark.kubernetes.namespace={APPS}")])
            .args([
                "--conf",
                "spark.kubernetes.authenticate.driver.serviceAccountName=spark",
            ])
            .args([
                "--conf",
                &format!("spark.kubernetes.container.image={}", spark.image()),
            ])
            .args([
                "--conf",
                "spark.executor.instances=2",
                "--conf",
                "spark.driver.memory=512m",
            ])
            .args(["--conf", "spark.executor.memory=512m"])
            .args(["--conf", "spark.kubernetes.driver.request.cores=0.5"])
            .args(["--conf", "spark.kubernetes.executor.request.cores=0.5"])
            .args([
                "--py-files",
                &f("helper.py"),
                "--files",
                &f("data.txt"),
                "--jars",
                &f("staged.jar"),
            ])
            .arg(f("main.py"))
            .env("KUBECONFIG", &c.kubeconfig)
            .current_dir(&c.repo)
            .output()
            .expect("running spark-stage");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "spark-stage submit --mode {mode} failed:\n{stderr}"
        );
        let driver = c.driver_pod(&name);
        let phase = c.get(APPS, &format!("pod/{driver}"), "{.status.phase}");
        let log = c.logs(APPS, &driver, "spark-kubernetes-driver");
        assert_eq!(
            phase, "Succeeded",
            "{mode}: driver {driver} ended {phase}:\n{log}"
        );
        assert_staged(mode, &log);
        c.delete_app(&name);
    }
}

#[test]
fn staging_spark35() {
    staging(SPARK35);
}

#[test]
fn staging_spark4() {
    staging(SPARK4);
}

/// Stock `spark-submit` with nothing but the staging server's WebHDFS upload path (on Spark 4
/// also Hadoop's own OAuth2 settings) and one credential, which `spark-stage token` gets for the
/// `spark` service account's token, checked by the real API server (TokenReview,
/// SubjectAccessReview). Without the credential the upload is refused and no pod is created.
/// Spark 3.5's Hadoop client cannot use OAuth2 (docs/staging-server.md): the credential goes in
/// the upload path.
fn webhdfs(spark: Spark, oauth: bool) {
    let _turn = serial();
    let c = cluster();
    let files = staged_files(spark);
    let f = |n: &str| files.path().join(n).display().to_string();
    let ip = c.pod_ip("spark-sidecars", "app.kubernetes.io/name=staging-server");
    let server = format!("http://{ip}:10000");
    let base = format!("webhdfs://{ip}:10000");
    // the spark service account's token, from the token Secret Kubernetes 1.20 makes for it
    let secret = c.get(APPS, "serviceaccount spark", "{.secrets[0].name}");
    assert!(
        !secret.is_empty(),
        "the spark service account has no token Secret"
    );
    let b64 = c.get(APPS, &format!("secret {secret}"), "{.data.token}");
    let decoded = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b64.as_bytes())?;
            child.wait_with_output()
        })
        .expect("base64 -d");
    let kube_token = String::from_utf8(decoded.stdout).unwrap();
    let bin = std::path::PathBuf::from(std::env::var("SIDECARS_BIN_DIR").unwrap());
    let out = std::process::Command::new(bin.join("spark-stage"))
        .args(["token", "--server", &server, "--namespace", APPS])
        .args(["--kube-token", kube_token.trim()])
        .output()
        .expect("running spark-stage token");
    assert!(
        out.status.success(),
        "spark-stage token failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let credential = stdout.lines().last().unwrap_or("").trim().to_string();
    assert!(credential.starts_with("stagetoken."), "{stdout}");
    let deps = [
        "--py-files".to_string(),
        f("helper.py"),
        "--files".to_string(),
        f("data.txt"),
        "--jars".to_string(),
        f("staged.jar"),
        f("main.py"),
    ];
    let conf = |kv: String| ["--conf".to_string(), kv];

    // without the credential
    let denied = format!("webhdfs-denied-{}", spark.tag());
    let mut args: Vec<String> = vec!["--name".into(), denied.clone()];
    args.extend(conf(format!(
        "spark.kubernetes.file.upload.path={base}/uploads"
    )));
    args.extend(deps.iter().cloned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.spark_submit(spark, &argv);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an upload without a credential was accepted:\n{stderr}"
    );
    assert!(stderr.contains("AccessControlException"), "{stderr}");
    assert_eq!(c.driver_pod(&denied), "", "a driver pod was created");

    // with it
    let name = format!("webhdfs-{}", spark.tag());
    let mut args: Vec<String> = Vec::new();
    if oauth {
        args.extend(conf(format!(
            "spark.kubernetes.file.upload.path={base}/uploads"
        )));
        for (k, v) in [
            ("dfs.webhdfs.oauth2.enabled", "true".to_string()),
            (
                "dfs.webhdfs.oauth2.access.token.provider",
                "org.apache.hadoop.hdfs.web.oauth2.ConfCredentialBasedAccessTokenProvider"
                    .to_string(),
            ),
            ("dfs.webhdfs.oauth2.client.id", "spark".to_string()),
            ("dfs.webhdfs.oauth2.credential", credential.clone()),
            (
                "dfs.webhdfs.oauth2.refresh.url",
                format!("{server}/oauth2/token"),
            ),
        ] {
            args.extend(conf(format!("spark.hadoop.{k}={v}")));
        }
    } else {
        args.extend(conf(format!(
            "spark.kubernetes.file.upload.path={base}/{credential}/uploads"
        )));
    }
    args.extend(conf("spark.executor.instances=2".into()));
    args.extend(deps.iter().cloned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let driver = c.run_to_success(spark, &name, &argv);
    let log = c.logs(APPS, &driver, "spark-kubernetes-driver");
    assert!(
        log.contains(&format!("{base}/")) && log.contains("/spark-upload-"),
        "the driver did not read its files from the staging server:\n{log}"
    );
    assert_staged("webhdfs", &log);

    // The upload directory lives as long as the driver pod that names it, plus the staging
    // server's --owner-grace (20 s on the test cluster, see cluster.rs).
    let upload = log
        .split("/spark-upload-")
        .nth(1)
        .map(|r| {
            r.chars()
                .take_while(|ch| ch.is_ascii_hexdigit() || *ch == '-')
                .collect::<String>()
        })
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| panic!("no upload directory in the driver's log:\n{log}"));
    let status = format!("/webhdfs/v1/{credential}/uploads/spark-upload-{upload}?op=GETFILESTATUS");
    let (code, body) = http_get(&ip, 10000, &status);
    assert_eq!(
        code, 200,
        "the upload directory while its driver pod exists: {body}"
    );
    c.delete_app(&name);
    c.wait(
        "the upload directory to be removed after its driver pod was deleted",
        Duration::from_secs(180),
        || {
            let (code, body) = http_get(&ip, 10000, &status);
            assert!(code == 200 || code == 404, "{code} {body}");
            (code == 404).then_some(())
        },
    );
}

#[test]
fn webhdfs_spark35() {
    webhdfs(SPARK35, false);
}

#[test]
fn webhdfs_spark4() {
    webhdfs(SPARK4, true);
}

/// An executor without the host-network template fails as docs/spark-on-k8s.md says: it
/// registers with a shuffle service at its own pod address, where nothing listens, and exits
/// with "Unable to register with external shuffle server".
fn executor_off_the_host_network_fails(spark: Spark) {
    let _turn = serial();
    let c = cluster();
    let name = format!("no-hostnet-{}", spark.tag());
    let dir = std::env::temp_dir().join("sidecars-kube-e2e-templates");
    std::fs::create_dir_all(&dir).unwrap();
    let template =
        std::fs::read_to_string(c.repo.join("deploy/spark/executor-pod-template.yaml")).unwrap();
    let pod_network: String = template
        .lines()
        .filter(|l| !l.starts_with("  hostNetwork:") && !l.starts_with("  dnsPolicy:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(pod_network, template, "the template should set hostNetwork");
    let path = dir.join("executor-pod-network.yaml");
    std::fs::write(&path, pod_network).unwrap();
    let app = shuffle_app(spark);
    let tpl = format!(
        "spark.kubernetes.executor.podTemplateFile={}",
        path.display()
    );
    let mut args: Vec<&str> = vec![
        "--name",
        &name,
        "--conf",
        "spark.kubernetes.submission.waitAppCompletion=false",
        "--conf",
        "spark.kubernetes.executor.deleteOnTermination=false",
    ];
    args.extend_from_slice(SHUFFLE_CONF);
    args.extend_from_slice(&[
        "--conf",
        &tpl,
        "--conf",
        "spark.dynamicAllocation.initialExecutors=1",
        "--conf",
        "spark.dynamicAllocation.maxExecutors=1",
        &app,
    ]);
    let out = c.spark_submit(spark, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed = c.wait("an executor to fail", Duration::from_secs(300), || {
        let driver = c.driver_pod(&name);
        if c.get(APPS, &format!("pod/{driver}"), "{.status.phase}") == "Failed" {
            panic!(
                "the driver failed:\n{}",
                c.logs(APPS, &driver, "spark-kubernetes-driver")
            );
        }
        let names = c.get(
            APPS,
            &format!("pods -l spark-app-name={name},spark-role=executor"),
            "{range .items[?(@.status.phase==\"Failed\")]}{.metadata.name}{\"\\n\"}{end}",
        );
        names.lines().next().map(str::to_string)
    });
    let log = c.logs(APPS, &failed, "spark-kubernetes-executor");
    assert!(
        log.contains("Unable to register with external shuffle server"),
        "executor {failed} failed otherwise:\n{log}"
    );
    c.delete_app(&name);
}

#[test]
fn executor_off_the_host_network_fails_spark35() {
    executor_off_the_host_network_fails(SPARK35);
}

#[test]
fn executor_off_the_host_network_fails_spark4() {
    executor_off_the_host_network_fails(SPARK4);
}

/// Pod semantics of sidecars-kubelet with `busybox` pods (the machine's shell): init
/// containers in order, a restartable init container (sidecar) started before the next init
/// container and stopped (SIGTERM) after the main container, phases and exit codes, env from
/// every source with `$(VAR)` expansion, configMap/secret/projected volumes with subPath,
/// restarts with `restartPolicy`, liveness and readiness probes, graceful deletion with SIGTERM
/// and SIGKILL after the grace period, `kubectl logs --previous/--tail/--timestamps`, and an
/// unknown image.
#[test]
fn kubelet_pod_semantics() {
    let _turn = serial();
    let c = cluster();
    let ns = "kubelet-test";
    c.apply(&format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg, namespace: {ns}}}
data: {{greeting: hello, conf.txt: "from-configmap"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: sec, namespace: {ns}}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: order, namespace: {ns}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 10
  volumes: [{{name: work, emptyDir: {{}}}}]
  initContainers:
  - {{name: one, image: busybox, command: [sh, -c, "echo one >> /work/order"], volumeMounts: [{{name: work, mountPath: /work}}]}}
  - name: side
    image: busybox
    restartPolicy: Always
    command: [sh, -c, "echo side >> /work/order; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  - {{name: two, image: busybox, command: [sh, -c, "echo two >> /work/order"], volumeMounts: [{{name: work, mountPath: /work}}]}}
  containers:
  - {{name: main, image: busybox, command: [sh, -c, "cat /work/order; exit 3"], volumeMounts: [{{name: work, mountPath: /work}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: env, namespace: {ns}, labels: {{tier: test}}}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: cfg, configMap: {{name: cfg, items: [{{key: conf.txt, path: sub/conf.txt}}]}}}}
  - name: proj
    projected:
      sources:
      - serviceAccountToken: {{path: token, audience: test-audience, expirationSeconds: 3600}}
      - secret: {{name: sec}}
      - downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}
  containers:
  - name: main
    image: busybox
    command: [sh, -c]
    args: ["echo NAME=$POD_NAME IP=$POD_IP NODE=$NODE MEM=$MEM GREETING=$GREETING PASS=$PASSWORD CFG_greeting=$CFG_greeting EXPANDED=$(EXPANDED); cat /etc/conf.txt; echo; cat /proj/password; echo; cat /proj/labels; echo; head -c 20 /proj/token; echo; hostname"]
    resources: {{limits: {{memory: 64Mi}}}}
    env:
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    - {{name: MEM, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: sec, key: password}}}}}}
    - {{name: EXPANDED, value: "$(POD_NAME)-x"}}
    envFrom: [{{prefix: CFG_, configMapRef: {{name: cfg}}}}]
    volumeMounts:
    - {{name: cfg, mountPath: /etc/conf.txt, subPath: sub/conf.txt}}
    - {{name: proj, mountPath: /proj}}
---
apiVersion: v1
kind: Pod
metadata: {{name: crash, namespace: {ns}}}
spec:
  restartPolicy: OnFailure
  containers:
  - {{name: main, image: busybox, command: [sh, -c, "echo run-$RANDOM; echo second line; exit 1"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: probes, namespace: {ns}}}
spec:
  containers:
  - name: ready-late
    image: busybox
    command: [sh, -c, "sleep 4; exec python3 -m http.server 8080"]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
  - name: never-live
    image: busybox
    command: [sh, -c, "sleep 1000"]
    livenessProbe: {{httpGet: {{port: 9999, path: /}}, periodSeconds: 1, failureThreshold: 2}}
---
apiVersion: v1
kind: Pod
metadata: {{name: graceful, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - {{name: main, image: busybox, command: [sh, -c, "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.2; done"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: stubborn, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - {{name: main, image: busybox, command: [sh, -c, "trap '' TERM; while true; do sleep 0.2; done"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: no-image, namespace: {ns}}}
spec:
  containers:
  - {{name: main, image: "nginx:1.25"}}
"#
    ));
    let get = |pod: &str, jp: &str| c.get(ns, &format!("pod/{pod}"), jp);
    let wait_phase = |pod: &str, phase: &str| {
        c.wait(
            &format!("pod {pod} to be {phase}"),
            Duration::from_secs(120),
            || (get(pod, "{.status.phase}") == phase).then_some(()),
        )
    };

    // init order, sidecar, exit code and phase
    wait_phase("order", "Failed");
    assert_eq!(c.logs(ns, "order", "main"), "one\nside\ntwo\n");
    assert_eq!(
        get(
            "order",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "3"
    );
    c.wait(
        "the sidecar to be stopped after the main container",
        Duration::from_secs(30),
        || {
            let s = get(
                "order",
                "{.status.initContainerStatuses[1].state.terminated.exitCode}",
            );
            (s == "0").then_some(())
        },
    );
    for (i, name) in ["one", "side", "two"].iter().enumerate() {
        assert_eq!(
            get(
                "order",
                &format!("{{.status.initContainerStatuses[{i}].name}}")
            ),
            *name
        );
    }

    // env and volumes
    wait_phase("env", "Succeeded");
    let log = c.logs(ns, "env", "main");
    let ip = get("env", "{.status.podIP}");
    let node = get("env", "{.spec.nodeName}");
    let first = log.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!("NAME=env IP={ip} NODE={node} MEM=64 GREETING=hello PASS=s3cret CFG_greeting=hello EXPANDED=env-x"),
        "{log}"
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[1], "from-configmap", "{log}");
    assert_eq!(lines[2], "s3cret", "{log}");
    assert_eq!(lines[3], "tier=\"test\"", "{log}");
    assert!(
        lines[4].starts_with("eyJ"),
        "a JWT from the TokenRequest API: {log}"
    );
    assert_eq!(lines[5], "env", "the hostname is the pod's name: {log}");

    // restarts with OnFailure, logs of the previous run
    c.wait(
        "the crashing container to be restarted",
        Duration::from_secs(60),
        || {
            let n: i32 = get("crash", "{.status.containerStatuses[0].restartCount}")
                .parse()
                .unwrap_or(0);
            (n >= 1).then_some(())
        },
    );
    let previous = c.kubectl_ok(&["-n", ns, "logs", "crash", "--previous"]);
    assert!(
        previous.starts_with("run-") && previous.ends_with("second line\n"),
        "{previous}"
    );
    assert_eq!(
        get(
            "crash",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "1"
    );
    let tail = c.kubectl_ok(&[
        "-n",
        ns,
        "logs",
        "crash",
        "--previous",
        "--tail=1",
        "--timestamps",
    ]);
    let (ts, text) = tail.trim_end().split_once(' ').unwrap_or_default();
    assert!(ts.contains('T') && ts.ends_with('Z'), "{tail}");
    assert_eq!(text, "second line");

    // readiness turns true once the port opens; liveness restarts the other container
    c.wait(
        "the readiness probe to pass",
        Duration::from_secs(60),
        || {
            (get(
                "probes",
                "{.status.containerStatuses[?(@.name==\"ready-late\")].ready}",
            ) == "true")
                .then_some(())
        },
    );
    c.wait(
        "the liveness probe to restart its container",
        Duration::from_secs(90),
        || {
            let n: i32 = get(
                "probes",
                "{.status.containerStatuses[?(@.name==\"never-live\")].restartCount}",
            )
            .parse()
            .unwrap_or(0);
            (n >= 1).then_some(())
        },
    );

    // graceful deletion: SIGTERM honoured at once; ignored -> SIGKILL after the grace period
    wait_phase("graceful", "Running");
    wait_phase("stubborn", "Running");
    let t0 = std::time::Instant::now();
    c.kubectl_ok(&[
        "-n",
        ns,
        "delete",
        "pod",
        "graceful",
        "--wait=true",
        "--timeout=60s",
    ]);
    let quick = t0.elapsed();
    let t0 = std::time::Instant::now();
    c.kubectl_ok(&[
        "-n",
        ns,
        "delete",
        "pod",
        "stubborn",
        "--wait=true",
        "--timeout=60s",
    ]);
    let killed = t0.elapsed();
    assert!(
        quick < Duration::from_secs(15),
        "a pod that exits on SIGTERM took {quick:?}"
    );
    assert!(
        killed >= Duration::from_secs(3) && killed < Duration::from_secs(20),
        "a pod that ignores SIGTERM went after {killed:?} (grace period 3s)"
    );

    // an image outside the table
    c.wait(
        "the unknown image to be reported",
        Duration::from_secs(60),
        || {
            let reason = get(
                "no-image",
                "{.status.containerStatuses[0].state.waiting.reason}",
            );
            (reason == "ErrImagePull").then_some(())
        },
    );
    let msg = get(
        "no-image",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        msg.contains("nginx:1.25") && msg.contains("local image table"),
        "{msg}"
    );

    c.kubectl_ok(&["delete", "namespace", ns, "--wait=true", "--timeout=120s"]);
}

/// Kubelets with nothing to do use next to no CPU. On each node: a pod whose init container has
/// finished and whose container sleeps, finished pods (Succeeded after an init container,
/// Failed), and pods where one container has ended for good while another runs (`Never` and
/// `OnFailure`), next to deploy/'s pods (probes, a DaemonSet with an init container). Over an
/// idle minute each `sidecars-kubelet node` process may use at most 3 s of CPU (5% of a core):
/// a worker that woke up in a loop for a restart that would never come once used 80%.
#[test]
fn idle_kubelets_stay_idle() {
    let _turn = serial();
    let c = cluster();
    let ns = "idle-test";
    let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
    for (node, _) in NODES {
        yaml.push_str(&format!(
            r#"---
apiVersion: v1
kind: Pod
metadata: {{name: after-init-{node}, namespace: {ns}}}
spec:
  nodeName: {node}
  initContainers: [{{name: init, image: busybox, command: [sh, -c, "exit 0"]}}]
  containers: [{{name: main, image: busybox, command: [sleep, "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: succeeded-{node}, namespace: {ns}}}
spec:
  nodeName: {node}
  restartPolicy: Never
  initContainers: [{{name: init, image: busybox, command: [sh, -c, "exit 0"]}}]
  containers: [{{name: main, image: busybox, command: [sh, -c, "exit 0"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: failed-{node}, namespace: {ns}}}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers: [{{name: main, image: busybox, command: [sh, -c, "exit 1"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: half-never-{node}, namespace: {ns}}}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - {{name: done, image: busybox, command: [sh, -c, "exit 2"]}}
  - {{name: running, image: busybox, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: half-onfailure-{node}, namespace: {ns}}}
spec:
  nodeName: {node}
  restartPolicy: OnFailure
  containers:
  - {{name: done, image: busybox, command: [sh, -c, "exit 0"]}}
  - {{name: running, image: busybox, command: [sleep, "3600"]}}
"#
        ));
    }
    c.apply(&yaml);
    let minute = Duration::from_secs(120);
    for (node, _) in NODES {
        c.wait_phase(ns, &format!("after-init-{node}"), "Running", minute);
        c.wait_phase(ns, &format!("succeeded-{node}"), "Succeeded", minute);
        c.wait_phase(ns, &format!("failed-{node}"), "Failed", minute);
        for pod in [
            format!("half-never-{node}"),
            format!("half-onfailure-{node}"),
        ] {
            c.wait(&format!("{pod}'s first container to end"), minute, || {
                let code = c.get(
                    ns,
                    &format!("pod/{pod}"),
                    "{.status.containerStatuses[?(@.name==\"done\")].state.terminated.exitCode}",
                );
                (!code.is_empty()).then_some(())
            });
        }
    }
    // status updates and events of the start settle first
    std::thread::sleep(Duration::from_secs(5));
    let before: Vec<Duration> = NODES.iter().map(|(n, _)| c.kubelet_cpu(n)).collect();
    let t0 = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let wall = t0.elapsed();
    let used: Vec<(&str, Duration)> = NODES
        .iter()
        .zip(&before)
        .map(|((n, _), b)| (*n, c.kubelet_cpu(n) - *b))
        .collect();
    eprintln!("[kubernetes] kubelet CPU over {wall:.0?} idle: {used:?}");
    for (node, cpu) in &used {
        assert!(
            *cpu < Duration::from_secs(3),
            "{node}'s kubelet used {cpu:?} of CPU in {wall:?} with nothing to do (a busy loop?)"
        );
    }
    // the pods still are as they were: nothing was restarted in the meantime
    for (node, _) in NODES {
        let restarts = c.get(
            ns,
            &format!("pod/half-onfailure-{node}"),
            "{.status.containerStatuses[*].restartCount}",
        );
        assert_eq!(restarts, "0 0", "half-onfailure-{node}");
    }
    c.kubectl_ok(&["delete", "namespace", ns, "--wait=true", "--timeout=120s"]);
}
