//! Benchmark (ignored by default; `bash history-collector/bench/ingest.sh` runs it against a
//! release build): event-log ingest throughput of the collector binary, into a `file://`
//! store and into `s3://` on a real Garage server (`$GARAGE_BIN`):
//! - a complete rolling log (8 × 32 MiB `events_N` + final `appstatus_`) appearing at once;
//! - one `.inprogress` file written at full speed (256 MiB), then how long the stored copy
//!   takes to catch up once the writer stops.
//!
//! Every case checks the stored copies byte for byte before printing its figure.

mod ingest_util;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use history_collector::ingest::layout::{eventlog_key, LogStore};
use ingest_util::*;
use sidecars_common::objstore::testing::Garage;

const MIB: u64 = 1 << 20;
const ROLL_FILES: usize = 8;
const ROLL_SIZE: u64 = 32 * MIB;
const GROW_SIZE: u64 = 256 * MIB;

/// Event-log-like JSON lines of ~450 bytes, `size` bytes in all (cut after a newline).
fn write_lines(f: &mut impl Write, size: u64, seed: u64) -> u64 {
    let mut written = 0u64;
    let mut i = seed;
    let mut buf = Vec::with_capacity(1 << 20);
    while written < size {
        buf.clear();
        while buf.len() < (1 << 20) && written + (buf.len() as u64) < size {
            let line = format!(
                "{{\"Event\":\"SparkListenerTaskEnd\",\"Stage ID\":{},\"Task Info\":{{\"Task ID\":{i},\"Host\":\"10.0.{}.{}\",\"Launch Time\":{},\"Accumulables\":[{{\"ID\":{},\"Name\":\"internal.metrics.executorRunTime\",\"Update\":{},\"Value\":{}}}]}},\"Task Metrics\":{{\"Executor Run Time\":{},\"JVM GC Time\":{},\"Result Size\":2000,\"Input Metrics\":{{\"Bytes Read\":{},\"Records Read\":{}}}}},\"pad\":\"{}\"}}\n",
                i / 1000,
                i % 256,
                (i * 7) % 256,
                1_780_000_000_000u64 + i,
                i % 97,
                i % 1013,
                i * 3,
                i % 5000,
                i % 17,
                i * 4096,
                i * 10,
                "x".repeat((i % 40) as usize)
            );
            buf.extend_from_slice(line.as_bytes());
            i += 1;
        }
        f.write_all(&buf).unwrap();
        written += buf.len() as u64;
    }
    written
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Where the copies go, and how the benchmark sees them.
struct Target {
    name: &'static str,
    storage: String,
    env: Vec<(&'static str, String)>,
    store: LogStore,
}

/// Builds the complete rolling log in `stage`, returns its files (relative paths).
fn make_rolling(stage: &Path, app: &str) -> Vec<String> {
    let dir = stage.join(format!("eventlog_v2_{app}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rels = Vec::new();
    for n in 1..=ROLL_FILES {
        let name = format!("events_{n}_{app}");
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(&name)).unwrap());
        write_lines(&mut f, ROLL_SIZE, n as u64 * 1_000_000);
        f.flush().unwrap();
        rels.push(format!("eventlog_v2_{app}/{name}"));
    }
    std::fs::write(dir.join(format!("appstatus_{app}")), b"").unwrap();
    rels.push(format!("eventlog_v2_{app}/appstatus_{app}"));
    rels
}

async fn all_complete(store: &LogStore, log: &str, rels: &[String]) -> bool {
    for rel in rels {
        match store.stored(&eventlog_key(log, rel)).await {
            Ok(s) if s.complete => {}
            _ => return false,
        }
    }
    true
}

async fn same_bytes(store: &LogStore, log: &str, rel: &str, source: &Path) {
    let stored = store.read_all(&eventlog_key(log, rel)).await.unwrap();
    let src = std::fs::read(source).unwrap();
    assert!(
        stored[..] == src[..],
        "{rel}: stored {} bytes differ from the source's {}",
        stored.len(),
        src.len()
    );
}

async fn bench_rolling(t: &Target) {
    let work = tempfile::tempdir().unwrap();
    let (stage, watched) = (work.path().join("stage"), work.path().join("watched"));
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::create_dir_all(&watched).unwrap();
    let app = format!("app-roll-{}", t.name);
    let rels = make_rolling(&stage, &app);
    let args = [
        "--storage",
        &t.storage,
        "--event-log-dir",
        watched.to_str().unwrap(),
        "--poll-interval",
        "100ms",
    ];
    let port = free_port();
    let mut collector = tokio::task::block_in_place(|| start_collector_env(port, &args, &t.env));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(collector.child.id(), "VmRSS:");
    let dir = format!("eventlog_v2_{app}");
    let start = Instant::now();
    std::fs::rename(stage.join(&dir), watched.join(&dir)).unwrap();
    while !all_complete(&t.store, &app, &rels).await {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "rolling log never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    let peak = rss_kib(collector.child.id(), "VmHWM:");
    for rel in &rels {
        same_bytes(&t.store, &app, rel, &watched.join(rel)).await;
    }
    let total = ROLL_FILES as u64 * ROLL_SIZE;
    println!(
        "BENCH {}: complete rolling log {} MiB ({} files) stored in {:.2} s = {:.0} MiB/s; RSS {} MiB before, peak {} MiB; byte-identical",
        t.name,
        total / MIB,
        rels.len(),
        took.as_secs_f64(),
        total as f64 / MIB as f64 / took.as_secs_f64(),
        rss_before / 1024,
        peak / 1024
    );
    assert!(tokio::task::block_in_place(|| collector.terminate()).success());
}

async fn bench_growing(t: &Target) {
    let watched = tempfile::tempdir().unwrap();
    let app = format!("app-grow-{}", t.name);
    let rel = format!("{app}.inprogress");
    let args = [
        "--storage",
        &t.storage,
        "--event-log-dir",
        watched.path().to_str().unwrap(),
        "--poll-interval",
        "1s",
    ];
    let port = free_port();
    let mut collector = tokio::task::block_in_place(|| start_collector_env(port, &args, &t.env));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let path = watched.path().join(&rel);
    let start = Instant::now();
    let written = {
        let mut f = std::fs::File::create(&path).unwrap();
        write_lines(&mut f, GROW_SIZE, 0)
    };
    let wrote_in = start.elapsed();
    let stop = Instant::now();
    let key = eventlog_key(&app, &rel);
    loop {
        if t.store.stored(&key).await.is_ok_and(|s| s.len == written) {
            break;
        }
        assert!(stop.elapsed() < Duration::from_secs(600), "never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caught_up = stop.elapsed();
    let total = start.elapsed();
    let peak = rss_kib(collector.child.id(), "VmHWM:");
    let parts = t
        .store
        .store()
        .list(&format!("parts/{key}/"))
        .await
        .unwrap()
        .len();
    same_bytes(&t.store, &app, &rel, &path).await;
    println!(
        "BENCH {}: growing .inprogress {} MiB written in {:.2} s; stored copy caught up {:.2} s after the writer stopped ({:.0} MiB/s end to end); {parts} parts; peak RSS {} MiB; byte-identical",
        t.name,
        written / MIB,
        wrote_in.as_secs_f64(),
        caught_up.as_secs_f64(),
        written as f64 / MIB as f64 / total.as_secs_f64(),
        peak / 1024
    );
    assert!(tokio::task::block_in_place(|| collector.terminate()).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn ingest_throughput_file_and_s3() {
    println!("collector binary: {}", bin());
    let garage = Garage::start().unwrap_or_else(|e| panic!("the S3 benchmark needs Garage: {e:#}"));
    let files = tempfile::tempdir().unwrap();
    let file_url = format!("file://{}", files.path().display());
    let targets = [
        Target {
            name: "file",
            storage: file_url.clone(),
            env: Vec::new(),
            store: LogStore::new(
                sidecars_common::objstore::open(&file_url, &Default::default())
                    .await
                    .unwrap(),
            ),
        },
        Target {
            name: "s3-garage",
            storage: garage.url("bench"),
            env: garage.env(),
            store: LogStore::new(garage.open("bench").await.unwrap()),
        },
    ];
    for t in &targets {
        bench_rolling(t).await;
        bench_growing(t).await;
    }
}
