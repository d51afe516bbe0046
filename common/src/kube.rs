//! Kubernetes plumbing shared by the daemons: the `--kubeconfig`/`--namespace`/`--no-kube`
//! settings, building a [`kube::Client`] from them, and watching pods in a set of namespaces.
//!
//! Every daemon must also run on a laptop with no cluster at all, so Kubernetes is optional:
//! [`KubeArgs::client`] gives `None` when nothing points at a cluster (no `--kubeconfig`, no
//! `$KUBECONFIG`, not inside a pod) or when `--no-kube` is set, and the daemon skips the
//! features that need the API (pod watches, pod-log collection).
//!
//! Watches go through `kube::runtime::watcher`, which lists, then watches from the list's
//! resourceVersion, and relists by itself after a `410 Gone`; components should not hand-roll
//! polling.
//!
//! ```no_run
//! use clap::Parser;
//! use futures::{StreamExt, TryStreamExt};
//! use kube::runtime::{watcher, WatchStreamExt};
//! use sidecars_common::kube::{watch_pods, KubeArgs};
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     kube: KubeArgs,
//! }
//!
//! # async fn run() -> anyhow::Result<()> {
//! let args = Args::parse();
//! if let Some(client) = args.kube.client().await? {
//!     let config = watcher::Config::default().labels("spark-role=driver");
//!     let mut pods = watch_pods(&client, &args.kube.namespaces, config)
//!         .default_backoff()
//!         .applied_objects()
//!         .boxed();
//!     while let Some(pod) = pods.try_next().await? {
//!         println!("{:?} is {:?}", pod.metadata.name, pod.status.and_then(|s| s.phase));
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Tests use `sidecars_common::fake_kube::FakeApiServer` (cargo feature `fake-kube`) and pass
//! its `kubeconfig_path()` as `--kubeconfig`, so the daemon goes through this very code.

use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client, Config};

/// Environment variable that, inside a pod, tells the in-cluster configuration where the API is.
const IN_CLUSTER_ENV: &str = "KUBERNETES_SERVICE_HOST";

/// Kubernetes settings that every daemon flattens into its own arguments.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeArgs {
    /// Kubeconfig file for the Kubernetes API. Without it the daemon uses $KUBECONFIG, or the
    /// in-cluster service account when it runs in a pod, or runs without Kubernetes.
    #[arg(long, env = "SIDECARS_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace to watch (repeat the flag, or comma-separate in the env var). Empty means all
    /// namespaces, which needs cluster-wide read access to pods.
    #[arg(
        long = "namespace",
        env = "SIDECARS_NAMESPACES",
        value_name = "NS",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Do not talk to Kubernetes even if a kubeconfig or in-cluster account is available.
    #[arg(long, env = "SIDECARS_NO_KUBE")]
    pub no_kube: bool,
}

/// Where the Kubernetes configuration comes from, as decided by [`KubeArgs::source`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeSource {
    /// `--no-kube`, or nothing points at a cluster.
    Disabled,
    /// A kubeconfig file given with `--kubeconfig` / `SIDECARS_KUBECONFIG`.
    File(PathBuf),
    /// `$KUBECONFIG` (one file or a `:`-separated list, merged like kubectl does).
    KubeconfigEnv(String),
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` is set).
    InCluster,
}

impl KubeArgs {
    /// Decides where the configuration comes from, reading the process environment.
    pub fn source(&self) -> KubeSource {
        self.source_with(|k| std::env::var(k).ok())
    }

    /// [`KubeArgs::source`] with an injectable environment, for tests.
    pub fn source_with(&self, env: impl Fn(&str) -> Option<String>) -> KubeSource {
        if self.no_kube {
            return KubeSource::Disabled;
        }
        if let Some(path) = &self.kubeconfig {
            return KubeSource::File(path.clone());
        }
        if let Some(list) = env("KUBECONFIG").filter(|v| !v.trim().is_empty()) {
            return KubeSource::KubeconfigEnv(list);
        }
        if env(IN_CLUSTER_ENV).is_some_and(|v| !v.is_empty()) {
            return KubeSource::InCluster;
        }
        KubeSource::Disabled
    }

    /// True when the daemon should use Kubernetes (see [`KubeArgs::source`]).
    pub fn enabled(&self) -> bool {
        self.source() != KubeSource::Disabled
    }

    /// Builds the client, or `None` when Kubernetes is disabled. Errors name the kubeconfig
    /// file (or say that the in-cluster account is unusable).
    pub async fn client(&self) -> anyhow::Result<Option<Client>> {
        match self.source() {
            KubeSource::Disabled => Ok(None),
            KubeSource::File(path) => client_from_file(&path).await.map(Some),
            KubeSource::KubeconfigEnv(list) => client_from_env_list(&list).await.map(Some),
            KubeSource::InCluster => client_in_cluster().map(Some),
        }
    }

    /// One `Api<Pod>` per configured namespace, or one cluster-wide `Api` if none is set.
    pub fn pod_apis(&self, client: &Client) -> Vec<Api<Pod>> {
        pod_apis(client, &self.namespaces)
    }
}

/// Builds a client from `kubeconfig` if given, else from `$KUBECONFIG`, else from the pod's
/// service account. Unlike [`KubeArgs::client`], having no configuration at all is an error.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    if let Some(path) = kubeconfig {
        return client_from_file(path).await;
    }
    let args = KubeArgs::default();
    match args.source() {
        KubeSource::KubeconfigEnv(list) => client_from_env_list(&list).await,
        KubeSource::InCluster => client_in_cluster(),
        KubeSource::File(path) => client_from_file(&path).await,
        KubeSource::Disabled => anyhow::bail!(
            "no Kubernetes configuration: pass --kubeconfig FILE (or SIDECARS_KUBECONFIG), set \
             KUBECONFIG, or run in a pod with a service account"
        ),
    }
}

async fn client_from_file(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    client_from_kubeconfig(kubeconfig, &path.display().to_string()).await
}

async fn client_from_env_list(list: &str) -> anyhow::Result<Client> {
    let mut merged: Option<Kubeconfig> = None;
    for file in std::env::split_paths(list).filter(|p| !p.as_os_str().is_empty()) {
        let one = Kubeconfig::read_from(&file).with_context(|| {
            format!(
                "cannot read kubeconfig {} (from KUBECONFIG)",
                file.display()
            )
        })?;
        merged = Some(match merged {
            None => one,
            Some(m) => m.merge(one).with_context(|| {
                format!(
                    "cannot merge kubeconfig {} (from KUBECONFIG)",
                    file.display()
                )
            })?,
        });
    }
    let merged = merged.context("KUBECONFIG names no file")?;
    client_from_kubeconfig(merged, &format!("KUBECONFIG={list}")).await
}

async fn client_from_kubeconfig(kubeconfig: Kubeconfig, what: &str) -> anyhow::Result<Client> {
    install_crypto_provider();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("kubeconfig {what} is not usable"))?;
    Client::try_from(config)
        .with_context(|| format!("cannot build a Kubernetes client from kubeconfig {what}"))
}

fn client_in_cluster() -> anyhow::Result<Client> {
    install_crypto_provider();
    let config = Config::incluster().context(
        "cannot use the in-cluster Kubernetes configuration (service account token and CA under \
         /var/run/secrets/kubernetes.io/serviceaccount/)",
    )?;
    Client::try_from(config).context("cannot build the in-cluster Kubernetes client")
}

/// rustls refuses to pick a crypto provider when more than one is compiled in (the AWS SDK
/// brings aws-lc-rs, kube brings ring), so choose one for the process before kube builds its
/// TLS configuration. Installing twice is harmless: the first one stays.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One `Api<Pod>` per namespace, or one cluster-wide `Api` when `namespaces` is empty.
pub fn pod_apis(client: &Client, namespaces: &[String]) -> Vec<Api<Pod>> {
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// Watches pods in `namespaces` (all namespaces when empty) with one `kube::runtime::watcher`
/// per namespace, merged into one stream.
///
/// Each watcher relists on its own after a `410 Gone`, so with several namespaces the
/// `Init`/`InitApply`/`InitDone` sequences of different namespaces can interleave: use the
/// `Apply`/`Delete` events (or `.applied_objects()`/`.touched_objects()`), not a single
/// reflector store, across namespaces. Add `.default_backoff()` so errors are retried.
pub fn watch_pods(
    client: &Client,
    namespaces: &[String],
    config: watcher::Config,
) -> BoxStream<'static, watcher::Result<watcher::Event<Pod>>> {
    let streams = pod_apis(client, namespaces)
        .into_iter()
        .map(|api| watcher(api, config.clone()).boxed());
    stream::select_all(streams).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Demo {
        #[command(flatten)]
        kube: KubeArgs,
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn source_follows_flag_then_env_then_cluster() {
        let none = KubeArgs::default();
        assert_eq!(none.source_with(env(&[])), KubeSource::Disabled);
        assert_eq!(
            none.source_with(env(&[(IN_CLUSTER_ENV, "10.0.0.1")])),
            KubeSource::InCluster
        );
        assert_eq!(
            none.source_with(env(&[
                ("KUBECONFIG", "/a:/b"),
                (IN_CLUSTER_ENV, "10.0.0.1")
            ])),
            KubeSource::KubeconfigEnv("/a:/b".into())
        );
        let file = KubeArgs {
            kubeconfig: Some("/k".into()),
            ..Default::default()
        };
        assert_eq!(
            file.source_with(env(&[("KUBECONFIG", "/a")])),
            KubeSource::File("/k".into())
        );
        let off = KubeArgs {
            no_kube: true,
            ..file
        };
        assert_eq!(
            off.source_with(env(&[(IN_CLUSTER_ENV, "10.0.0.1")])),
            KubeSource::Disabled
        );
    }

    #[test]
    fn namespaces_repeat_or_comma_separate() {
        let d = Demo::try_parse_from(["x", "--namespace", "a", "--namespace=b,c"]).unwrap();
        assert_eq!(d.kube.namespaces, vec!["a", "b", "c"]);
        let d = Demo::try_parse_from(["x", "--kubeconfig", "/k", "--no-kube"]).unwrap();
        assert_eq!(d.kube.kubeconfig.as_deref(), Some(Path::new("/k")));
        assert!(d.kube.no_kube);
    }

    #[tokio::test]
    async fn bad_kubeconfig_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml");
        let err = client(Some(&missing)).await.err().expect("missing file");
        assert!(format!("{err:#}").contains("missing.yaml"), "{err:#}");

        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, "clusters: [this is not: a kubeconfig").unwrap();
        let err = client(Some(&broken)).await.err().expect("broken file");
        assert!(format!("{err:#}").contains("broken.yaml"), "{err:#}");

        let no_context = dir.path().join("empty.yaml");
        std::fs::write(&no_context, "apiVersion: v1\nkind: Config\n").unwrap();
        let err = client(Some(&no_context)).await.err().expect("no context");
        assert!(format!("{err:#}").contains("empty.yaml"), "{err:#}");
    }
}
