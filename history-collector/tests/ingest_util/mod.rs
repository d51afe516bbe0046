//! Helpers shared by the ingest integration tests: start the real collector binary, read
//! the object-store layout straight from disk, wait for conditions.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The collector binary: `$HISTORY_COLLECTOR_BIN` when set (the benchmarks point it at a
/// release build), else the one cargo built for these tests.
pub fn bin() -> String {
    std::env::var("HISTORY_COLLECTOR_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_history-collector").to_string())
}

/// A free loopback port (bound and released; the race is harmless in practice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A running daemon, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait for daemon")
    }
}

/// The shared token test agents present (listed in the collector's token file).
pub const AGENT_TOKEN: &str = "test-agent-token-0123456789abcdef";

/// A file holding [`AGENT_TOKEN`]: the collector's `--ingest-token-file` and the agents'
/// `--token-file` (a token alone on its line is named `shared`).
pub fn token_file() -> PathBuf {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let p = dir.join("agent-token");
        std::fs::write(&p, format!("{AGENT_TOKEN}\n")).expect("write token file");
        p
    })
    .clone()
}

/// Starts the collector on a free port and waits until /readyz answers.
pub fn start_collector(args: &[&str]) -> Daemon {
    start_collector_on(free_port(), args)
}

pub fn start_collector_on(port: u16, args: &[&str]) -> Daemon {
    start_collector_env(port, args, &[])
}

/// Starts the collector with extra environment variables (e.g. a Garage server's).
/// An explicit `--log-level` in `args` replaces the default.
pub fn start_collector_env(port: u16, args: &[&str], env: &[(&str, String)]) -> Daemon {
    let mut cmd = Command::new(bin());
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(args);
    // the agents' ingest on the same port unless a test says otherwise, for agents holding
    // the shared test token
    if !args.contains(&"--ingest-port") {
        cmd.args(["--ingest-port", &port.to_string()]);
    }
    if !args.contains(&"--ingest-token-file") {
        cmd.arg("--ingest-token-file").arg(token_file());
    }
    if !args.contains(&"--log-level") {
        // the benchmarks turn it down: debug output of every S3 request costs time
        let level = std::env::var("INGEST_TEST_LOG_LEVEL").unwrap_or_else(|_| "debug".into());
        cmd.args(["--log-level", &level]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start history-collector");
    let d = Daemon { child, port };
    wait_until(Duration::from_secs(30), "collector ready", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    d
}

/// Polls `cond` every 100 ms until true, or panics after `timeout` naming `what`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Running Spark pod as the Kubernetes API shows it, with one container.
pub fn spark_pod(
    name: &str,
    app: &str,
    role: &str,
    exec: Option<&str>,
    container: &str,
) -> k8s_openapi::api::core::v1::Pod {
    let mut labels = serde_json::json!({"spark-role": role, "spark-app-selector": app});
    if let Some(e) = exec {
        labels["spark-exec-id"] = e.into();
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": container, "image": "spark"}]},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": container, "image": "spark", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
        }]}
    }))
    .expect("pod json")
}

/// Every file under `dir`, by `/`-separated relative path.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(data) = std::fs::read(&p) {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, data);
            }
        }
    }
    out
}

/// Source event-log files Spark wrote (skipping Hadoop's `.crc` side files).
pub fn source_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(dir)
        .into_iter()
        .filter(|(k, _)| !k.rsplit('/').next().unwrap_or("").starts_with('.'))
        .collect()
}

/// The log name a source path is stored under.
pub fn log_name(rel: &str) -> String {
    let name = match rel.split_once('/') {
        Some((dir, _)) => return dir.trim_start_matches("eventlog_v2_").to_string(),
        None => rel,
    };
    let name = name.trim_end_matches(".inprogress");
    for c in [".lz4", ".lzf", ".snappy", ".zstd"] {
        if let Some(s) = name.strip_suffix(c) {
            return s.to_string();
        }
    }
    name.to_string()
}

/// A logical file as the layout stores it: the complete object, or the contiguous parts.
pub fn stored(store: &Path, key: &str) -> Option<Vec<u8>> {
    if let Ok(d) = std::fs::read(store.join(key)) {
        return Some(d);
    }
    let pdir = store.join("parts").join(key);
    let mut parts: Vec<(u64, Vec<u8>)> = std::fs::read_dir(&pdir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let off: u64 = e.file_name().to_str()?.parse().ok()?;
            Some((off, std::fs::read(e.path()).ok()?))
        })
        .collect();
    parts.sort_by_key(|(o, d)| (*o, std::cmp::Reverse(d.len())));
    let mut out = Vec::new();
    for (off, data) in parts {
        let off = off as usize;
        if off > out.len() {
            break;
        }
        if off + data.len() > out.len() {
            out.extend_from_slice(&data[out.len() - off..]);
        }
    }
    Some(out)
}

/// Stored copy of a source file.
pub fn stored_eventlog(store: &Path, rel: &str) -> Option<Vec<u8>> {
    stored(store, &format!("eventlogs/{}/{rel}", log_name(rel)))
}

/// Complete stored event-log files, by path relative to the event-log dir.
pub fn stored_complete(store: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(&store.join("eventlogs"))
        .into_iter()
        .filter_map(|(k, v)| Some((k.split_once('/')?.1.to_string(), v)))
        .collect()
}

/// Differences between source and stored copies, for assertion messages (empty: equal).
pub fn mismatches(src: &Path, store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (rel, data) in source_files(src) {
        match stored_eventlog(store, &rel) {
            None => out.push(format!("{rel}: not stored")),
            Some(s) if s != data => out.push(format!(
                "{rel}: stored {} bytes, source {}",
                s.len(),
                data.len()
            )),
            Some(_) => {}
        }
    }
    out
}

/// Runs a Python script with the given interpreter env var (e.g. SPARK35_PYTHON) in its own
/// process group, returning the child and a reader over its stdout lines.
pub fn spawn_python(env_var: &str, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    use std::os::unix::process::CommandExt;
    let python = std::env::var(env_var).unwrap_or_else(|_| {
        panic!("{env_var} is not set: run scripts/test.sh, or eval \"$(bash scripts/install-test-tools.sh --print-env)\"")
    });
    let script = sidecars_common::crate_dir!().join("tests/ingest_spark_job.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start python");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("spark: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line starting with `prefix`; panics on timeout or EOF.
pub fn expect_line(
    rx: &std::sync::mpsc::Receiver<String>,
    prefix: &str,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(_) => {}
            Err(e) => panic!("no {prefix:?} line from the Spark job: {e}"),
        }
    }
}

/// SIGKILLs a whole process group (the Python driver and its JVM).
pub fn kill9_group(child: &mut Child) {
    let pg = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &pg]).status();
    let _ = child.wait();
}

/// A small complete Spark event log of application `id` run by `user`, named `name`, with
/// these Spark properties (ACL settings, say) and one job.
pub fn spark_log(id: &str, name: &str, user: &str, props: &[(&str, &str)]) -> String {
    let props: serde_json::Map<String, serde_json::Value> = props
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    // "Event" first, as Spark writes it (its History Server finds the event by that prefix)
    let env = format!(
        r#"{{"Event":"SparkListenerEnvironmentUpdate","JVM Information":{{"Java Version":"17"}},"Spark Properties":{},"Hadoop Properties":{{}},"System Properties":{{}},"Metrics Properties":{{}},"Classpath Entries":{{}}}}"#,
        serde_json::Value::Object(props)
    );
    [
        r#"{"Event":"SparkListenerLogStart","Spark Version":"3.5.7"}"#.to_string(),
        env,
        format!(
            r#"{{"Event":"SparkListenerApplicationStart","App Name":"{name}","App ID":"{id}","Timestamp":1700000000000,"User":"{user}"}}"#
        ),
        r#"{"Event":"SparkListenerJobStart","Job ID":0,"Submission Time":1700000000100,"Stage Infos":[],"Stage IDs":[],"Properties":{}}"#.to_string(),
        r#"{"Event":"SparkListenerJobEnd","Job ID":0,"Completion Time":1700000000200,"Job Result":{"Result":"JobSucceeded"}}"#.to_string(),
        r#"{"Event":"SparkListenerApplicationEnd","Timestamp":1700000001000}"#.to_string(),
    ]
    .join("\n")
        + "\n"
}

/// The collector's peak resident memory so far (VmHWM), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The value of one counter sample on the collector's `/metrics`, 0 if absent.
pub fn metric(port: u16, sample: &str) -> f64 {
    let body = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// A plain HTTP GET of a small body over a std TcpStream (no async runtime needed).
pub fn http_get(url: &str) -> String {
    {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(mut s) = std::net::TcpStream::connect(host) else {
            return String::new();
        };
        let _ = write!(
            s,
            "GET /{path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }
}
