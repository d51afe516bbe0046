//! The object store: one interface, two backends chosen by URL.
//!
//! - `file:///path` (the default): a directory tree; objects appear by temp file + rename.
//! - `s3://bucket/prefix`: any S3 API (AWS, MinIO, Ceph RGW, Garage) through aws-sdk-s3;
//!   multipart above a threshold, aborted when a put fails, so nothing half-written is ever
//!   readable.
//!
//! Bodies stream in both directions with bounded memory, whatever the object size.
//! Keys are `/`-separated relative names (`apps/spark-123/events_1`); keys with empty, `.` or
//! `..` components, a leading `/`, a NUL, or the reserved first component `.sidecars` are
//! refused, so a key can never name something outside the store.

mod file;
mod s3;
#[cfg(feature = "test-support")]
pub mod testing;

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use tokio::io::AsyncRead;

pub use file::{FileStore, LocalWrite, StoreLock};
pub use s3::{S3Options, S3Store, StaticCredentials};

/// A boxed byte source: what a put reads from and what a get returns.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// A blocking [`std::io::Read`] over a [`Reader`], for code that parses or extracts on a
/// thread of its own (tar, gzip, event-log parsers): each read waits on `handle`'s runtime,
/// so an object streams through without being loaded whole. Use it off the async worker
/// threads only. (tokio-util's `SyncIoBridge` does the same, behind a feature the workspace
/// does not build.)
pub struct BlockingReader {
    handle: tokio::runtime::Handle,
    inner: Reader,
}

impl BlockingReader {
    pub fn new(handle: tokio::runtime::Handle, inner: Reader) -> Self {
        BlockingReader { handle, inner }
    }
}

impl std::io::Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let inner = &mut self.inner;
        self.handle
            .block_on(tokio::io::AsyncReadExt::read(inner, buf))
    }
}

/// What the store knows of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Lower-case hex sha256 of the whole object. Empty when the object was written by
    /// something other than this store on S3 (where finding it would mean reading it all).
    pub sha256: String,
    pub last_modified: DateTime<Utc>,
}

/// A get's answer: the object's metadata and its body (the requested range of it).
pub struct GetResult {
    pub meta: ObjectMeta,
    /// The byte range this body covers.
    pub range: Range<u64>,
    pub body: Reader,
}

/// Errors that callers can tell apart; each names the URL involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found: {url}")]
    NotFound { url: String },
    #[error("bucket does not exist: {url}")]
    NoSuchBucket { url: String },
    #[error("access denied (check credentials) for {url}: {message}")]
    AccessDenied { url: String, message: String },
    #[error("cannot reach the object store endpoint for {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("invalid object key `{key}`: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("range {start}..{end} is outside {url} (size {size})")]
    InvalidRange {
        url: String,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error("invalid object store URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("I/O error on {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store error on {url}: {message}")]
    Other { url: String, message: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The operations both backends provide.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug + 'static {
    /// The URL this store was opened with, e.g. `file:///data` or `s3://bucket/prefix`.
    fn url(&self) -> &str;

    /// Stores `body` under `key`, replacing any previous object atomically. The object
    /// becomes visible only once the whole body has been read and stored.
    async fn put(&self, key: &str, body: Reader) -> Result<ObjectMeta>;

    /// Reads an object, or the byte range `range` of it (`None`: all of it).
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetResult>;

    /// The object's metadata, without its body.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Like [`list`](Self::list), but with only what a listing itself carries: an object's
    /// `sha256` may be empty. On S3 that is one request per 1000 keys rather than one more per
    /// object, for callers that poll a prefix often (the history catalog's scan).
    async fn list_shallow(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.list(prefix).await
    }

    /// [`list_shallow`](Self::list_shallow) a page at a time, in key order, as the listing
    /// goes: for callers that go through very many objects and need not hold them all (the
    /// history catalog's scan of every event log). The stream ends after the last page or
    /// in an error, never early without one.
    fn list_shallow_pages<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<Vec<ObjectMeta>>> {
        Box::pin(futures::stream::once(self.list_shallow(prefix)))
    }

    /// Removes an object; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Checks that the store can be reached and used (the bucket exists, the credentials are
    /// accepted, the directory is there), so a daemon can fail at start with a clear message.
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// The URL of one object, for error messages and logs.
    fn object_url(&self, key: &str) -> String {
        format!("{}/{}", self.url().trim_end_matches('/'), key)
    }

    /// The local-disk store behind this one, for callers that write or read files in place
    /// (see [`FileStore::begin_write`]); `None` for S3.
    fn as_file_store(&self) -> Option<&FileStore> {
        None
    }
}

/// Convenience for small objects held in memory.
pub async fn put_bytes(store: &dyn ObjectStore, key: &str, data: Bytes) -> Result<ObjectMeta> {
    store.put(key, Box::pin(std::io::Cursor::new(data))).await
}

/// Reads a whole (small) object into memory.
pub async fn get_bytes(store: &dyn ObjectStore, key: &str) -> Result<Bytes> {
    use tokio::io::AsyncReadExt;
    let mut got = store.get(key, None).await?;
    let mut buf = Vec::with_capacity(got.meta.size.min(64 << 20) as usize);
    got.body
        .read_to_end(&mut buf)
        .await
        .map_err(|source| StoreError::Io {
            url: store.object_url(key),
            source,
        })?;
    Ok(buf.into())
}

/// Opens the store named by `url`: `file:///path`, a plain absolute path, or
/// `s3://bucket[/prefix]` (S3 settings from `opts` and the standard AWS environment).
pub async fn open(url: &str, opts: &S3Options) -> Result<Arc<dyn ObjectStore>> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::InvalidUrl {
                url: url.into(),
                reason: "no bucket name after s3://".into(),
            });
        }
        return Ok(Arc::new(S3Store::new(bucket, prefix, opts).await?));
    }
    let path = if let Some(p) = url.strip_prefix("file://") {
        p
    } else if url.starts_with('/') {
        url
    } else {
        return Err(StoreError::InvalidUrl {
            url: url.into(),
            reason: "use file:///absolute/path or s3://bucket/prefix".into(),
        });
    };
    if !path.starts_with('/') {
        return Err(StoreError::InvalidUrl {
            url: url.into(),
            reason: "a file:// URL needs an absolute path (file:///data/store)".into(),
        });
    }
    Ok(Arc::new(FileStore::new(path)?))
}

/// Checks a key; see the module docs for the rules.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(StoreError::InvalidKey {
            key: key.into(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("absolute (leading /)");
    }
    if key.contains('\0') {
        return bad("contains NUL");
    }
    for (i, part) in key.split('/').enumerate() {
        match part {
            "" => return bad("empty path component"),
            "." | ".." => return bad("`.` or `..` component"),
            ".sidecars" if i == 0 => return bad("`.sidecars` is reserved"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a list prefix: like a key, but it may be empty or end in one `/`.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// Clamps a requested range to an object of `size` bytes, or says why it cannot be served.
pub(crate) fn resolve_range(url: &str, range: Option<Range<u64>>, size: u64) -> Result<Range<u64>> {
    match range {
        None => Ok(0..size),
        Some(r) if r.start <= r.end && r.end <= size => Ok(r),
        Some(r) => Err(StoreError::InvalidRange {
            url: url.into(),
            start: r.start,
            end: r.end,
            size,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("apps/spark-1/events_1.zstd").is_ok());
        for k in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "..",
            "./x",
            "a/.",
            ".sidecars/tmp",
            "a\0b",
        ] {
            assert!(validate_key(k).is_err(), "{k:?} accepted");
        }
        assert!(validate_key("a/.sidecars").is_ok());
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("apps/").is_ok());
        assert!(validate_prefix("../").is_err());
        assert!(validate_prefix("a//").is_err());
        assert!(validate_prefix("/").is_err());
    }
}
