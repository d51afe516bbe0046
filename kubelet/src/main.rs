//! `sidecars-kubelet node …` runs one node; `container-init` is the per-container helper the
//! node starts (not for people); `provisioner` gives PersistentVolumeClaims of the local
//! StorageClass a directory of the machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use sidecars_kubelet::hosts::Hosts;
use sidecars_kubelet::images::{detect_java_home, ImageTable, SparkInstall};
use sidecars_kubelet::logs::LogHub;
use sidecars_kubelet::network::{self, PodIps};
use sidecars_kubelet::node::{NodeCtx, KUBELET_PORT};
use sidecars_kubelet::{env, init, pod, provisioner, server};

#[derive(Parser)]
#[command(
    version,
    about = "Runs Kubernetes pods as local processes (one process per node)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node: register it, run the pods bound to it, serve their logs.
    Node(Box<NodeArgs>),
    /// Start one container (used by the node; reads the spec file it wrote).
    #[command(hide = true)]
    ContainerInit { spec: PathBuf },
    /// Provision hostPath PersistentVolumes for claims of a StorageClass.
    Provisioner(provisioner::Args),
}

#[derive(clap::Args)]
struct NodeArgs {
    /// Node name (the Node object's name and the pods' spec.nodeName).
    #[arg(long)]
    name: String,
    /// Node number, 1-200: the node's address is 198.18.0.(10+N) and its pods' 198.18.N.0/24.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=200))]
    index: u8,
    /// Kubeconfig with the node's identity (user system:node:<name>, group system:nodes).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Kubeconfig with the kube-proxy identity (system:kube-proxy), used to watch Endpoints for
    /// the pods' /etc/hosts.
    #[arg(long)]
    proxy_kubeconfig: PathBuf,
    /// The node's directory: pods, their volumes and logs, and its hostPath root.
    #[arg(long)]
    root_dir: PathBuf,
    /// Bridge of the test network (created by scripts/kube-local.sh).
    #[arg(long, default_value = "sidecars0")]
    bridge: String,
    /// Serving certificate and key of the kubelet's HTTPS endpoint.
    #[arg(long)]
    tls_cert: PathBuf,
    #[arg(long)]
    tls_key: PathBuf,
    /// CA of the clients allowed on the HTTPS endpoint (the API server's kubelet client).
    #[arg(long)]
    client_ca: PathBuf,
    /// Where pods reach the API server (KUBERNETES_SERVICE_HOST/PORT).
    #[arg(long, default_value = "198.18.0.1")]
    api_server_ip: String,
    #[arg(long, default_value_t = 443)]
    api_server_port: u16,
    /// A local Spark for the apache/spark:<VERSION> images: VERSION=SPARK_HOME[:VENV_BIN_DIR].
    #[arg(long = "spark-home", value_name = "VERSION=DIR[:BIN]")]
    spark_homes: Vec<String>,
    /// Directory with the spark-sidecars binaries, for the spark-sidecars/* images.
    #[arg(long, env = "SIDECARS_BIN_DIR")]
    sidecars_bin_dir: Option<PathBuf>,
    /// CPU capacity the node reports.
    #[arg(long, default_value = "4")]
    cpu: String,
    /// Memory capacity the node reports.
    #[arg(long, default_value = "8Gi")]
    memory: String,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        // before anything else: this must stay single-threaded
        Cmd::ContainerInit { spec } => init::main(&spec),
        Cmd::Node(args) => runtime()?.block_on(run_node(*args)),
        Cmd::Provisioner(args) => runtime()?.block_on(provisioner::run(args)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn kube_client(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(Client::try_from(config)?)
}

fn spark_table(specs: &[String]) -> Result<BTreeMap<String, SparkInstall>> {
    let mut out = BTreeMap::new();
    for s in specs {
        let Some((version, rest)) = s.split_once('=') else {
            bail!("--spark-home {s:?}: expected VERSION=SPARK_HOME[:VENV_BIN_DIR]");
        };
        let (home, bin) = match rest.split_once(':') {
            Some((h, b)) => (PathBuf::from(h), Some(PathBuf::from(b))),
            None => (PathBuf::from(rest), None),
        };
        if !home.join("bin/spark-submit").is_file() {
            bail!(
                "--spark-home {s:?}: {} has no bin/spark-submit",
                home.display()
            );
        }
        out.insert(
            version.to_string(),
            SparkInstall {
                home,
                python_bin: bin,
            },
        );
    }
    Ok(out)
}

/// Kills containers a previous run of this node left behind and removes their directories.
fn clean_leftovers(pods_dir: &Path) {
    let Ok(pods) = std::fs::read_dir(pods_dir) else {
        return;
    };
    for pod in pods.flatten() {
        let containers = pod.path().join("containers");
        for c in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(pid) = std::fs::read_to_string(c.path().join("pid")) else {
                continue;
            };
            let Ok(pid) = pid.trim().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("container-init") {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Some(uid) = pod.file_name().to_str() {
            let (ns, veth) = network::pod_names(uid);
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &veth])
                .output();
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &ns])
                .output();
        }
        let _ = std::fs::remove_dir_all(pod.path());
    }
}

async fn run_node(args: NodeArgs) -> Result<()> {
    let client = kube_client(&args.kubeconfig).await?;
    let proxy_client = kube_client(&args.proxy_kubeconfig).await?;
    let pods_dir = args.root_dir.join("pods");
    let host_root = args.root_dir.join("host");
    clean_leftovers(&pods_dir);
    std::fs::create_dir_all(&pods_dir)?;
    std::fs::create_dir_all(&host_root)?;
    let images = ImageTable {
        spark: spark_table(&args.spark_homes)?,
        sidecars_bin_dir: args.sidecars_bin_dir.clone(),
        java_home: detect_java_home().context("no Java found (JAVA_HOME or java on PATH)")?,
    };
    let netns = network::setup_node(&args.name, args.index, &args.bridge).await?;
    let ip = network::node_ip(args.index);

    let hosts = Hosts::default();
    tokio::spawn(hosts.clone().run(proxy_client));
    if tokio::time::timeout(Duration::from_secs(60), hosts.wait_synced())
        .await
        .is_err()
    {
        bail!("could not list Endpoints within 60s with --proxy-kubeconfig");
    }
    let logs = LogHub::default();
    let node = Arc::new(NodeCtx {
        name: args.name.clone(),
        index: args.index,
        ip,
        client,
        netns: netns.clone(),
        bridge: args.bridge.clone(),
        pods_dir,
        host_root,
        images,
        hosts,
        logs: logs.clone(),
        ips: PodIps::new(args.index),
        api_ip: args.api_server_ip.clone(),
        api_port: args.api_server_port,
        exe: std::env::current_exe()?,
        cpu_millis: env::parse_cpu_millis(&args.cpu)?,
        memory_bytes: env::parse_bytes(&args.memory)?,
    });
    let tls = server::tls_config(&args.tls_cert, &args.tls_key, &args.client_ca)?;
    let listener = server::bind_in_netns(&netns, SocketAddr::from((ip, KUBELET_PORT)))?;
    tokio::spawn(async move {
        if let Err(e) = server::serve(listener, tls, logs).await {
            tracing::error!(error = %format!("{e:#}"), "kubelet endpoint stopped");
        }
    });
    node.register().await?;
    let hb = node.clone();
    tokio::spawn(async move { hb.heartbeat().await });
    tracing::info!(node = %args.name, %ip, "node running");

    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping the node's pods");
    };
    pod::run(node, shutdown).await;
    network::teardown_node(&args.name, args.index).await;
    Ok(())
}
