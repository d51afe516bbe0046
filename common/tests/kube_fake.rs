//! The fake API server driven by the real `kube` client and `kube::runtime::watcher`, through
//! the kubeconfig it writes and `sidecars_common::kube::client`: what passes here is what the
//! daemons will see.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::{AsyncBufReadExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, LogParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::runtime::watcher::Event;
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};
use serde_json::json;
use sidecars_common::fake_kube::FakeApiServer;
use sidecars_common::kube::{watch_pods, KubeArgs};

const WAIT: Duration = Duration::from_secs(20);

fn pod(ns: &str, name: &str, role: &str, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"spark-role": role, "spark-app-selector": "spark-app-1"}},
        "spec": {"containers": [{"name": "spark-kubernetes-driver", "image": "spark:3.5"}],
                 "nodeName": "node-1"},
        "status": {"phase": phase}
    }))
    .expect("valid pod")
}

/// The next item of a stream, failing the test instead of hanging.
async fn next<S: Stream + Unpin>(s: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, s.next())
        .await
        .expect("no event within the timeout")
        .expect("stream ended")
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

fn phase(p: &Pod) -> Option<String> {
    p.status.as_ref().and_then(|s| s.phase.clone())
}

#[tokio::test]
async fn list_get_delete_with_selectors() {
    let fake = FakeApiServer::start().await;
    fake.apply_pod(pod("spark", "a-driver", "driver", "Running"));
    fake.apply_pod(pod("spark", "a-exec-1", "executor", "Pending"));
    fake.apply_pod(pod("other", "b-driver", "driver", "Succeeded"));
    let client = fake.client().await;
    let spark: Api<Pod> = Api::namespaced(client.clone(), "spark");
    let all: Api<Pod> = Api::all(client.clone());

    let list = all.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&list.items), ["b-driver", "a-driver", "a-exec-1"]);
    let rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert_eq!(rv, fake.resource_version());

    let lp = |s: &str| ListParams::default().labels(s);
    let found = |l: kube::core::ObjectList<Pod>| names(&l.items);
    assert_eq!(
        found(spark.list(&lp("spark-role=driver")).await.unwrap()),
        ["a-driver"]
    );
    assert_eq!(
        found(all.list(&lp("spark-role=driver")).await.unwrap()),
        ["b-driver", "a-driver"]
    );
    assert_eq!(
        found(
            spark
                .list(&lp("spark-role in (driver,executor),spark-app-selector"))
                .await
                .unwrap()
        ),
        ["a-driver", "a-exec-1"]
    );
    assert_eq!(
        found(spark.list(&lp("spark-role notin (driver)")).await.unwrap()),
        ["a-exec-1"]
    );
    assert!(found(spark.list(&lp("!spark-role")).await.unwrap()).is_empty());
    let by_phase = ListParams::default().fields("status.phase=Running");
    assert_eq!(found(all.list(&by_phase).await.unwrap()), ["a-driver"]);
    let bad = spark.list(&lp("spark-role in (driver")).await;
    assert!(
        matches!(bad, Err(kube::Error::Api(s)) if s.code == 400),
        "bad selector must be a 400"
    );

    // paging: kube's watcher lists in pages of 500, large clusters page
    let page1 = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(&page1.items), ["b-driver", "a-driver"]);
    let token = page1.metadata.continue_.clone().expect("a continue token");
    let page2 = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&page2.items), ["a-exec-1"]);
    assert!(page2.metadata.continue_.is_none_or(|c| c.is_empty()));

    let got = spark.get("a-driver").await.unwrap();
    assert_eq!(got.namespace().as_deref(), Some("spark"));
    assert!(got.uid().is_some() && got.creation_timestamp().is_some());
    match spark.get("nope").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 404);
            assert!(s.message.contains("nope"), "{}", s.message);
        }
        other => panic!("expected 404, got {other:?}"),
    }

    spark
        .delete("a-exec-1", &DeleteParams::default())
        .await
        .unwrap();
    assert!(fake.pod("spark", "a-exec-1").is_none());
    assert!(spark.get_opt("a-exec-1").await.unwrap().is_none());
    assert!(matches!(
        spark.delete("a-exec-1", &DeleteParams::default()).await,
        Err(kube::Error::Api(s)) if s.code == 404
    ));

    // namespaces appear with their pods; the staging server reads them
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns_names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(ns_names, ["default", "other", "spark"]);
    assert_eq!(nss.get("spark").await.unwrap().name_any(), "spark");

    let calls = fake.calls();
    assert!(calls
        .iter()
        .any(|c| c.verb == "list" && c.resource == "pods" && c.namespace.is_none()));
    assert!(calls
        .iter()
        .any(|c| c.verb == "delete" && c.name.as_deref() == Some("a-exec-1")));
    assert!(calls
        .iter()
        .any(|c| c.verb == "get" && c.resource == "namespaces"));
}

#[tokio::test]
async fn forbidden_verbs_answer_403() {
    let fake = FakeApiServer::start().await;
    fake.apply_pod(pod("spark", "a-driver", "driver", "Running"));
    fake.forbid("delete", "pods");
    let spark: Api<Pod> = Api::namespaced(fake.client().await, "spark");
    assert!(spark.get("a-driver").await.is_ok());
    match spark.delete("a-driver", &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
            assert!(s.message.contains("cannot delete"), "{}", s.message);
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert!(fake.pod("spark", "a-driver").is_some());
}

#[tokio::test]
async fn watcher_sees_added_modified_deleted() {
    let fake = FakeApiServer::start().await;
    fake.apply_pod(pod("spark", "old-driver", "driver", "Running"));
    fake.apply_pod(pod("spark", "exec", "executor", "Running"));
    let api: Api<Pod> = Api::namespaced(fake.client().await, "spark");
    let mut events = watcher(api, watcher::Config::default().labels("spark-role=driver")).boxed();

    assert!(matches!(next(&mut events).await.unwrap(), Event::Init));
    match next(&mut events).await.unwrap() {
        Event::InitApply(p) => assert_eq!(p.name_any(), "old-driver"),
        other => panic!("expected InitApply, got {other:?}"),
    }
    assert!(matches!(next(&mut events).await.unwrap(), Event::InitDone));

    fake.apply_pod(pod("spark", "new-driver", "driver", "Pending"));
    fake.apply_pod(pod("other", "elsewhere", "driver", "Pending"));
    fake.apply_pod(pod("spark", "exec-2", "executor", "Pending"));
    match next(&mut events).await.unwrap() {
        Event::Apply(p) => assert_eq!(
            (p.name_any(), phase(&p)),
            ("new-driver".into(), Some("Pending".into()))
        ),
        other => panic!("expected Apply, got {other:?}"),
    }
    assert!(fake.set_pod_phase("spark", "new-driver", "Running"));
    match next(&mut events).await.unwrap() {
        Event::Apply(p) => assert_eq!(
            (p.name_any(), phase(&p)),
            ("new-driver".into(), Some("Running".into()))
        ),
        other => panic!("expected Apply, got {other:?}"),
    }
    assert!(fake.delete_pod("spark", "new-driver"));
    match next(&mut events).await.unwrap() {
        Event::Delete(p) => assert_eq!(p.name_any(), "new-driver"),
        other => panic!("expected Delete, got {other:?}"),
    }
    // a pod that stops matching the selector leaves the watch as a deletion
    fake.apply_pod(pod("spark", "old-driver", "executor", "Running"));
    match next(&mut events).await.unwrap() {
        Event::Delete(p) => assert_eq!(p.name_any(), "old-driver"),
        other => panic!("expected Delete, got {other:?}"),
    }

    // a dropped connection resumes from the last resourceVersion without relisting
    fake.close_watches();
    fake.apply_pod(pod("spark", "third-driver", "driver", "Pending"));
    match next(&mut events).await.unwrap() {
        Event::Apply(p) => assert_eq!(p.name_any(), "third-driver"),
        other => panic!("expected Apply without a relist, got {other:?}"),
    }
    let watches = fake.calls().iter().filter(|c| c.verb == "watch").count();
    let lists = fake.calls().iter().filter(|c| c.verb == "list").count();
    assert_eq!((lists, watches), (1, 2), "{:?}", fake.requests());
}

#[tokio::test]
async fn watcher_relists_after_410() {
    let fake = FakeApiServer::start().await;
    fake.apply_pod(pod("spark", "d1", "driver", "Running"));
    let api: Api<Pod> = Api::namespaced(fake.client().await, "spark");
    let mut events = watcher(api, watcher::Config::default()).boxed();
    assert!(matches!(next(&mut events).await.unwrap(), Event::Init));
    assert!(matches!(
        next(&mut events).await.unwrap(),
        Event::InitApply(_)
    ));
    assert!(matches!(next(&mut events).await.unwrap(), Event::InitDone));

    // the server "compacts" and restarts; meanwhile d1 went away and d2 came
    let list_rv = fake.resource_version();
    fake.expire_resource_versions();
    fake.delete_pod("spark", "d1");
    fake.apply_pod(pod("spark", "d2", "driver", "Running"));

    // depending on timing the watcher may first resume and see those changes; it must in any
    // case get the 410 on a stale version and relist to the current state
    let mut saw_gone = false;
    loop {
        match next(&mut events).await {
            Err(watcher::Error::WatchError(s)) => {
                assert_eq!(s.code, 410);
                saw_gone = true;
            }
            Ok(Event::Init) => break,
            Ok(_) => {}
            Err(e) => panic!("unexpected watcher error {e}"),
        }
    }
    assert!(saw_gone, "the relist must follow a 410");
    let mut relisted = Vec::new();
    loop {
        match next(&mut events).await.unwrap() {
            Event::InitApply(p) => relisted.push(p.name_any()),
            Event::InitDone => break,
            other => panic!("unexpected {other:?} during the relist"),
        }
    }
    assert_eq!(relisted, ["d2"]);
    let stale = format!("resourceVersion={list_rv}");
    assert!(
        fake.requests()
            .iter()
            .any(|(_, pq)| pq.contains("watch=true") && pq.contains(&stale)),
        "{:?}",
        fake.requests()
    );
}

#[tokio::test]
async fn streaming_list_watcher_and_namespace_watch() {
    let fake = FakeApiServer::start().await;
    fake.apply_pod(pod("spark", "d1", "driver", "Running"));
    let client = fake.client().await;
    let api: Api<Pod> = Api::all(client.clone());
    let mut pods = watcher(api, watcher::Config::default().streaming_lists()).boxed();
    assert!(matches!(next(&mut pods).await.unwrap(), Event::Init));
    assert!(matches!(next(&mut pods).await.unwrap(), Event::InitApply(p) if p.name_any() == "d1"));
    assert!(matches!(next(&mut pods).await.unwrap(), Event::InitDone));
    fake.apply_pod(pod("x", "d2", "driver", "Running"));
    assert!(matches!(next(&mut pods).await.unwrap(), Event::Apply(p) if p.name_any() == "d2"));

    let nss: Api<Namespace> = Api::all(client);
    let mut names = watcher(nss, watcher::Config::default())
        .touched_objects()
        .map_ok(|n| n.name_any())
        .boxed();
    let first: Vec<String> = vec![
        next(&mut names).await.unwrap(),
        next(&mut names).await.unwrap(),
        next(&mut names).await.unwrap(),
    ];
    assert_eq!(first, ["default", "spark", "x"]);
    fake.delete_namespace("x");
    assert_eq!(next(&mut names).await.unwrap(), "x");
    assert!(fake.pod("x", "d2").is_none());
}

#[tokio::test]
async fn kube_args_client_and_multi_namespace_watch() {
    let fake = FakeApiServer::start().await;
    let args = KubeArgs {
        kubeconfig: Some(fake.kubeconfig_path().to_path_buf()),
        namespaces: vec!["a".into(), "b".into()],
        no_kube: false,
    };
    assert!(args.enabled());
    let client = args.client().await.unwrap().expect("a client");
    fake.apply_pod(pod("a", "in-a", "driver", "Running"));
    fake.apply_pod(pod("c", "in-c", "driver", "Running"));
    let mut seen = watch_pods(&client, &args.namespaces, watcher::Config::default())
        .touched_objects()
        .map_ok(|p| p.name_any())
        .boxed();
    assert_eq!(next(&mut seen).await.unwrap(), "in-a");
    fake.apply_pod(pod("c", "in-c-2", "driver", "Running"));
    fake.apply_pod(pod("b", "in-b", "driver", "Running"));
    assert_eq!(next(&mut seen).await.unwrap(), "in-b");
    let namespaces: Vec<Option<String>> = fake
        .calls()
        .into_iter()
        .filter(|c| c.resource == "pods")
        .map(|c| c.namespace)
        .collect();
    assert!(
        namespaces
            .iter()
            .all(|ns| matches!(ns.as_deref(), Some("a" | "b"))),
        "{namespaces:?}"
    );
}

#[tokio::test]
async fn log_follow_streams_appended_lines_and_ends_on_deletion() {
    let fake = FakeApiServer::start().await;
    fake.apply_pod(pod("spark", "drv", "driver", "Running"));
    fake.append_log("spark", "drv", "spark-kubernetes-driver", "line 1");
    fake.append_log("spark", "drv", "spark-kubernetes-driver", "line 2");
    let api: Api<Pod> = Api::namespaced(fake.client().await, "spark");
    let follow = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines = Box::pin(api.log_stream("drv", &follow).await.unwrap().lines());
    assert_eq!(next(&mut lines).await.unwrap(), "line 1");
    assert_eq!(next(&mut lines).await.unwrap(), "line 2");

    fake.append_log("spark", "drv", "spark-kubernetes-driver", "line 3");
    assert_eq!(next(&mut lines).await.unwrap(), "line 3");
    fake.append_log("spark", "drv", "other-container", "not mine");
    fake.append_log("spark", "drv", "spark-kubernetes-driver", "line 4");
    assert_eq!(next(&mut lines).await.unwrap(), "line 4");

    fake.delete_pod("spark", "drv");
    let end = tokio::time::timeout(WAIT, lines.next())
        .await
        .expect("follow must end");
    assert!(
        end.is_none(),
        "stream should end after the pod is deleted, got {end:?}"
    );

    // a terminated pod: follow sends what there is, then ends
    fake.apply_pod(pod("spark", "done", "driver", "Running"));
    fake.append_log("spark", "done", "spark-kubernetes-driver", "bye");
    fake.set_pod_phase("spark", "done", "Succeeded");
    let text: Vec<String> = tokio::time::timeout(
        WAIT,
        api.log_stream("done", &follow)
            .await
            .unwrap()
            .lines()
            .try_collect(),
    )
    .await
    .expect("follow of a finished pod must end")
    .unwrap();
    assert_eq!(text, ["bye"]);

    // follow also ends when the pod reaches a terminal phase while being followed
    fake.apply_pod(pod("spark", "late", "driver", "Running"));
    let mut lines = Box::pin(api.log_stream("late", &follow).await.unwrap().lines());
    fake.append_log("spark", "late", "spark-kubernetes-driver", "working");
    assert_eq!(next(&mut lines).await.unwrap(), "working");
    fake.set_pod_phase("spark", "late", "Failed");
    assert!(tokio::time::timeout(WAIT, lines.next())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn log_options_since_time_tail_timestamps_and_container() {
    let fake = FakeApiServer::start().await;
    let mut two: Pod = pod("spark", "exec", "executor", "Running");
    two.spec
        .as_mut()
        .unwrap()
        .containers
        .push(serde_json::from_value(json!({"name": "sidecar"})).unwrap());
    fake.apply_pod(two);
    let t0 = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    for (i, text) in ["a", "b", "c"].iter().enumerate() {
        let ts = t0 + chrono::Duration::seconds(10 * i as i64) + chrono::Duration::nanoseconds(123);
        fake.append_log_at("spark", "exec", "sidecar", ts, text);
    }
    let api: Api<Pod> = Api::namespaced(fake.client().await, "spark");
    let in_sidecar = LogParams {
        container: Some("sidecar".into()),
        ..LogParams::default()
    };
    assert_eq!(api.logs("exec", &in_sidecar).await.unwrap(), "a\nb\nc\n");

    let since: k8s_openapi::jiff::Timestamp = (t0 + chrono::Duration::seconds(10))
        .to_rfc3339()
        .parse()
        .unwrap();
    let from_b = LogParams {
        since_time: Some(since),
        ..in_sidecar.clone()
    };
    assert_eq!(api.logs("exec", &from_b).await.unwrap(), "b\nc\n");

    let tail = LogParams {
        tail_lines: Some(1),
        timestamps: true,
        ..in_sidecar.clone()
    };
    assert_eq!(
        api.logs("exec", &tail).await.unwrap(),
        "2026-01-02T03:04:25.000000123Z c\n"
    );

    let limited = LogParams {
        limit_bytes: Some(3),
        ..in_sidecar.clone()
    };
    assert_eq!(api.logs("exec", &limited).await.unwrap(), "a\nb");

    // two containers and none named: the API server refuses, naming the choices
    match api.logs("exec", &LogParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 400);
            assert!(s.message.contains("sidecar"), "{}", s.message);
        }
        other => panic!("expected 400, got {other:?}"),
    }
    let wrong = LogParams {
        container: Some("nope".into()),
        ..LogParams::default()
    };
    assert!(matches!(api.logs("exec", &wrong).await, Err(kube::Error::Api(s)) if s.code == 400));
    assert!(
        matches!(api.logs("ghost", &in_sidecar).await, Err(kube::Error::Api(s)) if s.code == 404)
    );
    let calls = fake.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.verb == "get" && c.resource == "pods/log"),
        "{calls:?}"
    );
}

#[tokio::test]
async fn without_configuration_kube_is_disabled() {
    let args = KubeArgs {
        no_kube: true,
        kubeconfig: Some("/does/not/matter".into()),
        namespaces: vec![],
    };
    assert!(!args.enabled());
    assert!(args.client().await.unwrap().is_none());
    let missing = KubeArgs {
        kubeconfig: Some("/no/such/kubeconfig.yaml".into()),
        ..KubeArgs::default()
    };
    let err = missing
        .client()
        .await
        .err()
        .expect("an error for a missing kubeconfig");
    assert!(
        format!("{err:#}").contains("/no/such/kubeconfig.yaml"),
        "{err:#}"
    );
}

#[tokio::test]
async fn raw_watch_bookmarks_timeout_and_graceful_deletion() {
    let fake = FakeApiServer::start().await;
    fake.apply_pod(pod("spark", "d1", "driver", "Running"));
    let api: Api<Pod> = Api::namespaced(fake.client().await, "spark");
    let started = std::time::Instant::now();
    let mut events = api
        .watch(&WatchParams::default().timeout(3), "0")
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(next(&mut events).await.unwrap(), WatchEvent::Added(p) if p.name_any() == "d1")
    );
    assert!(fake.begin_pod_deletion("spark", "d1"));
    match next(&mut events).await.unwrap() {
        WatchEvent::Modified(p) => assert!(p.metadata.deletion_timestamp.is_some()),
        other => panic!("expected Modified, got {other:?}"),
    }
    assert!(fake.delete_pod("spark", "d1"));
    let deleted_rv = match next(&mut events).await.unwrap() {
        WatchEvent::Deleted(p) => p.resource_version().unwrap(),
        other => panic!("expected Deleted, got {other:?}"),
    };
    let mut bookmarks = 0;
    while let Some(ev) = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("timeoutSeconds must end the watch")
    {
        match ev.unwrap() {
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.metadata.resource_version, deleted_rv);
                bookmarks += 1;
            }
            other => panic!("expected only bookmarks, got {other:?}"),
        }
    }
    assert!(bookmarks >= 1, "allowWatchBookmarks must bring bookmarks");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "{took:?}"
    );
}
