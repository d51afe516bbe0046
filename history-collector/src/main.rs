//! history-collector: keeps Spark history when pods die. This file only wires the pieces:
//! settings, the object store, the ingest tasks (ingest/), the read side (server.rs: API, UI,
//! container logs behind the access layer), the agents' gRPC ingest on its own port, and the
//! admin endpoints. `history-collector agent ...` runs the agent instead.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sidecars_common::config::{parse_byte_size, parse_duration};
use sidecars_common::objstore::{self, S3Options};
use sidecars_common::{admin, Admin, CommonArgs, Shutdown};

use history_collector::access::{acl, AccessConfig, Cidr, ServerAcls};
use history_collector::catalog::loaded::ReplayBound;
use history_collector::catalog::retention::Retention;
use history_collector::catalog::{CatalogMetrics, Settings};
use history_collector::ingest::auth::{Authenticator, SharedTokens, TokenReviewer};
use history_collector::ingest::driver::DriverCheck;
use history_collector::ingest::guard::{Guard, GuardMetrics};
use history_collector::ingest::layout::LogStore;
use history_collector::ingest::owners::Owners;
use history_collector::logdir::admit::Limits;
use history_collector::{api, ingest, server};

/// Collects Spark event logs and pod logs and serves a History-Server-compatible API and UI.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Run `history-collector agent --help` for the agent that streams a driver's event logs to the collector."
)]
struct Args {
    /// Port for the HTTP API and UI, the /logs/ routes, metrics and health.
    #[arg(long, env = "HISTORY_PORT", default_value_t = 18080)]
    port: u16,
    /// Port for the agents' gRPC ingest (authenticated; keep it off any Ingress). The same
    /// number as --port serves both on one port.
    #[arg(long, env = "HISTORY_INGEST_PORT", default_value_t = 18081)]
    ingest_port: u16,
    /// Address to listen on.
    #[arg(long, env = "HISTORY_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Shared tokens agents outside Kubernetes present, one per line (`<name> <token>`, or a
    /// token alone). In Kubernetes, agents present their pod's service-account token instead.
    #[arg(long, env = "HISTORY_INGEST_TOKEN_FILE", value_name = "FILE")]
    ingest_token_file: Option<PathBuf>,
    /// Audience the agents' service-account tokens must be issued for (a projected token
    /// with this audience); empty: the API server's own audience.
    #[arg(
        long,
        env = "HISTORY_INGEST_AUDIENCE",
        default_value = "spark-sidecars-history"
    )]
    ingest_audience: String,
    /// Largest event-log file read, copied or accepted from an agent.
    #[arg(long, env = "HISTORY_MAX_EVENT_LOG_FILE_SIZE", default_value = "16GiB", value_parser = parse_byte_size)]
    max_event_log_file_size: u64,
    /// Longest event line replayed; a longer one is skipped (and counted).
    #[arg(long, env = "HISTORY_MAX_EVENT_LINE_SIZE", default_value = "64MiB", value_parser = parse_byte_size)]
    max_event_line_size: u64,
    /// Check each application's view ACLs, as spark.history.ui.acls.enable does (the user
    /// comes from --user-header, set by a proxy in --trusted-proxy).
    #[arg(long, env = "HISTORY_ACLS_ENABLE")]
    acls_enable: bool,
    /// Users who may view every application (spark.history.ui.admin.acls), comma-separated.
    #[arg(long, env = "HISTORY_ADMIN_ACLS", default_value = "")]
    admin_acls: String,
    /// Groups whose members may view every application (spark.history.ui.admin.acls.groups).
    #[arg(long, env = "HISTORY_ADMIN_ACLS_GROUPS", default_value = "")]
    admin_acls_groups: String,
    /// Address or CIDR range of the authenticating proxy whose user headers are believed;
    /// repeatable.
    #[arg(
        long = "trusted-proxy",
        env = "HISTORY_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<Cidr>,
    /// Header naming the authenticated user.
    #[arg(long, env = "HISTORY_USER_HEADER", default_value = "X-Forwarded-User")]
    user_header: String,
    /// Header listing the user's groups, comma-separated.
    #[arg(
        long,
        env = "HISTORY_GROUPS_HEADER",
        default_value = "X-Forwarded-Groups"
    )]
    groups_header: String,
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
    /// Estimated memory the applications kept replayed may hold (an application's whole
    /// state is replayed from its log when one of its pages is asked for, and kept for the
    /// next request, least recently used out first).
    #[arg(long, env = "HISTORY_REPLAY_CACHE_BYTES", default_value = "1GiB", value_parser = parse_byte_size)]
    replay_cache_bytes: u64,
    /// Applications kept replayed at most.
    #[arg(long, env = "HISTORY_REPLAY_CACHE_APPS", default_value_t = 64)]
    replay_cache_apps: usize,
    /// Delete event logs (every copy: the event-log directories' and the store's) last
    /// updated longer ago than this, finished or not, as spark.history.fs.cleaner.maxAge
    /// does [default: keep]
    #[arg(long, env = "HISTORY_RETENTION_MAX_AGE", value_parser = parse_duration)]
    retention_max_age: Option<Duration>,
    /// Keep at most this many application attempts: the least recently updated finished
    /// ones are deleted first (spark.history.fs.cleaner.maxNum) [default: no limit]
    #[arg(long, env = "HISTORY_RETENTION_MAX_APPS")]
    retention_max_apps: Option<usize>,
    /// Keep at most this many bytes of event logs, deleting the least recently updated
    /// finished applications first [default: no limit]
    #[arg(long, env = "HISTORY_RETENTION_MAX_BYTES", value_parser = parse_byte_size)]
    retention_max_bytes: Option<u64>,
    /// How often followed pod logs are written to storage.
    #[arg(long, env = "HISTORY_POD_LOG_FLUSH_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pod_log_flush_interval: Duration,
    #[command(flatten)]
    kube: sidecars_common::kube::KubeArgs,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    history_collector::malloc::limit_arenas();
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

    let limits = Limits {
        max_file_bytes: args.max_event_log_file_size,
        max_line_bytes: usize::try_from(args.max_event_line_size).unwrap_or(usize::MAX),
    };
    let access = access_config(&args)?;

    let mut registry = prometheus_client::registry::Registry::default();
    let tail_metrics = ingest::tail::TailMetrics::default();
    tail_metrics.register(&mut registry, "history_ingest");
    let pod_metrics = ingest::podlogs::PodLogMetrics::default();
    pod_metrics.register(&mut registry);
    let guard_metrics = GuardMetrics::default();
    guard_metrics.register(&mut registry);
    let catalog_metrics = CatalogMetrics::default();
    catalog_metrics.register(&mut registry);
    let admin = Admin::new(registry);

    let owners = Arc::new(Owners::new(logs.clone()));
    if !args.event_log_dirs.is_empty() {
        shutdown.tracker().spawn(ingest::watcher::run(
            args.event_log_dirs.clone(),
            logs.clone(),
            owners.clone(),
            args.poll_interval,
            tail_metrics.clone(),
            limits,
            shutdown.token(),
        ));
    }
    let kube = args.kube.client().await?;
    match &kube {
        Some(client) => {
            tracing::info!(namespaces = ?args.kube.namespaces, "collecting Spark pod logs");
            shutdown.tracker().spawn(ingest::podlogs::run(
                client.clone(),
                args.kube.namespaces.clone(),
                logs.clone(),
                pod_metrics,
                args.pod_log_flush_interval,
                shutdown.token(),
            ));
        }
        None => tracing::info!("no Kubernetes configuration: pod logs are not collected"),
    }

    // the agents' ingest: who may write what
    let shared = match &args.ingest_token_file {
        Some(p) => SharedTokens::load(p)?,
        None => SharedTokens::default(),
    };
    let audiences: Vec<String> = acl::split_list(&args.ingest_audience);
    let reviewer = kube
        .clone()
        .map(|c| TokenReviewer::new(c, audiences.clone()));
    let guard = Arc::new(Guard::new(
        Authenticator::new(shared, reviewer),
        DriverCheck::new(kube.clone(), args.kube.namespaces.clone()),
        owners,
        guard_metrics,
    ));
    if guard.enabled() {
        tracing::info!(kubernetes = kube.is_some(), shared_tokens = args.ingest_token_file.is_some(), audiences = ?audiences, "agent ingest accepts authenticated agents");
    } else {
        tracing::warn!("agent ingest refuses every request: no --ingest-token-file and no Kubernetes to check tokens with");
    }
    let ingest_router = ingest::service::router(logs.clone(), tail_metrics, guard, limits);

    // the read side: the local event-log dirs and everything in the store (copies of those
    // dirs, logs shipped by agents, in-progress logs stored as parts)
    let settings = Settings {
        limits,
        replay: ReplayBound {
            max_bytes: args.replay_cache_bytes,
            max_apps: args.replay_cache_apps,
        },
        retention: Retention {
            max_age: args.retention_max_age,
            max_apps: args.retention_max_apps,
            max_bytes: args.retention_max_bytes,
        },
    };
    if settings.retention.enabled() {
        tracing::info!(retention = ?settings.retention, "event logs past the retention limits are deleted");
    }
    let (catalog, scans) = server::catalog(
        &args.event_log_dirs,
        Some(logs.clone()),
        settings,
        catalog_metrics,
        args.poll_interval.max(Duration::from_secs(1)),
        shutdown.token(),
    );
    let mut router =
        server::router(catalog, Some(logs.clone()), access).layer(axum::Extension(args.spark_api));
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = admin::bind(addr, "the history API and UI").await?;
    let ingest_listener = if args.ingest_port == args.port {
        router = router.merge(ingest_router.clone());
        None
    } else {
        let a = SocketAddr::new(args.bind, args.ingest_port);
        Some(admin::bind(a, "the agents' event-log ingest").await?)
    };
    tracing::info!(addr = %listener.local_addr()?, ingest = ?ingest_listener.as_ref().and_then(|l| l.local_addr().ok()), storage = %url, "history-collector listening");
    admin.set_ready(true).await;
    let main = admin::serve(listener, admin.router(router), shutdown.clone());
    match ingest_listener {
        Some(l) => {
            let ingest = admin::serve(l, ingest_router, shutdown.clone());
            tokio::try_join!(main, ingest)?;
        }
        None => main.await?,
    }
    shutdown.drain().await;
    // the rescans end on the same signal, writing the listing index last
    if tokio::time::timeout(args.common.shutdown_timeout, scans)
        .await
        .is_err()
    {
        tracing::warn!("the listing index was not written before the shutdown timeout; the next start reads the logs that changed again");
    }
    Ok(())
}

/// Who the read side believes and what it lets them see.
fn access_config(args: &Args) -> anyhow::Result<AccessConfig> {
    if args.acls_enable && args.trusted_proxies.is_empty() {
        anyhow::bail!(
            "--acls-enable needs --trusted-proxy: users are named by an authenticating proxy, and without one nobody could be let in"
        );
    }
    Ok(AccessConfig {
        acls: ServerAcls {
            enabled: args.acls_enable,
            admin_users: acl::split_list(&args.admin_acls),
            admin_groups: acl::split_list(&args.admin_acls_groups),
        },
        trusted_proxies: args.trusted_proxies.clone(),
        user_header: args.user_header.clone(),
        groups_header: args.groups_header.clone(),
    })
}
