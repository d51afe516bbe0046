//! The collector's side of the agent stream: the `EventLogIngest` gRPC service, storing what
//! agents send under the same layout as files copied from watched directories. Appends are
//! idempotent by offset, so an agent may resend anything after a lost ack.
//!
//! Every request passes the [`Guard`] first (a token, the log's driver, the log's owner);
//! then the same limits as for files copied from a directory: no file larger than
//! `--max-event-log-file-size`, and a file's first bytes must decode to a Spark event (a
//! status marker must stay empty).

use std::io;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use sidecars_proto::history::event_log_ingest_server::{EventLogIngest, EventLogIngestServer};
use sidecars_proto::history::{AppendChunk, FileRef, Stored};
use tokio::io::AsyncReadExt;
use tokio_util::io::StreamReader;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{bearer, AuthError};
use super::guard::{Guard, Refused};
use super::layout::{check_component, eventlog_key, LayoutError, LogStore};
use super::owners::OwnerError;
use super::tail::TailMetrics;
use crate::logdir::admit::{check_head, Limits, Verdict};
use crate::logdir::names::{self, EventLogName, Kind};

/// The gRPC service as axum routes, to merge into a router.
pub fn router(
    store: LogStore,
    metrics: TailMetrics,
    guard: Arc<Guard>,
    limits: Limits,
) -> axum::Router {
    let svc = EventLogIngestServer::new(Ingest {
        store,
        metrics,
        guard,
        limits,
    })
    .max_decoding_message_size(16 << 20);
    // route_service, not Routes::into_axum_router: that adds a fallback, and two routers with
    // fallbacks (the admin's gRPC health is one) cannot be merged
    axum::Router::new().route_service("/sidecars.history.v1.EventLogIngest/{*method}", svc)
}

struct Ingest {
    store: LogStore,
    metrics: TailMetrics,
    guard: Arc<Guard>,
    limits: Limits,
}

/// Decoded bytes of a file's start looked at to tell whether it is a Spark log.
const HEAD_BYTES: u64 = 256 << 10;

/// Checks that `rel` is an event-log file name Spark would write for `log`, and gives its
/// name and key.
fn key_of(file: Option<&FileRef>) -> Result<(EventLogName, String), Status> {
    let f = file.ok_or_else(|| Status::invalid_argument("missing file"))?;
    check_component(&f.log_name).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let parsed = match f.relative_path.split_once('/') {
        None => names::single(&f.relative_path),
        Some((dir, name)) => names::rolling_file(dir, name),
    };
    match parsed {
        Some(n) if n.log == f.log_name => {
            let key = eventlog_key(&f.log_name, &f.relative_path);
            Ok((n, key))
        }
        _ => Err(Status::invalid_argument(format!(
            "{:?} is not an event-log file of {:?}",
            f.relative_path, f.log_name
        ))),
    }
}

fn refused(e: Refused) -> Status {
    match e {
        Refused::Auth(AuthError::Missing | AuthError::Invalid(_)) => {
            Status::unauthenticated(e.to_string())
        }
        Refused::Auth(AuthError::Unavailable(_)) | Refused::Owner(OwnerError::Layout(_)) => {
            Status::unavailable(e.to_string())
        }
        Refused::Auth(AuthError::Forbidden(_)) | Refused::Owner(_) => {
            Status::permission_denied(e.to_string())
        }
    }
}

impl Ingest {
    /// Lets the request in (see [`Guard`]) for the log `log`.
    async fn admit<T>(&self, req: &Request<T>, log: &str) -> Result<(), Status> {
        let token = bearer(
            req.metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
        );
        let peer = req
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        self.guard
            .admit(token, log, &peer)
            .await
            .map(|_| ())
            .map_err(refused)
    }
}

fn status(e: LayoutError) -> Status {
    match e {
        LayoutError::OffsetMismatch { .. } => Status::failed_precondition(e.to_string()),
        LayoutError::BadName { .. } => Status::invalid_argument(e.to_string()),
        LayoutError::ShortBody { .. } => Status::data_loss(e.to_string()),
        LayoutError::Store(_) => Status::unavailable(e.to_string()),
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = io::Result<bytes::Bytes>> + Send>>;

#[tonic::async_trait]
impl EventLogIngest for Ingest {
    async fn resume(&self, req: Request<FileRef>) -> Result<Response<Stored>, Status> {
        let (name, key) = key_of(Some(req.get_ref()))?;
        self.admit(&req, &name.log).await?;
        let st = self.store.stored(&key).await.map_err(status)?;
        Ok(Response::new(Stored {
            length: st.len,
            complete: st.complete,
        }))
    }

    async fn append(
        &self,
        req: Request<Streaming<AppendChunk>>,
    ) -> Result<Response<Stored>, Status> {
        let (meta, ext, mut stream) = req.into_parts();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty append stream"))?;
        let (name, key) = key_of(first.file.as_ref())?;
        self.admit(&Request::from_parts(meta, ext, ()), &name.log)
            .await?;
        let (offset, length, complete) = (first.offset, first.length, first.complete);
        let end = offset
            .checked_add(length)
            .ok_or_else(|| Status::invalid_argument("offset + length overflows"))?;
        if end > self.limits.max_file_bytes {
            return Err(Status::resource_exhausted(format!(
                "{key}: {end} bytes, more than the largest event-log file accepted ({} bytes)",
                self.limits.max_file_bytes
            )));
        }
        if matches!(name.kind, Kind::AppStatus { .. }) && end > 0 {
            return Err(Status::invalid_argument(format!(
                "{key}: a status marker holds no bytes"
            )));
        }
        let st = self.store.stored(&key).await.map_err(status)?;
        if st.complete {
            return Ok(Response::new(Stored {
                length: st.len,
                complete: true,
            }));
        }
        if st.len >= end {
            // all of it is stored already (a resend); only the completion may be missing
            let done = complete && st.len == end;
            if done {
                self.store.complete(&key).await.map_err(status)?;
            }
            return Ok(Response::new(Stored {
                length: st.len,
                complete: done,
            }));
        }
        if offset > st.len {
            return Err(Status::failed_precondition(format!(
                "{key}: append at offset {offset} but only {} bytes are stored; resume from there",
                st.len
            )));
        }
        let first_data = futures::stream::once(async move { Ok(bytes::Bytes::from(first.data)) });
        let rest = stream.map(|m| {
            m.map(|c| bytes::Bytes::from(c.data))
                .map_err(|s| io::Error::other(s.to_string()))
        });
        let bytes: ByteStream = Box::pin(first_data.chain(rest));
        let mut body = StreamReader::new(bytes);
        let skip = st.len - offset;
        if skip > 0 {
            // a resend after a lost ack: drop what is already stored
            tokio::io::copy(&mut (&mut body).take(skip), &mut tokio::io::sink())
                .await
                .map_err(|e| Status::aborted(format!("{key}: {e}")))?;
        }
        let todo = end - st.len;
        if st.len == 0 && todo > 0 {
            // the file's first bytes: they must be Spark's before anything is stored
            let mut head = Vec::new();
            (&mut body)
                .take(todo.min(HEAD_BYTES))
                .read_to_end(&mut head)
                .await
                .map_err(|e| Status::aborted(format!("{key}: {e}")))?;
            let whole = head.len() as u64 == todo;
            match check_head(name.codec, &head[..], !(whole && complete)) {
                Verdict::Accept => {}
                Verdict::Undecided => {
                    return Err(Status::failed_precondition(format!(
                        "{key}: too little of the file to tell it is a Spark event log; send more"
                    )))
                }
                Verdict::Refuse(r) => return Err(Status::invalid_argument(format!("{key}: {r}"))),
            }
            let body = Box::pin(AsyncReadExt::chain(std::io::Cursor::new(head), body));
            return self.store_range(&key, 0, todo, complete, body).await;
        }
        self.store_range(&key, st.len, todo, complete, Box::pin(body))
            .await
    }

    async fn remove(&self, req: Request<FileRef>) -> Result<Response<Stored>, Status> {
        let (name, key) = key_of(Some(req.get_ref()))?;
        self.admit(&req, &name.log).await?;
        self.store.remove(&key).await.map_err(status)?;
        Ok(Response::new(Stored::default()))
    }
}

impl Ingest {
    /// Stores `todo` bytes of `body` at `from` (where the stored copy ends), completing the
    /// file after them if `complete`.
    async fn store_range(
        &self,
        key: &str,
        from: u64,
        todo: u64,
        complete: bool,
        body: sidecars_common::objstore::Reader,
    ) -> Result<Response<Stored>, Status> {
        let end = from + todo;
        if complete && from == 0 {
            self.store
                .put_complete(key, todo, body)
                .await
                .map_err(status)?;
        } else {
            if todo > 0 {
                self.store
                    .append(key, from, todo, body)
                    .await
                    .map_err(status)?;
            }
            if complete {
                self.store.complete(key).await.map_err(status)?;
            }
        }
        self.metrics.bytes.inc_by(todo);
        if complete {
            self.metrics.files_completed.inc();
        }
        Ok(Response::new(Stored {
            length: end,
            complete,
        }))
    }
}
