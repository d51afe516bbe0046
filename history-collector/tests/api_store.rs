//! The REST API and UI served from the object store, through the real collector binary:
//! what a platform engineer sees when drivers' pods (and their disks) are gone.
//!
//! - `s3_store_serves_logs_whose_files_are_gone`: the collector runs with `--storage s3://`
//!   (a real Garage server) and an `--event-log-dir`; real Spark 3.5 and 4.x event logs
//!   (every codec, single files and rolling directories, truncated `.inprogress` ones) are
//!   dropped into the directory, ingested, then deleted locally. Every application must
//!   still be listed once, and answer exactly as our API over the same logs in a plain
//!   directory: applications, jobs, stages, executors, environment, storage, SQL, the
//!   `/logs` zip and the application's UI page.
//! - `s3_store_serves_agent_shipped_and_growing_logs` and
//!   `file_store_serves_agent_shipped_and_growing_logs`: no event-log directory at all; an
//!   agent ships the logs over gRPC into the store (S3, then `file://`). The same real logs
//!   answer the same, and a log written in chunks while everything runs (kept in the store
//!   as parts) shows as incomplete with the jobs logged so far, then completed once renamed.
//!
//! What legitimately differs between a log read from the store and the same log read from
//! a directory is blanked before comparing, and nothing else: where the log was found
//! (`logSourceName`, `logSourceFullPath`), its "last updated" time (the file's modification
//! time against the object's last-modified time; for a running application, the time of
//! each server's own scan), and durations measured up to that scan or the request (a
//! running application's active executors' `totalDuration`, a running SQL execution's
//! `duration`, a running task's `duration` and the duration quantiles of its stage: Spark
//! counts a running task's time up to the log's last modification). A truncated
//! `.inprogress` file is stored cut after its last whole line, so its zip entry is compared
//! with the source cut there.

mod ingest_util;
mod parity_logs;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use history_collector::api::{self, Catalog};
use history_collector::ingest::layout::LogStore;
use ingest_util::*;
use parity_logs::{copy_tree, logs_dir};
use serde_json::Value;
use sidecars_common::objstore::testing::Garage;

fn garage() -> Garage {
    Garage::start().unwrap_or_else(|e| panic!("the store API tests need Garage: {e:#}"))
}

// ---- the two servers

/// Our API and UI over a plain directory, in this process: the reference.
async fn serve_dir(dir: &Path) -> String {
    let catalog = Arc::new(Catalog::new(vec![dir.to_path_buf()]));
    let c = catalog.clone();
    tokio::task::spawn_blocking(move || c.refresh())
        .await
        .unwrap();
    let router = api::router(catalog.clone()).merge(history_collector::ui::router(catalog));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// The collector binary on `port`, quiet (warnings only), ready to answer.
fn start_collector(port: u16, args: &[&str], env: &[(&str, String)]) -> Daemon {
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--log-level", "warn"])
        .collect();
    start_collector_env(port, &args, env)
}

fn start_agent(dir: &Path, port: u16) -> Daemon {
    let child = Command::new(bin())
        .arg("agent")
        .arg("--event-log-dir")
        .arg(dir)
        .args(["--collector", &format!("http://127.0.0.1:{port}")])
        .arg("--token-file")
        .arg(token_file())
        .args(["--poll-interval", "100ms", "--shutdown-timeout", "5s"])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start agent");
    Daemon { child, port }
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Vec<u8>) {
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (
        status,
        r.bytes()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: body: {e}"))
            .to_vec(),
    )
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let (status, body) = get(client, url).await;
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

// ---- comparing

/// Blanks what legitimately differs (see the module docs). `running`: the application has
/// not finished.
fn normalise(v: &mut Value, running: bool) {
    match v {
        Value::Object(m) => {
            for k in [
                "logSourceName",
                "logSourceFullPath",
                "lastUpdated",
                "lastUpdatedEpoch",
            ] {
                m.remove(k);
            }
            if running && m.get("isActive") == Some(&Value::Bool(true)) {
                m.remove("totalDuration");
            }
            // a running SQL execution's or task's duration runs up to the request or replay
            if m.get("status") == Some(&Value::String("RUNNING".into()))
                && (m.contains_key("rootExecutionId") || m.contains_key("taskId"))
            {
                m.remove("duration");
            }
            // and so do the duration quantiles of a stage with a running task
            let runs = |t: &Value| t["status"] == "RUNNING";
            if m.get("tasks")
                .and_then(Value::as_object)
                .is_some_and(|ts| ts.values().any(runs))
            {
                if let Some(Value::Object(d)) = m.get_mut("taskMetricsDistributions") {
                    d.remove("duration");
                }
            }
            for x in m.values_mut() {
                normalise(x, running);
            }
        }
        Value::Array(a) => {
            for x in a {
                normalise(x, running);
            }
        }
        _ => {}
    }
}

/// The first difference between two JSON documents, by path (empty: none).
fn diff(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    None => return Some(format!("{path}.{k}: missing in ours")),
                    Some(vb) => {
                        if let Some(d) = diff(va, vb, &format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{path}.{k}: only in ours"))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| diff(va, vb, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => {
            let short = |v: &Value| v.to_string().chars().take(300).collect::<String>();
            Some(format!(
                "{path}: reference {} vs ours {}",
                short(a),
                short(b)
            ))
        }
    }
}

/// The (name, bytes) entries of a zip, sorted.
fn unzip(body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(body)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).map_err(|e| e.to_string())?;
        let name = f.name().map(|n| n.to_string()).unwrap_or_default();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).map_err(|e| e.to_string())?;
        out.push((name, data));
    }
    out.sort();
    Ok(out)
}

/// A growing file as the store keeps it: cut after its last whole line.
fn whole_lines(b: &[u8]) -> &[u8] {
    match b.iter().rposition(|&c| c == b'\n') {
        Some(i) => &b[..=i],
        None => &[],
    }
}

const SUBS: [&str; 13] = [
    "",
    "/jobs",
    "/stages",
    "/stages?details=true&withSummaries=true",
    "/executors",
    "/allexecutors",
    "/environment",
    "/storage/rdd",
    "/sql",
    "/jobs/0",
    "/stages/0/0/taskList",
    "/no-such-thing",
    "/9/jobs",
];

/// Differences between `ours` and the reference for the applications `ids` (each listed
/// once in both, with the same answers everywhere); empty when they answer the same.
async fn differences(
    client: &reqwest::Client,
    ours: &str,
    reference: &str,
    ids: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let listing = |v: Value| -> Vec<Value> {
        let mut apps: Vec<Value> = serde_json::from_value(v).unwrap_or_default();
        apps.retain(|a| ids.iter().any(|id| a["id"] == id.as_str()));
        for a in &mut apps {
            let running = a["attempts"][0]["completed"] == false;
            normalise(a, running);
        }
        apps
    };
    let want = listing(get_json(client, &format!("{reference}/api/v1/applications")).await);
    let got = listing(get_json(client, &format!("{ours}/api/v1/applications")).await);
    if want.len() != ids.len() {
        out.push(format!(
            "the reference lists {} of {} applications",
            want.len(),
            ids.len()
        ));
    }
    if let Some(d) = diff(&Value::Array(want.clone()), &Value::Array(got), "$") {
        out.push(format!("/api/v1/applications: {d}"));
        return out;
    }
    for (id, app) in ids.iter().zip(&want) {
        let running = app["attempts"][0]["completed"] == false;
        for sub in SUBS {
            let p = format!("/api/v1/applications/{id}{sub}");
            let (ws, wb) = get(client, &format!("{reference}{p}")).await;
            let (gs, gb) = get(client, &format!("{ours}{p}")).await;
            if ws != gs {
                out.push(format!("{p}: status {ws} (reference) vs {gs} (ours)"));
                continue;
            }
            if ws != 200 {
                if wb != gb {
                    out.push(format!(
                        "{p}: error {:?} (reference) vs {:?} (ours)",
                        String::from_utf8_lossy(&wb),
                        String::from_utf8_lossy(&gb)
                    ));
                }
                continue;
            }
            match (
                serde_json::from_slice::<Value>(&wb),
                serde_json::from_slice::<Value>(&gb),
            ) {
                (Ok(mut w), Ok(mut g)) => {
                    normalise(&mut w, running);
                    normalise(&mut g, running);
                    if let Some(d) = diff(&w, &g, "$") {
                        out.push(format!("{p}: {d}"));
                    }
                }
                _ => out.push(format!("{p}: not JSON")),
            }
        }
        // the event-log zip: same entries, same bytes
        let p = format!("/api/v1/applications/{id}/logs");
        let (ws, wb) = get(client, &format!("{reference}{p}")).await;
        let (gs, gb) = get(client, &format!("{ours}{p}")).await;
        match (ws, gs, unzip(&wb), unzip(&gb)) {
            (200, 200, Ok(w), Ok(g)) => {
                let w: Vec<(String, Vec<u8>)> = w
                    .into_iter()
                    .map(|(n, b)| {
                        let b = if n.ends_with(".inprogress") {
                            whole_lines(&b).to_vec()
                        } else {
                            b
                        };
                        (n, b)
                    })
                    .collect();
                if w != g {
                    out.push(format!(
                        "{p}: reference {:?}\n  ours {:?}",
                        w.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>(),
                        g.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
                    ));
                }
            }
            (ws, gs, w, g) => out.push(format!(
                "{p}: reference {ws} {:?}, ours {gs} {:?}",
                w.err(),
                g.err()
            )),
        }
        // the application's UI page (a finished one: a running one shows scan times)
        if !running {
            let p = format!("/history/{id}/");
            let (ws, wb) = get(client, &format!("{reference}{p}")).await;
            let (gs, gb) = get(client, &format!("{ours}{p}")).await;
            if (ws, &wb) != (gs, &gb) {
                out.push(format!(
                    "{p}: reference {ws} ({} bytes) vs ours {gs} ({} bytes)",
                    wb.len(),
                    gb.len()
                ));
            }
        }
    }
    out
}

/// Polls [`differences`] until there are none, or panics with the last ones.
async fn eventually_same(
    client: &reqwest::Client,
    ours: &str,
    reference: &str,
    ids: &[String],
    timeout: Duration,
    what: &str,
) {
    let start = Instant::now();
    loop {
        let d = differences(client, ours, reference, ids).await;
        if d.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: still different after {timeout:?}:\n{}",
            d.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The listing of `base`, polled until `ok` holds; panics naming `what` after `timeout`.
async fn wait_listing(
    client: &reqwest::Client,
    base: &str,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let apps: Vec<Value> =
            serde_json::from_value(get_json(client, &format!("{base}/api/v1/applications")).await)
                .unwrap_or_default();
        if ok(&apps) {
            return apps;
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: not reached after {timeout:?}; listing: {:#}",
            Value::Array(apps)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every attempt of every listed application read from the store's copy.
fn all_from_store(apps: &[Value]) -> bool {
    apps.iter().all(|a| {
        a["attempts"].as_array().is_some_and(|at| {
            at.iter().all(|t| {
                t["logSourceName"]
                    .as_str()
                    .is_some_and(|s| s.contains("/eventlogs/"))
            })
        })
    })
}

fn ids_of(apps: &[Value]) -> Vec<String> {
    apps.iter()
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until the store holds every file of `src`: finished ones complete and equal in
/// size, growing plain ones up to their last whole line.
async fn wait_stored(ls: &LogStore, src: &Path, timeout: Duration) {
    let start = Instant::now();
    loop {
        let stored = ls.list_all_eventlogs().await.unwrap_or_default();
        let mut missing = Vec::new();
        for (rel, data) in source_files(src) {
            let have = stored
                .get(&log_name(&rel))
                .and_then(|fs| fs.iter().find(|f| f.rel == rel));
            let ok = match have {
                None => false,
                Some(f) if rel.ends_with(".inprogress") => {
                    // a compressed one is cut on a codec unit only the ingest knows about
                    let compressed = [".lz4.", ".lzf.", ".snappy.", ".zstd."]
                        .iter()
                        .any(|c| rel.contains(c));
                    data.is_empty()
                        || (compressed && f.len > 0)
                        || f.len == whole_lines(&data).len() as u64
                }
                Some(f) => f.complete && f.len == data.len() as u64,
            };
            if !ok {
                missing.push(format!("{rel}: {have:?}"));
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "not stored after {timeout:?}: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_serves_logs_whose_files_are_gone() {
    let garage = garage();
    let logs = tokio::task::spawn_blocking(logs_dir).await.unwrap();
    let client = reqwest::Client::new();
    let reference = serve_dir(&logs).await;
    let ref_apps: Vec<Value> = serde_json::from_value(
        get_json(&client, &format!("{reference}/api/v1/applications")).await,
    )
    .unwrap();
    let ids = ids_of(&ref_apps);
    assert!(
        ids.len() >= 8,
        "expected the generated applications, found {ids:?}"
    );

    let t0 = now_ms();
    let ls = LogStore::new(
        garage
            .open("history")
            .await
            .expect("open the Garage bucket"),
    );
    let storage = garage.url("history");
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap().to_string();
    let args = [
        "--storage",
        &storage,
        "--event-log-dir",
        &dir_s,
        "--poll-interval",
        "200ms",
    ];
    let _collector =
        tokio::task::block_in_place(|| start_collector(free_port(), &args, &garage.env()));
    let ours = format!("http://127.0.0.1:{}", _collector.port);
    copy_tree(&logs, dir.path());

    // ingested; while both copies exist, each application is listed once
    wait_stored(&ls, dir.path(), Duration::from_secs(60)).await;
    wait_listing(
        &client,
        &ours,
        Duration::from_secs(30),
        "every application listed",
        |a| {
            ids.iter()
                .all(|id| a.iter().any(|x| x["id"] == id.as_str()))
        },
    )
    .await;
    let apps: Vec<Value> =
        serde_json::from_value(get_json(&client, &format!("{ours}/api/v1/applications")).await)
            .unwrap();
    assert_eq!(
        apps.len(),
        ids.len(),
        "an application listed twice (directory and store): {:?}",
        ids_of(&apps)
    );

    // the driver's disk is gone: only the store is left
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let apps = wait_listing(
        &client,
        &ours,
        Duration::from_secs(30),
        "every application read from S3",
        |a| a.len() == ids.len() && all_from_store(a),
    )
    .await;
    for a in &apps {
        let at = &a["attempts"][0];
        assert!(
            at["logSourceName"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{storage}/eventlogs/"))),
            "{at}"
        );
        // a finished application's "last updated" is the stored object's time
        if at["completed"] == true {
            let t = at["lastUpdatedEpoch"].as_i64().unwrap_or(0);
            assert!(
                t >= t0 - 1000,
                "lastUpdated {t} is not the upload time: {at}"
            );
        }
    }
    eventually_same(
        &client,
        &ours,
        &reference,
        &ids,
        Duration::from_secs(20),
        "logs served from S3",
    )
    .await;
    // Spark's answer for the logs of an application it does not know
    let (status, body) = get(&client, &format!("{ours}/api/v1/applications/nope/logs")).await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).into_owned()),
        (404, "no such app: nope/1".to_string())
    );
}

/// Agent-shipped logs, then one growing in chunks, through the store at `storage`.
async fn agent_shipped_and_growing(storage: &str, store_env: &[(&str, String)]) {
    let logs = tokio::task::spawn_blocking(logs_dir).await.unwrap();
    let client = reqwest::Client::new();
    let reference = serve_dir(&logs).await;
    let ref_apps: Vec<Value> = serde_json::from_value(
        get_json(&client, &format!("{reference}/api/v1/applications")).await,
    )
    .unwrap();
    let ids = ids_of(&ref_apps);
    assert!(
        ids.len() >= 8,
        "expected the generated applications, found {ids:?}"
    );

    let port = free_port();
    let mut collector = tokio::task::block_in_place(|| {
        start_collector(
            port,
            &["--storage", storage, "--poll-interval", "200ms"],
            store_env,
        )
    });
    let ours = format!("http://127.0.0.1:{port}");
    let driver = tempfile::tempdir().unwrap();
    let mut agent = start_agent(driver.path(), port);

    copy_tree(&logs, driver.path());
    wait_listing(
        &client,
        &ours,
        Duration::from_secs(60),
        "every shipped application listed",
        |a| a.len() == ids.len() && all_from_store(a),
    )
    .await;
    eventually_same(
        &client,
        &ours,
        &reference,
        &ids,
        Duration::from_secs(30),
        "agent-shipped logs",
    )
    .await;

    // a driver writing its log in chunks: a real finished log, under a new application id
    let plain = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().contains(['.']))
        .expect("an uncompressed finished log among the generated ones");
    let old_id = plain.file_name().unwrap().to_string_lossy().into_owned();
    let new_id = format!("{old_id}9");
    let text = std::fs::read_to_string(&plain)
        .unwrap()
        .replace(&old_id, &new_id);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let end = lines
        .iter()
        .position(|l| l.contains("\"SparkListenerApplicationEnd\""))
        .expect("the log ends its application");
    let growing = driver.path().join(format!("{new_id}.inprogress"));
    let mut written = 0;
    let mut checked_jobs = 0;
    for upto in [end / 3, 2 * end / 3] {
        let chunk: String = lines[written..upto].concat();
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&growing)
                .unwrap();
            // in two writes, so the agent may see half a line
            let (a, b) = chunk.split_at(chunk.len() / 2);
            f.write_all(a.as_bytes()).unwrap();
            f.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            f.write_all(b.as_bytes()).unwrap();
        }
        written = upto;
        // the reference: the same bytes, in a plain directory
        let rdir = tempfile::tempdir().unwrap();
        std::fs::write(
            rdir.path().join(format!("{new_id}.inprogress")),
            lines[..upto].concat(),
        )
        .unwrap();
        let rbase = serve_dir(rdir.path()).await;
        let jobs = get_json(
            &client,
            &format!("{rbase}/api/v1/applications/{new_id}/jobs"),
        )
        .await;
        checked_jobs = jobs.as_array().map_or(0, Vec::len);
        eventually_same(
            &client,
            &ours,
            &rbase,
            std::slice::from_ref(&new_id),
            Duration::from_secs(30),
            &format!("growing log, {upto} of {} lines", lines.len()),
        )
        .await;
        let app = get_json(&client, &format!("{ours}/api/v1/applications/{new_id}")).await;
        assert_eq!(app["attempts"][0]["completed"], false, "{app}");
    }
    assert!(
        checked_jobs > 0,
        "the growing log had logged no job when checked: the test checks nothing"
    );

    // the application ends: the rest of the log, then Spark's rename
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&growing)
            .unwrap();
        f.write_all(lines[written..].concat().as_bytes()).unwrap();
    }
    std::fs::rename(&growing, driver.path().join(&new_id)).unwrap();
    let rdir = tempfile::tempdir().unwrap();
    std::fs::write(rdir.path().join(&new_id), &text).unwrap();
    let rbase = serve_dir(rdir.path()).await;
    eventually_same(
        &client,
        &ours,
        &rbase,
        std::slice::from_ref(&new_id),
        Duration::from_secs(30),
        "the finished log",
    )
    .await;
    let app = get_json(&client, &format!("{ours}/api/v1/applications/{new_id}")).await;
    assert_eq!(app["attempts"][0]["completed"], true, "{app}");
    // still every application, each once
    let apps: Vec<Value> =
        serde_json::from_value(get_json(&client, &format!("{ours}/api/v1/applications")).await)
            .unwrap();
    assert_eq!(apps.len(), ids.len() + 1, "{:?}", ids_of(&apps));
    assert!(agent.terminate().success());
    assert!(collector.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_serves_agent_shipped_and_growing_logs() {
    let garage = garage();
    agent_shipped_and_growing(&garage.url("shipped"), &garage.env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_serves_agent_shipped_and_growing_logs() {
    let store = tempfile::tempdir().unwrap();
    let storage = format!("file://{}", store.path().display());
    agent_shipped_and_growing(&storage, &[]).await;
    // what was served came from the store's layout, parts included while the log grew
    assert!(store.path().join("eventlogs").is_dir());
}
