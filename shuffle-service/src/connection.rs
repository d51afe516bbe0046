//! One client connection: a reader that cuts the byte stream into bounded frames and hands
//! each to the handler in arrival order, and a writer that sends replies in the same order,
//! file-backed bodies straight from the page cache with sendfile(2).
//!
//! A malformed frame ends this connection only, with the reason logged. A connection with
//! nothing read or written for the idle timeout and no reply pending is closed, as Spark's
//! server does after `spark.shuffle.io.connectionTimeout`.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::frame::{check_frame, FrameCheck};
use crate::protocol::Message;
use crate::resolver::FileSegment;
use crate::service::{ConnState, Service};

/// Something the writer sends, in order.
pub enum Outgoing {
    Frame(Bytes),
    /// A frame header followed by a file segment (ChunkFetchSuccess, StreamResponse).
    File {
        header: Bytes,
        body: FileSegment,
    },
    /// Flush what came before, then close the connection.
    Close,
}

/// Replies queued per connection before the reader stops reading (backpressure).
const QUEUE: usize = 256;

/// When the connection last read or wrote, and whether the writer is in the middle of a batch;
/// shared by the reader (which enforces the idle timeout) and the writer.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    writing: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            writing: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Resolves when the connection may have been idle for `timeout`; never without a timeout.
async fn idle_deadline(timeout: Option<Duration>, activity: &Activity) {
    match timeout {
        Some(t) => tokio::time::sleep_until((activity.last() + t).into()).await,
        None => std::future::pending().await,
    }
}

pub async fn serve(stream: TcpStream, service: Arc<Service>, token: CancellationToken) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_owned(), |a| a.to_string());
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    service.metrics.connections.inc();
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Outgoing>(QUEUE);
    let activity = Arc::new(Activity::new());
    let writer_service = service.clone();
    let writer_peer = peer.clone();
    let writer_activity = activity.clone();
    let writer = tokio::spawn(async move {
        write_loop(wr, rx, &writer_service, &writer_peer, &writer_activity).await
    });
    let idle_timeout = service.config.idle_timeout;

    let mut state = ConnState::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let max = service.config.max_frame_size;
    'conn: loop {
        // Decode every complete frame in the buffer and hand them over together, so a run of
        // pipelined chunk requests is resolved in one go.
        let mut msgs = Vec::new();
        let mut bad = false;
        loop {
            match check_frame(&buf, max) {
                Ok(FrameCheck::Ready(n)) => {
                    let mut frame = buf.split_to(n).freeze();
                    frame.advance(crate::protocol::frame::LENGTH_SIZE);
                    match Message::decode(frame) {
                        Ok(msg) => msgs.push(msg),
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "malformed message; closing connection");
                            bad = true;
                            break;
                        }
                    }
                }
                Ok(FrameCheck::Incomplete) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "bad frame; closing connection");
                    bad = true;
                    break;
                }
            }
        }
        // Messages before a malformed frame are still answered, as they were sent first.
        if !msgs.is_empty() && !service.handle_batch(msgs, &mut state, &tx).await {
            break 'conn;
        }
        if bad {
            service.metrics.error("malformed_frame");
            break 'conn;
        }
        if buf.capacity() - buf.len() < 8 * 1024 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break,
                Ok(_) => activity.touch(),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed; closing connection");
                    break;
                }
            },
            _ = token.cancelled() => break,
            _ = idle_deadline(idle_timeout, &activity) => {
                // The writer may have been busy since: only a connection with nothing queued,
                // nothing being written and no traffic for the whole timeout is idle.
                let quiet = idle_timeout.is_some_and(|t| activity.last().elapsed() >= t);
                let pending = tx.capacity() < tx.max_capacity()
                    || activity.writing.load(Ordering::Acquire);
                if quiet && !pending {
                    tracing::info!(%peer, timeout = ?idle_timeout, "closing idle connection (--idle-timeout)");
                    service.metrics.idle_closed.inc();
                    break;
                }
            }
        }
    }
    state.close(&service);
    drop(tx);
    let _ = writer.await;
    service.metrics.connections.dec();
}

async fn write_loop(
    wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    service: &Service,
    peer: &str,
    activity: &Activity,
) {
    let sock: &TcpStream = wr.as_ref();
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        activity.writing.store(true, Ordering::Release);
        let n = batch.len();
        for (i, item) in batch.drain(..).enumerate() {
            // MSG_MORE lets small headers and frames share packets with what follows.
            let more = i + 1 < n || !rx.is_empty();
            let res = match item {
                Outgoing::Frame(b) => send_all(sock, &b, more).await,
                Outgoing::File { header, body } => match send_all(sock, &header, true).await {
                    Ok(()) => sendfile_all(sock, &body).await.map(|()| {
                        service.metrics.blocks_sent.inc();
                        service.metrics.bytes_sent.inc_by(body.len);
                    }),
                    Err(e) => Err(e),
                },
                Outgoing::Close => {
                    let _ = sock_shutdown(sock);
                    return;
                }
            };
            if let Err(e) = res {
                tracing::info!(%peer, error = %e, "cannot send to client; closing connection");
                service.metrics.error("send");
                let _ = sock_shutdown(sock);
                return;
            }
            activity.touch();
        }
        activity.writing.store(false, Ordering::Release);
    }
}

fn sock_shutdown(sock: &TcpStream) -> std::io::Result<()> {
    // SAFETY: plain shutdown(2) on a socket fd we own for the duration of the call.
    let r = unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

async fn send_all(sock: &TcpStream, mut buf: &[u8], more: bool) -> std::io::Result<()> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    while !buf.is_empty() {
        sock.writable().await?;
        let r = sock.try_io(Interest::WRITABLE, || {
            // SAFETY: buf is a valid slice for its length; the fd is the live socket.
            let n = unsafe { libc::send(sock.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match r {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn sendfile_all(sock: &TcpStream, seg: &FileSegment) -> std::io::Result<()> {
    let mut offset = seg.offset as libc::off64_t;
    let end = seg.offset + seg.len;
    while (offset as u64) < end {
        let want = ((end - offset as u64) as usize).min(1 << 30);
        sock.writable().await?;
        let r = sock.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile64(sock, &seg.file, Some(&mut offset), want)
                .map_err(std::io::Error::from)
        });
        match r {
            Ok(0) => {
                // The file shrank under us: the frame header already promised these bytes,
                // so the only honest thing left is to close the connection.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} ended early at byte {offset} (wanted up to {end})",
                        seg.path.display()
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
