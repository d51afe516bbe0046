//! The collector's side of the agent stream: the `EventLogIngest` gRPC service, storing what
//! agents send under the same layout as files copied from watched directories. Appends are
//! idempotent by offset, so an agent may resend anything after a lost ack.

use std::io;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use sidecars_proto::history::event_log_ingest_server::{EventLogIngest, EventLogIngestServer};
use sidecars_proto::history::{AppendChunk, FileRef, Stored};
use tokio::io::AsyncReadExt;
use tokio_util::io::StreamReader;
use tonic::{Request, Response, Status, Streaming};

use super::layout::{check_component, eventlog_key, LayoutError, LogStore};
use super::names;
use super::tail::TailMetrics;

/// The gRPC service as axum routes, to merge into the main router.
pub fn router(store: LogStore, metrics: TailMetrics) -> axum::Router {
    let svc =
        EventLogIngestServer::new(Ingest { store, metrics }).max_decoding_message_size(16 << 20);
    // route_service, not Routes::into_axum_router: that adds a fallback, and two routers with
    // fallbacks (the admin's gRPC health is one) cannot be merged
    axum::Router::new().route_service("/sidecars.history.v1.EventLogIngest/{*method}", svc)
}

struct Ingest {
    store: LogStore,
    metrics: TailMetrics,
}

/// Checks that `rel` is an event-log file name Spark would write for `log`, and gives its key.
fn key_of(file: Option<&FileRef>) -> Result<String, Status> {
    let f = file.ok_or_else(|| Status::invalid_argument("missing file"))?;
    check_component(&f.log_name).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let parsed = match f.relative_path.split_once('/') {
        None => names::single(&f.relative_path),
        Some((dir, name)) => names::rolling_file(dir, name),
    };
    match parsed {
        Some(n) if n.log == f.log_name => Ok(eventlog_key(&f.log_name, &f.relative_path)),
        _ => Err(Status::invalid_argument(format!(
            "{:?} is not an event-log file of {:?}",
            f.relative_path, f.log_name
        ))),
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
        let key = key_of(Some(req.get_ref()))?;
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
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty append stream"))?;
        let key = key_of(first.file.as_ref())?;
        let (offset, length, complete) = (first.offset, first.length, first.complete);
        let end = offset
            .checked_add(length)
            .ok_or_else(|| Status::invalid_argument("offset + length overflows"))?;
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
        if complete && st.len == 0 {
            self.store
                .put_complete(&key, todo, Box::pin(body))
                .await
                .map_err(status)?;
        } else {
            if todo > 0 {
                self.store
                    .append(&key, st.len, todo, Box::pin(body))
                    .await
                    .map_err(status)?;
            }
            if complete {
                self.store.complete(&key).await.map_err(status)?;
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

    async fn remove(&self, req: Request<FileRef>) -> Result<Response<Stored>, Status> {
        let key = key_of(Some(req.get_ref()))?;
        self.store.remove(&key).await.map_err(status)?;
        Ok(Response::new(Stored::default()))
    }
}
