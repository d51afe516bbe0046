//! The web UI on real Spark 3.5 and 4.x applications (`tests/ui_gen_eventlogs.py`: SQL,
//! failed and retried tasks, an executor JVM killed under a task, an executor removed by the
//! driver, cached RDDs, a skewed and a spilling stage, a failing job and query, a skipped
//! stage, and a driver killed with SIGKILL mid-job), with the executors' and drivers' real
//! logs stored as collected pod logs.
//!
//! Headless Chromium walks every page of every application from the application list on
//! (each job, stage, RDD, query and log page): no console error, no planted markup rendered,
//! no secret shown, and every link on every page answers. The pictures are checked against
//! the REST API: the application timeline has exactly the API's jobs and executors (removed
//! ones marked), each job's DAG exactly its stages and the edges to their parents (from the
//! event log), skipped stages shown as skipped, each query's plan exactly the API's nodes
//! and edges, each stage's task timeline the slowest tasks. Finally Spark's own History
//! Server (from the 4.x wheel) serves the same logs and each page is saved beside Spark's
//! for review, under `target/tmp/ui-screenshots/spark/`.

mod ui_util;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use history_collector::api::{self, Catalog};
use history_collector::eventlog;
use history_collector::ingest::layout::{podlog_key, LogStore};
use serde_json::Value;
use ui_util::{side_by_side_html, Browser};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run through scripts/test.sh or eval \"$(bash scripts/install-test-tools.sh --print-env)\"")
    })
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One Spark version's generated applications.
struct Run {
    version: &'static str,
    dir: PathBuf,
    main_app: String,
    killed_app: String,
}

/// Generates (or reuses, while the script and the Pythons are unchanged) both versions'
/// applications; all event logs end up in `<root>/events`.
fn generate() -> (PathBuf, Vec<Run>) {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-spark-logs");
    let script = sidecars_common::crate_dir!().join("tests/ui_gen_eventlogs.py");
    let versions = [
        ("3.5", "SPARK35_PYTHON", "SPARK35_HOME", "s35"),
        ("4.x", "SPARK4_PYTHON", "SPARK4_HOME", "s4"),
    ];
    let stamp = format!(
        "{}\n{}\n{}",
        env("SPARK35_PYTHON"),
        env("SPARK4_PYTHON"),
        std::fs::read_to_string(&script).unwrap_or_default()
    );
    let fresh = std::fs::read_to_string(root.join(".complete")).is_ok_and(|s| s == stamp);
    if !fresh {
        let _ = std::fs::remove_dir_all(&root);
        for (_, py, home, sub) in versions {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).unwrap();
            let err = std::fs::File::create(d.join("driver.stderr")).unwrap();
            let status = Command::new(env(py))
                .arg(&script)
                .arg(root.join("events"))
                .arg(d.join("podlogs"))
                .env("SPARK_LOCAL_IP", "127.0.0.1")
                .env("PYSPARK_PYTHON", env(py))
                .env("SPARK_HOME", env(home))
                .stdout(Stdio::null())
                .stderr(err)
                .status()
                .expect("cannot start python");
            assert!(
                status.success(),
                "{} failed: see {}",
                script.display(),
                d.join("driver.stderr").display()
            );
        }
        std::fs::write(root.join(".complete"), &stamp).unwrap();
    }
    let runs = versions
        .iter()
        .map(|(v, _, _, sub)| {
            let dir = root.join(sub);
            let read = |f: &str| {
                std::fs::read_to_string(dir.join("podlogs").join(f))
                    .unwrap_or_else(|e| panic!("{f} of Spark {v}: {e}"))
                    .trim()
                    .to_string()
            };
            Run {
                version: v,
                main_app: read("main-app-id"),
                killed_app: read("killed-app-id"),
                dir,
            }
        })
        .collect();
    (root.join("events"), runs)
}

/// A Spark log file as a collected Kubernetes container log: each line prefixed with an
/// RFC 3339 timestamp (log4j's own `yy/MM/dd HH:mm:ss` where the line has one, else the
/// previous line's).
fn as_pod_log(text: &str) -> String {
    let mut last = "2000-01-01T00:00:00.000000000Z".to_string();
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        if let Ok(t) =
            chrono::NaiveDateTime::parse_from_str(line.get(..17).unwrap_or(""), "%y/%m/%d %H:%M:%S")
        {
            last = t.format("%Y-%m-%dT%H:%M:%S.000000000Z").to_string();
        }
        out.push_str(&last);
        out.push(' ');
        out.push_str(line);
        out.push('\n');
    }
    out
}

async fn put(store: &LogStore, key: &str, text: String) {
    let len = text.len() as u64;
    store
        .put_complete(key, len, Box::pin(std::io::Cursor::new(text.into_bytes())))
        .await
        .unwrap();
}

/// Stores the runs' executor and driver logs as collected pod logs.
async fn store_logs(store: &LogStore, runs: &[Run]) {
    for r in runs {
        let pods = r.dir.join("podlogs").join(&r.main_app);
        for e in std::fs::read_dir(&pods).unwrap() {
            let e = e.unwrap();
            let exec = e.file_name().to_string_lossy().to_string();
            // Kubernetes keeps one log per container: stderr (log4j) and stdout together
            let mut text = String::new();
            for f in ["stderr", "stdout"] {
                text.push_str(&std::fs::read_to_string(e.path().join(f)).unwrap_or_default());
            }
            put(
                store,
                &podlog_key(&r.main_app, &exec, "spark-kubernetes-executor"),
                as_pod_log(&text),
            )
            .await;
        }
        for (app, file) in [
            (&r.main_app, r.dir.join("driver.stderr")),
            (&r.killed_app, r.dir.join("podlogs/killed-driver.stderr")),
        ] {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            put(
                store,
                &podlog_key(app, "driver", "spark-kubernetes-driver"),
                as_pod_log(&text),
            )
            .await;
        }
    }
}

/// `Parent IDs` of every stage, per application, read from the event logs themselves.
fn stage_parents(events: &Path) -> BTreeMap<String, BTreeMap<i64, BTreeSet<i64>>> {
    let mut out: BTreeMap<String, BTreeMap<i64, BTreeSet<i64>>> = BTreeMap::new();
    let found = eventlog::scan_dir(events).unwrap();
    let limits = history_collector::logdir::admit::Limits::default();
    for src in eventlog::dir_sources(events, found, limits.max_line_bytes) {
        let mut app = String::new();
        let mut parents: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
        eventlog::replay_blocks(&src, &mut |block| {
            for line in block.lines() {
                let Ok(ev) = serde_json::from_slice::<Value>(line) else {
                    continue;
                };
                match ev["Event"].as_str() {
                    Some("SparkListenerApplicationStart") => {
                        app = ev["App ID"].as_str().unwrap_or("").to_string()
                    }
                    Some("SparkListenerJobStart") => {
                        for s in ev["Stage Infos"].as_array().into_iter().flatten() {
                            let id = s["Stage ID"].as_i64().unwrap();
                            let e = parents.entry(id).or_default();
                            for p in s["Parent IDs"].as_array().into_iter().flatten() {
                                e.insert(p.as_i64().unwrap());
                            }
                        }
                    }
                    _ => {}
                }
            }
            block
        });
        out.insert(app, parents);
    }
    out
}

/// The values of `data-<attr>="..."` inside the element starting at `start` up to `end`.
fn data_values(html: &str, start: &str, end: &str, attr: &str) -> Vec<String> {
    let Some(i) = html.find(start) else {
        return Vec::new();
    };
    let part = &html[i..];
    let part = &part[..part.find(end).unwrap_or(part.len())];
    let key = format!("data-{attr}=\"");
    part.split(&key)
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

/// `(from, to)` of the edges drawn in the SVG starting at `start`.
fn edges(html: &str, start: &str) -> BTreeSet<(i64, i64)> {
    let froms = data_values(html, start, "</svg>", "from");
    let tos = data_values(html, start, "</svg>", "to");
    froms
        .iter()
        .zip(&tos)
        .map(|(f, t)| (f.parse().unwrap(), t.parse().unwrap()))
        .collect()
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let r = client.get(url).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

async fn get_html(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(url).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.text().await.unwrap()
}

/// Pages the crawler renders in the browser: a page of an application or the list, with no
/// query beyond what names the thing shown (paging and sorting variants are only fetched).
fn canonical(path_and_query: &str) -> bool {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if !(path == "/" || path.starts_with("/history/")) {
        return false;
    }
    query.split('&').filter(|p| !p.is_empty()).all(|p| {
        let k = p.split('=').next().unwrap_or("");
        ["id", "attempt", "executor", "file"].contains(&k)
    }) && (path != "/" || query.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_applications_render_and_match_the_api() {
    let (events, runs) = tokio::task::spawn_blocking(generate).await.unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = LogStore::new(
        sidecars_common::objstore::open(
            &format!("file://{}", store_dir.path().display()),
            &Default::default(),
        )
        .await
        .unwrap(),
    );
    store_logs(&store, &runs).await;
    let catalog = Arc::new(Catalog::with_store(vec![events.clone()], store.clone()));
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
    let client = reqwest::Client::new();

    // every application is listed, the killed drivers as incomplete
    let apps = get_json(&client, &format!("{base}/api/v1/applications")).await;
    let ids: BTreeSet<String> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    for r in &runs {
        assert!(
            ids.contains(&r.main_app) && ids.contains(&r.killed_app),
            "{ids:?}"
        );
        let killed = get_json(
            &client,
            &format!("{base}/api/v1/applications/{}", r.killed_app),
        )
        .await;
        assert_eq!(
            killed["attempts"][0]["completed"], false,
            "Spark {}",
            r.version
        );
    }

    structure(&client, &base, &events, &runs).await;
    crawl(&base).await;
    compare_with_spark(&base, &events, &runs, &client).await;
}

/// The pictures against the REST API and the event logs.
async fn structure(client: &reqwest::Client, base: &str, events: &Path, runs: &[Run]) {
    let parents = stage_parents(events);
    for r in runs {
        for app in [&r.main_app, &r.killed_app] {
            let api = format!("{base}/api/v1/applications/{app}");
            let page = format!("{base}/history/{app}/");
            let html = get_html(client, &page).await;
            let jobs = get_json(client, &format!("{api}/jobs")).await;
            let execs = get_json(client, &format!("{api}/allexecutors")).await;
            let stages = get_json(client, &format!("{api}/stages")).await;
            // the application timeline: the API's jobs and executors, removed ones marked
            let drawn: BTreeSet<String> =
                data_values(&html, "id=\"app-timeline\"", "</svg>", "job")
                    .into_iter()
                    .collect();
            let want: BTreeSet<String> = jobs
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["jobId"].to_string())
                .collect();
            assert_eq!(drawn, want, "jobs on {page}");
            let drawn: BTreeSet<String> =
                data_values(&html, "id=\"app-timeline\"", "</svg>", "executor")
                    .into_iter()
                    .collect();
            let want: BTreeSet<String> = execs
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(drawn, want, "executors on {page}");
            for e in execs.as_array().unwrap() {
                let id = e["id"].as_str().unwrap();
                let removed =
                    html.contains(&format!("class=\"bar exec-dead\" data-executor=\"{id}\""));
                assert_eq!(
                    removed,
                    e.get("removeTime").is_some(),
                    "executor {id} on {page}"
                );
            }
            if app == &r.main_app {
                let removed = execs
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e.get("removeTime").is_some())
                    .count();
                assert!(
                    removed >= 2,
                    "Spark {}: a killed and a removed executor: {execs}",
                    r.version
                );
            }
            // each job's DAG: its stages, the edges to their parents, skipped ones marked
            let status_of: BTreeMap<i64, String> = stages
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["stageId"].as_i64().unwrap(),
                        s["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let mut skipped_seen = 0;
            for j in jobs.as_array().unwrap() {
                let id = j["jobId"].as_i64().unwrap();
                let url = format!("{page}jobs/job/?id={id}");
                let jhtml = get_html(client, &url).await;
                let want: BTreeSet<i64> = j["stageIds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_i64().unwrap())
                    .collect();
                let drawn: BTreeSet<i64> = data_values(&jhtml, "id=\"job-dag\"", "</svg>", "stage")
                    .iter()
                    .map(|s| s.parse().unwrap())
                    .collect();
                assert_eq!(drawn, want, "stages of {url}");
                let want_edges: BTreeSet<(i64, i64)> = want
                    .iter()
                    .flat_map(|s| {
                        parents[app]
                            .get(s)
                            .into_iter()
                            .flatten()
                            .filter(|p| want.contains(p))
                            .map(move |p| (*p, *s))
                    })
                    .collect();
                assert_eq!(
                    edges(&jhtml, "id=\"job-dag\""),
                    want_edges,
                    "edges of {url}"
                );
                for s in &want {
                    let skipped = status_of.get(s).is_none_or(|st| st == "SKIPPED");
                    let marked =
                        jhtml.contains(&format!("class=\"node skipped\" data-stage=\"{s}\""));
                    assert_eq!(marked, skipped, "stage {s} on {url}");
                    skipped_seen += usize::from(skipped);
                }
                // the job's stage timeline: its stage attempts that were submitted
                let want: BTreeSet<String> = stages
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| {
                        want.contains(&s["stageId"].as_i64().unwrap())
                            && s.get("submissionTime").is_some()
                    })
                    .map(|s| format!("{}.{}", s["stageId"], s["attemptId"]))
                    .collect();
                let drawn: BTreeSet<String> =
                    data_values(&jhtml, "id=\"job-timeline\"", "</svg>", "stage")
                        .into_iter()
                        .collect();
                assert_eq!(drawn, want, "stage timeline of {url}");
            }
            if app == &r.main_app {
                assert!(
                    skipped_seen > 0,
                    "Spark {}: no skipped stage drawn",
                    r.version
                );
            }
            // each stage attempt's task timeline: the slowest tasks
            for s in stages.as_array().unwrap() {
                let (sid, att) = (
                    s["stageId"].as_i64().unwrap(),
                    s["attemptId"].as_i64().unwrap(),
                );
                let url = format!("{page}stages/stage/?id={sid}&attempt={att}");
                let shtml = get_html(client, &url).await;
                let tasks = get_json(
                    client,
                    &format!("{api}/stages/{sid}/{att}/taskList?length=100000"),
                )
                .await;
                let mut durs: Vec<(i64, i64)> = tasks
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|t| Some((t["duration"].as_i64()?, t["taskId"].as_i64()?)))
                    .filter(|(d, _)| *d > 0)
                    .collect();
                durs.sort_by_key(|(d, id)| (std::cmp::Reverse(*d), *id));
                let drawn: Vec<i64> = data_values(&shtml, "id=\"task-timeline\"", "</svg>", "task")
                    .iter()
                    .map(|t| t.parse().unwrap())
                    .collect();
                if durs.is_empty() {
                    assert!(drawn.is_empty(), "{url}");
                    continue;
                }
                assert_eq!(drawn.len(), durs.len().min(40), "task timeline of {url}");
                let cutoff = durs[drawn.len() - 1].0;
                for t in &drawn {
                    let d = durs.iter().find(|(_, id)| id == t).map(|(d, _)| *d);
                    assert!(
                        d.is_some_and(|d| d >= cutoff),
                        "task {t} on {url} is not among the slowest"
                    );
                }
            }
            // each query's plan: the API's operators and edges
            let sql = get_json(
                client,
                &format!("{api}/sql?details=true&planDescription=false"),
            )
            .await;
            for q in sql.as_array().unwrap() {
                let id = q["id"].as_i64().unwrap();
                let url = format!("{page}SQL/execution/?id={id}");
                let qhtml = get_html(client, &url).await;
                let want: BTreeSet<String> = q["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|n| {
                        !n["nodeName"]
                            .as_str()
                            .unwrap()
                            .starts_with("WholeStageCodegen")
                    })
                    .map(|n| n["nodeId"].to_string())
                    .collect();
                let drawn: BTreeSet<String> =
                    data_values(&qhtml, "id=\"plan-graph\"", "</svg>", "node")
                        .into_iter()
                        .collect();
                assert_eq!(drawn, want, "operators of {url}");
                let want: BTreeSet<(i64, i64)> = q["edges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| (e["fromId"].as_i64().unwrap(), e["toId"].as_i64().unwrap()))
                    .collect();
                assert_eq!(edges(&qhtml, "id=\"plan-graph\""), want, "edges of {url}");
            }
        }
    }
}

/// Every page in the browser, from the list on; every link fetched.
async fn crawl(base: &str) {
    let base_s = base.to_string();
    let (visited, links) = tokio::task::spawn_blocking(move || {
        let base = base_s;
        let mut b = Browser::launch();
        let mut queue = vec!["/".to_string()];
        let mut seen: HashSet<String> = queue.iter().cloned().collect();
        let mut links: BTreeSet<String> = BTreeSet::new();
        let mut visited = 0;
        while let Some(path) = queue.pop() {
            let url = format!("{base}{path}");
            let v = b.visit(&url, Duration::from_millis(50));
            visited += 1;
            assert!(v.problems.is_empty(), "{path}: console: {:?}", v.problems);
            assert_eq!(
                b.eval("typeof window.__pwned"),
                "undefined",
                "{path} ran planted script"
            );
            assert_eq!(
                b.eval(
                    "document.querySelectorAll('.planted, img, iframe, script:not([src])').length"
                ),
                0,
                "{path} let planted markup through"
            );
            let html = b.html();
            assert!(!html.contains("hunter2"), "{path} shows a password");
            for l in b.links() {
                let l = l.split('#').next().unwrap_or("").to_string();
                let Some(rel) = l.strip_prefix(&base) else {
                    panic!("{path} links to another site: {l}");
                };
                links.insert(rel.to_string());
                if canonical(rel) && seen.insert(rel.to_string()) {
                    queue.push(rel.to_string());
                }
            }
        }
        (visited, links)
    })
    .await
    .unwrap();
    assert!(visited > 100, "only {visited} pages were rendered");
    let client = reqwest::Client::new();
    for l in &links {
        let r = client.get(format!("{base}{l}")).send().await.unwrap();
        assert!(r.status().is_success(), "link {l} answers {}", r.status());
    }
    eprintln!(
        "rendered {visited} pages in Chromium, fetched {} distinct links",
        links.len()
    );
}

/// Starts Spark's History Server (4.x wheel) on `events`; waits until it lists `n` apps.
async fn spark_history_server(events: &Path, n: usize) -> (KillOnDrop, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        conf.path(),
        format!(
            "spark.history.fs.logDirectory file:{}\nspark.history.ui.port {port}\nspark.history.fs.update.interval 1s\n",
            events.display()
        ),
    )
    .unwrap();
    let home = env("SPARK4_HOME");
    let child = Command::new(format!("{home}/bin/spark-class"))
        .args([
            "org.apache.spark.deploy.history.HistoryServer",
            "--properties-file",
        ])
        .arg(conf.path())
        .env("SPARK_HOME", &home)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Spark's History Server");
    let guard = KillOnDrop(child);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = match reqwest::get(format!("{url}/api/v1/applications")).await {
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0),
            Err(_) => 0,
        };
        if listed >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Spark's History Server lists {listed} of {n} apps"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // the server reads the file at start only; keep it until then
    drop(conf);
    (guard, url)
}

/// Each page of ours beside Spark's History Server's for the same application.
async fn compare_with_spark(base: &str, events: &Path, runs: &[Run], client: &reqwest::Client) {
    let mut pages: Vec<(String, String)> = vec![("apps".into(), "/".into())];
    for r in runs {
        let app = &r.main_app;
        let api = format!("{base}/api/v1/applications/{app}");
        let v = r.version.replace('.', "");
        let p = format!("/history/{app}/");
        for (name, rel) in [
            ("jobs", "jobs/"),
            ("stages", "stages/"),
            ("executors", "executors/"),
            ("environment", "environment/"),
            ("storage", "storage/"),
            ("sql", "SQL/"),
        ] {
            pages.push((format!("{v}-{name}"), format!("{p}{rel}")));
        }
        let jobs = get_json(client, &format!("{api}/jobs")).await;
        let job = |pred: &dyn Fn(&Value) -> bool| -> Option<i64> {
            jobs.as_array()
                .unwrap()
                .iter()
                .find(|j| pred(j))
                .and_then(|j| j["jobId"].as_i64())
        };
        let desc = |d: &'static str| {
            move |j: &Value| j["description"].as_str().is_some_and(|x| x.starts_with(d))
        };
        for (name, id) in [
            ("job-sql", job(&desc("join & aggregate"))),
            (
                "job-skipped",
                job(&|j: &Value| j["numSkippedStages"].as_i64() > Some(0)),
            ),
            ("job-failed", job(&|j: &Value| j["status"] == "FAILED")),
        ] {
            if let Some(id) = id {
                pages.push((format!("{v}-{name}"), format!("{p}jobs/job/?id={id}")));
            }
        }
        let stages = get_json(client, &format!("{api}/stages")).await;
        let stage_of_job = |jid: Option<i64>| -> Option<(i64, i64)> {
            let jid = jid?;
            let j = jobs
                .as_array()?
                .iter()
                .find(|j| j["jobId"].as_i64() == Some(jid))?;
            let last = j["stageIds"]
                .as_array()?
                .iter()
                .filter_map(Value::as_i64)
                .max()?;
            Some((last, 0))
        };
        let spill = stages
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["diskBytesSpilled"].as_i64() > Some(0));
        for (name, st) in [
            ("stage-skew", stage_of_job(job(&desc("a skewed stage")))),
            (
                "stage-failures",
                stage_of_job(job(&desc("tasks that fail once"))),
            ),
            (
                "stage-executor-lost",
                stage_of_job(job(&desc("an executor killed"))),
            ),
            (
                "stage-spill",
                spill.map(|s| {
                    (
                        s["stageId"].as_i64().unwrap(),
                        s["attemptId"].as_i64().unwrap(),
                    )
                }),
            ),
        ] {
            if let Some((s, a)) = st {
                pages.push((
                    format!("{v}-{name}"),
                    format!("{p}stages/stage/?id={s}&attempt={a}"),
                ));
            }
        }
        let rdds = get_json(client, &format!("{api}/storage/rdd")).await;
        if let Some(id) = rdds
            .as_array()
            .and_then(|a| a.first())
            .and_then(|r| r["id"].as_i64())
        {
            pages.push((format!("{v}-rdd"), format!("{p}storage/rdd/?id={id}")));
        }
        let sql = get_json(client, &format!("{api}/sql")).await;
        if let Some(id) = sql
            .as_array()
            .unwrap()
            .iter()
            .find(|q| {
                q["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("join & aggregate"))
            })
            .and_then(|q| q["id"].as_i64())
        {
            pages.push((
                format!("{v}-sql-execution"),
                format!("{p}SQL/execution/?id={id}"),
            ));
        }
        pages.push((
            format!("{v}-killed-jobs"),
            format!("/history/{}/jobs/", r.killed_app),
        ));
        // ours only: Spark has no page for a collected log
        pages.push((
            format!("{v}-log"),
            format!("{p}executors/logs/?executor=1&file=stdout"),
        ));
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots/spark");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = base.to_string();
    let (hs, spark) = spark_history_server(events, runs.len() * 2).await;
    tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        for (name, path) in &pages {
            let ours = dir.join(format!("{name}-ours.png"));
            let v = b.visit(&format!("{base}{path}"), Duration::from_millis(100));
            assert!(v.problems.is_empty(), "{path}: {:?}", v.problems);
            b.screenshot(&ours, 1280, 4000);
            if name.ends_with("-log") {
                continue;
            }
            let theirs = dir.join(format!("{name}-spark.png"));
            // Spark's pages fill their tables from the REST API after loading
            let spark_path = if path == "/" {
                "/?showIncomplete=false".to_string()
            } else {
                path.clone()
            };
            b.visit(&format!("{spark}{spark_path}"), Duration::from_millis(2500));
            b.screenshot(&theirs, 1280, 4000);
            let page = side_by_side_html(
                &dir,
                ("history-collector", &ours),
                ("Spark's History Server", &theirs),
            );
            b.visit(
                &format!("file://{}", page.display()),
                Duration::from_millis(300),
            );
            b.screenshot(&dir.join(format!("{name}.png")), 2600, 5000);
        }
    })
    .await
    .unwrap();
    drop(hs);
}
