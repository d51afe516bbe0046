//! Read ACLs answered as Spark's own History Server answers them: the same logs served by
//! Spark 4.3.0's and 3.5.7's History Servers (with `spark.history.ui.acls.enable`, admin ACLs, and a
//! servlet filter compiled here that takes the user from the header our proxy would set) and by
//! the collector behind the same header. Every user × path gets the same status, and a
//! forbidden API path the same body. The one difference is deliberate and checked too: a
//! request without a user is let through by Spark (it takes "no user" for "no
//! authentication") and refused (401) by the collector.
//!
//! Groups are not compared here: Spark reads them from `spark.user.groups.mapping` (the
//! server's `id -Gn`), the collector from a header; `access_acls` covers them.

mod ingest_util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ingest_util::*;

/// A servlet filter naming the user from `X-Forwarded-User`, as a proxy-facing filter does.
fn filter_source(servlet: &str) -> String {
    format!(
        r#"import {servlet}.*;
import {servlet}.http.*;
public class UserHeaderFilter implements Filter {{
  public void doFilter(ServletRequest req, ServletResponse res, FilterChain chain)
      throws java.io.IOException, ServletException {{
    final HttpServletRequest h = (HttpServletRequest) req;
    final String user = h.getHeader("X-Forwarded-User");
    chain.doFilter(new HttpServletRequestWrapper(h) {{
      @Override public String getRemoteUser() {{ return user; }}
    }}, res);
  }}
}}
"#
    )
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spark_history_server(spark_home: &Path, logs: &Path, tmp: &Path, port: u16) -> KillOnDrop {
    let classes = tmp.join("filter");
    std::fs::create_dir_all(&classes).unwrap();
    let servlet = if std::fs::read_dir(spark_home.join("jars"))
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("jakarta.servlet-api-6")
        }) {
        "jakarta.servlet"
    } else {
        "javax.servlet"
    };
    let src = classes.join("UserHeaderFilter.java");
    std::fs::write(&src, filter_source(servlet)).unwrap();
    let jars = format!("{}/jars/*", spark_home.display());
    let st = Command::new("javac")
        .args(["-cp", &jars, "-d"])
        .arg(&classes)
        .arg(&src)
        .status()
        .expect("javac (Java 17 is needed for the Spark tests)");
    assert!(st.success(), "javac failed");
    let props = tmp.join("shs.properties");
    std::fs::write(
        &props,
        format!(
            "spark.history.fs.logDirectory file:{}\nspark.history.ui.port {port}\n\
             spark.history.fs.update.interval 1s\nspark.history.ui.acls.enable true\n\
             spark.history.ui.admin.acls root\nspark.ui.filters UserHeaderFilter\n",
            logs.display()
        ),
    )
    .unwrap();
    let child = Command::new(spark_home.join("bin/spark-class"))
        .args([
            "org.apache.spark.deploy.history.HistoryServer",
            "--properties-file",
        ])
        .arg(&props)
        .env("SPARK_DAEMON_CLASSPATH", &classes)
        .env("SPARK_LOG_DIR", tmp)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Spark's History Server");
    KillOnDrop(child)
}

async fn get(base: &str, path: &str, user: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(u) = user {
        req = req.header("X-Forwarded-User", u);
    }
    match req.send().await {
        Ok(r) => {
            let st = r.status().as_u16();
            (st, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

async fn wait_listed(base: &str, user: Option<&str>, ids: &[&str]) {
    let start = Instant::now();
    loop {
        let (st, body) = get(base, "/api/v1/applications", user).await;
        if st == 200 && ids.iter().all(|i| body.contains(i)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{base} never listed {ids:?}: {st} {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn spark_home(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/test.sh, or eval \"$(bash scripts/install-test-tools.sh --print-env)\"")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_applications_are_answered_as_spark_4_history_server_does() {
    compare_with(&spark_home("SPARK4_HOME")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_applications_are_answered_as_spark_3_5_history_server_does() {
    compare_with(&spark_home("SPARK35_HOME")).await;
}

async fn compare_with(spark_home: &str) {
    let logs = tempfile::tempdir().unwrap();
    std::fs::write(
        logs.path().join("local-1700000000010"),
        spark_log(
            "local-1700000000010",
            "private",
            "alice",
            &[("spark.ui.view.acls", "bob"), ("spark.admin.acls", "dave")],
        ),
    )
    .unwrap();
    std::fs::write(
        logs.path().join("local-1700000000011"),
        spark_log(
            "local-1700000000011",
            "public",
            "carol",
            &[("spark.ui.view.acls", "*")],
        ),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let shs_port = free_port();
    let _shs = spark_history_server(Path::new(&spark_home), logs.path(), tmp.path(), shs_port);
    let ours = tokio::task::block_in_place(|| {
        start_collector(&[
            "--event-log-dir",
            logs.path().to_str().unwrap(),
            "--storage",
            &format!("file://{}", tmp.path().join("store").display()),
            "--acls-enable",
            "--trusted-proxy",
            "127.0.0.1",
            "--admin-acls",
            "root",
        ])
    });
    let spark = format!("http://127.0.0.1:{shs_port}");
    let base = format!("http://127.0.0.1:{}", ours.port);
    let ids = ["local-1700000000010", "local-1700000000011"];
    wait_listed(&spark, Some("root"), &ids).await;
    wait_listed(&base, Some("root"), &ids).await;

    let mut paths = vec!["/api/v1/applications".to_string()];
    for id in ids {
        for sub in [
            "",
            "/1",
            "/jobs",
            "/jobs/0",
            "/stages",
            "/executors",
            "/allexecutors",
            "/environment",
            "/storage/rdd",
            "/logs",
        ] {
            paths.push(format!("/api/v1/applications/{id}{sub}"));
        }
        paths.push(format!("/history/{id}/jobs/"));
    }
    let mut compared = 0;
    for user in ["eve", "alice", "bob", "dave", "root", "carol"] {
        for path in &paths {
            let (s_st, s_body) = get(&spark, path, Some(user)).await;
            let (o_st, o_body) = get(&base, path, Some(user)).await;
            assert_eq!(
                o_st, s_st,
                "{path} as {user}: ours {o_body:?}, Spark's {s_body:?}"
            );
            if s_st == 403 {
                if path.starts_with("/api/") {
                    assert_eq!(o_body, s_body, "{path} as {user}");
                } else {
                    let msg = format!("User {user} is not authorized to access this page.");
                    assert!(s_body.contains(&msg), "Spark: {s_body}");
                    assert!(o_body.contains(&msg), "ours: {o_body}");
                }
            }
            compared += 1;
        }
    }
    assert!(compared > 100);
    // the deliberate difference: no user at all
    let (s_st, _) = get(
        &spark,
        &format!("/api/v1/applications/{}/jobs", ids[0]),
        None,
    )
    .await;
    let (o_st, _) = get(
        &base,
        &format!("/api/v1/applications/{}/jobs", ids[0]),
        None,
    )
    .await;
    assert_eq!((s_st, o_st), (200, 401));
}
