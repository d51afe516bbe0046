//! What the service does with each message: the shuffle service's RPC dispatch (Spark's
//! `ExternalBlockHandler`) and its per-connection stream manager (`OneForOneStreamManager`):
//! fetch RPCs register a stream of lazily resolved blocks, then chunk and stream requests read
//! it strictly in order, only from the connection that opened it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::blockid::{parse_open_block, parse_removable_file, BlockRef};
use crate::connection::Outgoing;
use crate::metrics::Metrics;
use crate::protocol::frame::{chunk_success_header, stream_response_header};
use crate::protocol::{BlockTransferMessage, Message};
use crate::registry::Registry;
use crate::resolver::{ExecutorLayout, Resolver};

pub struct ServiceConfig {
    pub max_frame_size: usize,
    /// Close a connection after this long with nothing read or written and no reply pending
    /// (Spark's `spark.shuffle.io.connectionTimeout`); `None` keeps idle connections open.
    pub idle_timeout: Option<Duration>,
}

/// Shared by every connection.
pub struct Service {
    pub registry: Arc<Registry>,
    pub resolver: Arc<Resolver>,
    pub metrics: Metrics,
    pub config: ServiceConfig,
    next_stream_id: AtomicI64,
}

struct Stream {
    app_id: String,
    exec_id: String,
    blocks: Vec<BlockRef>,
    next: usize,
}

/// Streams opened on one connection; dropped with it.
#[derive(Default)]
pub struct ConnState {
    streams: HashMap<i64, Stream>,
}

impl ConnState {
    pub fn close(&mut self, service: &Service) {
        service
            .metrics
            .open_streams
            .dec_by(self.streams.len() as i64);
        self.streams.clear();
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
        Self {
            registry,
            resolver: Arc::new(Resolver::new(index_cache_bytes)),
            metrics,
            config,
            next_stream_id: AtomicI64::new(seed),
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
                match BlockTransferMessage::decode(&body) {
                    Ok(BlockTransferMessage::ShuffleServiceHeartbeat { app_id }) => {
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
                return self
                    .send_chunks(vec![self.pending_chunk(conn, stream_id, chunk_index)], tx)
                    .await
            }
            Message::StreamRequest { stream_id } => {
                return self
                    .send_chunks(vec![self.pending_stream(conn, stream_id)], tx)
                    .await
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
                    if !run.is_empty() && !self.send_chunks(std::mem::take(&mut run), tx).await {
                        return false;
                    }
                    if !self.handle(other, conn, tx).await {
                        return false;
                    }
                }
            }
        }
        run.is_empty() || self.send_chunks(run, tx).await
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
    async fn send_chunks(&self, run: Vec<PendingChunk>, tx: &mpsc::Sender<Outgoing>) -> bool {
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
            conn.streams.remove(&stream_id);
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
    ) -> Bytes {
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
        BlockTransferMessage::StreamHandle {
            stream_id,
            num_chunks,
        }
        .encode()
        .freeze()
    }

    /// One RPC: the reply body, or the failure text.
    async fn rpc(&self, body: &[u8], conn: &mut ConnState) -> Result<Bytes, String> {
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
                let registry = self.registry.clone();
                let (a, e) = (app_id.clone(), exec_id.clone());
                let r = tokio::task::spawn_blocking(move || registry.register(&a, &e, &info))
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
                        tracing::warn!(app_id, exec_id, error = %err, "refused registration");
                        Err(err.to_string())
                    }
                }
            }
            BlockTransferMessage::OpenBlocks {
                app_id,
                exec_id,
                block_ids,
            } => {
                let started = Instant::now();
                let blocks = parse_open_blocks(&block_ids)?;
                let out = self.open_stream(conn, app_id, exec_id, blocks);
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
                let out = self.open_stream(conn, app_id, exec_id, blocks);
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
                self.registry.touch(&app_id);
                Ok(Bytes::new())
            }
            BlockTransferMessage::ShuffleServiceHeartbeat { app_id } => {
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
