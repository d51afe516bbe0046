//! deploy/: every manifest parses into its typed object with no unknown field, the rendered
//! objects refer only to each other, and every pod is locked down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sidecars_deploy_tests::deploy::{self, Workload};
use sidecars_deploy_tests::manifest::{self, Object};
use sidecars_deploy_tests::{kustomize, repo_root};

const NAMESPACE: &str = "spark-sidecars";

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

#[test]
fn every_file_in_deploy_is_used_and_strict() {
    let dir = deploy_dir();
    let files = kustomize::files(&dir).expect("kustomization");
    let mut used: BTreeSet<PathBuf> = BTreeSet::new();
    for p in files
        .resources
        .iter()
        .chain(&files.patches)
        .chain(&files.generated_from)
        .chain(&files.kustomizations)
    {
        assert!(
            p.is_file(),
            "{} is listed in a kustomization but does not exist",
            p.display()
        );
        used.insert(p.clone());
    }
    // every manifest and config under deploy/ is installed (spark/ is the Spark side: pod
    // templates and settings given to spark-submit, not applied to the cluster)
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read deploy/") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                if p != dir.join("spark") {
                    stack.push(p);
                }
            } else if !used.contains(&p) {
                panic!(
                    "{} is not referenced by deploy/kustomization.yaml",
                    p.display()
                );
            }
        }
    }
    for r in &files.resources {
        let docs = manifest::read_documents(r).expect("yaml");
        assert!(!docs.is_empty(), "{} has no object", r.display());
        for d in &docs {
            if let Err(e) = manifest::parse_strict(d, &r.display().to_string()) {
                panic!("{e:#}");
            }
        }
    }
}

#[test]
fn rendered_objects_are_strict_and_in_one_namespace() {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    let kinds: BTreeSet<&str> = objects.iter().map(|o| o.kind()).collect();
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "DaemonSet",
        "Service",
        "PersistentVolumeClaim",
    ] {
        assert!(kinds.contains(k), "deploy/ renders no {k}");
    }
    for o in &objects {
        let ns = match o {
            Object::Namespace(_) | Object::ClusterRole(_) | Object::ClusterRoleBinding(_) => {
                continue
            }
            Object::ServiceAccount(x) => &x.metadata.namespace,
            Object::ConfigMap(x) => &x.metadata.namespace,
            Object::Service(x) => &x.metadata.namespace,
            Object::PersistentVolumeClaim(x) => &x.metadata.namespace,
            Object::Deployment(x) => &x.metadata.namespace,
            Object::DaemonSet(x) => &x.metadata.namespace,
            Object::PodDisruptionBudget(x) => &x.metadata.namespace,
            Object::Pod(x) => &x.metadata.namespace,
            Object::Role(x) => &x.metadata.namespace,
            Object::RoleBinding(x) => &x.metadata.namespace,
        };
        assert_eq!(ns.as_deref(), Some(NAMESPACE), "{} {}", o.kind(), o.name());
    }
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn references_between_objects_resolve() {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    let names = |kind: &str| -> BTreeSet<String> {
        objects
            .iter()
            .filter(|o| o.kind() == kind)
            .map(|o| o.name())
            .collect()
    };
    let (sas, cms, pvcs, croles) = (
        names("ServiceAccount"),
        names("ConfigMap"),
        names("PersistentVolumeClaim"),
        names("ClusterRole"),
    );
    let workloads = deploy::workloads(&objects);
    assert_eq!(workloads.len(), 3, "three daemons");

    for w in &workloads {
        let sa = w.spec.service_account_name.clone().unwrap_or_default();
        assert!(
            sas.contains(&sa),
            "{}: service account `{sa}` is not in deploy/",
            w.what()
        );
        assert_eq!(w.spec.automount_service_account_token, None, "{}", w.what());
        let volumes: BTreeMap<&str, _> = w
            .spec
            .volumes
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v))
            .collect();
        for v in volumes.values() {
            if let Some(cm) = &v.config_map {
                assert!(
                    cms.contains(&cm.name),
                    "{}: ConfigMap {} missing",
                    w.what(),
                    cm.name
                );
            }
            if let Some(pvc) = &v.persistent_volume_claim {
                assert!(
                    pvcs.contains(&pvc.claim_name),
                    "{}: PVC {} missing",
                    w.what(),
                    pvc.claim_name
                );
            }
        }
        let mut mounted = BTreeSet::new();
        for c in w.all_containers() {
            for m in c.volume_mounts.iter().flatten() {
                assert!(
                    volumes.contains_key(m.name.as_str()),
                    "{} container {}: mounts unknown volume {}",
                    w.what(),
                    c.name,
                    m.name
                );
                mounted.insert(m.name.clone());
            }
            let ports: BTreeMap<String, i32> = c
                .ports
                .iter()
                .flatten()
                .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
                .collect();
            let probes = [&c.readiness_probe, &c.liveness_probe, &c.startup_probe];
            for probe in probes.into_iter().flatten() {
                let port = if let Some(h) = &probe.http_get {
                    match &h.port {
                        IntOrString::Int(n) => Some(*n),
                        IntOrString::String(s) => ports.get(s).copied(),
                    }
                } else if let Some(g) = &probe.grpc {
                    Some(g.port)
                } else if let Some(t) = &probe.tcp_socket {
                    match &t.port {
                        IntOrString::Int(n) => Some(*n),
                        IntOrString::String(s) => ports.get(s).copied(),
                    }
                } else {
                    panic!("{} container {}: a probe with no handler", w.what(), c.name)
                };
                let port = port.unwrap_or_else(|| {
                    panic!("{} {}: probe names an unknown port", w.what(), c.name)
                });
                assert!(
                    ports.values().any(|p| *p == port),
                    "{} container {}: probe port {port} is not a container port",
                    w.what(),
                    c.name
                );
            }
        }
        for v in volumes.keys() {
            assert!(
                mounted.contains(*v),
                "{}: volume {v} is never mounted",
                w.what()
            );
        }
    }

    let mut services = 0;
    for o in &objects {
        match o {
            Object::Service(s) => {
                services += 1;
                let spec = s.spec.as_ref().expect("service spec");
                let sel = spec.selector.clone().unwrap_or_default();
                let matching: Vec<&Workload> = workloads
                    .iter()
                    .filter(|w| selects(&sel, &w.labels))
                    .collect();
                assert_eq!(
                    matching.len(),
                    1,
                    "Service {} selects {} workloads",
                    o.name(),
                    matching.len()
                );
                let c = matching[0].main_container().unwrap();
                for p in spec.ports.iter().flatten() {
                    let target = match &p.target_port {
                        Some(IntOrString::String(n)) => c
                            .ports
                            .iter()
                            .flatten()
                            .find(|cp| cp.name.as_deref() == Some(n))
                            .map(|cp| cp.container_port),
                        Some(IntOrString::Int(n)) => Some(*n),
                        None => Some(p.port),
                    };
                    let target = target.unwrap_or_else(|| {
                        panic!(
                            "Service {}: target port {:?} is not a container port",
                            o.name(),
                            p.target_port
                        )
                    });
                    assert!(
                        c.ports
                            .iter()
                            .flatten()
                            .any(|cp| cp.container_port == target),
                        "Service {}: port {target} is not a container port",
                        o.name()
                    );
                    assert_eq!(
                        p.port,
                        target,
                        "Service {}: keep the daemon's own port number",
                        o.name()
                    );
                }
            }
            Object::PodDisruptionBudget(p) => {
                let sel = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .and_then(|s| s.match_labels.clone())
                    .unwrap_or_default();
                let selected: Vec<_> = workloads
                    .iter()
                    .filter(|w| selects(&sel, &w.labels))
                    .collect();
                assert_eq!(
                    selected.len(),
                    1,
                    "PDB {} selects no single workload",
                    o.name()
                );
                // Kubernetes computes maxUnavailable and percentages only for pods of a
                // controller with a scale subresource; over a DaemonSet's pods such a PDB
                // allows no eviction at all
                if selected[0].kind == "DaemonSet" {
                    let spec = p.spec.as_ref();
                    let ok = spec.is_some_and(|s| {
                        s.max_unavailable.is_none()
                            && matches!(s.min_available, Some(IntOrString::Int(_)))
                    });
                    assert!(
                        ok,
                        "PDB {}: over DaemonSet pods only an integer minAvailable works",
                        o.name()
                    );
                }
            }
            Object::ClusterRoleBinding(b) => {
                assert_eq!(b.role_ref.kind, "ClusterRole");
                assert!(
                    croles.contains(&b.role_ref.name),
                    "{}: no ClusterRole {}",
                    o.name(),
                    b.role_ref.name
                );
                for s in b.subjects.iter().flatten() {
                    assert_eq!(s.kind, "ServiceAccount", "{}", o.name());
                    assert_eq!(s.namespace.as_deref(), Some(NAMESPACE), "{}", o.name());
                    assert!(
                        sas.contains(&s.name),
                        "{}: no ServiceAccount {}",
                        o.name(),
                        s.name
                    );
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        services, 2,
        "staging-server and history-collector have a Service"
    );

    // selectors of the workloads match their own pod labels
    for o in &objects {
        let (sel, what) = match o {
            Object::Deployment(d) => (Some(&d.spec.selector), "Deployment"),
            Object::DaemonSet(d) => (Some(&d.spec.selector), "DaemonSet"),
            _ => continue,
        };
        let sel = sel.and_then(|s| s.match_labels.clone()).unwrap_or_default();
        let w = workloads
            .iter()
            .find(|w| w.name == o.name())
            .expect("workload");
        assert!(
            selects(&sel, &w.labels),
            "{what} {}: selector does not match its pods",
            o.name()
        );
    }
}

#[test]
fn pods_are_non_root_read_only_and_bounded() {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    for w in deploy::workloads(&objects) {
        let pod_sc = w.spec.security_context.clone().unwrap_or_default();
        assert_eq!(
            pod_sc.run_as_non_root,
            Some(true),
            "{}: runAsNonRoot",
            w.what()
        );
        assert!(
            pod_sc.run_as_user.is_some_and(|u| u != 0),
            "{}: numeric non-root runAsUser",
            w.what()
        );
        assert_eq!(
            pod_sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault"),
            "{}: seccomp",
            w.what()
        );
        for c in w.all_containers() {
            let what = format!("{} container {}", w.what(), c.name);
            let sc = c
                .security_context
                .clone()
                .unwrap_or_else(|| panic!("{what}: no securityContext"));
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}");
            assert_eq!(sc.privileged, None, "{what}");
            let caps = sc.capabilities.clone().unwrap_or_default();
            assert_eq!(caps.drop, Some(vec!["ALL".to_string()]), "{what}: drop ALL");
            let added = caps.add.unwrap_or_default();
            if c.name == "prepare-host-dirs" {
                // the one root step: handing the shuffle hostPath dirs to the Spark user
                assert_eq!(added, vec!["CHOWN", "FOWNER"], "{what}");
                assert_eq!(sc.run_as_user, Some(0), "{what}");
            } else {
                assert!(added.is_empty(), "{what}: adds capabilities {added:?}");
                assert_eq!(sc.run_as_user, None, "{what}: runs as the pod's user");
                assert_eq!(sc.run_as_non_root, None, "{what}: inherits runAsNonRoot");
            }
            let res = c
                .resources
                .clone()
                .unwrap_or_else(|| panic!("{what}: no resources"));
            let req = res.requests.unwrap_or_default();
            assert!(
                req.contains_key("cpu") && req.contains_key("memory"),
                "{what}: requests"
            );
            assert!(
                res.limits.unwrap_or_default().contains_key("memory"),
                "{what}: memory limit"
            );
        }
        // a read-only root needs somewhere to write temporary files
        let c = w.main_container().unwrap();
        assert!(
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == "/tmp"),
            "{}: /tmp is not a writable volume",
            w.what()
        );
    }
}

#[test]
fn the_shuffle_daemonset_shares_the_node() {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    let ws = deploy::workloads(&objects);
    let w = ws
        .iter()
        .find(|w| w.kind == "DaemonSet")
        .expect("a DaemonSet");
    assert_eq!(w.name, "shuffle-service");
    assert_eq!(
        w.spec.host_network,
        Some(true),
        "executors reach it at the node's address"
    );
    assert_eq!(
        w.spec.dns_policy.as_deref(),
        Some("ClusterFirstWithHostNet")
    );
    let c = w.main_container().unwrap();
    for p in c.ports.iter().flatten() {
        assert_eq!(
            p.host_port,
            Some(p.container_port),
            "hostNetwork: hostPort = containerPort"
        );
    }
    // every hostPath is mounted at its own path: registrations carry executor paths verbatim
    for v in w.spec.volumes.iter().flatten() {
        if let Some(hp) = &v.host_path {
            for ct in w.all_containers() {
                for m in ct
                    .volume_mounts
                    .iter()
                    .flatten()
                    .filter(|m| m.name == v.name)
                {
                    assert_eq!(m.mount_path, hp.path, "volume {} in {}", v.name, ct.name);
                }
            }
        }
    }
    assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
}
