//! Change notifications: with a 30 s poll interval, files written into a watched event-log
//! directory (new files, appended bytes, a rolling-log directory created later) are stored
//! within 2 s, which only inotify can achieve.

mod ingest_util;

use std::io::Write;
use std::time::{Duration, Instant};

use ingest_util::*;

/// Waits at most 2 s for `cond`, returning how long it took.
fn within_2s(what: &str, cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    wait_until(Duration::from_secs(2), what, cond);
    start.elapsed()
}

#[test]
fn changes_are_stored_within_2s_despite_a_30s_poll() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut collector = start_collector(&[
        "--event-log-dir",
        src.path().to_str().unwrap(),
        "--storage",
        &format!("file://{}", store.path().display()),
        "--poll-interval",
        "30s",
    ]);
    // the first scan runs at start; give it time so what follows is not seen by it
    std::thread::sleep(Duration::from_millis(1500));
    let mut took = Vec::new();

    std::fs::write(src.path().join("app-n1"), b"{\"Event\":\"one\"}\n").unwrap();
    took.push(within_2s("a new complete file", || {
        stored_eventlog(store.path(), "app-n1").as_deref() == Some(&b"{\"Event\":\"one\"}\n"[..])
    }));

    let ip = src.path().join("app-n2.inprogress");
    let mut f = std::fs::File::create(&ip).unwrap();
    f.write_all(b"{\"Event\":\"a\"}\n").unwrap();
    took.push(within_2s("a new in-progress file", || {
        stored_eventlog(store.path(), "app-n2.inprogress").is_some_and(|s| s.len() == 14)
    }));
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        f.write_all(format!("{{\"Event\":\"b{i}\"}}\n").as_bytes())
            .unwrap();
        let want = std::fs::read(&ip).unwrap();
        took.push(within_2s("appended bytes", || {
            stored_eventlog(store.path(), "app-n2.inprogress").as_ref() == Some(&want)
        }));
    }

    // a rolling-log directory created after the collector started is watched too
    let dir = src.path().join("eventlog_v2_app-n3");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("appstatus_app-n3.inprogress"), b"").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(dir.join("events_1_app-n3"), b"{\"Event\":\"r\"}\n").unwrap();
    took.push(within_2s("a file in a new rolling-log directory", || {
        stored_eventlog(store.path(), "eventlog_v2_app-n3/events_1_app-n3")
            .is_some_and(|s| s == b"{\"Event\":\"r\"}\n")
    }));
    std::fs::rename(
        dir.join("appstatus_app-n3.inprogress"),
        dir.join("appstatus_app-n3"),
    )
    .unwrap();
    took.push(within_2s("the rolling log completing", || {
        store
            .path()
            .join("eventlogs/app-n3/eventlog_v2_app-n3/events_1_app-n3")
            .is_file()
    }));
    eprintln!("notification latencies: {took:?}");
    assert!(collector.terminate().success());
}
