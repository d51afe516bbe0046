//! The agent streams a growing event log to the collector over gRPC; the collector, then the
//! agent, is restarted mid-stream. The stored copy must stay a prefix of the source at all
//! times and end byte-identical: no gap, no duplicate.

mod ingest_util;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ingest_util::*;

fn start_agent(dir: &str, port: u16) -> Daemon {
    let child = Command::new(bin())
        .args([
            "agent",
            "--event-log-dir",
            dir,
            "--collector",
            &format!("http://127.0.0.1:{port}"),
        ])
        .arg("--token-file")
        .arg(token_file())
        .args(["--poll-interval", "100ms", "--shutdown-timeout", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start agent");
    Daemon { child, port }
}

#[test]
fn agent_survives_collector_and_agent_restarts() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let storage = format!("file://{}", store.path().display());
    let port = free_port();
    let mut collector = start_collector_on(port, &["--storage", &storage]);
    let mut agent = start_agent(src.path().to_str().unwrap(), port);

    // a driver writing a single-file log and a rolling log, line by line
    let single = src.path().join("app-1.inprogress");
    let rolling = src.path().join("eventlog_v2_app-2");
    std::fs::create_dir(&rolling).unwrap();
    std::fs::write(rolling.join("appstatus_app-2.inprogress"), b"").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (single, rolling, stop) = (single.clone(), rolling.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(&single).unwrap();
            let mut index = 1;
            let mut r = std::fs::File::create(rolling.join("events_1_app-2")).unwrap();
            let mut i = 0u64;
            // past 3000 lines at least, so the rolling log has rolled over once however fast the
            // collector and agent restarts went
            while !stop.load(Ordering::SeqCst) || i <= 3000 {
                let line = format!(
                    "{{\"Event\":\"SparkListenerTaskEnd\",\"n\":{i},\"pad\":\"{}\"}}\n",
                    "x".repeat((i % 300) as usize)
                );
                // write in two pieces so the collector often sees half a line
                let (a, b) = line.split_at(line.len() / 2);
                f.write_all(a.as_bytes()).unwrap();
                r.write_all(a.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_micros(300));
                f.write_all(b.as_bytes()).unwrap();
                r.write_all(b.as_bytes()).unwrap();
                i += 1;
                if i.is_multiple_of(3000) {
                    index += 1;
                    r = std::fs::File::create(rolling.join(format!("events_{index}_app-2")))
                        .unwrap();
                }
            }
            i
        })
    };
    let check_prefixes = || {
        for (rel, data) in source_files(src.path()) {
            if let Some(s) = stored_eventlog(store.path(), &rel) {
                assert!(
                    data.starts_with(&s),
                    "{rel}: stored copy ({} bytes) is not a prefix of the source ({} bytes)",
                    s.len(),
                    data.len()
                );
            }
        }
    };
    let stored_len = || stored_eventlog(store.path(), "app-1.inprogress").map_or(0, |s| s.len());

    wait_until(
        Duration::from_secs(30),
        "first bytes through the agent",
        || stored_len() > 10_000,
    );
    check_prefixes();
    // collector restart mid-stream
    assert!(collector.terminate().success());
    let before = stored_len();
    std::thread::sleep(Duration::from_millis(700));
    collector = start_collector_on(port, &["--storage", &storage]);
    wait_until(
        Duration::from_secs(30),
        "agent to resume after collector restart",
        || stored_len() > before + 10_000,
    );
    check_prefixes();
    // agent restart mid-stream (SIGKILL: no goodbye)
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let before = stored_len();
    std::thread::sleep(Duration::from_millis(500));
    agent = start_agent(src.path().to_str().unwrap(), port);
    wait_until(Duration::from_secs(30), "new agent to resume", || {
        stored_len() > before + 10_000
    });
    check_prefixes();

    stop.store(true, Ordering::SeqCst);
    let lines = writer.join().unwrap();
    assert!(lines > 3000, "writer wrote only {lines} lines");
    // the application ends: Spark renames and finalises
    std::fs::rename(&single, src.path().join("app-1")).unwrap();
    std::fs::rename(
        rolling.join("appstatus_app-2.inprogress"),
        rolling.join("appstatus_app-2"),
    )
    .unwrap();
    let source = source_files(src.path());
    wait_until(
        Duration::from_secs(30),
        "complete copies equal to the sources",
        || stored_complete(store.path()) == source,
    );
    assert!(
        tree(&store.path().join("parts")).is_empty(),
        "parts left: {:?}",
        tree(&store.path().join("parts")).keys()
    );
    assert!(agent.terminate().success());
    assert!(collector.terminate().success());
}
