//! One client connection: a reader that cuts the byte stream into bounded frames and hands
//! each to the handler in arrival order, and a writer that sends replies in the same order,
//! file-backed bodies straight from the page cache with sendfile(2).
//!
//! A malformed frame ends this connection only, with the reason logged. A connection with
//! nothing read or written for the idle timeout and no reply pending is closed, as Spark's
//! server does after `spark.shuffle.io.connectionTimeout`; so is one whose client stops
//! reading its replies for that long.
//!
//! Authentication can switch a connection to a cipher (`auth::transport`) mid-stream: the
//! reader handles messages one at a time until the handshake is over, then decrypts what
//! follows (bytes already read included); the writer sends the last auth reply in clear and
//! encrypts everything queued after it. Encrypted replies read file bodies into memory
//! instead of using sendfile.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::auth::transport::{Detector, Inbound, Outbound, SaslOpener};
use crate::auth::PendingCipher;
use crate::protocol::frame::{check_frame, FrameCheck};
use crate::protocol::Message;
use crate::resolver::FileSegment;
use crate::service::{ConnState, Service};

/// An open block file's share of its connection's and the service's file budgets.
pub struct FilePermit {
    _conn: OwnedSemaphorePermit,
    _service: OwnedSemaphorePermit,
}

impl FilePermit {
    pub fn new(conn: OwnedSemaphorePermit, service: OwnedSemaphorePermit) -> Self {
        Self {
            _conn: conn,
            _service: service,
        }
    }
}

/// Something the writer sends, in order.
pub enum Outgoing {
    Frame(Bytes),
    /// A frame header followed by a file segment (ChunkFetchSuccess, StreamResponse).
    File {
        header: Bytes,
        body: FileSegment,
        permit: Option<FilePermit>,
    },
    /// Encrypt everything after this (queued right after the last auth reply).
    /// Boxed: this queue carries every reply, and a SASL cipher is ~400 bytes.
    Cipher(Box<Outbound>),
    /// Flush what came before, then close the connection.
    Close,
}

/// Plaintext sealed per encrypted write (a GCM unit, SASL pieces within it).
const SEAL_CHUNK: usize = 256 * 1024;

/// Replies queued per connection before the reader stops reading (backpressure).
const QUEUE: usize = 256;

/// When the connection last read or wrote, and whether the writer is in the middle of a batch;
/// shared by the reader (which enforces the idle timeout), the writer, and the accept loop
/// (which may close the longest-idle connection to make room).
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    writing: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    pub fn new() -> Self {
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

    pub fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    pub fn busy(&self) -> bool {
        self.writing.load(Ordering::Acquire)
    }
}

/// Resolves when the connection may have been idle for `timeout`; never without a timeout.
async fn idle_deadline(timeout: Option<Duration>, activity: &Activity) {
    match timeout {
        Some(t) => tokio::time::sleep_until((activity.last() + t).into()).await,
        None => std::future::pending().await,
    }
}

pub async fn serve(
    stream: TcpStream,
    service: Arc<Service>,
    token: CancellationToken,
    activity: Arc<Activity>,
) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_owned(), |a| a.to_string());
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    service.metrics.connections.inc();
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Outgoing>(QUEUE);
    let idle_timeout = service.config.idle_timeout;
    let writer_service = service.clone();
    let writer_peer = peer.clone();
    let writer_activity = activity.clone();
    let writer = tokio::spawn(async move {
        write_loop(
            wr,
            rx,
            &writer_service,
            &writer_peer,
            &writer_activity,
            idle_timeout,
        )
        .await
    });

    let mut state = ConnState::new(&service, peer.clone());
    // Plaintext frames; with a framed cipher (GCM, SASL) `raw` holds what is not yet opened.
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut raw = BytesMut::new();
    let mut inbound: Option<Inbound> = None;
    let max = service.config.max_frame_size;
    let auth_deadline = tokio::time::Instant::now() + service.config.auth.timeout;
    'conn: loop {
        if let Some(inb) = inbound.as_mut() {
            if let Err(e) = open_inbound(inb, &mut raw, &mut buf, &tx, &peer).await {
                tracing::warn!(%peer, error = %e, "cannot decrypt; closing connection");
                service.metrics.error("decrypt");
                break 'conn;
            }
        }
        // Decode every complete frame in the buffer and hand them over together, so a run of
        // pipelined chunk requests is resolved in one go; one at a time while a handshake may
        // still switch the connection to a cipher.
        let single = state.one_at_a_time();
        let mut msgs = Vec::new();
        let mut bad = false;
        loop {
            if single && !msgs.is_empty() {
                break;
            }
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
        let handled = !msgs.is_empty();
        // Messages before a malformed frame are still answered, as they were sent first.
        if handled && !service.handle_batch(msgs, &mut state, &tx).await {
            break 'conn;
        }
        if let Some(pending) = state.install.take() {
            // What follows the handshake's last message is ciphertext, read already or not.
            raw.unsplit(buf.split());
            inbound = Some(match pending {
                PendingCipher::Sasl(recv) => Inbound::Sasl(SaslOpener::new(recv, max + 64)),
                PendingCipher::Engine(keys) => Inbound::Detect(Box::new(Detector::new(keys, max))),
            });
            continue 'conn;
        }
        if bad {
            service.metrics.error("malformed_frame");
            break 'conn;
        }
        if single && handled {
            // more whole frames may be buffered behind the one just handled
            continue 'conn;
        }
        if buf.capacity() - buf.len() < 8 * 1024 {
            buf.reserve(64 * 1024);
        }
        let must_auth = state.must_authenticate(&service);
        // CTR keeps the frame stream's shape: read straight into the plaintext buffer and
        // decrypt in place. Framed ciphers read into `raw`.
        let direct = matches!(inbound, None | Some(Inbound::Ctr(_)));
        let target = if direct { &mut buf } else { &mut raw };
        let before = target.len();
        let read = tokio::select! {
            r = rd.read_buf(target) => r,
            _ = token.cancelled() => break,
            _ = tokio::time::sleep_until(auth_deadline), if must_auth => {
                tracing::info!(%peer, timeout = ?service.config.auth.timeout, "closing a connection that did not authenticate in time (--auth-timeout)");
                service.metrics.refused("auth_timeout");
                break;
            }
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
                continue;
            }
        };
        match read {
            Ok(0) => break,
            Ok(_) => {
                activity.touch();
                if let Some(Inbound::Ctr(c)) = inbound.as_mut() {
                    c.apply(&mut buf[before..]);
                }
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "read failed; closing connection");
                break;
            }
        }
    }
    state.close(&service);
    drop(tx);
    let _ = writer.await;
    service.metrics.connections.dec();
}

/// Moves what the inbound cipher can open from `raw` to `buf`; settles an AuthEngine
/// client's cipher on its first bytes (and tells the writer).
async fn open_inbound(
    inb: &mut Inbound,
    raw: &mut BytesMut,
    buf: &mut BytesMut,
    tx: &mpsc::Sender<Outgoing>,
    peer: &str,
) -> Result<(), crate::auth::transport::CipherError> {
    if let Inbound::Detect(d) = inb {
        match d.detect(raw)? {
            None => return Ok(()),
            Some((decided, det)) => {
                tracing::debug!(%peer, cipher = det.cipher, auth_engine_version = det.version, "encrypted connection");
                if tx
                    .send(Outgoing::Cipher(Box::new(det.outbound)))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                *inb = decided;
            }
        }
    }
    match inb {
        Inbound::Ctr(c) => {
            c.apply(raw);
            buf.unsplit(raw.split());
            Ok(())
        }
        Inbound::Gcm(g) => g.open(raw, buf),
        Inbound::Sasl(s) => s.open(raw, buf),
        Inbound::Detect(_) => Ok(()),
    }
}

async fn write_loop(
    wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    service: &Service,
    peer: &str,
    activity: &Activity,
    stall: Option<Duration>,
) {
    let sock: &TcpStream = wr.as_ref();
    let mut batch = Vec::with_capacity(64);
    let mut cipher: Option<Outbound> = None;
    // With a cipher, frames are gathered and sealed together (one GCM unit, one CTR pass).
    let mut plain: Vec<u8> = Vec::new();
    let mut sealed: Vec<u8> = Vec::new();
    let w = Writer {
        sock,
        stall,
        activity,
    };
    while rx.recv_many(&mut batch, 64).await > 0 {
        activity.writing.store(true, Ordering::Release);
        let n = batch.len();
        for (i, item) in batch.drain(..).enumerate() {
            // MSG_MORE lets small headers and frames share packets with what follows.
            let more = i + 1 < n || !rx.is_empty();
            let res = match (item, cipher.as_mut()) {
                (Outgoing::Frame(b), None) => w.send_all(&b, more).await,
                (Outgoing::Frame(b), Some(c)) => {
                    plain.extend_from_slice(&b);
                    if more && plain.len() < SEAL_CHUNK {
                        Ok(())
                    } else {
                        w.flush_sealed(c, &mut plain, &mut sealed, more).await
                    }
                }
                (Outgoing::File { header, body, .. }, None) => {
                    match w.send_all(&header, true).await {
                        Ok(()) => w.sendfile_all(&body).await.map(|()| {
                            service.metrics.blocks_sent.inc();
                            service.metrics.bytes_sent.inc_by(body.len);
                        }),
                        Err(e) => Err(e),
                    }
                }
                (Outgoing::File { header, body, .. }, Some(c)) => {
                    plain.extend_from_slice(&header);
                    w.send_file_sealed(c, &body, &mut plain, &mut sealed, more)
                        .await
                        .map(|()| {
                            service.metrics.blocks_sent.inc();
                            service.metrics.bytes_sent.inc_by(body.len);
                        })
                }
                (Outgoing::Cipher(c), _) => {
                    tracing::debug!(%peer, cipher = c.name(), "replies encrypted from here on");
                    cipher = Some(*c);
                    Ok(())
                }
                (Outgoing::Close, c) => {
                    if let Some(c) = c {
                        let _ = w.flush_sealed(c, &mut plain, &mut sealed, false).await;
                    }
                    let _ = sock_shutdown(sock);
                    return;
                }
            };
            if let Err(e) = res {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    tracing::info!(%peer, timeout = ?stall, "client stopped reading its replies; closing connection (--idle-timeout)");
                    service.metrics.idle_closed.inc();
                    service.metrics.refused("replies_not_read");
                } else {
                    tracing::info!(%peer, error = %e, "cannot send to client; closing connection");
                    service.metrics.error("send");
                }
                let _ = sock_shutdown(sock);
                return;
            }
            activity.touch();
        }
        if let Some(c) = cipher.as_mut() {
            if !plain.is_empty() {
                if let Err(e) = w.flush_sealed(c, &mut plain, &mut sealed, false).await {
                    tracing::info!(%peer, error = %e, "cannot send to client; closing connection");
                    let _ = sock_shutdown(sock);
                    return;
                }
            }
        }
        activity.writing.store(false, Ordering::Release);
    }
}

/// The sending half of a connection, with the stall timeout that ends a client that does not
/// read.
struct Writer<'a> {
    sock: &'a TcpStream,
    stall: Option<Duration>,
    activity: &'a Activity,
}

impl Writer<'_> {
    async fn writable(&self) -> std::io::Result<()> {
        match self.stall {
            None => self.sock.writable().await,
            Some(t) => match tokio::time::timeout(t, self.sock.writable()).await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client read nothing for the idle timeout",
                )),
            },
        }
    }

    async fn send_all(&self, mut buf: &[u8], more: bool) -> std::io::Result<()> {
        let sock = self.sock;
        let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
        while !buf.is_empty() {
            self.writable().await?;
            let r = sock.try_io(Interest::WRITABLE, || {
                // SAFETY: buf is a valid slice for its length; the fd is the live socket.
                let n =
                    unsafe { libc::send(sock.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(n) => {
                    buf = &buf[n..];
                    self.activity.touch();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Seals `plain` (then empties it) and sends the result.
    async fn flush_sealed(
        &self,
        c: &mut Outbound,
        plain: &mut Vec<u8>,
        sealed: &mut Vec<u8>,
        more: bool,
    ) -> std::io::Result<()> {
        if plain.is_empty() {
            return Ok(());
        }
        // AES-CTR keeps the stream's shape: encrypt in place, no copy.
        let wire: &[u8] = if let Outbound::Ctr(ctr) = c {
            ctr.apply(plain);
            plain
        } else {
            sealed.clear();
            c.seal(plain, sealed);
            sealed
        };
        let sent = self.send_all(wire, more).await;
        plain.clear();
        sent
    }

    /// Sends `plain` (a frame header, maybe more) followed by the file segment, encrypted,
    /// reading the file in pieces.
    async fn send_file_sealed(
        &self,
        c: &mut Outbound,
        seg: &FileSegment,
        plain: &mut Vec<u8>,
        sealed: &mut Vec<u8>,
        more: bool,
    ) -> std::io::Result<()> {
        let mut off = seg.offset;
        let end = seg.offset + seg.len;
        while off < end {
            let want = ((end - off) as usize).min(SEAL_CHUNK.saturating_sub(plain.len()).max(4096));
            let at = plain.len();
            plain.resize(at + want, 0);
            let mut got = 0;
            while got < want {
                let n = seg
                    .file
                    .read_at(&mut plain[at + got..at + want], off + got as u64)?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "{} ended early at byte {} (wanted up to {end})",
                            seg.path.display(),
                            off + got as u64
                        ),
                    ));
                }
                got += n;
            }
            off += want as u64;
            if off < end || !more {
                self.flush_sealed(c, plain, sealed, off < end || more)
                    .await?;
            }
        }
        Ok(())
    }

    async fn sendfile_all(&self, seg: &FileSegment) -> std::io::Result<()> {
        let sock = self.sock;
        let mut offset = seg.offset as libc::off64_t;
        let end = seg.offset + seg.len;
        while (offset as u64) < end {
            let want = ((end - offset as u64) as usize).min(1 << 30);
            self.writable().await?;
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
                Ok(_) => self.activity.touch(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
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
