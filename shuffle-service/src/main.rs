//! shuffle-service: Spark's external shuffle service, as a Kubernetes DaemonSet.
//!
//! Wiring only: settings, restoring registrations before the port opens, the shuffle accept
//! loop, the admin endpoints, application cleanup, and a graceful drain on SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shuffle_service::metrics::Metrics;
use shuffle_service::registry::Registry;
use shuffle_service::service::{Service, ServiceConfig};
use shuffle_service::{cleanup, server};
use sidecars_common::config::{parse_byte_size, parse_duration};
use sidecars_common::kube::KubeArgs;
use sidecars_common::{admin, Admin, CommonArgs, Shutdown};

/// Serves executors' shuffle files and cached blocks over Spark's shuffle protocol, so they
/// outlive the executor pods.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port for Spark's shuffle protocol (spark.shuffle.service.port).
    #[arg(long, env = "SHUFFLE_PORT", default_value_t = 7337)]
    port: u16,
    /// Address to listen on; executors connect to the node's own address.
    #[arg(long, env = "SHUFFLE_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Port for metrics, health and gRPC health (HTTP).
    #[arg(long, env = "SHUFFLE_ADMIN_PORT", default_value_t = 7338)]
    admin_port: u16,
    /// Directory executors' local dirs must lie under (repeatable; comma-separated in the env
    /// var). Registrations outside every root are refused; with no root, all are refused.
    #[arg(
        long = "allowed-root",
        env = "SHUFFLE_ALLOWED_ROOTS",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    allowed_roots: Vec<PathBuf>,
    /// Directory for the registration database; without it registrations do not survive a
    /// restart.
    #[arg(long, env = "SHUFFLE_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Largest frame accepted from a client (requests are small; this bounds memory).
    #[arg(long, env = "SHUFFLE_MAX_FRAME_SIZE", default_value = "16MiB", value_parser = parse_byte_size)]
    max_frame_size: u64,
    /// Close a client connection idle for this long with no reply pending, as Spark's
    /// `spark.shuffle.io.connectionTimeout` does; 0 keeps idle connections open.
    #[arg(long, env = "SHUFFLE_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Most concurrent client connections.
    #[arg(long, env = "SHUFFLE_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Memory for cached index files (spark.shuffle.service.index.cache.size).
    #[arg(long, env = "SHUFFLE_INDEX_CACHE_SIZE", default_value = "100MiB", value_parser = parse_byte_size)]
    index_cache_size: u64,
    /// Remove an application's registrations and files this long after it was last heard
    /// from (registration, heartbeat or fetch); 0 disables.
    #[arg(long, env = "SHUFFLE_APP_TTL", default_value = "48h", value_parser = parse_duration)]
    app_ttl: Duration,
    /// How often to look for applications past --app-ttl.
    #[arg(long, env = "SHUFFLE_CLEANUP_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    cleanup_interval: Duration,
    /// On Kubernetes, remove applications restored from --state-dir whose driver pod is gone
    /// or finished by the time the service starts. Turn off when client-mode drivers (not
    /// pods) use this service.
    #[arg(long, env = "SHUFFLE_REMOVE_ORPHANS_AT_START", default_value_t = true, action = clap::ArgAction::Set)]
    remove_orphans_at_start: bool,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = sidecars_common::config::parse("SHUFFLE");
    sidecars_common::telemetry::init(&args.common)?;
    let shutdown = Shutdown::new(args.common.shutdown_timeout);
    shutdown.listen_for_signals();

    if args.allowed_roots.is_empty() {
        tracing::warn!("no --allowed-root given: every executor registration will be refused");
    }
    let metrics = Metrics::default();
    let started = std::time::Instant::now();
    let registry = Registry::open(
        args.state_dir.as_deref(),
        &args.allowed_roots,
        metrics.registered_executors.clone(),
    )?;
    tracing::info!(
        executors = registry.executor_count(),
        took_ms = started.elapsed().as_millis() as u64,
        "registrations restored"
    );
    let restored_apps: std::collections::HashSet<String> = if args.remove_orphans_at_start {
        registry.app_ids().into_iter().collect()
    } else {
        Default::default()
    };
    let mut prom = prometheus_client::registry::Registry::default();
    metrics.register(&mut prom);
    let admin = Admin::new(prom);
    let service = Arc::new(Service::new(
        Arc::new(registry),
        metrics,
        ServiceConfig {
            max_frame_size: usize::try_from(args.max_frame_size).unwrap_or(usize::MAX),
            idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
        },
        usize::try_from(args.index_cache_size).unwrap_or(usize::MAX),
    ));

    let admin_addr = SocketAddr::new(args.bind, args.admin_port);
    let admin_listener = admin::bind(admin_addr, "the admin endpoints").await?;
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = admin::bind(addr, "Spark's shuffle protocol").await?;
    tracing::info!(
        shuffle = %listener.local_addr()?,
        admin = %admin_admin_addr(&admin_listener),
        "shuffle-service listening"
    );

    let token = shutdown.token();
    if !args.app_ttl.is_zero() {
        tokio::spawn(cleanup::ttl_loop(
            service.clone(),
            args.app_ttl,
            args.cleanup_interval,
            token.clone(),
        ));
    }
    match args.kube.client().await {
        Ok(Some(client)) => {
            tracing::info!("watching driver pods to remove finished applications");
            tokio::spawn(cleanup::driver_watch(
                service.clone(),
                client,
                args.kube.namespaces.clone(),
                restored_apps,
                token.clone(),
            ));
        }
        Ok(None) if args.app_ttl.is_zero() => tracing::warn!(
            "no Kubernetes and --app-ttl 0: applications' files are never removed by this service"
        ),
        Ok(None) => tracing::info!("no Kubernetes: applications are removed by --app-ttl only"),
        Err(e) if args.app_ttl.is_zero() => tracing::warn!(
            error = %format!("{e:#}"),
            "cannot use Kubernetes, and --app-ttl 0: applications' files are never removed by this service"
        ),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot use Kubernetes; applications are removed by --app-ttl only")
        }
    }

    let admin_task = {
        let admin = admin.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { admin.serve_alone(admin_listener, shutdown).await })
    };
    admin.set_ready(true).await;
    server::run(listener, service, shutdown.clone(), args.max_connections).await;
    admin.set_ready(false).await;
    shutdown.drain().await;
    match admin_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "admin endpoint failed"),
        Err(e) => tracing::warn!(error = %e, "admin task failed"),
    }
    tracing::info!("shuffle-service stopped");
    Ok(())
}

fn admin_admin_addr(l: &tokio::net::TcpListener) -> String {
    l.local_addr()
        .map_or_else(|e| e.to_string(), |a| a.to_string())
}
