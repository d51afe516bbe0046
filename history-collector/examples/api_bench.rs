//! Benchmark helper: serves the REST API over an event-log directory and reports how long it
//! took until `/api/v1/applications/<id>/jobs` answered. Peak RSS: run under `/usr/bin/time -v`.
//!
//! `cargo run --release -p history-collector --example api_bench -- <event-log-dir> [--save F]`
//! (`--save` writes the `/jobs` answer to F, to compare with Spark's; see `bench/api.sh`).

use std::sync::Arc;
use std::time::Instant;

use history_collector::api::{self, Catalog};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, save) = match args.as_slice() {
        [dir] => (dir.clone(), None),
        [dir, flag, file] if flag == "--save" => (dir.clone(), Some(file.clone())),
        _ => anyhow::bail!("usage: api_bench <event-log-dir> [--save FILE]"),
    };
    let start = Instant::now();
    let catalog = Arc::new(Catalog::new(vec![dir.into()]));
    let c = catalog.clone();
    tokio::task::spawn_blocking(move || c.refresh()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, api::router(catalog)).await });
    let client = reqwest::Client::new();
    let apps: Vec<serde_json::Value> = client
        .get(format!("{base}/api/v1/applications"))
        .send()
        .await?
        .json()
        .await?;
    for a in apps {
        let id = a["id"].as_str().unwrap_or_default();
        let r = client
            .get(format!("{base}/api/v1/applications/{id}/jobs"))
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        println!(
            "{id}: /jobs answered {status} ({} bytes) {:.2} s after start",
            body.len(),
            start.elapsed().as_secs_f64()
        );
        if let Some(f) = &save {
            std::fs::write(f, &body).map_err(|e| anyhow::anyhow!("cannot write {f}: {e}"))?;
        }
    }
    Ok(())
}
