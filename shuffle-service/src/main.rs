//! shuffle-service: Spark's external shuffle service, as a Kubernetes DaemonSet.
//!
//! Wiring only: settings, restoring registrations before the port opens, the shuffle accept
//! loop, the admin endpoints, application cleanup, learning secrets from executor pods,
//! readiness that follows the registration database's health, and a graceful drain on SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shuffle_service::auth::secrets::{read_secret_file, Secrets};
use shuffle_service::auth::{AuthConfig, AuthMode};
use shuffle_service::metrics::Metrics;
use shuffle_service::registry::Registry;
use shuffle_service::service::{Limits, Service, ServiceConfig};
use shuffle_service::{cleanup, secret_watch, server};
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
    /// `spark.shuffle.io.connectionTimeout` does, or whose client reads none of its replies
    /// for this long; 0 keeps idle connections open.
    #[arg(long, env = "SHUFFLE_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Most concurrent client connections; at the limit the longest-idle one is closed to
    /// make room.
    #[arg(long, env = "SHUFFLE_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Most concurrent connections from one address (a node's executors share its address).
    #[arg(long, env = "SHUFFLE_MAX_CONNECTIONS_PER_PEER", default_value_t = 256)]
    max_connections_per_peer: usize,
    /// Most block ids in one fetch request (OpenBlocks, FetchShuffleBlocks); bounds the
    /// memory one request can take.
    #[arg(long, env = "SHUFFLE_MAX_IDS_PER_REQUEST", default_value_t = 200_000)]
    max_ids_per_request: u64,
    /// Most blocks in the open (not yet read) streams of one connection.
    #[arg(
        long,
        env = "SHUFFLE_MAX_OPEN_BLOCKS_PER_CONNECTION",
        default_value_t = 1_000_000
    )]
    max_open_blocks_per_connection: usize,
    /// Most blocks in the open streams of all connections (about 24 bytes each).
    #[arg(long, env = "SHUFFLE_MAX_OPEN_BLOCKS", default_value_t = 8_000_000)]
    max_open_blocks: usize,
    /// Most block files held open for one connection's queued replies.
    #[arg(long, env = "SHUFFLE_MAX_FILES_PER_CONNECTION", default_value_t = 64)]
    max_files_per_connection: usize,
    /// Most block files held open for all queued replies; default: what the open-file limit
    /// leaves after one descriptor per connection and a reserve.
    #[arg(long, env = "SHUFFLE_MAX_OPEN_FILES")]
    max_open_files: Option<usize>,
    /// Which applications must authenticate (spark.authenticate): `required` (all; an
    /// application whose secret is unknown cannot use the service), `known` (those whose
    /// secret is known), `off`.
    #[arg(long = "auth", env = "SHUFFLE_AUTH", value_enum, default_value_t = AuthMode::Required)]
    auth: AuthMode,
    /// File holding the one secret every application authenticates with (the value of
    /// spark.authenticate.secret; a trailing newline is ignored). Must not be readable by
    /// other users.
    #[arg(long, env = "SHUFFLE_AUTH_SECRET_FILE", value_name = "FILE")]
    auth_secret_file: Option<PathBuf>,
    /// On Kubernetes, learn each application's secret from its executor pods on this node
    /// (the _SPARK_AUTH_SECRET variable Spark sets).
    #[arg(long, env = "SHUFFLE_AUTH_SECRETS_FROM_PODS", default_value_t = true, action = clap::ArgAction::Set)]
    auth_secrets_from_pods: bool,
    /// Also read Kubernetes Secrets that executor pods take _SPARK_AUTH_SECRET from, or mount
    /// their spark.authenticate.secret.executor.file from (needs a get-secrets grant).
    #[arg(long, env = "SHUFFLE_AUTH_SECRETS_FROM_K8S_SECRETS", default_value_t = false, action = clap::ArgAction::Set)]
    auth_secrets_from_k8s_secrets: bool,
    /// This node's name (downward API spec.nodeName): only pods on it are watched for secrets.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// How long a connection may take to authenticate when it must.
    #[arg(long, env = "SHUFFLE_AUTH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    auth_timeout: Duration,
    /// How long a handshake waits for the pod watch to learn an unknown application's secret.
    #[arg(long, env = "SHUFFLE_AUTH_SECRET_WAIT", default_value = "5s", value_parser = parse_duration)]
    auth_secret_wait: Duration,
    /// SASL: offer only auth-conf (spark.network.sasl.serverAlwaysEncrypt).
    #[arg(long, env = "SHUFFLE_SASL_ALWAYS_ENCRYPT", default_value_t = false, action = clap::ArgAction::Set)]
    sasl_always_encrypt: bool,
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
    let shared_secret = match &args.auth_secret_file {
        Some(p) => Some(read_secret_file(p)?),
        None => None,
    };
    let kube_client = args.kube.client().await;
    let learning = args.auth != AuthMode::Off
        && args.auth_secrets_from_pods
        && matches!(kube_client, Ok(Some(_)));
    if args.auth == AuthMode::Required && shared_secret.is_none() && !learning {
        anyhow::bail!(
            "--auth required, but this service has no secret to check: give --auth-secret-file, run it on Kubernetes to learn secrets from executor pods, or choose --auth known or --auth off"
        );
    }
    let open_file_limit = raise_open_file_limit();
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
    let max_open_files = args.max_open_files.unwrap_or_else(|| {
        (open_file_limit.saturating_sub(args.max_connections as u64 + 1024) as usize).max(256)
    });
    let service = Arc::new(
        Service::new(
            Arc::new(registry),
            metrics,
            ServiceConfig {
                max_frame_size: usize::try_from(args.max_frame_size).unwrap_or(usize::MAX),
                idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
                auth: AuthConfig {
                    mode: args.auth,
                    sasl_always_encrypt: args.sasl_always_encrypt,
                    timeout: args.auth_timeout,
                    secret_wait: args.auth_secret_wait,
                },
                limits: Limits {
                    max_ids_per_request: args.max_ids_per_request,
                    max_open_blocks_per_connection: args.max_open_blocks_per_connection,
                    max_open_blocks: args.max_open_blocks,
                    max_files_per_connection: args.max_files_per_connection,
                    max_open_files,
                },
            },
            usize::try_from(args.index_cache_size).unwrap_or(usize::MAX),
        )
        .with_secrets(Secrets::new(shared_secret), learning),
    );
    tracing::info!(
        auth = args.auth.as_str(),
        shared_secret = args.auth_secret_file.is_some(),
        learning_secrets_from_pods = learning,
        max_open_files,
        "authentication"
    );

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
    match kube_client {
        Ok(Some(client)) => {
            if learning {
                tracing::info!(
                    node = args
                        .node_name
                        .as_deref()
                        .unwrap_or("(every node: --node-name not set)"),
                    "watching executor pods to learn applications' secrets"
                );
                tokio::spawn(secret_watch::run(
                    service.clone(),
                    client.clone(),
                    secret_watch::WatchConfig {
                        node_name: args.node_name.clone(),
                        namespaces: args.kube.namespaces.clone(),
                        read_secrets: args.auth_secrets_from_k8s_secrets,
                    },
                    token.clone(),
                ));
            }
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
    tokio::spawn(health_loop(service.clone(), admin.clone(), token.clone()));
    server::run(
        listener,
        service,
        shutdown.clone(),
        server::ConnectionLimits {
            max_connections: args.max_connections,
            max_connections_per_peer: args.max_connections_per_peer,
        },
    )
    .await;
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

/// Readiness follows the registration database: after a failed write (a full disk) the
/// service is not ready, and it reopens the database every two seconds until a write works.
async fn health_loop(
    service: Arc<Service>,
    admin: Admin,
    token: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        if service.registry.healthy() {
            continue;
        }
        service.metrics.db_healthy.set(0);
        if admin.is_ready() {
            admin.set_ready(false).await;
        }
        let s = service.clone();
        let recovered =
            tokio::task::spawn_blocking(move || s.registry.recover(&s.secrets.learned_snapshot()))
                .await
                .unwrap_or(false);
        if recovered {
            service.metrics.db_healthy.set(1);
            admin.set_ready(true).await;
        }
    }
}

/// Raises the soft open-file limit to the hard one (each connection and each queued block
/// file takes a descriptor) and returns it.
fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

fn admin_admin_addr(l: &tokio::net::TcpListener) -> String {
    l.local_addr()
        .map_or_else(|e| e.to_string(), |a| a.to_string())
}
