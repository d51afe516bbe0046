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
    /// Largest single file in a bundle, once decompressed.
    #[arg(long, env = "STAGING_MAX_ENTRY_SIZE", default_value = "4GiB", value_parser = parse_byte_size)]
    pub max_entry_size: u64,
    /// Most bytes a bundle may expand to per compressed byte, beyond its first 32 MiB (0: no
    /// limit). Jars barely compress and text a few times; a gzip bomb a thousand times.
    #[arg(long, env = "STAGING_MAX_EXPANSION_RATIO", default_value_t = 100)]
    pub max_expansion_ratio: u64,
    /// Largest file uploaded through WebHDFS.
    #[arg(long, env = "STAGING_MAX_FILE_SIZE", default_value = "4GiB", value_parser = parse_byte_size)]
    pub max_file_size: u64,
    /// Most bytes one namespace may store (bundles, their files, and WebHDFS files; 0: no
    /// limit).
    #[arg(long, env = "STAGING_NAMESPACE_QUOTA", default_value = "50GiB", value_parser = parse_byte_size)]
    pub namespace_quota: u64,
    /// Most uploads per minute per credential (WebHDFS) or per client address (v0 API); 0: no
    /// limit.
    #[arg(long, env = "STAGING_UPLOADS_PER_MINUTE", default_value_t = 600)]
    pub uploads_per_minute: u64,
    /// Most failed authentications per minute per client address before it is refused.
    #[arg(long, env = "STAGING_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u64,
    /// A WebHDFS upload no pod has claimed (read, or named in its spec) is deleted this long
    /// after it was written.
    #[arg(long, env = "STAGING_UNCLAIMED_TTL", default_value = "6h", value_parser = parse_duration)]
    pub unclaimed_ttl: Duration,
    /// How long an upload credential is valid unless the request asks for less.
    #[arg(long, env = "STAGING_CREDENTIAL_TTL", default_value = "7d", value_parser = parse_duration)]
    pub credential_ttl: Duration,
    /// The longest validity a credential may be issued with.
    #[arg(long, env = "STAGING_MAX_CREDENTIAL_TTL", default_value = "30d", value_parser = parse_duration)]
    pub max_credential_ttl: Duration,
    /// Lifetime of the access tokens `/oauth2/token` hands out.
    #[arg(long, env = "STAGING_ACCESS_TOKEN_TTL", default_value = "10m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,
    /// File holding the administrator's token: whoever presents it may obtain upload
    /// credentials for any namespace (without it, only Kubernetes identities that may create
    /// pods in a namespace obtain credentials for it).
    #[arg(long, env = "STAGING_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
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

/// Takes `<data-dir>/lock` (an advisory `flock`, released when the process ends however it
/// ends) for this process alone.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        bail!(
            "--data-dir {} is in use by another staging-server (cannot lock {}: {e})",
            data_dir.display(),
            path.display()
        );
    }
    Ok(file)
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
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create --data-dir {}", data_dir.display()))?;
    // Before touching anything in it: a second server on the same directory must not wipe
    // the first one's uploads in flight.
    let _data_lock = lock_data_dir(&data_dir)?;
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
    // A local store is this process's alone; taking it also deletes the temp files a killed
    // process left (extractions cut short, uploads in flight).
    let _store_lock =
        match objects.as_file_store() {
            Some(fs) => Some(fs.lock().with_context(|| {
                format!("--storage {storage} is in use by another staging-server")
            })?),
            None => None,
        };
    let mut private = vec![(data_dir.display().to_string(), "<data-dir>")];
    if let Some(fs) = objects.as_file_store() {
        private.push((fs.root().display().to_string(), "<store>"));
    }
    crate::errors::set_private_paths(private);
    let bundles = Bundles::new(objects.clone()).with_fsync(!args.no_fsync);

    let metrics = Arc::new(Metrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    registry.register(
        "staging_materialisations",
        "Extractions of bundle files from their archives (one per bundle at a time)",
        bundles.materialisations.clone(),
    );
    let admin = Admin::new(registry);

    let kube = args.kube.client().await?;
    let owners: Option<Arc<dyn crate::cleaner::OwnerPods>> = match &kube {
        Some(client) => {
            tracing::info!(namespaces = ?args.kube.namespaces, "watching pods to tie bundles and uploads to their owners");
            Some(Arc::new(crate::owners::PodView::watch(
                client.clone(),
                args.kube.namespaces.clone(),
                shutdown.token(),
            )))
        }
        None => {
            tracing::info!(
                "no Kubernetes configured: used bundles and claimed uploads live until --max-age"
            );
            None
        }
    };
    let admin_token_sha256 = match &args.admin_token_file {
        Some(path) => {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --admin-token-file {}", path.display()))?;
            let t = t.trim();
            if t.len() < 16 {
                bail!(
                    "--admin-token-file {}: the token must be at least 16 characters",
                    path.display()
                );
            }
            Some(crate::secrets::hash(t))
        }
        None => None,
    };
    if admin_token_sha256.is_none() && kube.is_none() {
        tracing::warn!("neither --admin-token-file nor Kubernetes is configured: no upload credential can be issued, so WebHDFS refuses everyone");
    }
    let usage = Arc::new(crate::limits::Usage::new(args.namespace_quota));
    let uploads = Arc::new(crate::limits::RateLimiter::new(args.uploads_per_minute));
    let failures = Arc::new(crate::limits::RateLimiter::new(
        args.auth_failures_per_minute,
    ));
    let grants = crate::auth::grants::Grants::new(objects.clone());
    let webhdfs = Arc::new(crate::webhdfs::WebHdfs::new(
        objects.clone(),
        grants.clone(),
        usage.clone(),
        uploads.clone(),
        failures.clone(),
        owners.clone(),
        args.max_file_size,
        tls.is_some(),
    ));
    let auth = Arc::new(crate::auth::Auth {
        grants,
        kube: kube.clone(),
        admin_token_sha256,
        default_ttl: args.credential_ttl,
        max_ttl: args.max_credential_ttl,
        access_ttl: args.access_token_ttl,
        failures,
    });

    let state = AppState {
        bundles: bundles.clone(),
        spool,
        max_bundle_size: args.max_bundle_size,
        limits: Limits {
            max_entries: args.max_entries,
            max_extracted: args.max_extracted_size,
            max_entry_size: args.max_entry_size,
            max_ratio: args.max_expansion_ratio,
        },
        metrics: metrics.clone(),
        usage: usage.clone(),
        uploads,
        webhdfs: webhdfs.clone(),
        auth,
    };
    let policy = Policy {
        initial_access_timeout: args.initial_access_timeout,
        max_age: args.max_age,
        owner_grace: args.owner_grace,
        orphan_grace: args.orphan_grace,
    };
    let upload_policy = crate::webhdfs::cleanup::Policy {
        unclaimed_ttl: args.unclaimed_ttl,
        owner_grace: args.owner_grace,
        orphan_grace: args.orphan_grace,
        max_age: args.max_age,
    };
    let cleaner =
        Cleaner::new(bundles, policy, owners, metrics, usage).with_webhdfs(webhdfs, upload_policy);
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
