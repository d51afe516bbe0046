//! The local-disk backend: `<root>/<key>` holds the object's bytes.
//!
//! A put streams into `<root>/.sidecars/tmp/<uuid>`, hashing as it goes, fsyncs, records the
//! sha256 in an extended attribute of the temp file, and renames it into place, so readers
//! see either the old object or the whole new one, never a part. Temp files left by a killed
//! process are never visible under a key and are swept when the store is next opened (those
//! older than an hour), or all of them by the process that takes the store's lock
//! ([`FileStore::lock`]).
//!
//! Writers that produce an object's bytes on a thread of their own (an upload spooled as it
//! arrives, files extracted from an archive) write them straight into a temp file of the store
//! ([`FileStore::begin_write`]) and publish it with [`FileStore::commit`], which applies the
//! same protocol (sha256 attribute, fsync, rename, directory fsync) without copying the bytes
//! again.

use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use compact_str::CompactString;
use futures::stream::{BoxStream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{
    resolve_range, validate_key, validate_prefix, GetResult, ObjectMeta, ObjectStore, Reader,
    Result, StoreError,
};

const SHA_XATTR: &str = "user.sidecars.sha256";
const RESERVED: &str = ".sidecars";
const COPY_BUF: usize = 256 * 1024;
/// Objects per page of a paged listing (as many as one S3 listing request returns).
const LIST_PAGE: usize = 1000;
/// Temp files older than this when the store opens belong to a dead writer.
const STALE_TMP: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
    url: String,
}

impl FileStore {
    /// Every object under `prefix`, sorted by key, with its hash when `digests`.
    async fn listed(&self, prefix: &str, digests: bool) -> Result<Vec<ObjectMeta>> {
        let start = self.walk_start(prefix)?;
        // one blocking walk (a trip to the blocking pool per directory entry costs more than
        // the entry itself when there are many)
        let (root, want) = (self.root.clone(), prefix.to_string());
        let (mut out, unhashed) =
            tokio::task::spawn_blocking(move || walk(&root, &start, &want, digests))
                .await
                .map_err(|e| StoreError::Other {
                    url: self.url.clone(),
                    message: format!("list task failed: {e}"),
                })??;
        // no recorded hash: computed (and recorded) the slow way
        let mut gone = Vec::new();
        for i in unhashed {
            let key = out[i].key.clone();
            match self.meta_of(&key, &self.root.join(&key)).await {
                Ok(m) => out[i] = m,
                // deleted while listing
                Err(StoreError::NotFound { .. }) => gone.push(i),
                Err(e) => return Err(e),
            }
        }
        if !gone.is_empty() {
            let mut i = 0;
            out.retain(|_| {
                i += 1;
                gone.binary_search(&(i - 1)).is_err()
            });
        }
        Ok(out)
    }

    /// Where a walk for the keys under `prefix` starts: the deepest directory it names.
    fn walk_start(&self, prefix: &str) -> Result<PathBuf> {
        validate_prefix(prefix)?;
        Ok(match prefix.rfind('/') {
            Some(i) if i > 0 => self.root.join(&prefix[..i]),
            _ => self.root.clone(),
        })
    }

    /// Opens (creating if needed) a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root: PathBuf = root.into();
        let url = format!("file://{}", root.display());
        let tmp = root.join(RESERVED).join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|source| StoreError::Io {
            url: url.clone(),
            source,
        })?;
        sweep(&tmp, STALE_TMP);
        Ok(Self { root, url })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the object `key` lives on disk (it may not exist), for readers that read it in
    /// place; fails for keys the store refuses.
    pub fn object_path(&self, key: &str) -> Result<PathBuf> {
        self.path(key)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(RESERVED).join("tmp")
    }

    /// Takes this store for this process alone (an advisory `flock` on
    /// `<root>/.sidecars/lock`, released when the guard drops or the process dies), and then
    /// deletes every temp file in it, whatever its age: with the lock held, none can belong to
    /// a live writer. Fails, naming the store, when another process holds the lock.
    pub fn lock(&self) -> Result<StoreLock> {
        use std::os::fd::AsRawFd;
        let path = self.root.join(RESERVED).join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::Io {
                url: self.url.clone(),
                source,
            })?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            return Err(StoreError::Io {
                url: self.url.clone(),
                source: std::io::Error::new(
                    e.kind(),
                    format!("another process holds {} ({e})", path.display()),
                ),
            });
        }
        sweep(&self.tmp_dir(), Duration::ZERO);
        Ok(StoreLock { _file: file })
    }

    /// Starts writing an object in place: a new temp file in the store, removed again unless
    /// [`Self::commit`] publishes it.
    pub fn begin_write(&self) -> Result<LocalWrite> {
        let path = self.tmp_dir().join(uuid::Uuid::new_v4().to_string());
        let file = std::fs::File::create(&path).map_err(|source| StoreError::Io {
            url: format!("file://{}", path.display()),
            source,
        })?;
        Ok(LocalWrite {
            file,
            guard: TempGuard(Some(path)),
        })
    }

    /// Publishes what was written to `w` as the object `key` (replacing any previous one),
    /// recording `sha256` (which the writer computed while writing) as its hash. With `fsync`,
    /// the file and then its directory entry are flushed to disk, as every put does; without,
    /// a machine crash may lose it (a killed process still never exposes a part of it).
    /// Blocking: call it off the async worker threads.
    pub fn commit(&self, w: LocalWrite, key: &str, sha256: &str, fsync: bool) -> Result<()> {
        let dest = self.path(key)?;
        let io = self.io(key);
        let LocalWrite { file, mut guard } = w;
        let tmp = guard.0.clone().unwrap_or_default();
        {
            use xattr::FileExt;
            // best effort: without xattr support the hash is recomputed on head
            let _ = file.set_xattr(SHA_XATTR, sha256.as_bytes());
        }
        if fsync {
            file.sync_all().map_err(&io)?;
        }
        drop(file);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(&io)?;
        }
        std::fs::rename(&tmp, &dest).map_err(&io)?;
        guard.0 = None;
        if fsync {
            if let Some(parent) = dest.parent() {
                std::fs::File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(&io)?;
            }
        }
        Ok(())
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn io(&self, key: &str) -> impl Fn(std::io::Error) -> StoreError + '_ {
        let url = self.object_url(key);
        move |source| {
            if source.kind() == ErrorKind::NotFound {
                StoreError::NotFound { url: url.clone() }
            } else {
                StoreError::Io {
                    url: url.clone(),
                    source,
                }
            }
        }
    }

    async fn meta_of(&self, key: &str, path: &Path) -> Result<ObjectMeta> {
        let md = fs::metadata(path).await.map_err(self.io(key))?;
        if !md.is_file() {
            return Err(StoreError::NotFound {
                url: self.object_url(key),
            });
        }
        let sha256 = match read_sha_xattr(path) {
            Some(s) => s,
            // written by something other than this store, or xattrs unsupported: hash it now
            None => {
                let s = hash_file(path).await.map_err(self.io(key))?;
                let _ = xattr::set(path, SHA_XATTR, s.as_bytes());
                s
            }
        };
        Ok(ObjectMeta {
            key: key.to_string(),
            size: md.len(),
            sha256,
            last_modified: mtime(&md),
        })
    }
}

/// An object being written in place on a local store; see [`FileStore::begin_write`]. The
/// temp file is removed if this is dropped before [`FileStore::commit`].
#[derive(Debug)]
pub struct LocalWrite {
    file: std::fs::File,
    guard: TempGuard,
}

impl LocalWrite {
    /// The file to write the object's bytes to.
    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }
}

/// Holds a store's lock (see [`FileStore::lock`]) until dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: std::fs::File,
}

#[async_trait]
impl ObjectStore for FileStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn as_file_store(&self) -> Option<&FileStore> {
        Some(self)
    }

    async fn put(&self, key: &str, mut body: Reader) -> Result<ObjectMeta> {
        let dest = self.path(key)?;
        let tmp = self
            .root
            .join(RESERVED)
            .join("tmp")
            .join(uuid::Uuid::new_v4().to_string());
        let io = self.io(key);
        // removes the temp file if this put fails or its future is dropped midway
        let mut guard = TempGuard(Some(tmp.clone()));
        let result: Result<(u64, String)> = async {
            let mut file = fs::File::create(&tmp).await.map_err(&io)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; COPY_BUF];
            let mut size = 0u64;
            loop {
                let n = body.read(&mut buf).await.map_err(&io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n]).await.map_err(&io)?;
                size += n as u64;
            }
            file.sync_all().await.map_err(&io)?;
            drop(file);
            let sha = hex::encode(hasher.finalize());
            // best effort: without xattr support the hash is recomputed on head
            let _ = xattr::set(&tmp, SHA_XATTR, sha.as_bytes());
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).await.map_err(&io)?;
            }
            fs::rename(&tmp, &dest).await.map_err(&io)?;
            guard.0 = None;
            // the rename is durable only once the directory entry is on disk
            if let Some(parent) = dest.parent() {
                if let Ok(dir) = fs::File::open(parent).await {
                    let _ = dir.sync_all().await;
                }
            }
            Ok((size, sha))
        }
        .await;
        drop(guard);
        let (size, sha256) = result?;
        let md = fs::metadata(&dest).await.map_err(&io)?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            sha256,
            last_modified: mtime(&md),
        })
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetResult> {
        let path = self.path(key)?;
        // size and hash come from the opened handle, which pins this version even if a put
        // renames a new one over it meanwhile
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                let file = std::fs::File::open(&path)?;
                let md = file.metadata()?;
                let sha = {
                    use xattr::FileExt;
                    file.get_xattr(SHA_XATTR).ok().flatten().and_then(valid_sha)
                };
                Ok((file, md, sha))
            })
            .await
            .map_err(|e| StoreError::Other {
                url: self.object_url(key),
                message: format!("open task failed: {e}"),
            })?
        };
        let (file, md, sha) = opened.map_err(self.io(key))?;
        if !md.is_file() {
            return Err(StoreError::NotFound {
                url: self.object_url(key),
            });
        }
        let mut file = fs::File::from_std(file);
        let sha256 = match sha {
            Some(s) => s,
            None => self.meta_of(key, &path).await?.sha256,
        };
        let meta = ObjectMeta {
            key: key.to_string(),
            size: md.len(),
            sha256,
            last_modified: mtime(&md),
        };
        let size = md.len();
        let range = resolve_range(&self.object_url(key), range, size)?;
        if range.start > 0 {
            file.seek(std::io::SeekFrom::Start(range.start))
                .await
                .map_err(self.io(key))?;
        }
        let body = Box::pin(file.take(range.end - range.start));
        Ok(GetResult { meta, range, body })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        self.meta_of(key, &path).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.listed(prefix, true).await
    }

    /// Without the objects' hashes (`sha256` empty): no attribute read per object, and no
    /// hash text held for each (the history catalog lists every event log on each scan).
    async fn list_shallow(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.listed(prefix, false).await
    }

    /// One blocking walk in key order ([`walk_in_order`]) on the blocking pool, handing over
    /// [`LIST_PAGE`] objects at a time and at most two pages ahead of the reader.
    fn list_shallow_pages<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<Vec<ObjectMeta>>> {
        let start = match self.walk_start(prefix) {
            Ok(start) => start,
            Err(e) => return Box::pin(futures::stream::once(async { Err(e) })),
        };
        let (root, want, url) = (self.root.clone(), prefix.to_string(), self.url.clone());
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<ObjectMeta>>>(2);
        let walked = futures::stream::once(async move {
            let task = tokio::task::spawn_blocking(move || {
                let mut page = Vec::with_capacity(LIST_PAGE);
                let walked = walk_in_order(&root, &start, &want, &mut |m| {
                    page.push(m);
                    page.len() < LIST_PAGE
                        || tx
                            .blocking_send(Ok(std::mem::replace(
                                &mut page,
                                Vec::with_capacity(LIST_PAGE),
                            )))
                            .is_ok()
                });
                // the reader gone: nothing more to say
                let _ = match walked {
                    Ok(()) if page.is_empty() => Ok(()),
                    Ok(()) => tx.blocking_send(Ok(page)),
                    Err(e) => tx.blocking_send(Err(e)),
                };
            });
            let pages = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|page| (page, rx))
            });
            // a walk that died ends the listing in an error, never in a short listing
            let died = futures::stream::once(async move {
                task.await.err().map(|e| {
                    Err(StoreError::Other {
                        url,
                        message: format!("list task failed: {e}"),
                    })
                })
            })
            .filter_map(futures::future::ready);
            pages.chain(died)
        })
        .flatten();
        Box::pin(walked)
    }

    async fn check(&self) -> Result<()> {
        let tmp = self.root.join(RESERVED).join("tmp");
        let md = fs::metadata(&tmp).await.map_err(|source| StoreError::Io {
            url: self.url.clone(),
            source,
        })?;
        if md.permissions().readonly() {
            return Err(StoreError::Io {
                url: self.url.clone(),
                source: std::io::Error::new(
                    ErrorKind::PermissionDenied,
                    "store directory is read-only",
                ),
            });
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(key)(e)),
        }
        // drop directories the delete emptied, up to the root
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

/// Every object under `start` whose key starts with `prefix`, sorted by key; with its hash
/// (read from its attribute) when `digests`, else with an empty one, and the places of those
/// whose attribute is missing. Each object is held once, as it will be returned.
fn walk(
    root: &Path,
    start: &Path,
    prefix: &str,
    digests: bool,
) -> Result<(Vec<ObjectMeta>, Vec<usize>)> {
    let mut out = Vec::new();
    walk_in_order(root, start, prefix, &mut |m| {
        out.push(m);
        true
    })?;
    let mut unhashed = Vec::new();
    if digests {
        for (i, m) in out.iter_mut().enumerate() {
            match read_sha_xattr(&root.join(&m.key)) {
                Some(sha) => m.sha256 = sha,
                None => unhashed.push(i),
            }
        }
    }
    Ok((out, unhashed))
}

/// A directory being walked: its path, its key prefix, its entries still to visit (sorted,
/// the next one last: a directory's name ends in `/`, a file's names its size and time in
/// `files`) and the sizes and times of its files (read beside the directory entry, never
/// through a link). Each entry is small: a directory of 100,000 logs holds 100,000 of them.
struct Walking {
    dir: PathBuf,
    base: String,
    entries: Vec<(CompactString, u32)>,
    files: Vec<(u64, DateTime<Utc>)>,
}

/// Hands every object under `start` whose key starts with `prefix` to `each` (without its
/// hash), in key order, as the walk meets it: only the names of the directory being walked
/// are held, never the whole listing. Stops early when `each` returns false.
///
/// Key order comes from walking each directory's entries sorted by the text they put in a
/// key (a directory's name followed by `/`): all keys below one entry share that text as a
/// prefix, so they sort together and in the entries' order.
fn walk_in_order(
    root: &Path,
    start: &Path,
    prefix: &str,
    each: &mut dyn FnMut(ObjectMeta) -> bool,
) -> Result<()> {
    let io = |p: &Path| {
        let url = format!("file://{}", p.display());
        move |source| StoreError::Io { url, source }
    };
    let rel_of = |dir: &Path| -> Option<String> {
        let rel = dir.strip_prefix(root).ok()?.to_str()?;
        Some(if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        })
    };
    // the directories still being walked, the innermost last
    let mut stack: Vec<Walking> = Vec::new();
    let open = |dir: &Path, stack: &mut Vec<Walking>| -> Result<()> {
        let Some(base) = rel_of(dir) else {
            return Ok(());
        };
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(dir)(e)),
        };
        let (mut entries, mut files) = (Vec::new(), Vec::new());
        for entry in rd {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let key = format!("{base}{name}");
            if key == RESERVED {
                continue;
            }
            let ft = entry.file_type().map_err(io(&entry.path()))?;
            if ft.is_dir() {
                let as_dir = format!("{key}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    entries.push((format!("{name}/").into(), u32::MAX));
                }
            } else if ft.is_file() && key.starts_with(prefix) {
                let md = match entry.metadata() {
                    Ok(md) if md.is_file() => md,
                    // deleted (or replaced) while listing
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&entry.path())(e)),
                };
                let Ok(at) = u32::try_from(files.len()) else {
                    continue;
                };
                files.push((md.len(), mtime(&md)));
                entries.push((name.into(), at));
            }
        }
        // reversed: the first in key order is popped first
        entries.sort_unstable_by(|a: &(CompactString, u32), b| b.0.cmp(&a.0));
        stack.push(Walking {
            dir: dir.to_path_buf(),
            base,
            entries,
            files,
        });
        Ok(())
    };
    open(start, &mut stack)?;
    while let Some(w) = stack.last_mut() {
        let Some((name, at)) = w.entries.pop() else {
            stack.pop();
            continue;
        };
        match w.files.get(at as usize) {
            Some(&(size, last_modified)) => {
                let meta = ObjectMeta {
                    key: format!("{}{name}", w.base),
                    size,
                    sha256: String::new(),
                    last_modified,
                };
                if !each(meta) {
                    return Ok(());
                }
            }
            None => {
                let sub = w.dir.join(name.trim_end_matches('/'));
                open(&sub, &mut stack)?;
            }
        }
    }
    Ok(())
}

fn read_sha_xattr(path: &Path) -> Option<String> {
    valid_sha(xattr::get(path, SHA_XATTR).ok()??)
}

fn valid_sha(v: Vec<u8>) -> Option<String> {
    let s = String::from_utf8(v).ok()?;
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

/// Deletes a temp file unless disarmed (its `Option` taken) after the rename.
#[derive(Debug)]
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn mtime(md: &std::fs::Metadata) -> DateTime<Utc> {
    md.modified()
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now())
}

/// Deletes the temp files in `tmp` older than `min_age`.
fn sweep(tmp: &Path, min_age: Duration) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    let now = SystemTime::now();
    for e in rd.flatten() {
        let old = min_age.is_zero()
            || e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > min_age);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
