//! RBAC grants each component exactly what its code calls, and nothing else.
//!
//! The table below is the contract. `rendered_rbac_is_the_table` holds deploy/ to it;
//! `code_calls_only_what_the_table_grants` reads each component's sources for the Kubernetes
//! API kinds and calls they use, so a new call without a new grant (or the reverse) fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sidecars_deploy_tests::manifest::Object;
use sidecars_deploy_tests::{deploy, repo_root};

/// (resource, verbs); resources are in the core API group except those in [`GROUPS`].
type Rule = (&'static str, &'static [&'static str]);

/// (service account, rules).
const GRANTS: &[(&str, &[Rule])] = &[
    ("shuffle-service", &[("pods", &["get", "list", "watch"])]),
    (
        "staging-server",
        &[
            ("pods", &["get", "list", "watch"]),
            // who may obtain an upload credential: a TokenReview and a SubjectAccessReview
            ("tokenreviews", &["create"]),
            ("subjectaccessreviews", &["create"]),
        ],
    ),
    (
        "history-collector",
        &[
            ("pods", &["get", "list", "watch"]),
            ("pods/log", &["get"]),
            // agents' tokens are checked with TokenReviews
            ("tokenreviews", &["create"]),
        ],
    ),
];

/// The API group of each resource granted (the core group, "", for the rest).
const GROUPS: &[(&str, &str)] = &[
    ("tokenreviews", "authentication.k8s.io"),
    ("subjectaccessreviews", "authorization.k8s.io"),
];

fn group_of(resource: &str) -> &'static str {
    GROUPS
        .iter()
        .find(|(r, _)| *r == resource)
        .map(|(_, g)| *g)
        .unwrap_or("")
}

type Grants = BTreeMap<String, BTreeSet<(String, String)>>;

fn table() -> Grants {
    let mut out = Grants::new();
    for (sa, rules) in GRANTS {
        let set = out.entry(sa.to_string()).or_default();
        for (res, verbs) in *rules {
            for v in *verbs {
                set.insert((res.to_string(), v.to_string()));
            }
        }
    }
    out
}

#[test]
fn rendered_rbac_is_the_table() {
    let objects = deploy::rendered().unwrap_or_else(|e| panic!("{e:#}"));
    let roles: BTreeMap<String, _> = objects
        .iter()
        .filter_map(|o| match o {
            Object::ClusterRole(r) => Some((o.name(), r.clone())),
            _ => None,
        })
        .collect();
    let mut granted = Grants::new();
    for o in &objects {
        match o {
            Object::ClusterRoleBinding(b) => {
                let role = &roles[&b.role_ref.name];
                assert!(
                    role.aggregation_rule.is_none(),
                    "{}: no aggregation",
                    b.role_ref.name
                );
                for s in b.subjects.iter().flatten() {
                    let set = granted.entry(s.name.clone()).or_default();
                    for r in role.rules.iter().flatten() {
                        assert!(r.resource_names.is_none() && r.non_resource_urls.is_none());
                        for res in r.resources.iter().flatten() {
                            assert_eq!(
                                r.api_groups,
                                Some(vec![group_of(res).to_string()]),
                                "{}: {res} is in group `{}` (one group per rule)",
                                b.role_ref.name,
                                group_of(res)
                            );
                            for v in &r.verbs {
                                assert_ne!(v, "*", "{}: wildcard verb", b.role_ref.name);
                                assert_ne!(res, "*", "{}: wildcard resource", b.role_ref.name);
                                set.insert((res.clone(), v.clone()));
                            }
                        }
                    }
                }
            }
            Object::Role(_) | Object::RoleBinding(_) => {
                panic!("unexpected namespaced RBAC {}", o.name())
            }
            _ => {}
        }
    }
    assert_eq!(granted, table());
    // each workload runs as its own service account
    for w in deploy::workloads(&objects) {
        assert_eq!(
            w.spec.service_account_name.as_deref(),
            Some(w.name.as_str())
        );
    }
}

/// All `.rs` text of a crate's src/ (and common/src/kube*, which it may call through).
fn sources(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                out.push('\n');
            }
        }
    }
    out
}

/// What a component's code asks of the API server, read from its sources: the kinds it builds
/// an `Api` for, and the calls it makes on them.
fn calls(code: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let kinds = [("Pod", "pods"), ("Namespace", "namespaces")];
    let uses_kind = |k: &str| {
        code.contains(&format!("Api::<{k}>"))
            || code.contains(&format!("Api<{k}>"))
            || code.contains(&format!("core::v1::{k}"))
            || code.contains(&format!("core::v1::{{{k}"))
            || code.contains(&format!(", {k}}}"))
            || code.contains(&format!(", {k},"))
    };
    // common's helper lists and watches pods through kube's watcher
    if code.contains("watch_pods(") {
        out.insert(("pods".to_string(), "list".to_string()));
        out.insert(("pods".to_string(), "watch".to_string()));
    }
    for (k, res) in kinds {
        if !uses_kind(k) {
            continue;
        }
        if code.contains("watcher(") || code.contains("reflector(") || code.contains(".watch(") {
            out.insert((res.to_string(), "list".to_string()));
            out.insert((res.to_string(), "watch".to_string()));
        }
        if code.contains(".list(") {
            out.insert((res.to_string(), "list".to_string()));
        }
    }
    if code.contains(".log_stream(") || code.contains(".logs(") {
        out.insert(("pods/log".to_string(), "get".to_string()));
    }
    // a review is created to check a token or a permission: that is what its create is for
    let mut reviews = false;
    for (k, res) in [
        ("TokenReview", "tokenreviews"),
        ("SubjectAccessReview", "subjectaccessreviews"),
    ] {
        let uses = uses_kind(k)
            || code.contains(&format!("authentication::v1::{{{k}"))
            || code.contains(&format!("authorization::v1::{{{k}"));
        if uses && code.contains(".create(") {
            out.insert((res.to_string(), "create".to_string()));
            reviews = true;
        }
    }
    for forbidden in [".delete(", ".create(", ".patch(", ".replace(", ".evict("] {
        if forbidden == ".create(" && reviews {
            continue;
        }
        // on an Api<...> these would need write verbs nobody is granted
        if code.contains("kube::") && code.contains(&format!("api{forbidden}")) {
            out.insert(("<write>".to_string(), forbidden.to_string()));
        }
    }
    out
}

#[test]
fn code_calls_only_what_the_table_grants() {
    let table = table();
    let root = repo_root();
    for (sa, _) in GRANTS {
        let code = sources(&root.join(sa).join("src"));
        assert!(!code.is_empty(), "{sa}/src has no Rust sources");
        let used = calls(&code);
        let granted = &table[*sa];
        for call in &used {
            assert!(
                granted.contains(call),
                "{sa} calls {call:?}, which its ClusterRole does not grant"
            );
        }
    }
}

#[test]
fn the_source_reader_sees_kube_calls() {
    let code = "use k8s_openapi::api::core::v1::Pod; let api: Api<Pod> = Api::all(c); watcher(api, cfg); pods.log_stream(name, &p)";
    let c = calls(code);
    assert!(c.contains(&("pods".into(), "watch".into())));
    assert!(c.contains(&("pods/log".into(), "get".into())));
    assert!(!c.iter().any(|(r, _)| r == "namespaces"));
    let review = "use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec}; let api: Api<TokenReview> = Api::all(c); api.create(&pp, &r)";
    assert!(calls(review).contains(&("tokenreviews".into(), "create".into())));
}
