//! Shared pieces of the object store tests: the two backends behind one handle, a
//! deterministic pseudo-random body of any size that is generated as it is read, and
//! helpers to hash a body and to read the process's peak memory.
#![allow(dead_code)]

pub mod big;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use sidecars_common::objstore::testing::Garage;
use sidecars_common::objstore::{self, FileStore, ObjectStore, S3Options};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Part size the S3 tests use, the smallest S3 allows, so multipart paths run on small bodies.
pub const PART: u64 = 5 << 20;

/// A store under test and what keeps it alive.
pub enum Backend {
    File(tempfile::TempDir),
    Garage(Box<Garage>),
}

impl Backend {
    pub fn file() -> Self {
        Backend::File(tempfile::tempdir().expect("temp dir"))
    }

    /// A fresh Garage server; fails the test with the harness's message when it cannot start.
    pub fn garage() -> Self {
        match Garage::start() {
            Ok(g) => Backend::Garage(Box::new(g)),
            Err(e) => panic!("cannot start the Garage S3 server for this test: {e:#}"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::File(_) => "file",
            Backend::Garage(_) => "garage",
        }
    }

    /// Opens the store at `prefix` (a sub-directory, or a key prefix in the bucket) through
    /// `objstore::open`, as the daemons do.
    pub async fn store(&self, prefix: &str) -> Arc<dyn ObjectStore> {
        match self {
            Backend::File(dir) => {
                let root = dir.path().join(prefix);
                let url = format!("file://{}", root.display());
                objstore::open(&url, &S3Options::default())
                    .await
                    .expect("open file store")
            }
            Backend::Garage(g) => {
                let opts = S3Options {
                    s3_part_size: PART,
                    ..g.s3_options()
                };
                objstore::open(&g.url(prefix), &opts)
                    .await
                    .expect("open s3 store")
            }
        }
    }

    pub fn garage_ref(&self) -> Option<&Garage> {
        match self {
            Backend::Garage(g) => Some(g),
            Backend::File(_) => None,
        }
    }

    pub fn file_root(&self) -> Option<&std::path::Path> {
        match self {
            Backend::File(d) => Some(d.path()),
            Backend::Garage(_) => None,
        }
    }
}

/// Opens a file store directly (for checks on the directory layout).
pub fn file_store(root: &std::path::Path) -> FileStore {
    FileStore::new(root).expect("file store")
}

/// `len` pseudo-random bytes from `seed`, produced on demand: never held in memory.
/// It hashes what it hands out, and keeps a copy of the bytes in `keep` (a window of the
/// stream) so a ranged read can be checked afterwards.
pub struct Generated {
    rng: rand::rngs::StdRng,
    left: u64,
    offset: u64,
    pending: Vec<u8>,
    pending_at: usize,
    hasher: Option<Sha256>,
    keep: std::ops::Range<u64>,
    kept: Vec<u8>,
    shared: Outcome,
}

const CHUNK: usize = 256 * 1024;

/// Filled in when a `Generated` body has been read to its end: its sha256 and kept window.
pub type Outcome = Arc<std::sync::Mutex<Option<(String, Vec<u8>)>>>;

impl Generated {
    pub fn new(seed: u64, len: u64) -> Self {
        Self::keeping(seed, len, 0..0)
    }

    /// Like `new`, also remembering bytes `keep` of the stream.
    pub fn keeping(seed: u64, len: u64, keep: std::ops::Range<u64>) -> Self {
        Self {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            left: len,
            offset: 0,
            pending: Vec::with_capacity(CHUNK),
            pending_at: 0,
            hasher: Some(Sha256::new()),
            keep,
            kept: Vec::new(),
            shared: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Where the sha256 and the kept window appear once the whole body has been read.
    pub fn outcome(&self) -> Outcome {
        self.shared.clone()
    }

    /// The whole body in memory (for small sizes only).
    pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for c in v.chunks_mut(CHUNK) {
            rng.fill_bytes(c);
        }
        v
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pending_at == this.pending.len() {
            if this.left == 0 {
                if let Some(h) = this.hasher.take() {
                    let sha = hex::encode(h.finalize());
                    *this.shared.lock().expect("lock") =
                        Some((sha, std::mem::take(&mut this.kept)));
                }
                return Poll::Ready(Ok(()));
            }
            // same chunking as `bytes`, so both give the same stream
            let n = (CHUNK as u64).min(this.left) as usize;
            this.pending.resize(n, 0);
            this.rng.fill_bytes(&mut this.pending);
            this.pending_at = 0;
            this.left -= n as u64;
        }
        let n = buf.remaining().min(this.pending.len() - this.pending_at);
        let out = &this.pending[this.pending_at..this.pending_at + n];
        if let Some(h) = &mut this.hasher {
            h.update(out);
        }
        let (start, end) = (this.offset, this.offset + n as u64);
        if start < this.keep.end && end > this.keep.start {
            let a = this.keep.start.max(start) - start;
            let b = this.keep.end.min(end) - start;
            this.kept.extend_from_slice(&out[a as usize..b as usize]);
        }
        buf.put_slice(out);
        this.pending_at += n;
        this.offset = end;
        Poll::Ready(Ok(()))
    }
}

/// Reads a body to its end, returning (bytes read, sha256).
pub async fn hash_body(mut body: objstore::Reader) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = body.read(&mut buf).await?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Peak resident memory of this process so far, in bytes (VmHWM).
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmHWM value");
    kb * 1024
}
