//! Real Spark writes event logs into a directory the real collector binary watches; the
//! stored copies must be byte-identical to what Spark wrote, also after a kill -9.

mod ingest_util;

use std::time::Duration;

use ingest_util::*;

#[test]
fn spark35_single_file_plain_and_lz4() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut collector = start_collector(&[
        "--event-log-dir",
        src.path().to_str().unwrap(),
        "--storage",
        &format!("file://{}", store.path().display()),
        "--poll-interval",
        "200ms",
    ]);
    let (mut job, _rx) = spawn_python(
        "SPARK35_PYTHON",
        &[src.path().to_str().unwrap(), "single:none", "single:lz4"],
    );
    let status = job.wait().unwrap();
    assert!(status.success(), "Spark 3.5 job failed: {status}");
    let source = source_files(src.path());
    assert_eq!(
        source.len(),
        2,
        "expected two event logs, got {:?}",
        source.keys()
    );
    assert!(
        source.keys().any(|k| k.ends_with(".lz4")),
        "{:?}",
        source.keys()
    );
    wait_until(
        Duration::from_secs(30),
        "stored copies to equal the sources",
        || stored_complete(store.path()) == source,
    );
    // nothing in progress is left behind once the apps ended
    assert!(tree(&store.path().join("parts")).is_empty());
    assert!(collector.terminate().success());
}

#[test]
fn spark4_rolling_zstd_and_kill_9() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut collector = start_collector(&[
        "--event-log-dir",
        src.path().to_str().unwrap(),
        "--storage",
        &format!("file://{}", store.path().display()),
        "--poll-interval",
        "200ms",
    ]);
    let (mut job, rx) = spawn_python(
        "SPARK4_PYTHON",
        &[src.path().to_str().unwrap(), "rolling:zstd", "hang:zstd"],
    );
    let first = expect_line(&rx, "APP_ID", Duration::from_secs(240));
    let second = expect_line(&rx, "APP_ID", Duration::from_secs(240));
    assert_ne!(first, second);
    expect_line(&rx, "READY", Duration::from_secs(240));
    let second_id = second.trim_start_matches("APP_ID ").trim().to_string();
    // while the second app runs, its stored copy keeps up with what the driver flushed
    wait_until(Duration::from_secs(30), "live copies to catch up", || {
        mismatches(src.path(), store.path()).is_empty()
    });
    kill9_group(&mut job);
    std::thread::sleep(Duration::from_secs(1));
    wait_until(Duration::from_secs(30), "copies after kill -9", || {
        mismatches(src.path(), store.path()).is_empty()
    });
    let source = source_files(src.path());
    let dir = format!("eventlog_v2_{second_id}");
    assert!(
        source.contains_key(&format!("{dir}/appstatus_{second_id}.inprogress")),
        "killed app should stay in progress: {:?}",
        source.keys()
    );
    let events: Vec<_> = source
        .keys()
        .filter(|k| k.starts_with(&format!("{dir}/events_")))
        .collect();
    assert!(
        !events.is_empty() && events.iter().all(|k| k.ends_with(".zstd")),
        "{events:?}"
    );
    let killed_log = stored_eventlog(store.path(), events[0]).unwrap();
    assert!(!killed_log.is_empty());
    // the first app completed: exactly Spark's files, byte-identical, nothing in progress
    let first_id = first.trim_start_matches("APP_ID ").trim().to_string();
    let complete = stored_complete(store.path());
    let first_src: Vec<_> = source
        .iter()
        .filter(|(k, _)| k.contains(&first_id))
        .collect();
    let first_stored: Vec<_> = complete
        .iter()
        .filter(|(k, _)| k.contains(&first_id))
        .collect();
    assert_eq!(first_src, first_stored);
    assert!(first_src
        .iter()
        .any(|(k, _)| k.ends_with(&format!("appstatus_{first_id}"))));
    assert!(collector.terminate().success());
}
