//! The stored form of growing files (see the layout in the [`super`] module docs): the write
//! side (append a part, merge parts, complete, remove) and the read side (list applications
//! and their files, open a logical file as one byte stream).

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sidecars_common::objstore::{ObjectMeta, ObjectStore, Reader, StoreError};
use tokio::io::AsyncReadExt;
use tokio_util::io::{ReaderStream, StreamReader};

/// Prefix of complete event-log copies.
pub const EVENTLOGS: &str = "eventlogs";
/// Prefix of complete pod-log copies.
pub const PODLOGS: &str = "podlogs";
/// Prefix of in-progress parts.
pub const PARTS: &str = "parts";

/// Errors of the stored-file operations; each names the key involved.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("append to {key} at offset {offset}, but {stored} bytes are stored")]
    OffsetMismatch {
        key: String,
        offset: u64,
        stored: u64,
    },
    #[error(
        "append to {key} at offset {offset}: expected {expected} bytes, the source gave {got}"
    )]
    ShortBody {
        key: String,
        offset: u64,
        expected: u64,
        got: u64,
    },
    #[error("invalid name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
}

pub type Result<T, E = LayoutError> = std::result::Result<T, E>;

/// What is stored of one logical file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Bytes stored, a prefix of the source.
    pub len: u64,
    /// The file is stored as one complete object (its source will not grow).
    pub complete: bool,
}

/// One logical file of an application's event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    /// Path relative to the event-log dir, as Spark named it.
    pub rel: String,
    pub len: u64,
    pub complete: bool,
    /// When the stored bytes last changed, in ms since the epoch: the object's last-modified
    /// time, or the newest part's while the file is stored as parts.
    pub modified_ms: i64,
}

/// Key of a stored event-log file.
pub fn eventlog_key(log: &str, rel: &str) -> String {
    format!("{EVENTLOGS}/{log}/{rel}")
}

/// Key of a stored pod log.
pub fn podlog_key(app: &str, executor: &str, container: &str) -> String {
    format!("{PODLOGS}/{app}/{executor}/{container}.log")
}

fn parts_prefix(key: &str) -> String {
    format!("{PARTS}/{key}/")
}

fn part_key(key: &str, offset: u64) -> String {
    format!("{PARTS}/{key}/{offset:020}")
}

/// A part: start offset and size.
#[derive(Clone, Debug)]
struct Part {
    key: String,
    start: u64,
    size: u64,
}

/// Logical files in an object store.
#[derive(Clone, Debug)]
pub struct LogStore {
    store: Arc<dyn ObjectStore>,
}

impl LogStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    async fn head_opt(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self.store.head(key).await {
            Ok(m) => Ok(Some(m)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn parts(&self, key: &str) -> Result<Vec<Part>> {
        let prefix = parts_prefix(key);
        let mut parts: Vec<Part> = self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|m| {
                let name = m.key.strip_prefix(&prefix)?;
                if name.len() != 20 || name.contains('/') {
                    return None;
                }
                let start = name.parse().ok()?;
                Some(Part {
                    key: m.key,
                    start,
                    size: m.size,
                })
            })
            .collect();
        parts.sort_by_key(|p| (p.start, std::cmp::Reverse(p.size)));
        Ok(parts)
    }

    /// The contiguous run of parts from offset 0, as (part, bytes of it to skip), and its end.
    fn contiguous(parts: &[Part]) -> (Vec<(Part, u64)>, u64) {
        let mut end = 0u64;
        let mut run = Vec::new();
        for p in parts {
            if p.start > end {
                break;
            }
            let p_end = p.start + p.size;
            if p_end <= end {
                continue;
            }
            run.push((p.clone(), end - p.start));
            end = p_end;
        }
        (run, end)
    }

    /// What is stored of the logical file `key`.
    pub async fn stored(&self, key: &str) -> Result<Stored> {
        if let Some(m) = self.head_opt(key).await? {
            return Ok(Stored {
                len: m.size,
                complete: true,
            });
        }
        let parts = self.parts(key).await?;
        Ok(Stored {
            len: Self::contiguous(&parts).1,
            complete: false,
        })
    }

    /// Stores `len` bytes read from `body` as the bytes of `key` from `offset`, which must be
    /// where the stored bytes end. The body must give exactly `len` bytes, or nothing is kept.
    /// Returns the new stored length.
    pub async fn append(&self, key: &str, offset: u64, len: u64, body: Reader) -> Result<u64> {
        let parts = self.parts(key).await?;
        let (_, end) = Self::contiguous(&parts);
        if end != offset {
            return Err(LayoutError::OffsetMismatch {
                key: key.into(),
                offset,
                stored: end,
            });
        }
        if len == 0 {
            return Ok(end);
        }
        let pk = part_key(key, offset);
        let meta = self.store.put(&pk, Box::pin(body.take(len))).await?;
        if meta.size != len {
            let _ = self.store.delete(&pk).await;
            return Err(LayoutError::ShortBody {
                key: key.into(),
                offset,
                expected: len,
                got: meta.size,
            });
        }
        let mut run: Vec<Part> = Self::contiguous(&parts)
            .0
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        run.push(Part {
            key: pk,
            start: offset,
            size: len,
        });
        self.merge(key, run).await?;
        Ok(offset + len)
    }

    /// Keeps the number of parts logarithmic in the file size: like a binary counter, the
    /// last two parts merge while the earlier is no larger than the later, so each byte is
    /// rewritten O(log n) times.
    async fn merge(&self, key: &str, mut run: Vec<Part>) -> Result<()> {
        while run.len() >= 2 {
            let n = run.len();
            let (a, b) = (&run[n - 2], &run[n - 1]);
            let a_len = b.start - a.start;
            if a_len > b.size {
                break;
            }
            let merged_size = b.start + b.size - a.start;
            let body = self
                .read_range(key, a.start, merged_size, &run[n - 2..])
                .await?;
            let meta = self.store.put(&a.key, body).await?;
            if meta.size != merged_size {
                return Err(LayoutError::ShortBody {
                    key: a.key.clone(),
                    offset: a.start,
                    expected: merged_size,
                    got: meta.size,
                });
            }
            self.store.delete(&b.key).await?;
            run.pop();
            if let Some(last) = run.last_mut() {
                last.size = merged_size;
            }
        }
        Ok(())
    }

    /// A reader over `len` bytes from `start`, composed from `parts` (which cover them).
    async fn read_range(&self, _key: &str, start: u64, len: u64, parts: &[Part]) -> Result<Reader> {
        let mut pos = start;
        let end = start + len;
        let mut pieces = Vec::new();
        for p in parts {
            let p_end = p.start + p.size;
            if p_end <= pos || p.start > pos {
                continue;
            }
            let take_end = p_end.min(end);
            pieces.push((p.key.clone(), (pos - p.start)..(take_end - p.start)));
            pos = take_end;
            if pos >= end {
                break;
            }
        }
        Ok(self.concat(pieces))
    }

    /// Lazily concatenates object ranges into one reader.
    fn concat(&self, pieces: Vec<(String, std::ops::Range<u64>)>) -> Reader {
        let store = self.store.clone();
        let stream = futures::stream::iter(pieces)
            .then(move |(key, range)| {
                let store = store.clone();
                async move {
                    let got = store
                        .get(&key, Some(range))
                        .await
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    Ok::<_, io::Error>(ReaderStream::new(got.body))
                }
            })
            .try_flatten();
        Box::pin(StreamReader::new(stream))
    }

    /// Makes the stored bytes of `key` one complete object and drops its parts.
    pub async fn complete(&self, key: &str) -> Result<()> {
        if self.head_opt(key).await?.is_some() {
            return self.drop_parts(key).await;
        }
        let parts = self.parts(key).await?;
        let (run, len) = Self::contiguous(&parts);
        let plain: Vec<Part> = run.into_iter().map(|(p, _)| p).collect();
        let body = self.read_range(key, 0, len, &plain).await?;
        let meta = self.store.put(key, body).await?;
        if meta.size != len {
            let _ = self.store.delete(key).await;
            return Err(LayoutError::ShortBody {
                key: key.into(),
                offset: 0,
                expected: len,
                got: meta.size,
            });
        }
        self.drop_parts(key).await
    }

    /// Stores a whole file as one complete object (no parts), from `body` of `len` bytes.
    pub async fn put_complete(&self, key: &str, len: u64, body: Reader) -> Result<()> {
        let meta = self.store.put(key, Box::pin(body.take(len))).await?;
        if meta.size != len {
            let _ = self.store.delete(key).await;
            return Err(LayoutError::ShortBody {
                key: key.into(),
                offset: 0,
                expected: len,
                got: meta.size,
            });
        }
        self.drop_parts(key).await
    }

    async fn drop_parts(&self, key: &str) -> Result<()> {
        for p in self.parts(key).await? {
            self.store.delete(&p.key).await?;
        }
        Ok(())
    }

    /// Removes a logical file, complete or not.
    pub async fn remove(&self, key: &str) -> Result<()> {
        self.store.delete(key).await?;
        self.drop_parts(key).await
    }

    /// Opens a logical file: its stored length and a stream of its bytes.
    pub async fn open(&self, key: &str) -> Result<(u64, Reader)> {
        match self.store.get(key, None).await {
            Ok(got) => return Ok((got.meta.size, got.body)),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let parts = self.parts(key).await?;
        let (run, len) = Self::contiguous(&parts);
        if run.is_empty() {
            return Err(StoreError::NotFound {
                url: self.store.object_url(key),
            }
            .into());
        }
        let pieces = run
            .into_iter()
            .map(|(p, skip)| (p.key, skip..p.size))
            .collect();
        Ok((len, self.concat(pieces)))
    }

    /// Reads at most the last `max` bytes of a logical file, without touching the bytes
    /// before them (a resume needs only the tail of a log that may be gigabytes long).
    /// Returns the offset the bytes start at and the bytes.
    pub async fn read_tail(&self, key: &str, max: u64) -> Result<(u64, Bytes)> {
        let (start, pieces) = match self.head_opt(key).await? {
            Some(m) => {
                let start = m.size.saturating_sub(max);
                let pieces = if start < m.size {
                    vec![(key.to_string(), start..m.size)]
                } else {
                    Vec::new()
                };
                (start, pieces)
            }
            None => {
                let parts = self.parts(key).await?;
                let (run, len) = Self::contiguous(&parts);
                if run.is_empty() {
                    return Err(StoreError::NotFound {
                        url: self.store.object_url(key),
                    }
                    .into());
                }
                let start = len.saturating_sub(max);
                let pieces = run
                    .into_iter()
                    .filter_map(|(p, skip)| {
                        let lo = (p.start + skip).max(start);
                        let hi = p.start + p.size;
                        (hi > lo).then(|| (p.key, (lo - p.start)..(hi - p.start)))
                    })
                    .collect();
                (start, pieces)
            }
        };
        let mut buf = Vec::new();
        self.concat(pieces)
            .read_to_end(&mut buf)
            .await
            .map_err(|source| StoreError::Io {
                url: self.store.object_url(key),
                source,
            })?;
        Ok((start, buf.into()))
    }

    /// Reads a whole (small) logical file into memory.
    pub async fn read_all(&self, key: &str) -> Result<Bytes> {
        let (len, mut body) = self.open(key).await?;
        let mut buf = Vec::with_capacity(len.min(64 << 20) as usize);
        body.read_to_end(&mut buf)
            .await
            .map_err(|source| StoreError::Io {
                url: self.store.object_url(key),
                source,
            })?;
        Ok(buf.into())
    }

    /// Logical files under `prefix` (a key prefix ending in `/`), complete or in progress,
    /// sorted by path relative to `prefix`. Two listings, whatever the number of files.
    async fn logical_under(&self, prefix: &str) -> Result<Vec<LogFile>> {
        let objects = self.store.list_shallow(prefix).await?;
        let parts = self
            .store
            .list_shallow(&format!("{PARTS}/{prefix}"))
            .await?;
        Ok(logical_from(prefix, objects, parts).into_values().collect())
    }

    /// Every log name (`<appId>[_<attemptId>]`) with a stored event log, sorted.
    pub async fn list_logs(&self) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        for prefix in [format!("{EVENTLOGS}/"), format!("{PARTS}/{EVENTLOGS}/")] {
            for m in self.store.list_shallow(&prefix).await? {
                if let Some(rest) = m.key.strip_prefix(&prefix) {
                    if let Some((log, _)) = rest.split_once('/') {
                        names.insert(log.to_string());
                    }
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Every stored event log with its files (as [`list_files`](Self::list_files) gives
    /// them), from two listings of the store whatever the number of logs: what a periodic
    /// scan needs to see which logs are new or changed without opening any. See
    /// [`each_eventlog`](Self::each_eventlog), which this collects.
    pub async fn list_all_eventlogs(&self) -> Result<BTreeMap<String, Vec<LogFile>>> {
        let mut out = BTreeMap::new();
        self.each_eventlog(|log, files| {
            out.insert(log, files);
        })
        .await?;
        Ok(out)
    }

    /// Hands every stored event log with its files to `each`, one log at a time as the
    /// store's listing goes, so that however many logs there are only one page of the listing
    /// is held (and the parts of the logs still being written: few). The listing of complete
    /// objects comes in key order, so each log's objects come together; a log stored only as
    /// parts comes after them. Fails, having handed out only some logs, if a listing fails.
    pub async fn each_eventlog(&self, mut each: impl FnMut(String, Vec<LogFile>)) -> Result<()> {
        let prefix = format!("{EVENTLOGS}/");
        let parts = self
            .store
            .list_shallow(&format!("{PARTS}/{prefix}"))
            .await?;
        // the files still stored as parts (few: logs being written), as logical_from makes
        // them, by path below `prefix`; a complete object wins over them, as in `open`
        let mut partial = logical_from(&prefix, Vec::new(), parts);
        // a log's files, completed with its files stored as parts, handed out
        let mut hand_out =
            |log: String, mut files: Vec<LogFile>, partial: &mut BTreeMap<String, LogFile>| {
                let under = format!("{log}/");
                let grown: Vec<String> = partial
                    .range(under.clone()..)
                    .take_while(|(rel, _)| rel.starts_with(&under))
                    .map(|(rel, _)| rel.clone())
                    .collect();
                for rel in &grown {
                    if let Some(f) = partial.remove(rel) {
                        files.push(LogFile {
                            rel: rel[under.len()..].to_string(),
                            ..f
                        });
                    }
                }
                if !grown.is_empty() {
                    files.sort_by(|a, b| a.rel.cmp(&b.rel));
                }
                each(log, files);
            };
        let mut current: Option<(String, Vec<LogFile>)> = None;
        let mut last_key = String::new();
        let mut pages = self.store.list_shallow_pages(&prefix);
        while let Some(page) = pages.try_next().await? {
            for m in page {
                // grouping by log needs the key order the store promises: anything else is
                // an error, not a log handed out twice
                if m.key <= last_key {
                    return Err(StoreError::Other {
                        url: self.store.object_url(&prefix),
                        message: format!("listing out of key order at {}", m.key),
                    }
                    .into());
                }
                let log_file = m
                    .key
                    .strip_prefix(&prefix)
                    .and_then(|rel| rel.split_once('/'))
                    .filter(|(log, _)| check_component(log).is_ok());
                if let Some((log, file)) = log_file {
                    partial.remove(&m.key[prefix.len()..]);
                    let f = LogFile {
                        rel: file.to_string(),
                        len: m.size,
                        complete: true,
                        modified_ms: ms(m.last_modified),
                    };
                    match &mut current {
                        Some((l, files)) if l == log => files.push(f),
                        _ => {
                            if let Some((l, files)) = current.take() {
                                hand_out(l, files, &mut partial);
                            }
                            // nearly every log is one file: room for one
                            current = Some((log.to_string(), vec![f]));
                        }
                    }
                }
                last_key = m.key;
            }
        }
        if let Some((l, files)) = current.take() {
            hand_out(l, files, &mut partial);
        }
        // the logs stored only as parts
        while let Some(rel) = partial.keys().next().cloned() {
            let Some((log, _)) = rel.split_once('/') else {
                partial.remove(&rel);
                continue;
            };
            if check_component(log).is_err() {
                partial.remove(&rel);
                continue;
            }
            hand_out(log.to_string(), Vec::new(), &mut partial);
        }
        Ok(())
    }

    /// The files of one event log (relative paths as Spark wrote them), sorted.
    pub async fn list_files(&self, log: &str) -> Result<Vec<LogFile>> {
        check_component(log)?;
        self.logical_under(&format!("{EVENTLOGS}/{log}/")).await
    }

    /// Opens one event-log file by log name and relative path.
    pub async fn open_eventlog(&self, log: &str, rel: &str) -> Result<(u64, Reader)> {
        check_component(log)?;
        self.open(&eventlog_key(log, rel)).await
    }

    /// The stored pod logs of an application, as `<executorId>/<container>.log`.
    pub async fn list_podlogs(&self, app: &str) -> Result<Vec<LogFile>> {
        check_component(app)?;
        self.logical_under(&format!("{PODLOGS}/{app}/")).await
    }
}

fn ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// The logical files a listing of complete objects under `prefix` and one of parts under
/// `parts/<prefix>` show, by path relative to `prefix`. A file with a complete object is
/// that object (it wins over parts, as in [`LogStore::open`]); otherwise its contiguous run
/// of parts from offset 0, computed from the listing alone. Files with nothing stored yet
/// are left out.
fn logical_from(
    prefix: &str,
    objects: Vec<ObjectMeta>,
    parts: Vec<ObjectMeta>,
) -> BTreeMap<String, LogFile> {
    let mut out = BTreeMap::new();
    for m in objects {
        if let Some(rel) = m.key.strip_prefix(prefix) {
            out.insert(
                rel.to_string(),
                LogFile {
                    rel: rel.to_string(),
                    len: m.size,
                    complete: true,
                    modified_ms: ms(m.last_modified),
                },
            );
        }
    }
    let pp = format!("{PARTS}/{prefix}");
    let mut partial: BTreeMap<String, Vec<(Part, i64)>> = BTreeMap::new();
    for m in parts {
        let Some((rel, name)) = m.key.strip_prefix(&pp).and_then(|r| r.rsplit_once('/')) else {
            continue;
        };
        if name.len() != 20 || out.contains_key(rel) {
            continue;
        }
        let Ok(start) = name.parse() else { continue };
        let modified = ms(m.last_modified);
        partial.entry(rel.to_string()).or_default().push((
            Part {
                key: m.key,
                start,
                size: m.size,
            },
            modified,
        ));
    }
    for (rel, mut ps) in partial {
        ps.sort_by_key(|(p, _)| (p.start, std::cmp::Reverse(p.size)));
        let plain: Vec<Part> = ps.iter().map(|(p, _)| p.clone()).collect();
        let (run, len) = LogStore::contiguous(&plain);
        if len == 0 {
            continue;
        }
        let modified_ms = run
            .iter()
            .filter_map(|(p, _)| ps.iter().find(|(q, _)| q.key == p.key).map(|(_, t)| *t))
            .max()
            .unwrap_or(0);
        out.insert(
            rel.clone(),
            LogFile {
                rel,
                len,
                complete: false,
                modified_ms,
            },
        );
    }
    out
}

/// Refuses names that could escape their place in a key.
pub fn check_component(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(LayoutError::BadName {
            name: name.into(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("contains `/` or NUL");
    }
    if name == "." || name == ".." || name.starts_with('.') {
        return bad("starts with `.`");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sidecars_common::objstore;

    /// A log store on a `file://` store in a fresh temporary directory (kept alive by the
    /// returned guard).
    pub(crate) async fn temp_store() -> (tempfile::TempDir, LogStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = sidecars_common::objstore::open(
            &format!("file://{}", dir.path().display()),
            &Default::default(),
        )
        .await
        .unwrap();
        (dir, LogStore::new(store))
    }

    fn reader(b: &'static [u8]) -> Reader {
        Box::pin(std::io::Cursor::new(b))
    }

    #[tokio::test]
    async fn append_merge_complete() {
        let (_dir, ls) = temp_store().await;
        let key = eventlog_key("app-1", "app-1.inprogress");
        let mut expect = Vec::new();
        let mut off = 0;
        for i in 0..37u8 {
            let chunk: &'static [u8] =
                Box::leak(vec![b'a' + (i % 26); (i as usize % 5) + 1].into_boxed_slice());
            off = ls
                .append(&key, off, chunk.len() as u64, reader(chunk))
                .await
                .unwrap();
            expect.extend_from_slice(chunk);
            assert_eq!(ls.read_all(&key).await.unwrap(), expect);
        }
        assert!(ls.parts(&key).await.unwrap().len() <= 7);
        // a wrong offset is refused
        assert!(matches!(
            ls.append(&key, 1, 1, reader(b"x")).await,
            Err(LayoutError::OffsetMismatch { .. })
        ));
        // a short body stores nothing
        assert!(ls.append(&key, off, 10, reader(b"abc")).await.is_err());
        assert_eq!(ls.stored(&key).await.unwrap().len, off);
        assert_eq!(ls.list_logs().await.unwrap(), vec!["app-1".to_string()]);
        let files = ls.list_files("app-1").await.unwrap();
        assert_eq!(files.len(), 1);
        assert!(!files[0].complete);
        ls.complete(&key).await.unwrap();
        assert_eq!(
            ls.stored(&key).await.unwrap(),
            Stored {
                len: off,
                complete: true
            }
        );
        assert_eq!(ls.read_all(&key).await.unwrap(), expect);
        assert!(ls.parts(&key).await.unwrap().is_empty());
    }

    /// A store whose paged listing hands its objects out of key order (a broken or hostile
    /// S3 server), everything else as the local store it wraps.
    #[derive(Debug)]
    struct Shuffled(Arc<dyn ObjectStore>);

    #[async_trait::async_trait]
    impl ObjectStore for Shuffled {
        fn url(&self) -> &str {
            self.0.url()
        }
        async fn put(&self, key: &str, body: Reader) -> objstore::Result<ObjectMeta> {
            self.0.put(key, body).await
        }
        async fn get(
            &self,
            key: &str,
            range: Option<std::ops::Range<u64>>,
        ) -> objstore::Result<objstore::GetResult> {
            self.0.get(key, range).await
        }
        async fn head(&self, key: &str) -> objstore::Result<ObjectMeta> {
            self.0.head(key).await
        }
        async fn list(&self, prefix: &str) -> objstore::Result<Vec<ObjectMeta>> {
            self.0.list(prefix).await
        }
        async fn delete(&self, key: &str) -> objstore::Result<()> {
            self.0.delete(key).await
        }
        fn list_shallow_pages<'a>(
            &'a self,
            prefix: &'a str,
        ) -> futures::stream::BoxStream<'a, objstore::Result<Vec<ObjectMeta>>> {
            Box::pin(futures::stream::once(async move {
                let mut all = self.0.list_shallow(prefix).await?;
                all.reverse();
                Ok(all)
            }))
        }
    }

    #[tokio::test]
    async fn a_listing_out_of_key_order_is_an_error_not_a_log_handed_out_twice() {
        let (_dir, ls) = temp_store().await;
        for log in ["app-1", "app-2"] {
            for file in ["eventlog_v2_x/events_1_x", "eventlog_v2_x/events_2_x"] {
                ls.put_complete(&eventlog_key(log, file), 1, reader(b"x"))
                    .await
                    .unwrap();
            }
        }
        let shuffled = LogStore::new(Arc::new(Shuffled(ls.store().clone())));
        let mut handed = Vec::new();
        let err = shuffled
            .each_eventlog(|log, _| handed.push(log))
            .await
            .expect_err("an out-of-order listing must fail");
        assert!(err.to_string().contains("out of key order"), "{err}");
        assert!(handed.len() <= 1, "{handed:?}");
        // the same store listed in order hands out each log once
        let all = ls.list_all_eventlogs().await.unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["app-1", "app-2"]);
    }

    #[tokio::test]
    async fn list_all_eventlogs_composes_parts_in_two_listings() {
        let (_dir, ls) = temp_store().await;
        // a growing single file, as parts
        let key = eventlog_key("app-1", "app-1.inprogress");
        let mut off = 0;
        for chunk in [&b"{\"a\":1}\n"[..], b"{\"b\":2}\n", b"{\"c\":3}\n"] {
            off = ls
                .append(&key, off, chunk.len() as u64, reader(chunk))
                .await
                .unwrap();
        }
        // a finished rolling log, as objects
        let events = b"{\"e\":1}\n";
        ls.put_complete(
            &eventlog_key("app-2", "eventlog_v2_app-2/events_1_app-2"),
            events.len() as u64,
            reader(events),
        )
        .await
        .unwrap();
        ls.put_complete(
            &eventlog_key("app-2", "eventlog_v2_app-2/appstatus_app-2"),
            0,
            reader(b""),
        )
        .await
        .unwrap();
        // its next file still growing, as parts: listed with its stored files, in order
        let grow = eventlog_key("app-2", "eventlog_v2_app-2/events_2_app-2");
        ls.append(&grow, 0, 8, reader(b"{\"f\":2}\n"))
            .await
            .unwrap();
        // a log stored only as parts, after every log stored as objects
        let only = eventlog_key("app-3", "app-3.inprogress");
        ls.append(&only, 0, 8, reader(b"{\"g\":3}\n"))
            .await
            .unwrap();
        let all = ls.list_all_eventlogs().await.unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["app-1", "app-2", "app-3"]);
        assert_eq!(
            all["app-3"]
                .iter()
                .map(|f| (f.rel.as_str(), f.len, f.complete))
                .collect::<Vec<_>>(),
            [("app-3.inprogress", 8, false)]
        );
        let a1 = &all["app-1"];
        assert_eq!(a1.len(), 1);
        assert_eq!(
            (a1[0].rel.as_str(), a1[0].len, a1[0].complete),
            ("app-1.inprogress", off, false)
        );
        assert!(a1[0].modified_ms > 0);
        let rels: Vec<_> = all["app-2"]
            .iter()
            .map(|f| (f.rel.as_str(), f.len, f.complete))
            .collect();
        assert_eq!(
            rels,
            [
                ("eventlog_v2_app-2/appstatus_app-2", 0, true),
                (
                    "eventlog_v2_app-2/events_1_app-2",
                    events.len() as u64,
                    true
                ),
                ("eventlog_v2_app-2/events_2_app-2", 8, false)
            ]
        );
        // the per-log listing says the same
        assert_eq!(&ls.list_files("app-1").await.unwrap(), a1);
        assert_eq!(&ls.list_files("app-2").await.unwrap(), &all["app-2"]);
        // and the stream of the growing file is what was appended
        let (len, _) = ls.open_eventlog("app-1", "app-1.inprogress").await.unwrap();
        assert_eq!(len, off);
    }

    #[tokio::test]
    async fn read_tail_of_parts_and_complete() {
        let (_dir, ls) = temp_store().await;
        let key = podlog_key("app", "1", "c");
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut off = 0;
        for chunk in data.chunks(333) {
            let c: &'static [u8] = Box::leak(chunk.to_vec().into_boxed_slice());
            off = ls
                .append(&key, off, c.len() as u64, reader(c))
                .await
                .unwrap();
        }
        for max in [0u64, 1, 100, 333, 1000, 4999, 5000, 9000] {
            let (start, tail) = ls.read_tail(&key, max).await.unwrap();
            assert_eq!(start, 5000u64.saturating_sub(max));
            assert_eq!(&tail[..], &data[start as usize..], "max {max}");
        }
        ls.complete(&key).await.unwrap();
        let (start, tail) = ls.read_tail(&key, 77).await.unwrap();
        assert_eq!((start, &tail[..]), (4923, &data[4923..]));
        assert!(matches!(
            ls.read_tail("podlogs/none/1/c.log", 10).await,
            Err(LayoutError::Store(StoreError::NotFound { .. }))
        ));
    }
}
