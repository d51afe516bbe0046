//! Settings of the staging server and the wiring of store, API, cleaner and admin endpoints.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use sidecars_common::config::{parse_byte_size, parse_duration};
use sidecars_common::objstore::S3Options;
use sidecars_common::{admin, Admin, CommonArgs, Shutdown};

use crate::api::{self, AppState};
use crate::bundle::Limits;
use crate::cleaner::{Cleaner, Policy};
use crate::metrics::Metrics;
use crate::store::Bundles;

/// Stores the local jars, files and configs that spark-submit users ship, and serves them to
/// drivers and executors.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// Port for the HTTP API (and metrics, health, gRPC health).
    #[arg(long, env = "STAGING_PORT", default_value_t = 10000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "STAGING_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// PEM certificate chain (leaf first) to serve HTTPS with; needs --tls-key.
    #[arg(long, env = "STAGING_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "STAGING_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Local working directory: upload spool, and the default storage location.
    #[arg(long, env = "STAGING_DATA_DIR", default_value = "./staging-data")]
    pub data_dir: PathBuf,
    /// Where bundles are kept: file:///path or s3://bucket/prefix [default: file://<data-dir>/staging].
    #[arg(long, env = "STAGING_STORAGE")]
    pub storage: Option<String>,
    /// Acknowledge uploads once they are in the page cache instead of flushed to disk. Faster
    /// where the disk is slower than the network; a killed process still never exposes half a
    /// bundle, but a machine crash may lose bundles uploaded in the seconds before it.
    #[arg(long, env = "STAGING_NO_FSYNC")]
    pub no_fsync: bool,
    /// Largest bundle (compressed) accepted; larger uploads get 413.
    #[arg(long, env = "STAGING_MAX_BUNDLE_SIZE", default_value = "2GiB", value_parser = parse_byte_size)]
    pub max_bundle_size: u64,
    /// Largest total size of a bundle's files once decompressed.
    #[arg(long, env = "STAGING_MAX_EXTRACTED_SIZE", default_value = "8GiB", value_parser = parse_byte_size)]
    pub max_extracted_size: u64,
    /// Most entries a bundle may hold.
    #[arg(long, env = "STAGING_MAX_ENTRIES", default_value_t = 10_000)]
    pub max_entries: u64,
    /// A bundle never downloaded is deleted this long after upload.
    #[arg(long, env = "STAGING_INITIAL_ACCESS_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub initial_access_timeout: Duration,
    /// Every bundle is deleted this long after upload, used or not (default: no limit).
    #[arg(long, env = "STAGING_MAX_AGE", value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// A used bundle is deleted once no pod matching its owner has existed for this long.
    #[arg(long, env = "STAGING_OWNER_GRACE", default_value = "5m", value_parser = parse_duration)]
    pub owner_grace: Duration,
    /// Objects of uploads that died half-way are deleted after this long.
    #[arg(long, env = "STAGING_ORPHAN_GRACE", default_value = "1h", value_parser = parse_duration)]
    pub orphan_grace: Duration,
    /// How often the cleaner runs.
    #[arg(long, env = "STAGING_CLEANUP_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub cleanup_interval: Duration,
    #[command(flatten)]
    pub s3: S3Options,
    #[command(flatten)]
    pub kube: sidecars_common::kube::KubeArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    sidecars_common::telemetry::init(&args.common)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        (None, None) => None,
        (Some(_), None) => bail!("--tls-cert is set but --tls-key is not; HTTPS needs both"),
        (None, Some(_)) => bail!("--tls-key is set but --tls-cert is not; HTTPS needs both"),
    };
    let shutdown = Shutdown::new(args.common.shutdown_timeout);
    shutdown.listen_for_signals();

    let data_dir = std::path::absolute(&args.data_dir).with_context(|| {
        format!(
            "--data-dir {} is not a usable path",
            args.data_dir.display()
        )
    })?;
    let spool = data_dir.join("spool");
    // Uploads in flight when the process died are incomplete by definition.
    let _ = std::fs::remove_dir_all(&spool);
    std::fs::create_dir_all(&spool)
        .with_context(|| format!("cannot create {}", spool.display()))?;
    let storage = match &args.storage {
        Some(s) => s.clone(),
        None => format!("file://{}", data_dir.join("staging").display()),
    };
    let objects = sidecars_common::objstore::open(&storage, &args.s3)
        .await
        .with_context(|| format!("cannot open --storage {storage}"))?;
    let bundles = Bundles::new(objects).with_fsync(!args.no_fsync);

    let metrics = Arc::new(Metrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    registry.register(
        "staging_materialisations",
        "Extractions of bundle files from their archives (one per bundle at a time)",
        bundles.materialisations.clone(),
    );
    let admin = Admin::new(registry);

    let state = AppState {
        bundles: bundles.clone(),
        spool,
        max_bundle_size: args.max_bundle_size,
        limits: Limits {
            max_entries: args.max_entries,
            max_extracted: args.max_extracted_size,
        },
        metrics: metrics.clone(),
    };
    let policy = Policy {
        initial_access_timeout: args.initial_access_timeout,
        max_age: args.max_age,
        owner_grace: args.owner_grace,
        orphan_grace: args.orphan_grace,
    };
    let owners: Option<Arc<dyn crate::cleaner::OwnerPods>> = match args.kube.client().await? {
        Some(client) => {
            tracing::info!(namespaces = ?args.kube.namespaces, "watching pods to tie used bundles to their owners");
            Some(Arc::new(crate::owners::PodView::watch(
                client,
                args.kube.namespaces.clone(),
                shutdown.token(),
            )))
        }
        None => {
            tracing::info!("no Kubernetes configured: used bundles live until --max-age");
            None
        }
    };
    let cleaner = Cleaner::new(bundles, policy, owners, metrics);
    tokio::spawn(cleaner.run(args.cleanup_interval, shutdown.token()));

    let addr = SocketAddr::new(args.bind, args.port);
    let listener = admin::bind(addr, "the staging API").await?;
    let local = listener.local_addr().unwrap_or(addr);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(addr = %local, %scheme, storage = %storage, "staging-server listening");
    admin.set_ready(true).await;
    let router = admin.router(api::router(state));
    match tls {
        Some(config) => crate::tls::serve(listener, router, config, shutdown.clone()).await?,
        None => admin::serve(listener, router, shutdown.clone()).await?,
    }
    shutdown.drain().await;
    Ok(())
}
