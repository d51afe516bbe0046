//! deploy/spark/: the pod templates parse as Pods with no unknown field, and the settings in
//! spark-defaults.conf agree with the templates and with the services in deploy/.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use sidecars_deploy_tests::manifest::{self, Object};
use sidecars_deploy_tests::{daemon, deploy, repo_root, workspace};

fn spark_dir() -> PathBuf {
    repo_root().join("deploy/spark")
}

fn template(name: &str) -> Pod {
    let path = spark_dir().join(name);
    let docs = manifest::read_documents(&path).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(docs.len(), 1, "{name}: one Pod");
    match manifest::parse_strict(&docs[0], &path.display().to_string()) {
        Ok(Object::Pod(p)) => p,
        Ok(o) => panic!("{name} is a {}, not a Pod", o.kind()),
        Err(e) => panic!("{e:#}"),
    }
}

fn spark_defaults() -> BTreeMap<String, String> {
    let path = spark_dir().join("spark-defaults.conf");
    let text = std::fs::read_to_string(&path).expect("spark-defaults.conf");
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (k, v) = l
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("spark-defaults.conf:{}: `{l}` has no value", i + 1));
        assert!(
            k.starts_with("spark."),
            "spark-defaults.conf:{}: {k}",
            i + 1
        );
        assert!(
            out.insert(k.to_string(), v.trim().to_string()).is_none(),
            "{k} set twice"
        );
    }
    out
}

#[test]
fn pod_templates_are_strict_pods() {
    for e in std::fs::read_dir(spark_dir()).expect("deploy/spark") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            template(&p.file_name().unwrap().to_string_lossy());
        }
    }
}

#[test]
fn executor_template_puts_executors_on_the_node_network() {
    let pod = template("executor-pod-template.yaml");
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert_eq!(spec.containers[0].name, "spark-kubernetes-executor");
    let conf = spark_defaults();
    assert_eq!(conf["spark.shuffle.service.enabled"], "true");
    assert_eq!(conf["spark.dynamicAllocation.enabled"], "true");
    assert_eq!(
        conf["spark.kubernetes.executor.volumes.hostPath.spark-local-dir-1.options.type"],
        "Directory",
        "executors must not create the dir the DaemonSet prepares"
    );
    // on the host network Spark's fixed executor port 7079 is a host port: one executor a node
    assert_eq!(
        conf.get("spark.blockManager.port").map(String::as_str),
        Some("0"),
        "host-network executors need a free block-manager port each"
    );
    assert_eq!(
        conf.get("spark.driver.blockManager.port")
            .map(String::as_str),
        Some("7079"),
        "the driver's container port must not inherit 0"
    );
    for (key, file) in [
        (
            "spark.kubernetes.driver.podTemplateFile",
            "driver-pod-template.yaml",
        ),
        (
            "spark.kubernetes.executor.podTemplateFile",
            "executor-pod-template.yaml",
        ),
    ] {
        assert_eq!(conf[key], format!("deploy/spark/{file}"), "{key}");
        assert!(repo_root().join(&conf[key]).is_file(), "{key}");
    }
}

#[test]
fn driver_template_streams_the_event_log_to_the_collector() {
    let pod = template("driver-pod-template.yaml");
    let spec = pod.spec.expect("spec");
    let conf = spark_defaults();
    assert_eq!(conf["spark.eventLog.enabled"], "true");
    let dir = conf["spark.eventLog.dir"]
        .strip_prefix("file://")
        .expect("spark.eventLog.dir is a local path")
        .to_string();
    let driver = &spec.containers[0];
    assert_eq!(driver.name, "spark-kubernetes-driver");
    let volume_at = |c: &k8s_openapi::api::core::v1::Container| {
        c.volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == dir)
            .map(|m| m.name.clone())
    };
    let vol = volume_at(driver).expect("the driver mounts the event-log dir");
    let agent = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "history-agent")
        .expect("history-agent sidecar");
    assert_eq!(
        agent.restart_policy.as_deref(),
        Some("Always"),
        "a native sidecar"
    );
    assert_eq!(
        volume_at(agent),
        Some(vol.clone()),
        "the agent sees the same volume"
    );
    let v = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == vol)
        .expect("volume");
    assert!(v.empty_dir.is_some());

    // the agent's image is the collector's, tagged with the workspace version
    let meta = workspace::metadata().unwrap_or_else(|e| panic!("{e:#}"));
    let version = &meta.package("history-collector").expect("package").version;
    assert_eq!(
        agent.image.as_deref(),
        Some(format!("spark-sidecars/history-collector:{version}").as_str())
    );

    // its arguments are accepted by the real binary
    let args = agent.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("agent"));
    let bin = daemon::bin_path("history-collector").unwrap_or_else(|e| panic!("{e:#}"));
    let mut with_help = args.clone();
    with_help.push("--help".into());
    let out = daemon::run(&bin, &with_help).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        out.status.success(),
        "history-collector {} is refused:\n{}",
        with_help.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| panic!("agent has no {flag}"))
    };
    assert_eq!(value("--event-log-dir"), dir);
    assert_eq!(
        value("--collector"),
        collector_url("ingest"),
        "the agent sends to the collector Service's ingest port"
    );
    // its token: the pod's service-account token, projected for the collector's audience
    let token = value("--token-file");
    let (mount_dir, file) = token.rsplit_once('/').expect("a token path");
    let mount = agent
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == mount_dir)
        .expect("the agent mounts its token");
    let projected = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .and_then(|v| v.projected.clone())
        .expect("a projected token volume");
    let sat = projected
        .sources
        .iter()
        .flatten()
        .find_map(|s| s.service_account_token.clone())
        .expect("a serviceAccountToken source");
    assert_eq!(sat.path, file);
    let config: toml::Table =
        std::fs::read_to_string(repo_root().join("deploy/history-collector/config.toml"))
            .expect("collector config")
            .parse()
            .expect("TOML");
    assert_eq!(
        sat.audience.as_deref(),
        config.get("ingest-audience").and_then(|v| v.as_str()),
        "the token is for the audience the collector checks"
    );
}

/// http://<service>.<namespace>.svc:<port> of the history-collector's port `name` in deploy/.
fn collector_url(name: &str) -> String {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    let svc = objects
        .iter()
        .find_map(|o| match o {
            Object::Service(s) if s.metadata.name.as_deref() == Some("history-collector") => {
                Some(s.clone())
            }
            _ => None,
        })
        .expect("history-collector Service");
    let port = svc
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| {
            p.iter()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.port)
        })
        .unwrap_or_else(|| panic!("no port {name}"));
    let ns = svc.metadata.namespace.expect("namespace");
    format!("http://history-collector.{ns}.svc:{port}")
}

#[test]
fn log_links_point_at_the_collector() {
    let conf = spark_defaults();
    let base = collector_url("http");
    let exec = &conf["spark.executorEnv.SPARK_LOG_URL_STDOUT"];
    assert_eq!(
        exec,
        &format!("{base}/logs/$(SPARK_APPLICATION_ID)/$(SPARK_EXECUTOR_ID)/stdout")
    );
    // Spark reads SPARK_DRIVER_LOG_URL_* only in standalone mode: on Kubernetes it would be a
    // setting that does nothing
    assert!(
        !conf.keys().any(|k| k.contains("SPARK_DRIVER_LOG_URL")),
        "spark-defaults.conf sets a driver log URL Spark on Kubernetes ignores"
    );
}
