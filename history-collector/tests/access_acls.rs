//! Read access control through the real collector binary, as an authenticating proxy
//! (oauth2-proxy) in front of it would drive it: the user and groups in headers from the
//! proxy's address, each application's own `spark.ui.view.acls(.groups)` and
//! `spark.admin.acls(.groups)`, the server's admins. Spark's answers for a forbidden
//! application (403, `user "<name>" is not authorized`; its UI's "User <name> is not
//! authorized to access this page."), the list and summaries open to every authenticated
//! user as in Spark's History Server, everything else closed: API paths, UI pages, the
//! event-log zip and the container logs. A client that bypasses the proxy gets nothing.

mod ingest_util;

use std::time::Duration;

use ingest_util::*;

struct Server {
    _collector: Daemon,
    port: u16,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn start(extra: &[&str]) -> Server {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join("local-10"),
        spark_log(
            "local-10",
            "private",
            "alice",
            &[
                ("spark.ui.view.acls", "bob"),
                ("spark.ui.view.acls.groups", "analysts"),
                ("spark.admin.acls", "dave"),
                ("spark.admin.acls.groups", "leads"),
            ],
        ),
    )
    .unwrap();
    std::fs::write(
        src.path().join("local-11"),
        spark_log(
            "local-11",
            "public",
            "carol",
            &[("spark.ui.view.acls", "*")],
        ),
    )
    .unwrap();
    // a container log of the private application, and one of an application with no log
    for (app, text) in [
        ("local-10", "private driver output"),
        ("local-12", "orphan output"),
    ] {
        let dir = store.path().join(format!("podlogs/{app}/driver"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("spark-kubernetes-driver.log"),
            format!("2026-01-01T00:00:00Z {text}\n"),
        )
        .unwrap();
    }
    let storage = format!("file://{}", store.path().display());
    let mut args = vec![
        "--storage",
        &storage,
        "--event-log-dir",
        src.path().to_str().unwrap(),
        "--poll-interval",
        "200ms",
        "--acls-enable",
        "--admin-acls",
        "root",
        "--admin-acls-groups",
        "ops",
    ];
    args.extend_from_slice(extra);
    let collector = start_collector(&args);
    let port = collector.port;
    Server {
        _collector: collector,
        port,
        _dirs: (src, store),
    }
}

/// GET as `user` (with `groups`) through the proxy; `None`: no user header at all.
async fn get(port: u16, path: &str, user: Option<(&str, &str)>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some((u, g)) = user {
        req = req.header("X-Forwarded-User", u);
        if !g.is_empty() {
            req = req.header("X-Forwarded-Groups", g);
        }
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

async fn wait_listed(port: u16) {
    for _ in 0..300 {
        let (st, body) = get(port, "/api/v1/applications", Some(("root", ""))).await;
        if st == 200 && body.contains("local-10") && body.contains("local-11") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("applications never listed");
}

/// Every path that shows the private application's contents.
const PRIVATE: &[&str] = &[
    "/api/v1/applications/local-10/jobs",
    "/api/v1/applications/local-10/jobs/0",
    "/api/v1/applications/local-10/stages",
    "/api/v1/applications/local-10/executors",
    "/api/v1/applications/local-10/allexecutors",
    "/api/v1/applications/local-10/environment",
    "/api/v1/applications/local-10/storage/rdd",
    "/api/v1/applications/local-10/sql",
    "/api/v1/applications/local-10/logs",
    "/history/local-10/",
    "/history/local-10/jobs/",
    "/history/local-10/executors/",
    "/history/local-10/environment/",
    "/history/local-10/storage/",
    "/history/local-10/SQL/",
    "/logs/local-10/",
    "/logs/local-10/driver/stdout",
    // the same, spelt so that a check on the raw path would miss them
    "/history/local%2D10/",
    "/history/local%2d10/executors/",
    "/logs/local%2D10/driver/stdout",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_application_is_shown_only_to_those_its_acls_allow() {
    let s = tokio::task::block_in_place(|| start(&["--trusted-proxy", "127.0.0.1"]));
    let port = s.port;
    wait_listed(port).await;

    // no user: nothing at all, the list included
    for path in [
        "/api/v1/applications",
        "/",
        "/api/v1/applications/local-11/jobs",
    ]
    .iter()
    .chain(PRIVATE)
    {
        let (st, _) = get(port, path, None).await;
        assert_eq!(st, 401, "{path} without a user");
    }
    // eve: the list and the summaries, as in Spark; nothing of the private application
    let eve = Some(("eve", "interns"));
    for path in [
        "/api/v1/applications",
        "/api/v1/applications/local-10",
        "/",
        "/api/v1/applications/local-11/jobs",
        "/api/v1/applications/local-11/environment",
        "/history/local-11/",
    ] {
        let (st, body) = get(port, path, eve).await;
        assert_eq!(st, 200, "{path} as eve: {body}");
    }
    for path in PRIVATE {
        let (st, body) = get(port, path, eve).await;
        assert_eq!(st, 403, "{path} as eve: {body}");
        assert!(!body.contains("private driver output"), "{path}");
        if path.starts_with("/api/") || path.starts_with("/logs/") {
            assert_eq!(body, "user \"eve\" is not authorized", "{path}");
        } else {
            assert!(
                body.contains("User eve is not authorized to access this page."),
                "{path}: {body}"
            );
        }
    }
    // an application with no event log: its container logs are the admins' only
    let (st, _) = get(port, "/logs/local-12/driver/stdout", eve).await;
    assert_eq!(st, 403);
    let (st, body) = get(port, "/logs/local-12/driver/stdout", Some(("root", ""))).await;
    assert_eq!((st, body.as_str()), (200, "orphan output\n"));

    // who may: the Spark user, a view user, a view group, the application's admin and admin
    // group, the server's admin and admin group
    for who in [
        ("alice", ""),
        ("bob", ""),
        ("x", "interns, analysts"),
        ("dave", ""),
        ("y", "leads"),
        ("root", ""),
        ("z", "ops"),
    ] {
        for path in PRIVATE {
            let (st, body) = get(port, path, Some(who)).await;
            assert_eq!(st, 200, "{path} as {who:?}: {body}");
        }
        let (_, body) = get(port, "/logs/local-10/driver/stdout", Some(who)).await;
        assert_eq!(body, "private driver output\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_named_by_anyone_but_the_proxy_are_not_believed() {
    // the proxy is elsewhere: a header sent from here is somebody pretending
    let s = tokio::task::block_in_place(|| start(&["--trusted-proxy", "10.200.0.0/16"]));
    let port = s.port;
    for path in [
        "/api/v1/applications",
        "/api/v1/applications/local-10/jobs",
        "/",
    ] {
        for user in [("root", "ops"), ("alice", "")] {
            let (st, _) = get(port, path, Some(user)).await;
            assert_eq!(st, 401, "{path} as {user:?} from an untrusted address");
        }
    }
}
