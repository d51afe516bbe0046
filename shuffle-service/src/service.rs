//! What the service does with each message: the shuffle service's RPC dispatch (Spark's
//! `ExternalBlockHandler`) and its per-connection stream manager (`OneForOneStreamManager`):
//! fetch RPCs register a stream of lazily resolved blocks, then chunk and stream requests read
//! it strictly in order, only from the connection that opened it.
//!
//! Before any of that, authentication (`auth`): the first RPCs of a connection may run a
//! handshake, after which every request must name the application the connection
//! authenticated as. Every request is also held to the limits in [`Limits`]; a refusal is an
//! `RpcFailure` that names the limit and its flag.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};

use crate::auth::secrets::{Learned, Secrets};
use crate::auth::transport::Outbound;
use crate::auth::{self, AuthConfig, AuthMode, AuthStep, ConnAuth, Install, PendingCipher};

use crate::blockid::{parse_open_block, parse_removable_file, BlockRef};
use crate::connection::{FilePermit, Outgoing};
use crate::metrics::Metrics;
use crate::protocol::frame::{chunk_success_header, stream_response_header};
use crate::protocol::messages::requested_ids;
use crate::protocol::{BlockTransferMessage, Message};
use crate::registry::Registry;
use crate::resolver::{ExecutorLayout, Resolver};

pub struct ServiceConfig {
    pub max_frame_size: usize,
    /// Close a connection after this long with nothing read or written, or with replies the
    /// client does not read (Spark's `spark.shuffle.io.connectionTimeout`); `None` never.
    pub idle_timeout: Option<Duration>,
    pub auth: AuthConfig,
    pub limits: Limits,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            idle_timeout: Some(Duration::from_secs(120)),
            auth: AuthConfig::default(),
            limits: Limits::default(),
        }
    }
}

/// What one client may make the service spend (each a flag; see `main`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Block ids in one fetch RPC (`--max-ids-per-request`).
    pub max_ids_per_request: u64,
    /// Blocks in the open streams of one connection (`--max-open-blocks-per-connection`).
    pub max_open_blocks_per_connection: usize,
    /// Blocks in all open streams (`--max-open-blocks`).
    pub max_open_blocks: usize,
    /// Open block files queued for one connection (`--max-files-per-connection`).
    pub max_files_per_connection: usize,
    /// Open block files queued for all connections (`--max-open-files`).
    pub max_open_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_ids_per_request: 200_000,
            max_open_blocks_per_connection: 1_000_000,
            max_open_blocks: 8_000_000,
            max_files_per_connection: 64,
            max_open_files: 8192,
        }
    }
}

/// Shared by every connection.
pub struct Service {
    pub registry: Arc<Registry>,
    pub resolver: Arc<Resolver>,
    pub metrics: Metrics,
    pub config: ServiceConfig,
    pub secrets: Arc<Secrets>,
    /// Whether the pod watch learns secrets (handshakes then wait a moment for one).
    pub learning_secrets: bool,
    next_stream_id: AtomicI64,
    open_blocks: AtomicUsize,
    files: Arc<Semaphore>,
}

struct Stream {
    app_id: String,
    exec_id: String,
    blocks: Vec<BlockRef>,
    next: usize,
}

/// One connection's state: its streams (dropped with it), where its authentication stands,
/// and the cipher it must switch to after an auth reply.
pub struct ConnState {
    streams: HashMap<i64, Stream>,
    open_blocks: usize,
    pub auth: ConnAuth,
    /// Set by a finished handshake; the connection installs it before reading on.
    pub install: Option<PendingCipher>,
    files: Arc<Semaphore>,
    pub peer: String,
}

impl ConnState {
    pub fn new(service: &Service, peer: String) -> Self {
        Self {
            streams: HashMap::new(),
            open_blocks: 0,
            auth: if service.config.auth.mode == AuthMode::Off {
                ConnAuth::Anonymous
            } else {
                ConnAuth::Start
            },
            install: None,
            files: Arc::new(Semaphore::new(
                service.config.limits.max_files_per_connection.max(1),
            )),
            peer,
        }
    }

    /// While a handshake may still run, messages are handled one at a time: the bytes after
    /// an auth message may already be encrypted.
    pub fn one_at_a_time(&self) -> bool {
        matches!(self.auth, ConnAuth::Start | ConnAuth::Sasl { .. })
    }

    /// Must this connection still authenticate (and within the auth timeout)?
    pub fn must_authenticate(&self, service: &Service) -> bool {
        service.config.auth.mode == AuthMode::Required && self.one_at_a_time()
    }

    pub fn authenticated_app(&self) -> Option<&str> {
        match &self.auth {
            ConnAuth::Authenticated { app_id } => Some(app_id),
            _ => None,
        }
    }

    pub fn close(&mut self, service: &Service) {
        service
            .metrics
            .open_streams
            .dec_by(self.streams.len() as i64);
        self.streams.clear();
        service.release_blocks(self.open_blocks);
        self.open_blocks = 0;
    }
}

/// Which block a chunk or stream request names, once the stream bookkeeping is done: resolving
/// it to a file is left for a blocking thread.
struct ChunkLookup {
    app_id: String,
    exec_id: String,
    layout: Arc<ExecutorLayout>,
    block: BlockRef,
}

/// How to answer one chunk or stream request.
enum Reply {
    Chunk { stream_id: i64, chunk_index: i32 },
    Stream { stream_id: String },
}

/// A chunk or stream request waiting for its file.
struct PendingChunk {
    reply: Reply,
    lookup: Result<ChunkLookup, String>,
}

impl Service {
    pub fn new(
        registry: Arc<Registry>,
        metrics: Metrics,
        config: ServiceConfig,
        index_cache_bytes: usize,
    ) -> Self {
        // Like Spark, start stream ids somewhere arbitrary so ids from before a restart are
        // unlikely to name a new stream.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as i64)
            & 0x3fff_ffff_ffff;
        let files = Arc::new(Semaphore::new(config.limits.max_open_files.max(1)));
        Self {
            registry,
            resolver: Arc::new(Resolver::new(index_cache_bytes)),
            metrics,
            config,
            secrets: Arc::new(Secrets::new(None)),
            learning_secrets: false,
            next_stream_id: AtomicI64::new(seed),
            open_blocks: AtomicUsize::new(0),
            files,
        }
    }

    /// The secrets handshakes use; learned secrets stored with the registrations are loaded.
    pub fn with_secrets(mut self, secrets: Secrets, learning: bool) -> Self {
        for (app, secret) in self.registry.stored_secrets() {
            secrets.learn(&app, &secret);
        }
        self.metrics
            .secrets_known
            .set(secrets.learned_count() as i64);
        self.secrets = Arc::new(secrets);
        self.learning_secrets = learning;
        self
    }

    /// Records a secret learned for `app_id` (persisted with the registrations). Executors of
    /// that application registered without authenticating are forgotten: once its secret is
    /// known, only its authenticated connections may speak for it.
    pub fn learn_secret(&self, app_id: &str, secret: &str) {
        match self.secrets.learn(app_id, secret) {
            Learned::New => {}
            Learned::Known => return,
            Learned::Conflict => {
                self.metrics.refused("secret_conflict");
                tracing::warn!(app_id, "an executor pod claims this application with another secret than the one learned first; kept the first (a pod impersonating the application?)");
                return;
            }
        }
        if let Err(e) = self.registry.store_secret(app_id, secret) {
            tracing::warn!(app_id, error = %e, "cannot persist a learned secret");
        }
        self.metrics
            .secrets_known
            .set(self.secrets.learned_count() as i64);
        tracing::info!(app_id, "learned the application's secret");
        let gone = self.registry.forget_unauthenticated(app_id);
        if !gone.is_empty() {
            tracing::warn!(app_id, executors = ?gone, "forgot executors registered without authentication now that the application's secret is known");
        }
    }

    fn release_blocks(&self, n: usize) {
        if n > 0 {
            self.open_blocks.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Refuses (with the reason) a request for `app_id` that this connection may not make.
    fn authorize(&self, conn: &ConnState, app_id: &str) -> Result<(), String> {
        match &conn.auth {
            ConnAuth::Authenticated { app_id: mine } if mine == app_id => Ok(()),
            ConnAuth::Authenticated { app_id: mine } => {
                self.metrics.refused("other_application");
                Err(format!(
                    "java.lang.SecurityException: Client for {mine} not authorized for application {app_id}."
                ))
            }
            _ if self.config.auth.mode == AuthMode::Off => Ok(()),
            _ if self.config.auth.mode == AuthMode::Required || self.secrets.known(app_id) => {
                self.metrics.refused("unauthenticated");
                Err(format!(
                    "java.lang.SecurityException: application {app_id} must authenticate (spark.authenticate=true with its secret): this shuffle service requires it (--auth {})",
                    self.config.auth.mode.as_str()
                ))
            }
            _ => Ok(()),
        }
    }

    /// Handles one message; false means close the connection.
    pub async fn handle(
        &self,
        msg: Message,
        conn: &mut ConnState,
        tx: &mpsc::Sender<Outgoing>,
    ) -> bool {
        let out = match msg {
            Message::RpcRequest { request_id, body } => {
                if conn.one_at_a_time() {
                    if let Some(keep) = self.maybe_authenticate(request_id, &body, conn, tx).await {
                        return keep;
                    }
                }
                let reply = match self.rpc(&body, conn).await {
                    Ok(resp) => Message::RpcResponse {
                        request_id,
                        body: resp,
                    },
                    Err(error) => {
                        tracing::debug!(request_id, %error, "RPC failed");
                        Message::RpcFailure { request_id, error }
                    }
                };
                Outgoing::Frame(reply.encode().freeze())
            }
            Message::OneWayMessage { body } => {
                if conn.one_at_a_time() && self.config.auth.mode == AuthMode::Required {
                    self.metrics.refused("unauthenticated");
                    tracing::info!(
                        peer = conn.peer,
                        "one-way message before authentication; ignored"
                    );
                    return true;
                }
                match BlockTransferMessage::decode(&body) {
                    Ok(BlockTransferMessage::ShuffleServiceHeartbeat { app_id }) => {
                        if self.authorize(conn, &app_id).is_err() {
                            return true;
                        }
                        if !self.registry.touch(&app_id) {
                            tracing::debug!(app_id, "heartbeat for an unknown application");
                        }
                    }
                    Ok(m) => tracing::debug!(message = m.name(), "ignoring one-way message"),
                    Err(e) => {
                        self.metrics.error("decode");
                        tracing::info!(error = %e, "undecodable one-way message");
                    }
                }
                return true;
            }
            Message::ChunkFetchRequest {
                stream_id,
                chunk_index,
            } => {
                let p = self.pending_chunk(conn, stream_id, chunk_index);
                return self.send_chunks(vec![p], conn, tx).await;
            }
            Message::StreamRequest { stream_id } => {
                let p = self.pending_stream(conn, stream_id);
                return self.send_chunks(vec![p], conn, tx).await;
            }
            Message::UploadStream {
                request_id, meta, ..
            } => {
                // The unread body makes the byte stream unusable: refuse, then close (as Java).
                let name = BlockTransferMessage::decode(&meta)
                    .map_or("an undecodable message", |m| m.name());
                self.metrics.error("unsupported");
                let _ = tx
                    .send(Outgoing::Frame(
                        Message::RpcFailure {
                            request_id,
                            error: format!(
                                "java.lang.UnsupportedOperationException: UploadStream ({name}) is not supported: push-based shuffle is YARN-only; closing connection"
                            ),
                        }
                        .encode()
                        .freeze(),
                    ))
                    .await;
                let _ = tx.send(Outgoing::Close).await;
                return false;
            }
            Message::MergedBlockMetaRequest { request_id, .. } => {
                self.metrics.error("unsupported");
                Outgoing::Frame(
                    Message::RpcFailure {
                        request_id,
                        error: "java.lang.UnsupportedOperationException: MergedBlockMetaRequest: Cannot handle shuffle block merge (push-based shuffle is YARN-only)".into(),
                    }
                    .encode()
                    .freeze(),
                )
            }
            other => {
                // Responses sent to a server: nothing to match them with (Java logs and drops).
                tracing::debug!(
                    message = other.name(),
                    "ignoring unexpected response-type message"
                );
                return true;
            }
        };
        tx.send(out).await.is_ok()
    }

    /// The auth part of an RPC on a connection that may still authenticate: runs a handshake
    /// step, or refuses a connection that must authenticate first. `None` when the RPC is an
    /// ordinary request to handle as such; otherwise whether to keep the connection.
    async fn maybe_authenticate(
        &self,
        request_id: i64,
        body: &Bytes,
        conn: &mut ConnState,
        tx: &mpsc::Sender<Outgoing>,
    ) -> Option<bool> {
        let cfg = &self.config.auth;
        if auth::auth_tag(body).is_none() && cfg.mode != AuthMode::Required {
            // Not a handshake: this connection goes without authentication.
            conn.auth = ConnAuth::Anonymous;
            return None;
        }
        if cfg.mode == AuthMode::Off {
            return None;
        }
        // Executors may connect a moment before the pod watch has seen their pod.
        let secret = match auth::auth_app_id(body) {
            Some(app) if self.learning_secrets => {
                self.secrets.wait_for(&app, cfg.secret_wait).await
            }
            Some(app) => self.secrets.get(&app),
            None => None,
        };
        let step = auth::step(&mut conn.auth, body, |_| secret, cfg);
        let frame = |m: Message| Outgoing::Frame(m.encode().freeze());
        match step {
            AuthStep::Reply { body, install } => {
                if let Some(app) = conn.authenticated_app() {
                    self.metrics.authenticated(match install {
                        Some(Install::Engine(_)) => "auth_engine",
                        Some(Install::Sasl(_)) => "sasl_auth_conf",
                        None => "sasl",
                    });
                    tracing::debug!(peer = conn.peer, app_id = app, "authenticated");
                }
                let sent = tx
                    .send(frame(Message::RpcResponse {
                        request_id,
                        body: Bytes::from(body),
                    }))
                    .await
                    .is_ok();
                match install {
                    Some(Install::Sasl(layer)) => {
                        // The writer switches after the reply above, in queue order.
                        let ok = tx
                            .send(Outgoing::Cipher(Box::new(Outbound::Sasl(layer.send))))
                            .await
                            .is_ok();
                        conn.install = Some(PendingCipher::Sasl(layer.recv));
                        Some(sent && ok)
                    }
                    Some(Install::Engine(keys)) => {
                        conn.install = Some(PendingCipher::Engine(keys));
                        Some(sent)
                    }
                    None => Some(sent),
                }
            }
            AuthStep::Fail(error) => {
                self.metrics.auth_failed();
                tracing::warn!(peer = conn.peer, %error, "authentication failed; closing connection");
                let _ = tx
                    .send(frame(Message::RpcFailure { request_id, error }))
                    .await;
                let _ = tx.send(Outgoing::Close).await;
                Some(false)
            }
        }
    }

    /// Handles messages in arrival order; runs of chunk and stream requests (a client
    /// pipelines one per block) have their files opened together on one blocking thread.
    /// False means close the connection.
    pub async fn handle_batch(
        &self,
        msgs: Vec<Message>,
        conn: &mut ConnState,
        tx: &mpsc::Sender<Outgoing>,
    ) -> bool {
        let mut run: Vec<PendingChunk> = Vec::new();
        for msg in msgs {
            match msg {
                Message::ChunkFetchRequest {
                    stream_id,
                    chunk_index,
                } => run.push(self.pending_chunk(conn, stream_id, chunk_index)),
                Message::StreamRequest { stream_id } => {
                    run.push(self.pending_stream(conn, stream_id))
                }
                other => {
                    if !run.is_empty()
                        && !self.send_chunks(std::mem::take(&mut run), conn, tx).await
                    {
                        return false;
                    }
                    if !self.handle(other, conn, tx).await {
                        return false;
                    }
                }
            }
        }
        run.is_empty() || self.send_chunks(run, conn, tx).await
    }

    fn pending_chunk(
        &self,
        conn: &mut ConnState,
        stream_id: i64,
        chunk_index: i32,
    ) -> PendingChunk {
        PendingChunk {
            reply: Reply::Chunk {
                stream_id,
                chunk_index,
            },
            lookup: self.next_chunk(conn, stream_id, chunk_index),
        }
    }

    fn pending_stream(&self, conn: &mut ConnState, stream_id: String) -> PendingChunk {
        let lookup = match parse_stream_chunk_id(&stream_id) {
            Some((s, c)) => self.next_chunk(conn, s, c),
            None => Err(format!(
                "java.lang.IllegalArgumentException: Stream id and chunk index should be specified: {stream_id}"
            )),
        };
        PendingChunk {
            reply: Reply::Stream { stream_id },
            lookup,
        }
    }

    /// Opens the files of `run` off the async threads, then queues the replies in order.
    async fn send_chunks(
        &self,
        run: Vec<PendingChunk>,
        conn: &ConnState,
        tx: &mpsc::Sender<Outgoing>,
    ) -> bool {
        // Each open block file holds a permit of its connection and one of the service until
        // it is sent: a client that asks for many blocks and reads none cannot make the
        // service hold more than --max-files-per-connection files for it.
        let slice = self.config.limits.max_files_per_connection.max(1);
        let mut run = run.into_iter().peekable();
        while run.peek().is_some() {
            let part: Vec<PendingChunk> = run.by_ref().take(slice).collect();
            let mut permits = Vec::new();
            for _ in part.iter().filter(|p| p.lookup.is_ok()) {
                let (Ok(c), Ok(g)) = (
                    conn.files.clone().acquire_owned().await,
                    self.files.clone().acquire_owned().await,
                ) else {
                    return false;
                };
                permits.push(FilePermit::new(c, g));
            }
            if !self.send_resolved(part, permits, tx).await {
                return false;
            }
        }
        true
    }

    async fn send_resolved(
        &self,
        run: Vec<PendingChunk>,
        mut permits: Vec<FilePermit>,
        tx: &mpsc::Sender<Outgoing>,
    ) -> bool {
        let resolver = self.resolver.clone();
        let resolved = tokio::task::spawn_blocking(move || {
            run.into_iter()
                .map(|p| {
                    let seg = p.lookup.and_then(|l| {
                        resolver.block(&l.layout, &l.block).map_err(|e| {
                            tracing::info!(app_id = l.app_id, exec_id = l.exec_id, block = %l.block, error = %e, "cannot serve block");
                            e.to_string()
                        })
                    });
                    (p.reply, seg)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let resolved = match resolved {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "block lookup task failed; closing connection");
                self.metrics.error("internal");
                return false;
            }
        };
        for (reply, seg) in resolved {
            let out = match (reply, seg) {
                (
                    Reply::Chunk {
                        stream_id,
                        chunk_index,
                    },
                    Ok(seg),
                ) => Outgoing::File {
                    header: chunk_success_header(stream_id, chunk_index, seg.len).freeze(),
                    body: seg,
                    permit: permits.pop(),
                },
                (
                    Reply::Chunk {
                        stream_id,
                        chunk_index,
                    },
                    Err(error),
                ) => {
                    self.metrics.error("chunk_fetch");
                    Outgoing::Frame(
                        Message::ChunkFetchFailure {
                            stream_id,
                            chunk_index,
                            error,
                        }
                        .encode()
                        .freeze(),
                    )
                }
                (Reply::Stream { stream_id }, Ok(seg)) => Outgoing::File {
                    header: stream_response_header(&stream_id, seg.len).freeze(),
                    body: seg,
                    permit: permits.pop(),
                },
                (Reply::Stream { stream_id }, Err(error)) => {
                    self.metrics.error("stream");
                    Outgoing::Frame(
                        Message::StreamFailure { stream_id, error }
                            .encode()
                            .freeze(),
                    )
                }
            };
            if tx.send(out).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Advances a stream of this connection to its next chunk (ChunkFetchRequest and
    /// StreamRequest) and says which block that is; no file is touched here.
    fn next_chunk(
        &self,
        conn: &mut ConnState,
        stream_id: i64,
        chunk_index: i32,
    ) -> Result<ChunkLookup, String> {
        let Some(stream) = conn.streams.get_mut(&stream_id) else {
            return Err(format!(
                "java.lang.IllegalStateException: Requested chunk not available since streamId {stream_id} is closed"
            ));
        };
        let expected = stream.next;
        if usize::try_from(chunk_index).ok() != Some(expected) {
            if chunk_index >= 0 && chunk_index as usize >= stream.blocks.len() {
                return Err(format!(
                    "java.lang.IllegalStateException: Requested chunk index beyond end {chunk_index}"
                ));
            }
            return Err(format!(
                "java.lang.IllegalStateException: Received out-of-order chunk index {chunk_index} (expected {expected})"
            ));
        }
        let block = stream.blocks[expected];
        stream.next += 1;
        let (app_id, exec_id) = (stream.app_id.clone(), stream.exec_id.clone());
        if stream.next >= stream.blocks.len() {
            let n = stream.blocks.len();
            conn.streams.remove(&stream_id);
            conn.open_blocks -= n;
            self.release_blocks(n);
            self.metrics.open_streams.dec();
        }
        let layout = self
            .registry
            .get(&app_id, &exec_id)
            .map_err(|e| e.to_string())?;
        Ok(ChunkLookup {
            app_id,
            exec_id,
            layout,
            block,
        })
    }

    fn open_stream(
        &self,
        conn: &mut ConnState,
        app_id: String,
        exec_id: String,
        blocks: Vec<BlockRef>,
    ) -> Result<Bytes, String> {
        let n = blocks.len();
        let limits = &self.config.limits;
        if conn.open_blocks + n > limits.max_open_blocks_per_connection {
            self.metrics.refused("open_blocks_per_connection");
            return Err(format!(
                "java.lang.IllegalStateException: too many blocks in open streams on this connection: {} open + {n} requested > {} (--max-open-blocks-per-connection); read the open streams first",
                conn.open_blocks, limits.max_open_blocks_per_connection
            ));
        }
        let before = self.open_blocks.fetch_add(n, Ordering::Relaxed);
        if before + n > limits.max_open_blocks {
            self.open_blocks.fetch_sub(n, Ordering::Relaxed);
            self.metrics.refused("open_blocks");
            return Err(format!(
                "java.lang.IllegalStateException: the shuffle service has too many blocks in open streams ({before} + {n} > {}, --max-open-blocks); retry later",
                limits.max_open_blocks
            ));
        }
        conn.open_blocks += n;
        let stream_id = self.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let num_chunks = i32::try_from(blocks.len()).unwrap_or(i32::MAX);
        self.registry.touch(&app_id);
        if !blocks.is_empty() {
            conn.streams.insert(
                stream_id,
                Stream {
                    app_id,
                    exec_id,
                    blocks,
                    next: 0,
                },
            );
            self.metrics.open_streams.inc();
        }
        Ok(BlockTransferMessage::StreamHandle {
            stream_id,
            num_chunks,
        }
        .encode()
        .freeze())
    }

    /// One RPC: the reply body, or the failure text.
    async fn rpc(&self, body: &[u8], conn: &mut ConnState) -> Result<Bytes, String> {
        if let Some(n) = requested_ids(body) {
            let max = self.config.limits.max_ids_per_request;
            if n > max {
                self.metrics.refused("ids_per_request");
                self.metrics.error("rpc");
                return Err(format!(
                    "java.lang.IllegalArgumentException: request for {n} blocks exceeds the limit of {max} block ids per request (--max-ids-per-request); lower spark.reducer.maxBlocksInFlightPerAddress"
                ));
            }
        }
        let msg = BlockTransferMessage::decode(body).map_err(|e| {
            self.metrics.error("decode");
            format!("java.lang.IllegalArgumentException: cannot decode the RPC: {e}")
        })?;
        let res = self.rpc_message(msg, conn).await;
        if res.is_err() {
            self.metrics.error("rpc");
        }
        res
    }

    async fn rpc_message(
        &self,
        msg: BlockTransferMessage,
        conn: &mut ConnState,
    ) -> Result<Bytes, String> {
        match msg {
            BlockTransferMessage::RegisterExecutor {
                app_id,
                exec_id,
                info,
            } => {
                self.authorize(conn, &app_id)?;
                let authenticated = conn.authenticated_app() == Some(app_id.as_str());
                let registry = self.registry.clone();
                let (a, e) = (app_id.clone(), exec_id.clone());
                let r = tokio::task::spawn_blocking(move || {
                    registry.register(&a, &e, &info, authenticated)
                })
                .await
                .map_err(|e| {
                    format!("java.lang.RuntimeException: registration task failed: {e}")
                })?;
                match r {
                    Ok(()) => {
                        self.metrics.registrations.inc();
                        tracing::info!(app_id, exec_id, "registered executor");
                        Ok(Bytes::new())
                    }
                    Err(err) => {
                        tracing::warn!(app_id, exec_id, peer = conn.peer, error = %err, "refused registration");
                        self.metrics.refused(match err {
                            crate::registry::RegistryError::Forbidden(_) => {
                                "registration_forbidden"
                            }
                            crate::registry::RegistryError::Db { .. } => "database",
                            _ => "registration_invalid",
                        });
                        Err(err.to_string())
                    }
                }
            }
            BlockTransferMessage::OpenBlocks {
                app_id,
                exec_id,
                block_ids,
            } => {
                self.authorize(conn, &app_id)?;
                let started = Instant::now();
                let blocks = parse_open_blocks(&block_ids)?;
                let out = self.open_stream(conn, app_id, exec_id, blocks)?;
                self.metrics
                    .open_blocks_latency
                    .observe(started.elapsed().as_secs_f64());
                Ok(out)
            }
            BlockTransferMessage::FetchShuffleBlocks {
                app_id,
                exec_id,
                shuffle_id,
                map_ids,
                reduce_ids,
                batch_fetch_enabled,
            } => {
                self.authorize(conn, &app_id)?;
                let started = Instant::now();
                let mut blocks = Vec::new();
                for (map_id, reduces) in map_ids.iter().zip(&reduce_ids) {
                    if batch_fetch_enabled {
                        let [start, end] = reduces.as_slice() else {
                            return Err(format!(
                                "java.lang.IllegalArgumentException: batch fetch of map {map_id} needs [start, end) reduce ids, got {reduces:?}"
                            ));
                        };
                        blocks.push(BlockRef::Shuffle {
                            shuffle_id,
                            map_id: *map_id,
                            start_reduce: *start,
                            end_reduce: *end,
                        });
                    } else {
                        for r in reduces {
                            blocks.push(BlockRef::Shuffle {
                                shuffle_id,
                                map_id: *map_id,
                                start_reduce: *r,
                                end_reduce: r.saturating_add(1),
                            });
                        }
                    }
                }
                let out = self.open_stream(conn, app_id, exec_id, blocks)?;
                self.metrics
                    .open_blocks_latency
                    .observe(started.elapsed().as_secs_f64());
                Ok(out)
            }
            BlockTransferMessage::RemoveBlocks {
                app_id,
                exec_id,
                block_ids,
            } => {
                self.authorize(conn, &app_id)?;
                let layout = self
                    .registry
                    .get(&app_id, &exec_id)
                    .map_err(|e| e.to_string())?;
                let resolver = self.resolver.clone();
                let removed = tokio::task::spawn_blocking(move || {
                    let mut removed = 0i32;
                    for id in &block_ids {
                        match parse_removable_file(id) {
                            Some(name) if resolver.remove_file(&layout, name) => removed += 1,
                            Some(_) => {}
                            None => {
                                tracing::warn!(app_id, exec_id, block_id = %id, "refusing to remove a file that is not a block")
                            }
                        }
                    }
                    removed
                })
                .await
                .map_err(|e| format!("java.lang.RuntimeException: block removal task failed: {e}"))?;
                Ok(BlockTransferMessage::BlocksRemoved {
                    num_removed_blocks: removed,
                }
                .encode()
                .freeze())
            }
            BlockTransferMessage::GetLocalDirsForExecutors { app_id, exec_ids } => {
                self.authorize(conn, &app_id)?;
                let mut dirs = Vec::with_capacity(exec_ids.len());
                for e in exec_ids {
                    let layout = self.registry.get(&app_id, &e).map_err(|e| e.to_string())?;
                    dirs.push((e, layout.local_dirs.clone()));
                }
                Ok(BlockTransferMessage::LocalDirsForExecutors { dirs }
                    .encode()
                    .freeze())
            }
            BlockTransferMessage::DiagnoseCorruption {
                app_id,
                exec_id,
                shuffle_id,
                map_id,
                reduce_id,
                checksum,
                algorithm,
            } => {
                self.authorize(conn, &app_id)?;
                let layout = self
                    .registry
                    .get(&app_id, &exec_id)
                    .map_err(|e| e.to_string())?;
                let resolver = self.resolver.clone();
                let cause = tokio::task::spawn_blocking(move || {
                    resolver.diagnose(&layout, shuffle_id, map_id, reduce_id, checksum, &algorithm)
                })
                .await
                .map_err(|e| format!("java.lang.RuntimeException: diagnosis task failed: {e}"))?;
                tracing::info!(
                    app_id,
                    exec_id,
                    shuffle_id,
                    map_id,
                    reduce_id,
                    ?cause,
                    "diagnosed corruption"
                );
                Ok(BlockTransferMessage::CorruptionCause { cause }
                    .encode()
                    .freeze())
            }
            BlockTransferMessage::RegisterDriver { app_id, .. } => {
                // As Spark's Mesos service did: note the app as alive; the TTL does the rest.
                self.authorize(conn, &app_id)?;
                self.registry.touch(&app_id);
                Ok(Bytes::new())
            }
            BlockTransferMessage::ShuffleServiceHeartbeat { app_id } => {
                self.authorize(conn, &app_id)?;
                self.registry.touch(&app_id);
                Ok(Bytes::new())
            }
            BlockTransferMessage::PushBased { type_id } => {
                self.metrics.error("unsupported");
                Err(format!(
                    "java.lang.UnsupportedOperationException: {}: Cannot handle shuffle block merge (push-based shuffle is YARN-only)",
                    crate::protocol::messages::type_name(type_id)
                ))
            }
            other => Err(format!(
                "java.lang.UnsupportedOperationException: Unexpected message: {}",
                other.name()
            )),
        }
    }

    /// Forgets an application and deletes its executors' directories (on a blocking thread).
    pub async fn remove_app(&self, app_id: &str, why: &str) {
        let dirs = self.registry.remove_app(app_id);
        if self.secrets.forget(app_id) {
            self.metrics
                .secrets_known
                .set(self.secrets.learned_count() as i64);
            tracing::info!(app_id, why, "forgot the application's secret");
        }
        if dirs.is_empty() {
            return;
        }
        self.resolver.forget(&dirs);
        self.metrics.apps_removed.inc();
        tracing::info!(app_id, why, dirs = dirs.len(), "removing application");
        let app = app_id.to_owned();
        let _ = tokio::task::spawn_blocking(move || delete_dirs(&app, &dirs)).await;
    }

    /// Removes apps not heard from for `ttl`.
    pub async fn expire_idle(&self, ttl: Duration) {
        for app in self.registry.idle_apps(ttl) {
            self.remove_app(&app, "idle for longer than --app-ttl")
                .await;
        }
    }
}

fn delete_dirs(app_id: &str, dirs: &[PathBuf]) {
    for d in dirs {
        match std::fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(app_id, dir = %d.display(), error = %e, "cannot delete application dir")
            }
        }
    }
}

/// OpenBlocks ids, eagerly: one kind per request, and one shuffle id for shuffle blocks.
fn parse_open_blocks(ids: &[String]) -> Result<Vec<BlockRef>, String> {
    let mut out = Vec::with_capacity(ids.len());
    let mut first: Option<BlockRef> = None;
    for id in ids {
        let b =
            parse_open_block(id).map_err(|e| format!("java.lang.IllegalArgumentException: {e}"))?;
        match (first, b) {
            (None, _) => first = Some(b),
            (Some(BlockRef::Shuffle { shuffle_id: s, .. }), BlockRef::Shuffle { shuffle_id, .. }) if s != shuffle_id => {
                return Err(format!(
                    "java.lang.IllegalArgumentException: Expected shuffleId={s}, got:{id}"
                ))
            }
            (Some(BlockRef::Shuffle { .. }), BlockRef::Rdd { .. }) | (Some(BlockRef::Rdd { .. }), BlockRef::Shuffle { .. }) => {
                return Err(format!(
                    "java.lang.IllegalArgumentException: Unexpected block id format: {id} (mixed block kinds)"
                ))
            }
            _ => {}
        }
        out.push(b);
    }
    Ok(out)
}

/// `"<streamId>_<chunkIndex>"`, both decimal.
fn parse_stream_chunk_id(s: &str) -> Option<(i64, i32)> {
    let (a, b) = s.split_once('_')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_chunk_ids() {
        assert_eq!(parse_stream_chunk_id("42_0"), Some((42, 0)));
        assert_eq!(parse_stream_chunk_id("42_-1"), None);
        assert_eq!(parse_stream_chunk_id("42"), None);
        assert_eq!(parse_stream_chunk_id("_1"), None);
        assert_eq!(parse_stream_chunk_id("1_2_3"), None);
    }

    #[test]
    fn open_blocks_kinds() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_open_blocks(&ids(&["shuffle_1_2_3", "shuffle_1_4_5"])).map(|v| v.len()),
            Ok(2)
        );
        assert!(parse_open_blocks(&ids(&["shuffle_1_2_3", "shuffle_2_4_5"])).is_err());
        assert!(parse_open_blocks(&ids(&["shuffle_1_2_3", "rdd_1_2"])).is_err());
        assert!(parse_open_blocks(&ids(&["shuffle_1_2_3_4"])).is_err());
        assert_eq!(
            parse_open_blocks(&ids(&["rdd_1_2", "rdd_3_4"])).map(|v| v.len()),
            Ok(2)
        );
    }
}
