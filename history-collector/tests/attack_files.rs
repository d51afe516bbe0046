//! Attacks through the watched event-log directory, made the way a hostile pod that can write
//! there (or a careless operator) would, against the real collector binary: symbolic links
//! and FIFOs in place of logs, sparse and huge files, garbage named like a log, a line of
//! hundreds of megabytes, and a second log carrying another application's id. Each time the
//! legitimate application keeps being served, and nothing outside the directory is read.

mod ingest_util;

use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use ingest_util::*;

const SECRET: &str = "TOP-SECRET-SERVICE-ACCOUNT-TOKEN";

fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest_blocking(&format!("http://127.0.0.1:{port}{path}"));
    (r.0, r.1)
}

/// Status and body of a GET (a small blocking client: these tests drive a separate process).
fn reqwest_blocking(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out[split + 4..].to_vec())
}

fn listed(port: u16) -> Vec<serde_json::Value> {
    let (st, body) = get(port, "/api/v1/applications");
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn ids(port: u16) -> Vec<String> {
    let mut v: Vec<String> = listed(port)
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every byte the store holds, file by file.
fn store_has(store: &Path, needle: &str) -> Vec<String> {
    tree(store)
        .into_iter()
        .filter(|(_, v)| contains(v, needle))
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn links_fifos_and_files_outside_the_directory_are_never_read() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let d = src.path();
    // what an attacker wants: a token file, and another team's event log
    std::fs::write(outside.path().join("token"), SECRET).unwrap();
    let theirs = outside.path().join("eventlog_v2_local-4");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("appstatus_local-4"), b"").unwrap();
    std::fs::write(
        theirs.join("events_1_local-4"),
        spark_log("local-4", &format!("other team {SECRET}"), "them", &[]),
    )
    .unwrap();

    std::fs::write(
        d.join("local-1"),
        spark_log("local-1", "legit", "alice", &[]),
    )
    .unwrap();
    std::fs::write(
        d.join("local-2"),
        spark_log("local-2", "replaced later", "alice", &[]),
    )
    .unwrap();
    symlink(outside.path().join("token"), d.join("local-3")).unwrap();
    symlink(&theirs, d.join("eventlog_v2_local-4")).unwrap();
    nix::unistd::mkfifo(&d.join("local-5"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    // a rolling directory of our own with a link inside
    let mine = d.join("eventlog_v2_local-6");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("appstatus_local-6"), b"").unwrap();
    symlink(
        theirs.join("events_1_local-4"),
        mine.join("events_1_local-6"),
    )
    .unwrap();

    let storage = format!("file://{}", store.path().display());
    let collector = start_collector(&[
        "--storage",
        &storage,
        "--event-log-dir",
        d.to_str().unwrap(),
        "--poll-interval",
        "200ms",
    ]);
    let port = collector.port;
    wait_until(
        Duration::from_secs(30),
        "the legitimate logs listed",
        || ids(port) == ["local-1", "local-2"],
    );
    wait_until(Duration::from_secs(30), "local-2 stored", || {
        stored_complete(store.path()).contains_key("local-2")
    });
    // the log is swapped for a link to the token
    let tmp = d.join(".swap");
    symlink(outside.path().join("token"), &tmp).unwrap();
    std::fs::rename(&tmp, d.join("local-2")).unwrap();
    std::thread::sleep(Duration::from_secs(3));

    assert_eq!(
        ids(port),
        ["local-1", "local-2"],
        "only what was in the directory"
    );
    for id in ["local-1", "local-2"] {
        let (st, zip) = get(port, &format!("/api/v1/applications/{id}/logs"));
        assert!(
            !contains(&zip, SECRET),
            "{id}'s event-log zip (HTTP {st}) holds the secret"
        );
    }
    for id in ["local-3", "local-4", "local-5", "local-6"] {
        let (st, body) = get(port, &format!("/api/v1/applications/{id}/logs"));
        assert_eq!(st, 404, "{id}: {}", String::from_utf8_lossy(&body));
    }
    let leaked = store_has(store.path(), SECRET);
    assert!(
        leaked.is_empty(),
        "the store holds the secret in {leaked:?}"
    );
    // the stored copy of local-2 is the real log, served from the store now
    let (st, body) = get(port, "/api/v1/applications/local-2");
    assert_eq!(st, 200);
    assert!(contains(&body, "replaced later"));
}

#[test]
fn a_second_log_with_the_same_app_id_is_not_shown() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let d = src.path();
    std::fs::write(
        d.join("local-1"),
        spark_log("local-1", "the real one", "alice", &[]),
    )
    .unwrap();
    // same App ID, later start, other names: rolling, compressed, another single file
    let mut impostor = spark_log("local-1", "impostor", "mallory", &[]);
    impostor = impostor.replace("1700000000000", "1700000099000");
    std::fs::write(d.join("local-9"), &impostor).unwrap();
    std::fs::write(
        d.join("local-8.zstd"),
        zstd::encode_all(impostor.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    let r = d.join("eventlog_v2_local-7");
    std::fs::create_dir(&r).unwrap();
    std::fs::write(r.join("appstatus_local-7"), b"").unwrap();
    std::fs::write(r.join("events_1_local-7"), &impostor).unwrap();
    let storage = format!("file://{}", store.path().display());
    let collector = start_collector(&[
        "--storage",
        &storage,
        "--event-log-dir",
        d.to_str().unwrap(),
        "--poll-interval",
        "200ms",
    ]);
    let port = collector.port;
    wait_until(Duration::from_secs(30), "local-1 listed", || {
        ids(port).contains(&"local-1".to_string())
    });
    std::thread::sleep(Duration::from_secs(2));
    let apps = listed(port);
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0]["name"], "the real one");
    assert_eq!(apps[0]["attempts"].as_array().map(Vec::len), Some(1));
    let (_, body) = get(port, "/api/v1/applications/local-1/environment");
    assert!(!contains(&body, "mallory"));
    let (_, zip) = get(port, "/api/v1/applications/local-1/logs");
    assert!(!contains(&zip, "local-9") && !contains(&zip, "local-7"));
}

/// Writes `len` bytes of a log whose first line is a real event and the rest a hole.
fn sparse_log(path: &Path, len: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(b"{\"Event\":\"SparkListenerLogStart\",\"Spark Version\":\"3.5.7\"}\n")
        .unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn sparse_huge_and_garbage_files_are_refused_once_and_cost_nothing() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let d = src.path();
    std::fs::write(
        d.join("local-1"),
        spark_log("local-1", "legit", "alice", &[]),
    )
    .unwrap();
    // the size the issue saw replayed on every poll and stored dense
    sparse_log(&d.join("local-2"), 2 << 30);
    sparse_log(&d.join("local-3.inprogress"), 2 << 30);
    let garbage: Vec<u8> = (0..64 << 10)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(d.join("local-4.lz4"), &garbage).unwrap();
    std::fs::write(d.join("local-5"), b"not an event log at all\n").unwrap();
    std::fs::write(d.join("local-6.zstd.inprogress"), &garbage).unwrap();
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let storage = format!("file://{}", store.path().display());
    let port = free_port();
    let child = std::process::Command::new(bin())
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--ingest-port", &port.to_string()])
        .args([
            "--storage",
            &storage,
            "--event-log-dir",
            d.to_str().unwrap(),
        ])
        .args(["--poll-interval", "200ms", "--log-level", "info"])
        .stdout(std::process::Stdio::null())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .unwrap();
    let collector = Daemon { child, port };
    wait_until(Duration::from_secs(30), "collector up", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    wait_until(Duration::from_secs(30), "local-1 listed", || {
        ids(port) == ["local-1"]
    });
    // many polls of both the copier and the catalog
    std::thread::sleep(Duration::from_secs(5));
    // the garbage keeps changing: still refused, not logged again
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("local-6.zstd.inprogress"))
        .unwrap();
    f.write_all(&garbage).unwrap();
    std::thread::sleep(Duration::from_secs(3));

    assert_eq!(ids(port), ["local-1"]);
    let stored: Vec<String> = stored_complete(store.path()).into_keys().collect();
    assert_eq!(stored, ["local-1"], "only the legitimate log is stored");
    let parts = tree(&store.path().join("parts"));
    assert!(parts.is_empty(), "parts stored: {:?}", parts.keys());
    let store_bytes: usize = tree(store.path()).values().map(Vec::len).sum();
    assert!(store_bytes < 1 << 20, "the store holds {store_bytes} bytes");
    let rss = peak_rss(collector.child.id());
    assert!(rss < 150 << 20, "peak RSS {} MiB", rss >> 20);
    for (sample, at_least) in [
        ("history_ingest_refused_files_total{reason=\"sparse\"}", 2.0),
        ("history_serve_refused_files_total{reason=\"sparse\"}", 2.0),
        (
            "history_ingest_refused_files_total{reason=\"not_spark\"}",
            3.0,
        ),
        ("history_ingest_refused_files_now", 5.0),
        ("history_serve_refused_files_now", 5.0),
    ] {
        let v = metric(port, sample);
        assert!(
            v >= at_least,
            "{sample} = {v}:\n{}",
            http_get(&format!("http://127.0.0.1:{port}/metrics"))
        );
    }
    // refused files are left alone: a handful of examinations, not one per poll
    let examined = metric(
        port,
        "history_ingest_refused_files_total{reason=\"not_spark\"}",
    );
    assert!(examined <= 5.0, "garbage examined {examined} times");
    drop(f);
    let log = std::fs::read_to_string(stderr.path()).unwrap();
    for name in [
        "local-2",
        "local-4.lz4",
        "local-5",
        "local-6.zstd.inprogress",
    ] {
        let n = log
            .lines()
            .filter(|l| l.contains(name) && l.contains("WARN"))
            .count();
        assert!(
            (1..=2).contains(&n),
            "{name}: {n} warnings (once for copying, once for serving):\n{log}"
        );
    }
    drop(collector);
}

#[test]
fn files_over_the_size_limit_are_neither_copied_nor_replayed() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let d = src.path();
    std::fs::write(
        d.join("local-1"),
        spark_log("local-1", "legit", "alice", &[]),
    )
    .unwrap();
    let big = spark_log("local-7", "too big", "alice", &[]);
    std::fs::write(d.join("local-7"), format!("{big}{}\n", "x".repeat(2 << 20))).unwrap();
    let storage = format!("file://{}", store.path().display());
    let collector = start_collector(&[
        "--storage",
        &storage,
        "--event-log-dir",
        d.to_str().unwrap(),
        "--poll-interval",
        "200ms",
        "--max-event-log-file-size",
        "1MiB",
    ]);
    let port = collector.port;
    wait_until(Duration::from_secs(30), "local-1 listed", || {
        ids(port) == ["local-1"]
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ids(port), ["local-1"]);
    let stored: Vec<String> = stored_complete(store.path()).into_keys().collect();
    assert_eq!(stored, ["local-1"]);
    for sample in [
        "history_ingest_refused_files_total{reason=\"too_large\"}",
        "history_serve_refused_files_total{reason=\"too_large\"}",
    ] {
        assert_eq!(metric(port, sample), 1.0, "{sample}: examined once");
    }
}

#[test]
fn a_line_of_hundreds_of_megabytes_does_not_cost_its_size() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let d = src.path();
    let log = spark_log("local-1", "legit", "alice", &[]);
    let (head, tail) = log.split_at(log.find("{\"Event\":\"SparkListenerJobStart\"").unwrap());
    {
        let mut f = std::fs::File::create(d.join("local-1")).unwrap();
        f.write_all(head.as_bytes()).unwrap();
        // one event 200 MB long, in the middle of the log
        f.write_all(b"{\"Event\":\"SparkListenerLogStart\",\"pad\":\"")
            .unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..200 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"}\n").unwrap();
        f.write_all(tail.as_bytes()).unwrap();
    }
    let storage = format!("file://{}", store.path().display());
    let collector = start_collector(&[
        "--storage",
        &storage,
        "--event-log-dir",
        d.to_str().unwrap(),
        "--max-event-line-size",
        "16MiB",
    ]);
    let port = collector.port;
    wait_until(Duration::from_secs(120), "local-1 listed", || {
        ids(port) == ["local-1"]
    });
    // the events after the long line were read
    let (st, jobs) = get(port, "/api/v1/applications/local-1/jobs");
    assert_eq!(st, 200);
    let jobs: serde_json::Value = serde_json::from_slice(&jobs).unwrap();
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    assert!(metric(port, "history_serve_long_lines_total") >= 1.0);
    let rss = peak_rss(collector.child.id());
    assert!(
        rss < 120 << 20,
        "peak RSS {} MiB for a 200 MB line",
        rss >> 20
    );
}
