//! Pod logs: watches Spark pods (label `spark-role`) and follows each container's log into
//! `podlogs/<appId>/<executorId>/<container>.log`.

use std::path::PathBuf;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::layout::LogStore;

/// Pod-log collection settings.
#[derive(clap::Args, Clone, Debug)]
pub struct PodLogArgs {
    /// Namespace whose Spark pods' logs are collected; repeatable. None: no pod logs.
    #[arg(long = "namespace", env = "HISTORY_NAMESPACE", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// kubeconfig file for the Kubernetes API [default: in-cluster, or ~/.kube/config].
    #[arg(long, env = "HISTORY_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

impl PodLogArgs {
    pub fn enabled(&self) -> bool {
        !self.namespaces.is_empty()
    }
}

/// Pod-log counters.
#[derive(Clone, Debug, Default)]
pub struct PodLogMetrics {
    pub bytes: Counter,
}

impl PodLogMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "history_podlog_bytes",
            "Pod-log bytes stored",
            self.bytes.clone(),
        );
    }
}

/// The Kubernetes client.
pub async fn client(_args: &PodLogArgs) -> anyhow::Result<()> {
    anyhow::bail!("pod-log collection (--namespace) is not available in this build yet")
}

pub async fn run(
    _client: (),
    _args: PodLogArgs,
    _store: LogStore,
    _metrics: PodLogMetrics,
    _stop: CancellationToken,
) {
}
