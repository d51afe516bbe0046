//! Benchmark (ignored by default): the application list with 100,000 applications.
//!
//! `cargo test --release -p history-collector --test ui_bench_apps -- --ignored --nocapture`
//! (`UI_BENCH_APPS=N` for another count). Writes N small event logs (a mix of completed,
//! failed and incomplete applications of a few users and names), loads them into a catalog
//! (timed: that is the first scan), then asks the list page over HTTP as a browser would:
//! the default view, deep pages, each sort, a search by user, by name fragment, one that
//! matches nothing, and the incomplete filter. Prints a Markdown table (median and worst of
//! 7 requests, response size) for BENCHMARKS.md.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use history_collector::api::Catalog;

fn write_logs(dir: &std::path::Path, n: usize) {
    let users = ["alice", "bob", "carol", "dave", "erin"];
    let names = [
        "etl-orders",
        "daily report",
        "ml-features",
        "sessionize",
        "backfill",
    ];
    for i in 0..n {
        let id = format!("spark-{i:08x}");
        let start = 1_700_000_000_000i64 + (i as i64) * 37_000;
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(&id)).unwrap());
        writeln!(
            f,
            r#"{{"Event":"SparkListenerLogStart","Spark Version":"{}"}}"#,
            if i % 3 == 0 { "3.5.7" } else { "4.3.0" }
        )
        .unwrap();
        writeln!(
            f,
            r#"{{"Event":"SparkListenerApplicationStart","App Name":"{} {}","App ID":"{id}","Timestamp":{start},"User":"{}"}}"#,
            names[i % names.len()],
            i % 1000,
            users[(i / 7) % users.len()]
        )
        .unwrap();
        // every 50th application never ended (a killed driver)
        if i % 50 != 0 {
            let exit = if i % 97 == 0 { 1 } else { 0 };
            writeln!(
                f,
                r#"{{"Event":"SparkListenerApplicationEnd","Timestamp":{},"ExitCode":{exit}}}"#,
                start + 1000 + (i as i64 * 7919) % 3_600_000
            )
            .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn application_list_at_scale() {
    let n: usize = std::env::var("UI_BENCH_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    write_logs(dir.path(), n);
    let write_s = t.elapsed().as_secs_f64();
    let catalog = Arc::new(Catalog::new(vec![dir.path().to_path_buf()]));
    let c = catalog.clone();
    let t = Instant::now();
    tokio::task::spawn_blocking(move || c.refresh())
        .await
        .unwrap();
    let load_s = t.elapsed().as_secs_f64();
    assert_eq!(catalog.entries().len(), n);
    let router = history_collector::ui::router(catalog);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();

    let cases = [
        ("default (newest first, page 1)", "/"),
        ("page 500", "/?page=500"),
        ("last page", "/?page=1000000"),
        ("sort by name", "/?sort=name&desc=0"),
        ("sort by duration", "/?sort=duration"),
        ("sort by user", "/?sort=user&desc=0"),
        ("search a user (`carol`)", "/?q=carol"),
        ("search a name fragment (`report 99`)", "/?q=report+99"),
        ("search, no match", "/?q=zzzz-nothing"),
        ("incomplete only", "/?status=incomplete"),
        ("search + sort + page 3", "/?q=etl&sort=duration&page=3"),
    ];
    println!("\nApplication list, {n} applications (logs written in {write_s:.1} s, first scan {load_s:.1} s)");
    println!("{}\n", run_context());
    println!("| request | median ms | max ms | HTML KiB |");
    println!("|---|---|---|---|");
    for (label, path) in cases {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..7 {
            let t = Instant::now();
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            assert!(r.status().is_success(), "{path}");
            size = r.bytes().await.unwrap().len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {label} `{path}` | {:.1} | {:.1} | {:.0} |",
            times[times.len() / 2],
            times[times.len() - 1],
            size as f64 / 1024.0
        );
    }
}

/// When, where and on what this ran: the date, the commit, the machine's load and cores.
fn run_context() -> String {
    let out = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{}, commit {}, load average {}, {} cores",
        out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        out("git", &["rev-parse", "--short", "HEAD"]),
        load.join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}
