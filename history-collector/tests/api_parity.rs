//! Parity with Spark's own History Server: real Spark 3.5 and 4.x write event logs (SQL with
//! joins and aggregation, a window, a cached DataFrame, a task that fails once, a failing
//! job, lz4/snappy/lzf/zstd/plain, rolling and single-file, a truncated `.inprogress`);
//! Spark's History Server and ours serve the same directory; every endpoint must answer the
//! same status and the same JSON document, keys in the same order.
//!
//! One normalisation, and why: the History Server reports an unfinished application's
//! `lastUpdated` as the time of its own scan, so two servers scanning at different moments
//! legitimately differ there. Only those two fields of incomplete attempts are blanked, and,
//! for the same reason, the driver's `totalDuration` of incomplete applications (Spark
//! reports the run time up to that scan) and the `duration` of SQL executions still running
//! (up to the request).

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use history_collector::api::{self, Catalog};
use parity_logs::{env, logs_dir};

mod parity_logs;

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A JSON value that keeps object key order, so order differences are differences.
#[derive(Clone, Debug, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

fn to_j(v: &serde_json::Value) -> J {
    match v {
        serde_json::Value::Null => J::Null,
        serde_json::Value::Bool(b) => J::Bool(*b),
        serde_json::Value::Number(n) => J::Num(n.to_string()),
        serde_json::Value::String(s) => J::Str(s.clone()),
        serde_json::Value::Array(a) => J::Arr(a.iter().map(to_j).collect()),
        serde_json::Value::Object(_) => unreachable!("objects are parsed by parse_j"),
    }
}

/// Parses JSON keeping key order (serde_json's Map sorts keys).
fn parse_j(text: &str) -> Option<J> {
    struct P<'a> {
        s: &'a str,
    }
    impl<'a> P<'a> {
        fn ws(&mut self) {
            self.s = self.s.trim_start();
        }
        fn value(&mut self) -> Option<J> {
            self.ws();
            if let Some(rest) = self.s.strip_prefix('{') {
                self.s = rest;
                let mut fields = Vec::new();
                loop {
                    self.ws();
                    if let Some(rest) = self.s.strip_prefix('}') {
                        self.s = rest;
                        return Some(J::Obj(fields));
                    }
                    if let Some(rest) = self.s.strip_prefix(',') {
                        self.s = rest;
                        continue;
                    }
                    let J::Str(k) = self.value()? else {
                        return None;
                    };
                    self.ws();
                    self.s = self.s.strip_prefix(':')?;
                    let v = self.value()?;
                    fields.push((k, v));
                }
            }
            if let Some(rest) = self.s.strip_prefix('[') {
                self.s = rest;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if let Some(rest) = self.s.strip_prefix(']') {
                        self.s = rest;
                        return Some(J::Arr(items));
                    }
                    if let Some(rest) = self.s.strip_prefix(',') {
                        self.s = rest;
                        continue;
                    }
                    items.push(self.value()?);
                }
            }
            // a scalar: let serde_json find where it ends
            let mut de =
                serde_json::Deserializer::from_str(self.s).into_iter::<serde_json::Value>();
            let v = de.next()?.ok()?;
            let used = de.byte_offset();
            self.s = &self.s[used..];
            Some(to_j(&v))
        }
    }
    let mut p = P { s: text };
    let v = p.value()?;
    p.ws();
    p.s.is_empty().then_some(v)
}

fn get_field<'a>(fields: &'a [(String, J)], k: &str) -> Option<&'a J> {
    fields.iter().find(|(n, _)| n == k).map(|(_, v)| v)
}

/// Blanks `lastUpdated`/`lastUpdatedEpoch` of incomplete attempts (see the module docs).
fn normalise_incomplete_driver(j: &mut J) {
    if let J::Arr(items) = j {
        for it in items {
            if let J::Obj(fields) = it {
                if get_field(fields, "id") == Some(&J::Str("driver".into())) {
                    for (k, v) in fields.iter_mut() {
                        if k == "totalDuration" {
                            *v = J::Str("<scan time>".into());
                        }
                    }
                }
            }
        }
    }
}

fn normalise(j: &mut J) {
    match j {
        J::Obj(fields) => {
            // a running SQL execution's duration runs up to the moment of the request
            if get_field(fields, "status") == Some(&J::Str("RUNNING".into()))
                && get_field(fields, "rootExecutionId").is_some()
            {
                for (k, v) in fields.iter_mut() {
                    if k == "duration" {
                        *v = J::Str("<request time>".into());
                    }
                }
            }
            if get_field(fields, "completed") == Some(&J::Bool(false))
                && get_field(fields, "startTime").is_some()
            {
                for (k, v) in fields.iter_mut() {
                    if k == "lastUpdated" || k == "lastUpdatedEpoch" {
                        *v = J::Str("<scan time>".into());
                    }
                }
            }
            for (_, v) in fields.iter_mut() {
                normalise(v);
            }
        }
        J::Arr(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// The first difference between two documents, as a path.
fn diff(a: &J, b: &J, path: &str) -> Option<String> {
    match (a, b) {
        (J::Obj(x), J::Obj(y)) => {
            let kx: Vec<_> = x.iter().map(|(k, _)| k.as_str()).collect();
            let ky: Vec<_> = y.iter().map(|(k, _)| k.as_str()).collect();
            if kx != ky {
                return Some(format!(
                    "{path}: keys differ\n  spark: {kx:?}\n  ours:  {ky:?}"
                ));
            }
            x.iter()
                .zip(y.iter())
                .find_map(|((k, va), (_, vb))| diff(va, vb, &format!("{path}.{k}")))
        }
        (J::Arr(x), J::Arr(y)) => {
            if x.len() != y.len() {
                return Some(format!(
                    "{path}: {} items (spark) vs {} (ours)",
                    x.len(),
                    y.len()
                ));
            }
            x.iter()
                .zip(y.iter())
                .enumerate()
                .find_map(|(i, (va, vb))| diff(va, vb, &format!("{path}[{i}]")))
        }
        _ if a == b => None,
        _ => Some(format!("{path}: spark {a:?} vs ours {b:?}")),
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Status, `Content-Disposition` and the sorted (name, bytes) entries of a zip answer.
async fn fetch_zip(
    client: &reqwest::Client,
    url: &str,
) -> (u16, Option<String>, Vec<(String, Vec<u8>)>) {
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let disposition = r
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.bytes().await.unwrap_or_default();
    let mut entries = Vec::new();
    if let Ok(mut z) = zip::ZipArchive::new(std::io::Cursor::new(body.to_vec())) {
        for i in 0..z.len() {
            let mut f = z
                .by_index(i)
                .unwrap_or_else(|e| panic!("{url}: entry {i}: {e}"));
            let name = f.name().map(|n| n.to_string()).unwrap_or_default();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut data)
                .unwrap_or_else(|e| panic!("{url}: entry {i}: {e}"));
            entries.push((name, data));
        }
    } else if status == 200 {
        entries.push(("<not a zip>".into(), body.to_vec()));
    }
    entries.sort();
    (status, disposition, entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_matches_spark_history_server() {
    let spark_home = env("SPARK4_HOME");
    // generated once and kept under the target dir: Spark runs are the slow part
    let dir = tokio::task::spawn_blocking(logs_dir).await.unwrap();

    // ours
    let catalog = Arc::new(Catalog::new(vec![dir.clone()]));
    {
        let c = catalog.clone();
        tokio::task::spawn_blocking(move || c.refresh())
            .await
            .unwrap();
    }
    let app_count = catalog.entries().len();
    assert!(
        app_count >= 8,
        "expected every generated application, found {app_count}"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api::router(catalog)).await });

    // Spark's
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let props = tmp.path().join("shs.properties");
    std::fs::write(
        &props,
        format!(
            "spark.history.fs.logDirectory file:{}\nspark.history.ui.port {port}\nspark.history.fs.update.interval 1s\n",
            dir.display()
        ),
    )
    .unwrap();
    let _shs = KillOnDrop(
        Command::new(Path::new(&spark_home).join("bin/spark-class"))
            .args([
                "org.apache.spark.deploy.history.HistoryServer",
                "--properties-file",
            ])
            .arg(&props)
            .env("SPARK_LOG_DIR", tmp.path())
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start Spark's History Server"),
    );
    let spark = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(r) = client
            .get(format!("{spark}/api/v1/applications"))
            .send()
            .await
        {
            if let Ok(v) = r.json::<Vec<serde_json::Value>>().await {
                if v.len() >= app_count {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "Spark's History Server did not list {app_count} applications in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut paths: Vec<String> = [
        "/api/v1/version",
        "/api/v1/applications",
        "/api/v1/applications?status=completed",
        "/api/v1/applications?status=running",
        "/api/v1/applications?limit=3",
        "/api/v1/applications?minDate=2020-01-01",
        "/api/v1/applications?maxDate=2020-01-01",
        "/api/v1/applications?minEndDate=2020-01-01",
        "/api/v1/applications?maxEndDate=2020-01-01",
        "/api/v1/applications/no-such-app",
        "/api/v1/applications/no-such-app/jobs",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (_, listing) = fetch(&client, &format!("{spark}/api/v1/applications")).await;
    let listing: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    for app in &listing {
        let id = app["id"].as_str().unwrap();
        let a = format!("/api/v1/applications/{id}");
        for sub in [
            "",
            "/jobs",
            "/jobs?status=failed",
            "/jobs?status=succeeded",
            "/jobs?status=running",
            "/jobs/9999",
            "/executors",
            "/allexecutors",
            "/environment",
            "/storage/rdd",
            "/stages",
            "/stages?status=complete",
            "/stages?status=failed",
            "/stages?details=true",
            "/stages?withSummaries=true",
            "/stages?details=true&withSummaries=true&quantiles=0.9,0.1,0.5",
            "/stages?details=true&taskStatus=FAILED&taskStatus=killed",
            "/stages/9999",
            "/stages/0/9",
            "/stages/0/0/taskSummary?quantiles=0.5,x",
        ] {
            paths.push(format!("{a}{sub}"));
        }
        // SQL executions and cached RDDs, each one and the list variants
        for sub in [
            "/sql",
            "/sql?details=false",
            "/sql?planDescription=false",
            "/sql?details=false&planDescription=false&offset=1&length=2",
            "/sql?offset=2",
            "/sql/9999",
            "/storage/rdd/9999",
        ] {
            paths.push(format!("{a}{sub}"));
        }
        let (_, sql) = fetch(&client, &format!("{spark}{a}/sql?details=false")).await;
        let sql: Vec<serde_json::Value> = serde_json::from_str(&sql).unwrap_or_default();
        for x in sql {
            paths.push(format!("{a}/sql/{}", x["id"]));
            paths.push(format!("{a}/sql/{}?details=false", x["id"]));
        }
        let (_, rdds) = fetch(&client, &format!("{spark}{a}/storage/rdd")).await;
        let rdds: Vec<serde_json::Value> = serde_json::from_str(&rdds).unwrap_or_default();
        for r in rdds {
            paths.push(format!("{a}/storage/rdd/{}", r["id"]));
        }
        let (_, jobs) = fetch(&client, &format!("{spark}{a}/jobs")).await;
        let jobs: Vec<serde_json::Value> = serde_json::from_str(&jobs).unwrap_or_default();
        for j in jobs {
            paths.push(format!("{a}/jobs/{}", j["jobId"]));
        }
        // every stage attempt, with its tasks, summaries and task list variants
        let (_, stages) = fetch(&client, &format!("{spark}{a}/stages")).await;
        let stages: Vec<serde_json::Value> = serde_json::from_str(&stages).unwrap_or_default();
        for st in stages {
            let (id, att) = (&st["stageId"], &st["attemptId"]);
            paths.push(format!("{a}/stages/{id}"));
            for sub in [
                "",
                "?withSummaries=true&quantiles=0.01,0.5,0.99",
                "?details=false",
                "/taskSummary",
                "/taskSummary?quantiles=0,0.33,1",
                "/taskList",
                "/taskList?sortBy=runtime&length=3",
                "/taskList?sortBy=-runtime&offset=1",
                "/taskList?status=failed&status=KILLED",
                "/taskList?status=success&offset=1&length=2",
            ] {
                paths.push(format!("{a}/stages/{id}/{att}{sub}"));
            }
        }
    }

    let incomplete: Vec<String> = listing
        .iter()
        .filter(|a| a["attempts"][0]["completed"] == serde_json::Value::Bool(false))
        .map(|a| {
            format!(
                "/api/v1/applications/{}/",
                a["id"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let mut failures = Vec::new();
    for p in &paths {
        let (ss, sb) = fetch(&client, &format!("{spark}{p}")).await;
        let (os, ob) = fetch(&client, &format!("{ours}{p}")).await;
        if ss != os {
            failures.push(format!("{p}: status {ss} (spark) vs {os} (ours): {ob}"));
            continue;
        }
        if ss != 200 {
            if sb.trim() != ob.trim() {
                failures.push(format!("{p}: error body {sb:?} (spark) vs {ob:?} (ours)"));
            }
            continue;
        }
        match (parse_j(&sb), parse_j(&ob)) {
            (Some(mut a), Some(mut b)) => {
                normalise(&mut a);
                normalise(&mut b);
                if incomplete.iter().any(|pre| p.starts_with(pre.as_str()))
                    && p.contains("executors")
                {
                    normalise_incomplete_driver(&mut a);
                    normalise_incomplete_driver(&mut b);
                }
                if let Some(d) = diff(&a, &b, "$") {
                    failures.push(format!("{p}: {d}"));
                }
            }
            _ => failures.push(format!("{p}: unparsable JSON")),
        }
    }
    // the whole list, untruncated, for whoever fixes them
    let _ = std::fs::write(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("api-parity-failures.txt"),
        failures.join("\n"),
    );
    // the event-log zips: same status, download name and entries (names and bytes); Spark
    // adds a directory's files in file-system order, so entries are compared sorted
    for app in &listing {
        let id = app["id"].as_str().unwrap_or_default();
        let p = format!("/api/v1/applications/{id}/logs");
        let (ss, sd, sz) = fetch_zip(&client, &format!("{spark}{p}")).await;
        let (os, od, oz) = fetch_zip(&client, &format!("{ours}{p}")).await;
        if (ss, &sd, &sz) != (os, &od, &oz) {
            failures.push(format!(
                "{p}: spark {ss} {sd:?} {:?}\n  ours {os} {od:?} {:?}",
                sz.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>(),
                oz.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
            ));
        }
        paths.push(p);
    }
    assert!(
        failures.is_empty(),
        "{} of {} endpoints differ from Spark's History Server:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} endpoints identical to Spark's History Server",
        paths.len()
    );
}
