//! Where bundles live: the object store (local disk or S3), with this layout per bundle:
//!
//! ```text
//! bundles/<id>/bundle.tar.gz    the bytes exactly as uploaded (the v0 download)
//! bundles/<id>/meta.json        owner, hashes of secret and token, times, sha256s, file list
//! bundles/<id>/files/<name>     every file of the bundle on its own, materialised lazily
//! ```
//!
//! An upload writes its bytes once: the archive is stored (and, by default, flushed to disk)
//! while it is checked and every file's size and sha256 are recorded in `meta.json`, and only
//! then is the upload acknowledged. The per-file objects the per-file URLs serve (fast ranged
//! reads; a tar.gz cannot be seeked into) are *materialised* from the archive afterwards: in
//! the background right after the upload is acknowledged, and on demand when a file is
//! requested before its object exists. One extraction runs per bundle at a time, however many
//! requests wait for it (each waits only until its own file is out); every file object is
//! written atomically through the object store and checked against the sha256 recorded at
//! upload, so a damaged archive gives an error naming the bundle and file, never wrong bytes.
//! Nothing lives only in memory: after a restart, a file whose object is missing is simply
//! materialised again when it is first requested; this works the same on S3.
//!
//! `meta.json` is written last and deleted first, so a bundle is visible exactly when its
//! archive is; objects without a `meta.json` are leftovers of an upload that died (or of a
//! materialisation that raced a cleanup), and the cleaner removes them after a grace period.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sidecars_common::objstore::{self, FileStore, ObjectStore, StoreError};

use crate::bundle::{self, BundleError, FileEntry};
use crate::spool::Spooled;

/// Who a bundle belongs to, exactly as the original client sent it; also who claimed a
/// WebHDFS upload (the pods of one Spark application, by its `spark-app-selector` label, or
/// one pod by name).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub owner_namespace: String,
    #[serde(default)]
    pub owner_labels: std::collections::BTreeMap<String, String>,
    #[serde(default = "pod")]
    pub owner_type: String,
    /// A single pod's name (our extension; the original protocol only has labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
}

fn pod() -> String {
    "Pod".into()
}

/// Everything known about one bundle; persisted as `meta.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleMeta {
    pub version: u32,
    pub resource_id: String,
    pub owner: Owner,
    pub secret_sha256: String,
    pub token_sha256: String,
    pub created: DateTime<Utc>,
    pub first_access: Option<DateTime<Utc>>,
    pub last_access: Option<DateTime<Utc>>,
    pub bundle_size: u64,
    pub bundle_sha256: String,
    pub files: Vec<FileEntry>,
}

impl BundleMeta {
    pub fn stored_bytes(&self) -> u64 {
        self.bundle_size + self.files.iter().map(|f| f.size).sum::<u64>()
    }
}

pub fn prefix(id: &str) -> String {
    format!("bundles/{id}/")
}
pub fn meta_key(id: &str) -> String {
    format!("bundles/{id}/meta.json")
}
pub fn bundle_key(id: &str) -> String {
    format!("bundles/{id}/bundle.tar.gz")
}
pub fn file_key(id: &str, name: &str) -> String {
    format!("bundles/{id}/files/{name}")
}

/// Bundle ids are UUIDs; anything else is unknown (and can never reach the store as a key).
pub fn valid_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok() && id.len() == 36
}

/// Errors of the bundle store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no bundle with id {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("metadata of bundle {id} is unreadable: {message}")]
    BadMeta { id: String, message: String },
    #[error("bundle {id}: cannot materialise file `{file}` from its archive: {message}")]
    Materialise {
        id: String,
        file: String,
        message: String,
    },
    #[error("bundle {id}: cannot extract its files: {message}")]
    Extract { id: String, message: String },
    #[error("cannot read {path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How far one materialisation of a bundle has got: `done` files of `meta.files` (in archive
/// order) are in the store, and `outcome` is set once it has ended.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub done: usize,
    pub outcome: Option<Result<(), String>>,
}

/// The bundle store on top of an object store.
#[derive(Clone, Debug)]
pub struct Bundles {
    pub objects: Arc<dyn ObjectStore>,
    /// Whether the store is local disk: uploads are then written in place and published by
    /// rename, and archives and files are read from disk directly (tests turn it off to take
    /// the generic path on a local store).
    local: bool,
    /// Whether uploads are flushed to disk before they are acknowledged.
    fsync: bool,
    /// The materialisations running now, by bundle id (single flight per bundle).
    inflight: Arc<Mutex<HashMap<String, watch::Receiver<Progress>>>>,
    /// How many materialisations have run (a metric; tests use it to see single flight).
    pub materialisations: Counter,
}

impl Bundles {
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        let local = objects.as_file_store().is_some();
        Self {
            objects,
            local,
            fsync: true,
            inflight: Default::default(),
            materialisations: Counter::default(),
        }
    }

    /// With `fsync` false, an upload is acknowledged once it is in the page cache: a killed
    /// process still never exposes half a bundle, but a machine crash may lose recent ones.
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Whether uploads are flushed to disk before they are acknowledged.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// Where the object `key` lives on a local store, for readers that bypass the generic
    /// streaming (downloads, which read it in budgeted chunks); `None` on S3.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        if !self.local {
            return None;
        }
        self.objects.as_file_store()?.object_path(key).ok()
    }

    pub async fn meta(&self, id: &str) -> Result<BundleMeta, Error> {
        if !valid_id(id) {
            return Err(Error::NotFound(id.into()));
        }
        let bytes = match objstore::get_bytes(&*self.objects, &meta_key(id)).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => return Err(Error::NotFound(id.into())),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::BadMeta {
            id: id.into(),
            message: e.to_string(),
        })
    }

    pub async fn write_meta(&self, meta: &BundleMeta) -> Result<(), Error> {
        let body = serde_json::to_vec_pretty(meta).map_err(|e| Error::BadMeta {
            id: meta.resource_id.clone(),
            message: e.to_string(),
        })?;
        objstore::put_bytes(&*self.objects, &meta_key(&meta.resource_id), body.into()).await?;
        Ok(())
    }

    /// Publishes an upload whose archive was received into `archive`, and whose size and
    /// sha256, and its files', `meta` already holds: the archive first, `meta.json` last. The
    /// per-file objects are not written here (see [`Self::materialise`]).
    pub async fn publish(&self, meta: BundleMeta, archive: Spooled) -> Result<BundleMeta, Error> {
        let id = meta.resource_id.clone();
        let result = async {
            archive
                .publish(&self.objects, &bundle_key(&id), &meta.bundle_sha256)
                .await?;
            self.write_meta(&meta).await
        }
        .await;
        if let Err(e) = result {
            self.delete_objects(&id).await;
            return Err(e);
        }
        Ok(meta)
    }

    /// Makes sure the object of `meta.files[index]` is in the store, materialising it from the
    /// archive if it is not (joining the bundle's running materialisation if there is one).
    pub async fn ensure_file(&self, meta: &BundleMeta, index: usize) -> Result<(), Error> {
        let id = &meta.resource_id;
        let Some(file) = meta.files.get(index) else {
            return Err(Error::NotFound(format!("{id} file #{index}")));
        };
        let key = file_key(id, &file.name);
        match self.objects.head(&key).await {
            Ok(o) if o.size == file.size => return Ok(()),
            // cut short (a crash after an unflushed materialisation): extracted again
            Ok(o) => {
                tracing::warn!(bundle = %id, file = %file.name, size = o.size, expected = file.size, "file object has the wrong size; extracting it again");
                self.objects.delete(&key).await?;
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let failed = |message: String| Error::Materialise {
            id: id.clone(),
            file: file.name.clone(),
            message,
        };
        let mut rx = self.materialise(meta.clone(), false);
        let progress = rx
            .wait_for(|p| p.done > index || p.outcome.is_some())
            .await
            .map_err(|_| failed("the extraction task ended without an answer".into()))?
            .clone();
        if progress.done > index {
            return Ok(());
        }
        match progress.outcome {
            Some(Err(message)) => Err(failed(message)),
            _ => Err(failed("the extraction ended before this file".into())),
        }
    }

    /// Starts extracting the missing file objects of a bundle from its archive, unless that
    /// is already running; either way returns the running extraction's progress. The
    /// extraction runs on its own thread, so it finishes even if nobody waits for it; with
    /// `background` (nobody waits yet: right after an upload) that thread runs at a lower
    /// priority, so the requests being served meanwhile keep the CPU.
    pub fn materialise(&self, meta: BundleMeta, background: bool) -> watch::Receiver<Progress> {
        let id = meta.resource_id.clone();
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = inflight.get(&id) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(Progress::default());
        inflight.insert(id.clone(), rx.clone());
        drop(inflight);
        self.materialisations.inc();
        let this = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let outcome = this.extract_files(&meta, &tx, background).await;
            match &outcome {
                Ok(()) => {
                    tracing::info!(bundle = %id, files = meta.files.len(), elapsed = ?started.elapsed(), "bundle files materialised")
                }
                Err(e) => {
                    tracing::error!(bundle = %id, error = %e, "cannot materialise bundle files")
                }
            }
            // Leave the map before answering: a request coming after this finds the objects,
            // or (after a failure) starts a new attempt.
            this.inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            let outcome = outcome.map_err(|e| match e {
                Error::Extract { message, .. } => message,
                other => other.to_string(),
            });
            tx.send_modify(|p| p.outcome = Some(outcome));
            // A cleanup that deleted the bundle meanwhile may have missed objects written
            // after its listing.
            if let Err(Error::NotFound(_)) = this.meta(&id).await {
                this.delete_objects(&id).await;
            }
        });
        rx
    }

    /// One pass over the archive, storing every file object not in the store yet.
    async fn extract_files(
        &self,
        meta: &BundleMeta,
        tx: &watch::Sender<Progress>,
        background: bool,
    ) -> Result<(), Error> {
        let id = meta.resource_id.clone();
        let present: HashSet<String> = self
            .objects
            .list(&format!("{}files/", prefix(&id)))
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        if meta
            .files
            .iter()
            .all(|f| present.contains(&file_key(&id, &f.name)))
        {
            tx.send_modify(|p| p.done = meta.files.len());
            return Ok(());
        }
        let handle = tokio::runtime::Handle::current();
        let archive: Box<dyn std::io::Read + Send> = match self.local_path(&bundle_key(&id)) {
            Some(path) => {
                let file = std::fs::File::open(&path).map_err(|source| Error::Local {
                    path: path.clone(),
                    source,
                })?;
                Box::new(file)
            }
            None => Box::new(objstore::BlockingReader::new(
                handle.clone(),
                self.objects.get(&bundle_key(&id), None).await?.body,
            )),
        };
        let (objects, meta, tx) = (self.objects.clone(), meta.clone(), tx.clone());
        let local = self.local.then_some(self.fsync);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let failed = |message: String| Error::Extract {
            id: id.clone(),
            message,
        };
        std::thread::Builder::new()
            .name("materialise".into())
            .spawn(move || {
                if background {
                    lower_priority();
                }
                let r = extract_blocking(&objects, local, &meta, &present, archive, &handle, &tx);
                let _ = done_tx.send(r);
            })
            .map_err(|e| failed(format!("cannot start the extraction thread: {e}")))?;
        done_rx
            .await
            .map_err(|_| failed("the extraction thread died".into()))?
    }

    /// Deletes a bundle: `meta.json` first, so it disappears at once, then the rest.
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        self.objects.delete(&meta_key(id)).await?;
        self.delete_objects(id).await;
        Ok(())
    }

    async fn delete_objects(&self, id: &str) {
        match self.objects.list(&prefix(id)).await {
            Ok(objs) => {
                for o in objs {
                    if let Err(e) = self.objects.delete(&o.key).await {
                        tracing::warn!(error = %e, key = %o.key, "cannot delete object");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, bundle = id, "cannot list bundle objects"),
        }
    }
}

/// The blocking half of a materialisation: walks the archive with the upload's rules, checks
/// each entry against the manifest (same name, size and order), and stores each missing file
/// while hashing it. A file whose bytes do not hash to the recorded sha256 never appears in
/// the store, so wrong bytes are never served.
///
/// On a local store (`local`: whether to fsync, as for uploads) each file is written straight
/// into place through common's in-place writes (temp file, sha256 attribute, fsync, rename),
/// read and hashed once; elsewhere it is streamed through the object store's put.
fn extract_blocking(
    objects: &Arc<dyn ObjectStore>,
    local: Option<bool>,
    meta: &BundleMeta,
    present: &HashSet<String>,
    archive: Box<dyn std::io::Read + Send>,
    handle: &tokio::runtime::Handle,
    tx: &watch::Sender<Progress>,
) -> Result<(), Error> {
    let id = &meta.resource_id;
    // the archive was checked against the configured limits at upload; here it only has to
    // match its manifest
    let limits = bundle::Limits::unbounded_shape(
        meta.files.len() as u64,
        meta.files.iter().map(|f| f.size).sum(),
    );
    let mut index = 0usize;
    let mut buf = vec![0u8; bundle::COPY_BUF];
    let input = std::io::BufReader::with_capacity(bundle::COPY_BUF, archive);
    let walked = bundle::walk(input, limits, &mut |name, size, entry| {
        let corrupt = |reason: String| BundleError::BadEntry {
            name: name.to_string(),
            reason,
        };
        let expected = meta
            .files
            .get(index)
            .ok_or_else(|| corrupt("not in the bundle's manifest".into()))?;
        if expected.name != name || expected.size != size {
            return Err(corrupt(format!(
                "{size} bytes where the manifest has `{}` ({} bytes)",
                expected.name, expected.size
            )));
        }
        index += 1;
        let key = file_key(id, name);
        if !present.contains(&key) {
            match local.zip(objects.as_file_store()) {
                Some((fsync, fs)) => store_local(fs, fsync, &key, entry, &mut buf, expected)?,
                None => store_remote(objects, handle, &key, entry, &mut buf, expected)?,
            }
        }
        tx.send_modify(|p| p.done = index);
        Ok(Some((expected.size, expected.sha256.clone())))
    });
    let fail = |message: String| Error::Extract {
        id: id.clone(),
        message,
    };
    walked.map_err(|e| fail(format!("{}: {e}", bundle_key(id))))?;
    if index != meta.files.len() {
        return Err(fail(format!(
            "{} holds {index} files, but the manifest lists {}",
            bundle_key(id),
            meta.files.len()
        )));
    }
    Ok(())
}

/// Why the bytes read for `expected` are not the ones recorded at upload, if they are not.
fn mismatch(expected: &FileEntry, n: u64, sha256: &str) -> Option<BundleError> {
    (n != expected.size || sha256 != expected.sha256).then(|| BundleError::BadEntry {
        name: expected.name.clone(),
        reason: format!(
            "{n} bytes with sha256 {sha256}, but it had {} bytes with sha256 {} at upload",
            expected.size, expected.sha256
        ),
    })
}

/// Writes one file object of a local store in place through common's `FileStore` (temp file,
/// sha256 attribute, fsync, rename), with the one hash taken while extracting.
fn store_local(
    fs: &FileStore,
    fsync: bool,
    key: &str,
    entry: &mut dyn std::io::Read,
    buf: &mut [u8],
    expected: &FileEntry,
) -> Result<(), BundleError> {
    use std::io::Write;
    let failed = |e: StoreError| BundleError::Write {
        path: PathBuf::from(fs.object_url(key)),
        source: std::io::Error::other(e.to_string()),
    };
    let mut w = fs.begin_write().map_err(failed)?;
    let (n, sha256) = {
        let file = w.file();
        bundle::hash_copy(entry, buf, &mut |b| file.write_all(b)).map_err(|e| match e {
            bundle::WriteError::Read(e) => BundleError::BadEntry {
                name: bundle::shown_name(expected.name.as_bytes()),
                reason: e.to_string(),
            },
            bundle::WriteError::Write(source) => BundleError::Write {
                path: PathBuf::from(fs.object_url(key)),
                source,
            },
        })?
    };
    if let Some(e) = mismatch(expected, n, &sha256) {
        return Err(e);
    }
    fs.commit(w, key, &sha256, fsync).map_err(failed)
}

/// Streams one file object into the store through its put (S3), hashing it on the way; a
/// mismatch fails the put before the object appears.
fn store_remote(
    objects: &Arc<dyn ObjectStore>,
    handle: &tokio::runtime::Handle,
    key: &str,
    entry: &mut dyn std::io::Read,
    buf: &mut [u8],
    expected: &FileEntry,
) -> Result<(), BundleError> {
    use sha2::Digest;
    let (ctx, mut crx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let body =
        tokio_util::io::StreamReader::new(futures::stream::poll_fn(move |cx| crx.poll_recv(cx)));
    let put = {
        let (objects, key) = (objects.clone(), key.to_string());
        handle.spawn(async move { objects.put(&key, Box::pin(body)).await })
    };
    let mut hasher = sha2::Sha256::new();
    let mut n = 0u64;
    let mut failure = None;
    loop {
        let got = match entry.read(buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                failure = Some(BundleError::BadEntry {
                    name: expected.name.clone(),
                    reason: e.to_string(),
                });
                break;
            }
        };
        hasher.update(&buf[..got]);
        n += got as u64;
        if ctx
            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..got])))
            .is_err()
        {
            break; // the put failed; its error is the answer
        }
    }
    let sha256 = hex::encode(hasher.finalize());
    if failure.is_none() {
        failure = mismatch(expected, n, &sha256);
    }
    if let Some(f) = failure {
        // fails the put, so the object never appears
        let _ = ctx.blocking_send(Err(std::io::Error::other(f.to_string())));
        drop(ctx);
        let _ = handle.block_on(put);
        return Err(f);
    }
    drop(ctx);
    let url = PathBuf::from(objects.object_url(key));
    let stored = handle
        .block_on(put)
        .map_err(|e| std::io::Error::other(format!("store task failed: {e}")))
        .and_then(|r| r.map_err(std::io::Error::other))
        .map_err(|source| BundleError::Write {
            path: url.clone(),
            source,
        })?;
    if !stored.sha256.is_empty() && stored.sha256 != sha256 {
        return Err(BundleError::Write {
            path: url,
            source: std::io::Error::other(format!(
                "stored with sha256 {}, but {sha256} was sent",
                stored.sha256
            )),
        });
    }
    Ok(())
}

/// Lowers the priority of the calling thread (a background extraction's own thread), so
/// uploads and downloads win the CPU over it. Best effort.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's id; no memory is passed.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn meta(id: &str, files: &[(&str, &str)], bundle_sha: &str) -> BundleMeta {
        BundleMeta {
            version: 1,
            resource_id: id.into(),
            owner: Owner {
                owner_namespace: "ns".into(),
                owner_labels: Default::default(),
                owner_type: "Pod".into(),
                owner_name: None,
            },
            secret_sha256: String::new(),
            token_sha256: String::new(),
            created: Utc::now(),
            first_access: None,
            last_access: None,
            bundle_size: 3,
            bundle_sha256: bundle_sha.into(),
            files: files
                .iter()
                .map(|(name, sha)| FileEntry {
                    name: (*name).into(),
                    size: 1,
                    sha256: (*sha).into(),
                })
                .collect(),
        }
    }

    /// A local store seen as a remote one (no in-place writes), for the S3 code paths.
    #[derive(Debug)]
    struct NotLocal(Arc<FileStore>);

    #[async_trait::async_trait]
    impl ObjectStore for NotLocal {
        fn url(&self) -> &str {
            self.0.url()
        }
        async fn put(
            &self,
            key: &str,
            body: objstore::Reader,
        ) -> objstore::Result<objstore::ObjectMeta> {
            self.0.put(key, body).await
        }
        async fn get(
            &self,
            key: &str,
            range: Option<std::ops::Range<u64>>,
        ) -> objstore::Result<objstore::GetResult> {
            self.0.get(key, range).await
        }
        async fn head(&self, key: &str) -> objstore::Result<objstore::ObjectMeta> {
            self.0.head(key).await
        }
        async fn list(&self, prefix: &str) -> objstore::Result<Vec<objstore::ObjectMeta>> {
            self.0.list(prefix).await
        }
        async fn delete(&self, key: &str) -> objstore::Result<()> {
            self.0.delete(key).await
        }
    }

    fn spooled(objects: &Arc<dyn ObjectStore>, dir: &Path, data: &[u8]) -> Spooled {
        use std::io::Write;
        std::fs::create_dir_all(dir).unwrap();
        let (s, mut f) = Spooled::create(objects, dir, true).unwrap();
        f.write_all(data).unwrap();
        s
    }

    /// The sha256 recorded at upload is what the store serves: a deliberately wrong one here
    /// proves the store kept it instead of hashing the archive again, so the bytes were
    /// written once, in place, and published by rename. No file object is written at
    /// publication, and no temp file is left.
    #[tokio::test]
    async fn published_archive_keeps_the_recorded_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::new(dir.path().join("store")).unwrap());
        let objects: Arc<dyn ObjectStore> = store.clone();
        let bundles = Bundles::new(objects.clone());
        assert!(bundles.local);
        let id = uuid::Uuid::new_v4().to_string();
        let archive = spooled(&objects, &dir.path().join("spool"), b"tgz");
        let (fake1, fake3) = ("1".repeat(64), "3".repeat(64));
        let m = meta(&id, &[("jars/a.jar", &fake1)], &fake3);
        bundles.publish(m, archive).await.unwrap();
        assert_eq!(store.head(&bundle_key(&id)).await.unwrap().sha256, fake3);
        assert!(store.head(&file_key(&id, "jars/a.jar")).await.is_err());
        assert_eq!(bundles.meta(&id).await.unwrap().files.len(), 1);
        let tmp = dir.path().join("store/.sidecars/tmp");
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "temp file left"
        );
        assert!(!dir.path().join("spool").read_dir().unwrap().any(|_| true));
        bundles.delete(&id).await.unwrap();
        assert!(!dir.path().join("store/bundles").join(&id).exists());
    }

    /// Through the spool and the store's put (the S3 path): an archive whose bytes no longer
    /// match the sha256 taken at upload is refused and leaves nothing behind; the spool file
    /// goes either way.
    #[tokio::test]
    async fn put_archive_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::new(dir.path().join("store")).unwrap());
        let objects: Arc<dyn ObjectStore> = Arc::new(NotLocal(store.clone()));
        let bundles = Bundles::new(objects.clone());
        assert!(!bundles.local);
        let spool = dir.path().join("spool");
        let id = uuid::Uuid::new_v4().to_string();
        let x = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";
        let tgz = "93c6d5b5b0a6b5d2d2d4d0e6b5b0c0d7f2b9b3d5a6f0e1c2b3a4d5e6f7a8b9c0";
        let err = bundles
            .publish(
                meta(&id, &[("a", x)], tgz),
                spooled(&objects, &spool, b"tgz"),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bundle.tar.gz"), "{err}");
        assert!(store.list("bundles/").await.unwrap().is_empty());
        let good = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"tgz"));
        bundles
            .publish(
                meta(&id, &[("a", x)], &good),
                spooled(&objects, &spool, b"tgz"),
            )
            .await
            .unwrap();
        assert_eq!(store.head(&bundle_key(&id)).await.unwrap().sha256, good);
        assert_eq!(
            std::fs::read_dir(&spool).unwrap().count(),
            0,
            "spool file left"
        );
    }

    /// Materialisation through the generic (S3) path: the archive is read through the store,
    /// every file object appears with the recorded sha256, and a file whose bytes differ from
    /// the manifest is refused without its object ever appearing.
    #[tokio::test]
    async fn materialises_through_the_store_and_checks_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::new(dir.path().join("store")).unwrap());
        let mut bundles = Bundles::new(store.clone());
        bundles.local = false;
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a"), b"alpha").unwrap();
        std::fs::write(src.join("b"), vec![7u8; 3 << 20]).unwrap();
        let files = vec![
            ("jars/a.jar".to_string(), src.join("a")),
            ("b.bin".to_string(), src.join("b")),
        ];
        let tgz = bundle::create(Vec::new(), &files, 1).unwrap();
        let listed =
            bundle::validate(&tgz[..], bundle::Limits::unbounded_shape(10, 1 << 30)).unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        let mut m = meta(&id, &[], "");
        m.files = listed.clone();
        m.bundle_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&tgz));
        objstore::put_bytes(&*store, &bundle_key(&id), tgz.into())
            .await
            .unwrap();
        bundles.write_meta(&m).await.unwrap();
        bundles.ensure_file(&m, 1).await.unwrap();
        for f in &listed {
            let got = store.head(&file_key(&id, &f.name)).await.unwrap();
            assert_eq!((got.size, &got.sha256), (f.size, &f.sha256));
        }
        // a manifest that disagrees with the archive (as a damaged archive would)
        store.delete(&file_key(&id, "b.bin")).await.unwrap();
        m.files[1].sha256 = "0".repeat(64);
        let err = bundles.ensure_file(&m, 1).await.unwrap_err().to_string();
        assert!(err.contains(&id) && err.contains("b.bin"), "{err}");
        assert!(store.head(&file_key(&id, "b.bin")).await.is_err());
        assert_eq!(bundles.materialisations.get(), 2);
    }
}
