//! The web UI in a real browser, on a small hand-written log with markup planted in every
//! string the pages show (application name, job and SQL descriptions, stage names, errors,
//! the plan, an executor's removal reason, a property, a pod log): headless Chromium loads
//! every page with no console error (a CSP violation, a failed load or a script error would
//! be one), no planted element or script survives, every link answers, and the pages read
//! the way they should (units, folded zero metrics, the DAG with its skipped stage).
//! Real Spark's applications are in `ui_spark.rs`.

mod ui_util;

use std::sync::Arc;
use std::time::Duration;

use history_collector::api::{self, Catalog};
use history_collector::ingest::layout::{podlog_key, LogStore};
use ui_util::Browser;

const MARK: &str = "<img src=x onerror=\\\"window.__pwned=1\\\"><b class=\\\"planted\\\">b</b>";

fn log() -> String {
    let lines = [
        r#"{"Event":"SparkListenerLogStart","Spark Version":"4.3.0"}"#.to_string(),
        format!(r#"{{"Event":"SparkListenerApplicationStart","App Name":"ui {MARK} <script>window.__pwned=2</script>","App ID":"local-1","Timestamp":1700000000000,"User":"alice {MARK}"}}"#),
        format!(r#"{{"Event":"SparkListenerEnvironmentUpdate","JVM Information":{{"Java Version":"17"}},"Spark Properties":{{"spark.app.name":"x {MARK}","spark.my.password":"hunter2","spark.s3.secret.key":"s3cr3t"}},"Hadoop Properties":{{}},"System Properties":{{}},"Classpath Entries":{{}}}}"#),
        r#"{"Event":"SparkListenerExecutorAdded","Timestamp":1700000000100,"Executor ID":"driver","Executor Info":{"Host":"h","Total Cores":2,"Log Urls":{},"Attributes":{},"Resources":{},"Resource Profile Id":0}}"#.to_string(),
        r#"{"Event":"SparkListenerExecutorAdded","Timestamp":1700000000200,"Executor ID":"1","Executor Info":{"Host":"h1","Total Cores":1,"Log Urls":{"stdout":"http://h1:8081/logPage/?appId=local-1&executorId=1&logType=stdout"},"Attributes":{},"Resources":{},"Resource Profile Id":0}}"#.to_string(),
        format!(r#"{{"Event":"org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart","executionId":0,"rootExecutionId":0,"description":"<b>bold</b> query {MARK}","details":"collect at x.py:1","physicalPlanDescription":"== Physical Plan ==\nHashAggregate <script>window.__pwned=3</script>","sparkPlanInfo":{{"nodeName":"HashAggregate","simpleString":"HashAggregate(keys=[k#1])","children":[{{"nodeName":"Exchange","simpleString":"Exchange hashpartitioning(k#1, 200)","children":[{{"nodeName":"Scan <i>parquet</i> {MARK}","simpleString":"FileScan parquet","children":[],"metadata":{{}},"metrics":[{{"name":"number of files read","accumulatorId":7,"metricType":"sum"}}]}}],"metadata":{{}},"metrics":[]}}],"metadata":{{}},"metrics":[{{"name":"number of output rows","accumulatorId":5,"metricType":"sum"}}]}},"time":1700000000900,"modifiedConfigs":{{}},"jobTags":[]}}"#),
        format!(r#"{{"Event":"SparkListenerJobStart","Job ID":0,"Submission Time":1700000001000,"Stage Infos":[{{"Stage ID":0,"Stage Attempt ID":0,"Stage Name":"map at x.py:1 {MARK}","Number of Tasks":1,"RDD Info":[],"Parent IDs":[],"Details":"d"}},{{"Stage ID":1,"Stage Attempt ID":0,"Stage Name":"collect at x.py:1","Number of Tasks":1,"RDD Info":[],"Parent IDs":[0],"Details":"d"}}],"Stage IDs":[0,1],"Properties":{{"spark.job.description":"<b>bold</b> job {MARK}","spark.sql.execution.id":"0"}}}}"#),
        r#"{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":0,"Stage Attempt ID":0,"Stage Name":"map","Number of Tasks":1,"RDD Info":[],"Parent IDs":[],"Details":"d","Submission Time":1700000001001},"Properties":{}}"#.to_string(),
        r#"{"Event":"SparkListenerTaskStart","Stage ID":0,"Stage Attempt ID":0,"Task Info":{"Task ID":0,"Index":0,"Attempt":0,"Partition ID":0,"Launch Time":1700000001100,"Executor ID":"1","Host":"h1","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Accumulables":[],"Finish Time":0,"Failed":false,"Killed":false}}"#.to_string(),
        r#"{"Event":"SparkListenerTaskEnd","Stage ID":0,"Stage Attempt ID":0,"Task Type":"ShuffleMapTask","Task End Reason":{"Reason":"ExceptionFailure","Class Name":"E","Description":"d","Full Stack Trace":"java.lang.E: <script>window.__pwned=4</script> failed\n\tat x.y(Z.java:1)","Stack Trace":[]},"Task Info":{"Task ID":0,"Index":0,"Attempt":0,"Partition ID":0,"Launch Time":1700000001100,"Executor ID":"1","Host":"h1","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Accumulables":[],"Finish Time":1700000001300,"Failed":true,"Killed":false},"Task Metrics":{"Executor Run Time":150}}"#.to_string(),
        r#"{"Event":"SparkListenerTaskStart","Stage ID":0,"Stage Attempt ID":0,"Task Info":{"Task ID":1,"Index":0,"Attempt":1,"Partition ID":0,"Launch Time":1700000001400,"Executor ID":"driver","Host":"h","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Accumulables":[],"Finish Time":0,"Failed":false,"Killed":false}}"#.to_string(),
        r#"{"Event":"SparkListenerTaskEnd","Stage ID":0,"Stage Attempt ID":0,"Task Type":"ShuffleMapTask","Task End Reason":{"Reason":"Success"},"Task Info":{"Task ID":1,"Index":0,"Attempt":1,"Partition ID":0,"Launch Time":1700000001400,"Executor ID":"driver","Host":"h","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Accumulables":[{"ID":5,"Name":"number of output rows","Update":"3","Value":"3","Internal":true,"Count Failed Values":true,"Metadata":"sql"}],"Finish Time":1700000001900,"Failed":false,"Killed":false},"Task Metrics":{"Executor Run Time":420,"Executor CPU Time":68138071,"Executor Deserialize Time":30,"JVM GC Time":7,"Shuffle Write Metrics":{"Shuffle Bytes Written":1536,"Shuffle Write Time":5000000,"Shuffle Records Written":10}}}"#.to_string(),
        r#"{"Event":"SparkListenerStageCompleted","Stage Info":{"Stage ID":0,"Stage Attempt ID":0,"Stage Name":"map","Number of Tasks":1,"RDD Info":[],"Parent IDs":[],"Details":"d","Submission Time":1700000001001,"Completion Time":1700000002000}}"#.to_string(),
        r#"{"Event":"SparkListenerJobEnd","Job ID":0,"Completion Time":1700000002000,"Job Result":{"Result":"JobSucceeded"}}"#.to_string(),
        format!(r#"{{"Event":"SparkListenerExecutorRemoved","Timestamp":1700000002500,"Executor ID":"1","Removed Reason":"lost {MARK}"}}"#),
        r#"{"Event":"org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionEnd","executionId":0,"time":1700000002100,"errorMessage":""}"#.to_string(),
        r#"{"Event":"SparkListenerApplicationEnd","Timestamp":1700000003000}"#.to_string(),
    ];
    lines.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_in_chromium_escaped_and_linked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("local-1"), log()).unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = LogStore::new(
        sidecars_common::objstore::open(
            &format!("file://{}", store_dir.path().display()),
            &Default::default(),
        )
        .await
        .unwrap(),
    );
    let podlog = "2023-11-14T22:13:21.000000000Z 23/11/14 22:13:21 INFO Executor: started\n\
2023-11-14T22:13:21.500000000Z 23/11/14 22:13:21 ERROR Executor: <script>window.__pwned=5</script> boom\n";
    store
        .put_complete(
            &podlog_key("local-1", "1", "spark-kubernetes-executor"),
            podlog.len() as u64,
            Box::pin(std::io::Cursor::new(podlog.as_bytes().to_vec())),
        )
        .await
        .unwrap();
    let catalog = Arc::new(Catalog::with_store(
        vec![dir.path().to_path_buf()],
        store.clone(),
    ));
    let c = catalog.clone();
    tokio::task::spawn_blocking(move || c.refresh())
        .await
        .unwrap();
    let router = api::router(catalog.clone())
        .merge(history_collector::ui::router(catalog))
        .merge(history_collector::logs::router(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let shots =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots/planted");
    std::fs::create_dir_all(&shots).unwrap();
    let app = "/history/local-1/";
    let pages: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "apps",
            "/".into(),
            vec!["id=\"apps\"", "1 matching application attempts"],
        ),
        (
            "app",
            app.into(),
            vec![
                "id=\"app-timeline\"",
                "data-job=\"0\"",
                "data-executor=\"1\"",
                "class=\"pb\"",
                "&lt;b&gt;bold&lt;/b&gt; job",
            ],
        ),
        (
            "job",
            format!("{app}jobs/job/?id=0"),
            vec![
                "id=\"job-dag\"",
                "data-from=\"0\" data-to=\"1\"",
                "Stage 1 · skipped",
                "id=\"stages-skipped\"",
            ],
        ),
        (
            "stages",
            format!("{app}stages/"),
            vec!["id=\"stages-completed\""],
        ),
        (
            "stage",
            format!("{app}stages/stage/?id=0&attempt=0"),
            vec![
                "id=\"summary\"",
                // CPU time in ns shown in ms, raw value on hover
                "title=\"68138071 ns\">68 ms",
                "title=\"1536 bytes\">1.5 KiB",
                // zero metrics folded
                "id=\"zero-metrics\"",
                "push-based shuffle (9 metrics)",
                "id=\"hint-failures\"",
                "&lt;script&gt;window.__pwned=4",
                "id=\"task-timeline\"",
                "id=\"tasks\"",
            ],
        ),
        (
            "executors",
            format!("{app}executors/"),
            vec![
                "id=\"executors\"",
                "lost &lt;img",
                "file=spark-kubernetes-executor.log\">log</a>",
                "REMOVED",
            ],
        ),
        (
            "log",
            format!("{app}executors/logs/?executor=1&file=stdout"),
            vec![
                "class=\"ln error\"",
                "&lt;script&gt;window.__pwned=5",
                "22:13:21.500",
            ],
        ),
        (
            "log-search",
            format!("{app}executors/logs/?executor=1&file=stdout&q=BOOM"),
            vec!["1 matching lines of 2", "<mark>boom</mark>"],
        ),
        (
            "environment",
            format!("{app}environment/"),
            vec!["*********(redacted)", "x &lt;img"],
        ),
        ("storage", format!("{app}storage/"), vec!["id=\"no-rdds\""]),
        (
            "sql",
            format!("{app}SQL/"),
            vec!["id=\"sql\"", "&lt;b&gt;bold&lt;/b&gt; query"],
        ),
        (
            "sql-execution",
            format!("{app}SQL/execution/?id=0"),
            vec![
                "id=\"plan-graph\"",
                "Scan &lt;i&gt;parquet&lt;/i&gt;",
                "number of output rows",
                "== Physical Plan ==",
                "&lt;script&gt;window.__pwned=3",
            ],
        ),
    ];
    let client = reqwest::Client::new();
    let mut checked = std::collections::HashSet::new();
    let mut browser = tokio::task::spawn_blocking(Browser::launch).await.unwrap();
    for (name, path, wants) in pages {
        let url = format!("{base}{path}");
        let shot = shots.join(format!("{name}.png"));
        let (visit, html, links, pwned, planted, b) = tokio::task::spawn_blocking(move || {
            let mut b = browser;
            let visit = b.visit(&url, Duration::from_millis(150));
            let html = b.html();
            let links = b.links();
            let pwned = b.eval("typeof window.__pwned");
            let planted = b.eval(
                "document.querySelectorAll('.planted, img, iframe, script:not([src])').length",
            );
            b.screenshot(&shot, 1280, 3000);
            (visit, html, links, pwned, planted, b)
        })
        .await
        .unwrap();
        browser = b;
        assert!(
            visit.problems.is_empty(),
            "{path}: console: {:?}",
            visit.problems
        );
        assert_eq!(pwned, "undefined", "{path} ran planted script");
        assert_eq!(planted, 0, "{path} let planted markup through");
        assert!(
            !html.contains("hunter2") && !html.contains("s3cr3t"),
            "{path} shows a secret"
        );
        for w in wants {
            assert!(html.contains(w), "{path} lacks {w}:\n{html}");
        }
        for l in links {
            let l = l.split('#').next().unwrap_or("").to_string();
            if !l.starts_with(&base) || !checked.insert(l.clone()) {
                assert!(
                    l.starts_with(&base) || l.starts_with("http://h1:8081/"),
                    "{path} links outside: {l}"
                );
                continue;
            }
            let r = client.get(&l).send().await.unwrap();
            assert!(
                r.status().is_success(),
                "link {l} on {path} answers {}",
                r.status()
            );
        }
    }
    // the console is really listened to: a page that fails to load is reported
    let url = format!("{base}/history/nope/");
    let problems = tokio::task::spawn_blocking(move || {
        browser.visit(&url, Duration::from_millis(150)).problems
    })
    .await
    .unwrap();
    assert!(
        problems.iter().any(|p| p.contains("404")),
        "a 404 went unreported: {problems:?}"
    );

    // Content-Security-Policy on every page; earlier URLs of this UI redirect
    let r = client.get(format!("{base}{app}")).send().await.unwrap();
    assert!(r
        .headers()
        .get("content-security-policy")
        .is_some_and(|v| v.to_str().unwrap_or("").contains("script-src 'self'")));
    let r = client
        .get(format!("{base}{app}stages/0/0/"))
        .send()
        .await
        .unwrap();
    assert!(
        r.url().as_str().ends_with("stages/stage/?id=0&attempt=0"),
        "{}",
        r.url()
    );
    for (path, code) in [
        ("/history/nope/", 404),
        ("/history/local-1/jobs/job/?id=99", 404),
        ("/history/local-1/jobs/job/", 400),
        ("/history/local-1/stages/stage/?id=9&attempt=0", 404),
        (
            "/history/local-1/executors/logs/?executor=..&file=stdout",
            400,
        ),
        (
            "/history/local-1/executors/logs/?executor=7&file=stdout",
            404,
        ),
        ("/static/nope.css", 404),
    ] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), code, "{path}");
    }
}
