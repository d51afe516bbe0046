//! The agent (`history-collector agent`): a sidecar beside the driver that tails the local
//! event-log dir (an emptyDir shared with the driver) and streams appended bytes to the
//! collector over gRPC. It keeps no state of its own: after a restart of either side it asks
//! the collector how much is stored and resumes there, and the collector drops resent bytes.
//!
//! Every request carries `authorization: Bearer <token>` with the token read from
//! `--token-file` at the time of the request (a projected service-account token is rotated
//! by the kubelet, so it is never cached here): in Kubernetes the pod's service-account
//! token, which the collector checks with the API server; elsewhere a shared token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use futures::StreamExt;
use sidecars_common::config::{parse_byte_size, parse_duration};
use sidecars_common::{CommonArgs, Shutdown};
use sidecars_proto::history::event_log_ingest_client::EventLogIngestClient;
use sidecars_proto::history::{AppendChunk, FileRef};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::layout::Stored;
use super::tail::{Sink, TailMetrics, Tailer};
use crate::logdir::admit::Limits;

/// Where a pod's service-account token is mounted by default.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Streams a driver's event logs to the collector.
#[derive(clap::Parser, Debug)]
#[command(
    name = "history-collector agent",
    bin_name = "history-collector agent",
    version,
    about
)]
pub struct AgentArgs {
    /// The directory the driver writes event logs to (spark.eventLog.dir); repeatable.
    #[arg(
        long = "event-log-dir",
        env = "HISTORY_AGENT_EVENT_LOG_DIR",
        value_delimiter = ',',
        required = true
    )]
    pub event_log_dirs: Vec<PathBuf>,
    /// The collector's URL, e.g. http://history-collector:18080.
    #[arg(long, env = "HISTORY_AGENT_COLLECTOR")]
    pub collector: String,
    /// How often the directories are scanned even without a change notification.
    #[arg(long, env = "HISTORY_AGENT_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// The token presented to the collector, read again for every request: the pod's
    /// service-account token (best a projected one with the collector's audience), or a shared
    /// token listed in the collector's --ingest-token-file.
    #[arg(long, env = "HISTORY_AGENT_TOKEN_FILE", default_value = DEFAULT_TOKEN_FILE)]
    pub token_file: PathBuf,
    /// Largest event-log file sent (larger ones are refused by the collector anyway).
    #[arg(long, env = "HISTORY_AGENT_MAX_EVENT_LOG_FILE_SIZE", default_value = "16GiB", value_parser = parse_byte_size)]
    pub max_event_log_file_size: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Data bytes per gRPC message.
const CHUNK: usize = 256 * 1024;

/// Adds the bearer token, read from its file on every request.
#[derive(Clone)]
pub struct TokenFromFile {
    path: PathBuf,
}

impl tonic::service::Interceptor for TokenFromFile {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let token = std::fs::read_to_string(&self.path).map_err(|e| {
            tonic::Status::unauthenticated(format!(
                "cannot read the agent's --token-file {}: {e}",
                self.path.display()
            ))
        })?;
        let value: MetadataValue<_> = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| tonic::Status::unauthenticated("the token file holds no usable token"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}

type Client = EventLogIngestClient<InterceptedService<Channel, TokenFromFile>>;

/// A sink that sends to the collector.
#[derive(Clone)]
pub struct RemoteSink {
    client: Client,
}

impl RemoteSink {
    /// Connects lazily: the agent starts (and keeps tailing) while the collector is down.
    pub fn new(url: &str, token_file: PathBuf) -> anyhow::Result<Self> {
        let ep = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("invalid --collector URL {url}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_keepalive(Some(Duration::from_secs(30)));
        let interceptor = TokenFromFile { path: token_file };
        Ok(Self {
            client: EventLogIngestClient::with_interceptor(ep.connect_lazy(), interceptor)
                .max_decoding_message_size(16 << 20),
        })
    }
}

fn file_ref(log: &str, rel: &str) -> FileRef {
    FileRef {
        log_name: log.to_string(),
        relative_path: rel.to_string(),
    }
}

#[async_trait]
impl Sink for RemoteSink {
    async fn stored(&self, log: &str, rel: &str) -> anyhow::Result<Stored> {
        let r = self
            .client
            .clone()
            .resume(file_ref(log, rel))
            .await?
            .into_inner();
        Ok(Stored {
            len: r.length,
            complete: r.complete,
        })
    }

    async fn append(
        &self,
        log: &str,
        rel: &str,
        offset: u64,
        len: u64,
        file: std::fs::File,
        complete: bool,
    ) -> anyhow::Result<()> {
        let mut f = tokio::fs::File::from_std(file);
        f.seek(std::io::SeekFrom::Start(offset)).await?;
        let header = AppendChunk {
            file: Some(file_ref(log, rel)),
            offset,
            length: len,
            complete,
            data: Default::default(),
        };
        let data = ReaderStream::with_capacity(f.take(len), CHUNK).scan((), |_, r| {
            futures::future::ready(match r {
                Ok(data) => Some(AppendChunk {
                    data: data.into(),
                    ..Default::default()
                }),
                Err(e) => {
                    // ending the stream early makes the collector refuse the short range
                    tracing::warn!(error = %e, "reading the event-log file failed mid-send");
                    None
                }
            })
        });
        let msgs = futures::stream::once(async move { header }).chain(data);
        let ack = self.client.clone().append(msgs).await?.into_inner();
        anyhow::ensure!(
            ack.length >= offset + len,
            "collector stored {} bytes of {rel}, expected {}",
            ack.length,
            offset + len
        );
        Ok(())
    }

    async fn remove(&self, log: &str, rel: &str) -> anyhow::Result<()> {
        self.client.clone().remove(file_ref(log, rel)).await?;
        Ok(())
    }
}

/// Runs the agent until SIGTERM, then makes a last pass so the driver's final bytes are sent.
pub async fn main(args: AgentArgs) -> anyhow::Result<()> {
    sidecars_common::telemetry::init(&args.common)?;
    let shutdown = Shutdown::new(args.common.shutdown_timeout);
    shutdown.listen_for_signals();
    let sink = Arc::new(RemoteSink::new(&args.collector, args.token_file.clone())?);
    if let Err(e) = std::fs::metadata(&args.token_file) {
        tracing::warn!(token_file = %args.token_file.display(), error = %e, "no token to present to the collector yet; it refuses requests without one");
    }
    tracing::info!(collector = %args.collector, dirs = ?args.event_log_dirs, "history agent started");
    let limits = Limits {
        max_file_bytes: args.max_event_log_file_size,
        ..Limits::default()
    };
    let mut tailer = Tailer::new(
        args.event_log_dirs.clone(),
        sink,
        TailMetrics::default(),
        limits,
    );
    super::watcher::drive(
        &mut tailer,
        &args.event_log_dirs,
        args.poll_interval,
        &shutdown.token(),
    )
    .await;
    // bounded by the shutdown deadline: a dead collector must not keep the pod alive
    let _ = tokio::time::timeout(args.common.shutdown_timeout, tailer.poll_once()).await;
    Ok(())
}
