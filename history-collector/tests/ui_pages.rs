//! The web UI in a real browser: headless Chromium renders each page (application list, jobs,
//! stage, executors, environment, storage, SQL list, one SQL execution) from a small log
//! written here, with markup planted in names, descriptions and plans; every link on the pages
//! resolves, markup from job descriptions stays text, and screenshots are saved under the
//! target dir for CI to keep.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use history_collector::api::{self, Catalog};

const LOG: &str = r#"{"Event":"SparkListenerLogStart","Spark Version":"4.3.0"}
{"Event":"SparkListenerApplicationStart","App Name":"ui <script>alert(1)</script>","App ID":"local-1","Timestamp":1700000000000,"User":"alice"}
{"Event":"SparkListenerExecutorAdded","Timestamp":1700000000100,"Executor ID":"driver","Executor Info":{"Host":"h","Total Cores":2,"Log Urls":{},"Attributes":{},"Resources":{},"Resource Profile Id":0}}
{"Event":"org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart","executionId":0,"rootExecutionId":0,"description":"<b>bold</b> query","details":"collect at x.py:1","physicalPlanDescription":"== Physical Plan ==\nHashAggregate <script>alert(3)</script>","sparkPlanInfo":{"nodeName":"HashAggregate","simpleString":"HashAggregate(keys=[k#1])","children":[{"nodeName":"Exchange","simpleString":"Exchange hashpartitioning(k#1, 200)","children":[{"nodeName":"Scan <i>parquet</i>","simpleString":"FileScan parquet","children":[],"metadata":{},"metrics":[{"name":"number of files read","accumulatorId":7,"metricType":"sum"}]}],"metadata":{},"metrics":[]}],"metadata":{},"metrics":[{"name":"number of output rows","accumulatorId":5,"metricType":"sum"}]},"time":1700000000900,"modifiedConfigs":{},"jobTags":[]}
{"Event":"SparkListenerJobStart","Job ID":0,"Submission Time":1700000001000,"Stage Infos":[{"Stage ID":0,"Stage Attempt ID":0,"Stage Name":"collect at x.py:1","Number of Tasks":1,"RDD Info":[],"Details":"d"}],"Stage IDs":[0],"Properties":{"spark.job.description":"<b>bold</b> job","spark.sql.execution.id":"0"}}
{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":0,"Stage Attempt ID":0,"Stage Name":"collect at x.py:1","Number of Tasks":1,"RDD Info":[],"Details":"d","Submission Time":1700000001001},"Properties":{}}
{"Event":"SparkListenerTaskStart","Stage ID":0,"Stage Attempt ID":0,"Task Info":{"Task ID":0,"Index":0,"Attempt":0,"Partition ID":0,"Launch Time":1700000001100,"Executor ID":"driver","Host":"h","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Accumulables":[],"Finish Time":0,"Failed":false,"Killed":false}}
{"Event":"SparkListenerTaskEnd","Stage ID":0,"Stage Attempt ID":0,"Task Type":"ResultTask","Task End Reason":{"Reason":"ExceptionFailure","Class Name":"E","Description":"d","Full Stack Trace":"E: <script>alert(2)</script> failed","Stack Trace":[]},"Task Info":{"Task ID":0,"Index":0,"Attempt":0,"Partition ID":0,"Launch Time":1700000001100,"Executor ID":"driver","Host":"h","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Accumulables":[],"Finish Time":1700000001300,"Failed":true,"Killed":false},"Task Metrics":{"Executor Run Time":150}}
{"Event":"SparkListenerTaskStart","Stage ID":0,"Stage Attempt ID":0,"Task Info":{"Task ID":1,"Index":0,"Attempt":1,"Partition ID":0,"Launch Time":1700000001400,"Executor ID":"driver","Host":"h","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Accumulables":[],"Finish Time":0,"Failed":false,"Killed":false}}
{"Event":"SparkListenerTaskEnd","Stage ID":0,"Stage Attempt ID":0,"Task Type":"ResultTask","Task End Reason":{"Reason":"Success"},"Task Info":{"Task ID":1,"Index":0,"Attempt":1,"Partition ID":0,"Launch Time":1700000001400,"Executor ID":"driver","Host":"h","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Accumulables":[{"ID":5,"Name":"number of output rows","Update":"3","Value":"3","Internal":true,"Count Failed Values":true,"Metadata":"sql"}],"Finish Time":1700000001900,"Failed":false,"Killed":false},"Task Metrics":{"Executor Run Time":420,"Executor Deserialize Time":30,"JVM GC Time":7,"Shuffle Write Metrics":{"Shuffle Bytes Written":1234,"Shuffle Write Time":5,"Shuffle Records Written":10}}}
{"Event":"SparkListenerStageCompleted","Stage Info":{"Stage ID":0,"Stage Attempt ID":0,"Stage Name":"collect at x.py:1","Number of Tasks":1,"RDD Info":[],"Details":"d","Submission Time":1700000001001,"Completion Time":1700000002000}}
{"Event":"SparkListenerJobEnd","Job ID":0,"Completion Time":1700000002000,"Job Result":{"Result":"JobSucceeded"}}
{"Event":"org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionEnd","executionId":0,"time":1700000002100,"errorMessage":""}
{"Event":"SparkListenerApplicationEnd","Timestamp":1700000003000}
"#;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn browser(args: &[&str], url: &str, profile: &Path) -> std::process::Output {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (install chromium): {e}", chromium()));
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|s| s.replace("&amp;", "&"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_in_chromium_and_links_resolve() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("local-1"), LOG).unwrap();
    let catalog = Arc::new(Catalog::new(vec![dir.path().to_path_buf()]));
    catalog.refresh();
    let router = api::router(catalog.clone()).merge(history_collector::ui::router(catalog));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let pages = [
        ("apps", "/".to_string()),
        ("app", "/history/local-1/".to_string()),
        ("stage", "/history/local-1/stages/0/0/".to_string()),
        ("executors", "/history/local-1/executors/".to_string()),
        ("environment", "/history/local-1/environment/".to_string()),
        ("storage", "/history/local-1/storage/".to_string()),
        ("sql", "/history/local-1/SQL/".to_string()),
        (
            "sql-execution",
            "/history/local-1/SQL/execution/0/".to_string(),
        ),
    ];
    for (name, path) in &pages {
        let url = format!("{base}{path}");
        let base2 = base.clone();
        let profile_path = profile.path().to_path_buf();
        let dom = tokio::task::spawn_blocking(move || {
            String::from_utf8_lossy(&browser(&["--dump-dom"], &url, &profile_path).stdout)
                .into_owned()
        })
        .await
        .unwrap();
        assert!(dom.contains("<h1>"), "{path} did not render: {dom}");
        // markup from the event log is shown as text, never interpreted
        assert!(
            !dom.contains("<script>alert"),
            "{path} let a script through"
        );
        assert!(!dom.contains("<b>bold</b>"), "{path} let markup through");
        if *name == "stage" {
            // the task table (from the task store) and the quantile summary
            for want in [
                "id=\"tasks\"",
                "id=\"summary\"",
                "SUCCESS",
                "FAILED",
                "&lt;script&gt;alert(2)",
                "<td>420.0</td>",
            ] {
                assert!(dom.contains(want), "{path} lacks {want}: {dom}");
            }
        }
        if *name == "sql" {
            for want in [
                "id=\"sql\"",
                "&lt;b&gt;bold&lt;/b&gt; query",
                "href=\"/history/local-1/SQL/execution/0/\"",
                "COMPLETED",
            ] {
                assert!(dom.contains(want), "{path} lacks {want}: {dom}");
            }
        }
        if *name == "sql-execution" {
            // the plan tree (every node, markup escaped) and the physical plan text
            for want in [
                "HashAggregate",
                "Exchange",
                "Scan &lt;i&gt;parquet&lt;/i&gt;",
                "number of output rows",
                "== Physical Plan ==",
                "&lt;script&gt;alert(3)",
            ] {
                assert!(dom.contains(want), "{path} lacks {want}: {dom}");
            }
        }
        if *name == "app" {
            assert!(
                dom.contains("&lt;b&gt;bold&lt;/b&gt; job"),
                "job description missing on {path}"
            );
        }
        for h in hrefs(&dom) {
            if h.starts_with("/logs/") {
                continue; // served by the log routes of the binary, not part of this router
            }
            let r = client.get(format!("{base2}{h}")).send().await.unwrap();
            assert!(
                r.status().is_success(),
                "link {h} on {path} answers {}",
                r.status()
            );
        }
        let shot = shots.join(format!("{name}.png"));
        let url = format!("{base}{path}");
        let arg = format!("--screenshot={}", shot.display());
        let profile_path = profile.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            browser(&[&arg, "--window-size=1280,900"], &url, &profile_path)
        })
        .await
        .unwrap();
        assert!(
            std::fs::metadata(&shot)
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "no screenshot for {path}"
        );
    }
}
