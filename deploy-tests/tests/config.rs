//! The daemons' settings in deploy/: every config.toml key and every container argument is one
//! the daemon's binary accepts (checked by running it), the ports in the config files are the
//! container ports, and every path a daemon writes to is on a writable volume.

use std::collections::BTreeSet;
use std::path::Path;

use sidecars_deploy_tests::deploy::{self, Workload};
use sidecars_deploy_tests::manifest::{self, Object};
use sidecars_deploy_tests::{daemon, repo_root};

fn check_accepted(bin: &Path, args: &[String], what: &str) {
    // the config file's settings are inserted before `--help`, so clap parses (and validates)
    // every one of them before it prints the help and exits 0
    let mut all = args.to_vec();
    all.push("--help".into());
    let out = daemon::run(bin, &all).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        out.status.success(),
        "{what}: `{} {}` is refused by the daemon:\n{}",
        bin.display(),
        all.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn toml_table(text: &str, what: &str) -> toml::Table {
    text.parse()
        .unwrap_or_else(|e| panic!("{what}: not TOML: {e}"))
}

#[test]
fn config_files_and_args_are_accepted_by_the_daemons() {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tempfile::tempdir().expect("tempdir");
    for w in deploy::workloads(&objects) {
        let c = w.main_container().unwrap();
        let bin = daemon::bin_path(&w.name).unwrap_or_else(|e| panic!("{e:#}"));
        let (path, text) =
            deploy::container_config(&objects, &w, c).unwrap_or_else(|e| panic!("{e:#}"));
        let local = dir.path().join(format!("{}.toml", w.name));
        std::fs::write(&local, &text).expect("write config");
        let args: Vec<String> = c
            .args
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                if a == path {
                    local.display().to_string()
                } else {
                    a
                }
            })
            .collect();
        check_accepted(&bin, &args, &w.what());
        // env vars set on the container are the daemon's own
        let help = daemon::help(&bin, &[]).unwrap_or_else(|e| panic!("{e:#}"));
        let envs: BTreeSet<&str> = help.flags.iter().filter_map(|f| f.env.as_deref()).collect();
        for e in c.env.iter().flatten() {
            assert!(
                envs.contains(e.name.as_str()),
                "{}: env {} is not a setting of {}",
                w.what(),
                e.name,
                w.name
            );
        }
        // also a mistake is refused, so the check above means something
        std::fs::write(&local, format!("{text}\nno-such-setting = 1\n")).expect("write");
        let out =
            daemon::run(&bin, ["--config", &local.display().to_string(), "--help"]).expect("run");
        assert!(
            !out.status.success(),
            "{}: an unknown config key was accepted",
            w.name
        );
    }
}

fn port_of(table: &toml::Table, key: &str, help: &daemon::Help) -> Option<i64> {
    table.get(key).and_then(|v| v.as_integer()).or_else(|| {
        help.flag(key)
            .and_then(|f| f.default.as_deref())
            .and_then(|d| d.parse().ok())
    })
}

#[test]
fn configured_ports_are_the_container_ports() {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    for w in deploy::workloads(&objects) {
        let c = w.main_container().unwrap();
        let (_, text) = deploy::container_config(&objects, &w, c).unwrap();
        let table = toml_table(&text, &w.what());
        let bin = daemon::bin_path(&w.name).unwrap_or_else(|e| panic!("{e:#}"));
        let help = daemon::help(&bin, &[]).unwrap_or_else(|e| panic!("{e:#}"));
        let mut listening = BTreeSet::new();
        for f in help
            .flags
            .iter()
            .filter(|f| f.long == "port" || f.long.ends_with("-port"))
        {
            let p = port_of(&table, &f.long, &help)
                .unwrap_or_else(|| panic!("{}: no value for --{}", w.what(), f.long));
            listening.insert(p as i32);
        }
        let container: BTreeSet<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
        assert_eq!(
            listening,
            container,
            "{}: the daemon's ports vs the container ports",
            w.what()
        );
        if let Some(bind) = table.get("bind").and_then(|v| v.as_str()) {
            assert_eq!(
                bind,
                "0.0.0.0",
                "{}: must listen on all addresses in a pod",
                w.what()
            );
        }
    }
}

/// Every path a daemon writes to (storage file:// URLs, state and data dirs) must be on a
/// mounted, writable volume: the root filesystem is read-only.
#[test]
fn written_paths_are_on_writable_volumes() {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    for w in deploy::workloads(&objects) {
        let c = w.main_container().unwrap();
        let (_, text) = deploy::container_config(&objects, &w, c).unwrap();
        let table = toml_table(&text, &w.what());
        for (key, value) in &table {
            let values: Vec<&str> = match value {
                toml::Value::String(s) => vec![s.as_str()],
                toml::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
                _ => continue,
            };
            for v in values {
                let path = v.strip_prefix("file://").unwrap_or(v);
                if !path.starts_with('/') {
                    continue;
                }
                let writable = key != "allowed-root" && key != "event-log-dir";
                check_on_volume(&w, c, path, writable, &format!("{} {key} = {v}", w.what()));
            }
        }
    }
}

fn check_on_volume(
    w: &Workload<'_>,
    c: &k8s_openapi::api::core::v1::Container,
    path: &str,
    writable: bool,
    what: &str,
) {
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| path == m.mount_path || path.starts_with(&format!("{}/", m.mount_path)))
        .max_by_key(|m| m.mount_path.len())
        .unwrap_or_else(|| {
            panic!("{what}: not on any mounted volume (the root filesystem is read-only)")
        });
    if writable {
        assert_ne!(mount.read_only, Some(true), "{what}: mounted read-only");
        let vol = w
            .spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .expect("volume");
        assert!(
            vol.config_map.is_none() && vol.secret.is_none(),
            "{what}: on a read-only volume kind"
        );
    }
}

#[test]
fn the_shuffle_service_may_read_what_executors_write() {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    let ws = deploy::workloads(&objects);
    let w = ws
        .iter()
        .find(|w| w.name == "shuffle-service")
        .expect("shuffle-service");
    let c = w.main_container().unwrap();
    let (_, text) = deploy::container_config(&objects, w, c).unwrap();
    let table = toml_table(&text, "shuffle-service config");
    let roots: Vec<&str> = match table.get("allowed-root") {
        Some(toml::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
        Some(toml::Value::String(s)) => vec![s.as_str()],
        _ => panic!("shuffle-service config sets no allowed-root"),
    };
    // the Spark side's local dir (deploy/spark/spark-defaults.conf) is under an allowed root
    // that is the node's hostPath at the same path
    let conf = std::fs::read_to_string(repo_root().join("deploy/spark/spark-defaults.conf"))
        .expect("spark-defaults.conf");
    let get = |k: &str| {
        conf.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .find_map(|l| l.trim().strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("spark-defaults.conf has no {k}"))
    };
    let mount = get("spark.kubernetes.executor.volumes.hostPath.spark-local-dir-1.mount.path");
    let host = get("spark.kubernetes.executor.volumes.hostPath.spark-local-dir-1.options.path");
    assert_eq!(
        mount, host,
        "executors must see their local dir at the node's own path"
    );
    assert!(
        roots
            .iter()
            .any(|r| mount == *r || mount.starts_with(&format!("{r}/"))),
        "executor local dir {mount} is under no allowed-root {roots:?}"
    );
    let hp = w
        .spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.host_path.as_ref())
        .any(|h| h.path == host);
    assert!(hp, "the DaemonSet does not mount the node's {host}");
    // the port executors use is the one the service listens on
    let port = get("spark.shuffle.service.port");
    assert_eq!(
        table
            .get("port")
            .and_then(|v| v.as_integer())
            .map(|p| p.to_string()),
        Some(port)
    );
    // the executors' user is the service's user
    let tmpl =
        manifest::read_documents(&repo_root().join("deploy/spark/executor-pod-template.yaml"))
            .unwrap();
    let Object::Pod(pod) = manifest::parse_strict(&tmpl[0], "executor-pod-template.yaml").unwrap()
    else {
        panic!("executor template is not a Pod")
    };
    let exec_sc = pod
        .spec
        .and_then(|s| s.security_context)
        .unwrap_or_default();
    let svc_sc = w.spec.security_context.clone().unwrap_or_default();
    assert_eq!(
        exec_sc.run_as_user, svc_sc.run_as_user,
        "executor vs shuffle-service uid"
    );
    assert_eq!(
        exec_sc.run_as_group, svc_sc.run_as_group,
        "executor vs shuffle-service gid"
    );
}
