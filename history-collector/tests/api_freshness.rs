//! Freshness: with the default scan interval (1 s), a new event log shows in the application
//! listing, and an updated one (an in-progress log that completes) shows its new state,
//! within 2 s of being written. Measured over the real HTTP API of the served catalog.

use std::path::Path;
use std::time::{Duration, Instant};

use history_collector::server;

const LIMIT: Duration = Duration::from_secs(2);

fn log(id: &str, end: bool) -> String {
    let mut s = format!(
        "{{\"Event\":\"SparkListenerLogStart\",\"Spark Version\":\"4.3.0\"}}\n\
         {{\"Event\":\"SparkListenerApplicationStart\",\"App Name\":\"fresh {id}\",\"App ID\":\"{id}\",\"Timestamp\":1700000000000,\"User\":\"t\"}}\n"
    );
    if end {
        s.push_str("{\"Event\":\"SparkListenerApplicationEnd\",\"Timestamp\":1700000005000}\n");
    }
    s
}

/// Writes `body` to `dir/name` atomically (temp + rename), as Spark's final rename is.
fn put(dir: &Path, name: &str, body: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn wait_for(
    client: &reqwest::Client,
    base: &str,
    what: &str,
    ok: impl Fn(&[serde_json::Value]) -> bool,
) -> Duration {
    let t0 = Instant::now();
    loop {
        let apps: Vec<serde_json::Value> = client
            .get(format!("{base}/api/v1/applications"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ok(&apps) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{what}: not visible after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_and_updated_logs_are_listed_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    // some applications already there, so a scan has real work to do
    for k in 0..50 {
        put(
            &d,
            &format!("local-{}", 1000 + k),
            &log(&format!("local-{}", 1000 + k), true),
        );
    }
    let stop = tokio_util::sync::CancellationToken::new();
    // the interval main.rs uses by default (--poll-interval 1s)
    let router = server::service(
        std::slice::from_ref(&d),
        "",
        Duration::from_secs(1),
        stop.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();
    wait_for(&client, &base, "initial scan", |a| a.len() == 50).await;

    let mut worst = Duration::ZERO;
    for round in 0..4 {
        let id = format!("local-{}", 5000 + round);
        // a new application, still running
        let inprogress = format!("{id}.inprogress");
        put(&d, &inprogress, &log(&id, false));
        let t = wait_for(&client, &base, "new log", |a| {
            a.iter().any(|x| x["id"] == id)
        })
        .await;
        worst = worst.max(t);
        // it finishes: Spark renames the log without .inprogress
        std::fs::write(d.join(&inprogress), log(&id, true)).unwrap();
        std::fs::rename(d.join(&inprogress), d.join(&id)).unwrap();
        let t = wait_for(&client, &base, "completed log", |a| {
            a.iter()
                .any(|x| x["id"] == id && x["attempts"][0]["completed"] == true)
        })
        .await;
        worst = worst.max(t);
        // the scan is periodic: start the next change at a different phase of it
        tokio::time::sleep(Duration::from_millis(230)).await;
    }
    stop.cancel();
    eprintln!("slowest listing update: {worst:?}");
    assert!(
        worst <= LIMIT,
        "a new or updated log took {worst:?} to be listed (limit {LIMIT:?})"
    );
}
