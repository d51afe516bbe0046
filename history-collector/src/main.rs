//! history-collector: keeps Spark history when pods die. This file only wires the pieces:
//! settings, the object store, the ingest tasks (ingest/), the log routes (logs.rs), and the
//! HTTP + gRPC server on one port. `history-collector agent ...` runs the agent instead.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sidecars_common::config::parse_duration;
use sidecars_common::objstore::{self, S3Options};
use sidecars_common::{admin, Admin, CommonArgs, Shutdown};

use history_collector::ingest::layout::LogStore;
use history_collector::{api, ingest, logs};

/// Collects Spark event logs and pod logs and serves a History-Server-compatible API and UI.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Run `history-collector agent --help` for the agent that streams a driver's event logs to the collector."
)]
struct Args {
    /// Port for the HTTP API and UI, the /logs/ routes, the agents' gRPC service, metrics and health.
    #[arg(long, env = "HISTORY_PORT", default_value_t = 18080)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "HISTORY_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Local data directory (the default storage lives under it).
    #[arg(long, env = "HISTORY_DATA_DIR", default_value = "./sidecars-data")]
    data_dir: PathBuf,
    /// Where copies are kept: file:///path or s3://bucket/prefix [default: file://<data-dir>/history].
    #[arg(long, env = "HISTORY_STORAGE")]
    storage: Option<String>,
    #[command(flatten)]
    s3: S3Options,
    /// A directory Spark writes event logs to (spark.eventLog.dir); repeatable.
    #[arg(
        long = "event-log-dir",
        env = "HISTORY_EVENT_LOG_DIR",
        value_delimiter = ','
    )]
    event_log_dirs: Vec<PathBuf>,
    /// How often the event-log directories are scanned even without a change notification (inotify); keep it short on NFS, where notifications do not arrive.
    #[arg(long, env = "HISTORY_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Which Spark History Server the REST API answers as, byte for byte: 4 (Spark 4.x) or 3.5 (Spark 3.5.x, for clients written against it).
    #[arg(long, env = "HISTORY_SPARK_API", default_value = "4")]
    spark_api: api::Dialect,
    /// How often followed pod logs are written to storage.
    #[arg(long, env = "HISTORY_POD_LOG_FLUSH_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pod_log_flush_interval: Duration,
    #[command(flatten)]
    kube: sidecars_common::kube::KubeArgs,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    if std::env::args_os().nth(1).is_some_and(|a| a == "agent") {
        let argv = std::env::args_os()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, a)| a);
        let args: ingest::agent::AgentArgs =
            match sidecars_common::config::parse_from(argv, "HISTORY_AGENT", |k| {
                std::env::var_os(k)
            }) {
                Ok(a) => a,
                Err(sidecars_common::config::ConfigError::Clap(e)) => e.exit(),
                Err(sidecars_common::config::ConfigError::File(e)) => {
                    eprintln!("error: {e:#}");
                    std::process::exit(2)
                }
            };
        return tokio::runtime::Runtime::new()?.block_on(ingest::agent::main(args));
    }
    let args: Args = sidecars_common::config::parse("HISTORY");
    tokio::runtime::Runtime::new()?.block_on(collector(args))
}

async fn collector(args: Args) -> anyhow::Result<()> {
    sidecars_common::telemetry::init(&args.common)?;
    let shutdown = Shutdown::new(args.common.shutdown_timeout);
    shutdown.listen_for_signals();

    let url = match &args.storage {
        Some(u) => u.clone(),
        None => {
            let dir = args.data_dir.join("history");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create --data-dir {}", dir.display()))?;
            let abs = std::fs::canonicalize(&dir)
                .with_context(|| format!("--data-dir {}", dir.display()))?;
            format!("file://{}", abs.display())
        }
    };
    let store = objstore::open(&url, &args.s3)
        .await
        .with_context(|| format!("cannot open --storage {url}"))?;
    let logs = LogStore::new(store);

    let mut registry = prometheus_client::registry::Registry::default();
    let tail_metrics = ingest::tail::TailMetrics::default();
    tail_metrics.register(&mut registry, "history_ingest");
    let pod_metrics = ingest::podlogs::PodLogMetrics::default();
    pod_metrics.register(&mut registry);
    let admin = Admin::new(registry);

    if !args.event_log_dirs.is_empty() {
        shutdown.tracker().spawn(ingest::watcher::run(
            args.event_log_dirs.clone(),
            logs.clone(),
            args.poll_interval,
            tail_metrics.clone(),
            shutdown.token(),
        ));
    }
    match args.kube.client().await? {
        Some(client) => {
            tracing::info!(namespaces = ?args.kube.namespaces, "collecting Spark pod logs");
            shutdown.tracker().spawn(ingest::podlogs::run(
                client,
                args.kube.namespaces.clone(),
                logs.clone(),
                pod_metrics,
                args.pod_log_flush_interval,
                shutdown.token(),
            ));
        }
        None => tracing::info!("no Kubernetes configuration: pod logs are not collected"),
    }

    // the API and UI serve the local event-log dirs and everything in the store (copies of
    // those dirs, logs shipped by agents, in-progress logs stored as parts)
    let router = api::service_with_store(
        &args.event_log_dirs,
        Some(logs.clone()),
        args.poll_interval.max(Duration::from_secs(1)),
        shutdown.token(),
    )
    .merge(logs::router(logs.clone()))
    .merge(ingest::service::router(logs.clone(), tail_metrics))
    .layer(axum::Extension(args.spark_api));
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = admin::bind(addr, "the history API, UI and agent gRPC service").await?;
    tracing::info!(addr = %listener.local_addr()?, storage = %url, "history-collector listening");
    admin.set_ready(true).await;
    admin::serve(listener, admin.router(router), shutdown.clone()).await?;
    shutdown.drain().await;
    Ok(())
}
