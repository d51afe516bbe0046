//! Where bundles live: the object store (local disk or S3), with this layout per bundle:
//!
//! ```text
//! bundles/<id>/bundle.tar.gz    the bytes exactly as uploaded (the v0 download)
//! bundles/<id>/files/<name>     every file of the bundle, stored individually
//! bundles/<id>/meta.json        owner, hashes of secret and token, times, sha256s, file list
//! ```
//!
//! Each file is also stored on its own, at the cost of keeping the bytes twice, because the
//! per-file URLs Spark fetches need fast ranged reads and a tar.gz cannot be seeked into:
//! serving `files/<name>` is one ranged object read, on disk or S3, with no decompression and
//! no per-request CPU. `meta.json` is written last and deleted first, so a bundle is visible
//! exactly when all its objects are; objects without a `meta.json` are leftovers of an upload
//! that died, and the cleaner removes them after a grace period. Nothing lives only in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sidecars_common::objstore::{self, ObjectStore, StoreError};

use crate::bundle::FileEntry;

/// Who a bundle belongs to, exactly as the original client sent it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub owner_namespace: String,
    #[serde(default)]
    pub owner_labels: std::collections::BTreeMap<String, String>,
    #[serde(default = "pod")]
    pub owner_type: String,
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
    #[error("cannot read {path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The extended attribute in which common's `FileStore` keeps an object's sha256. A file
/// renamed into a local store with this attribute set is served without being read again; one
/// without it would be hashed on its first read. (The name must match `objstore::file`; the
/// `adopted_files_keep_the_recorded_sha256` test fails if the two drift apart.)
const SHA_XATTR: &str = "user.sidecars.sha256";

/// The bundle store on top of an object store.
#[derive(Clone, Debug)]
pub struct Bundles {
    pub objects: Arc<dyn ObjectStore>,
    /// The directory of a `file://` store: finished uploads are renamed into it instead of
    /// being copied.
    local_root: Option<PathBuf>,
    /// Whether uploads are flushed to disk before they are acknowledged.
    fsync: bool,
}

impl Bundles {
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        let local_root = objects
            .url()
            .strip_prefix("file://")
            .filter(|p| p.starts_with('/'))
            .map(PathBuf::from);
        Self {
            objects,
            local_root,
            fsync: true,
        }
    }

    /// With `fsync` false, an upload is acknowledged once it is in the page cache: a killed
    /// process still never exposes half a bundle, but a machine crash may lose recent ones.
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
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

    /// Publishes an upload spooled in `spool` (`bundle.tar.gz`, the archive as uploaded, and
    /// `files/`, its extracted files), whose sizes and sha256s `meta` already holds: every
    /// object first, `meta.json` last.
    ///
    /// On a local store on the same filesystem as the spool, the spool directory is renamed
    /// into place whole, so no byte is copied or hashed again; elsewhere (S3, another
    /// filesystem) each file is streamed into the store, and the store's sha256 must agree
    /// with the one computed at upload.
    pub async fn publish(&self, meta: BundleMeta, spool: &Path) -> Result<BundleMeta, Error> {
        let id = meta.resource_id.clone();
        let result = async {
            let adopted = match &self.local_root {
                Some(root) => {
                    let (root, dir, m, fsync) =
                        (root.clone(), spool.to_path_buf(), meta.clone(), self.fsync);
                    tokio::task::spawn_blocking(move || adopt(&root, &dir, &m, fsync))
                        .await
                        .map_err(|e| Error::Local {
                            path: spool.to_path_buf(),
                            source: std::io::Error::other(format!("publish task failed: {e}")),
                        })??
                }
                None => false,
            };
            if !adopted {
                self.copy_in(&meta, spool).await?;
            }
            self.write_meta(&meta).await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = result {
            self.delete_objects(&id).await;
            return Err(e);
        }
        Ok(meta)
    }

    /// Streams the spooled objects into the store one by one.
    async fn copy_in(&self, meta: &BundleMeta, spool: &Path) -> Result<(), Error> {
        let id = &meta.resource_id;
        let objects = meta
            .files
            .iter()
            .map(|f| {
                (
                    spool.join("files").join(&f.name),
                    file_key(id, &f.name),
                    &f.sha256,
                )
            })
            .chain(std::iter::once((
                spool.join("bundle.tar.gz"),
                bundle_key(id),
                &meta.bundle_sha256,
            )));
        for (path, key, sha256) in objects {
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|source| Error::Local {
                    path: path.clone(),
                    source,
                })?;
            let put = self.objects.put(&key, Box::pin(file)).await?;
            if &put.sha256 != sha256 {
                return Err(Error::Local {
                    path,
                    source: std::io::Error::other(format!(
                        "stored as {} with sha256 {}, but it had {sha256} when it was received",
                        self.objects.object_url(&key),
                        put.sha256
                    )),
                });
            }
        }
        Ok(())
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

/// Moves a spooled upload into the local store rooted at `root` by renaming its directory to
/// `bundles/<id>`, after recording each file's sha256 where the store looks for it and, with
/// `fsync`, flushing every file and directory. `Ok(false)`: the store is on another
/// filesystem, nothing was moved, and the caller copies instead.
fn adopt(root: &Path, spool: &Path, meta: &BundleMeta, fsync: bool) -> Result<bool, Error> {
    let id = &meta.resource_id;
    let local = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Local { path, source }
    };
    let files_dir = spool.join("files");
    let objects = meta
        .files
        .iter()
        .map(|f| {
            objstore::validate_key(&file_key(id, &f.name))?;
            Ok((files_dir.join(&f.name), &f.sha256))
        })
        .chain(std::iter::once(Ok((
            spool.join("bundle.tar.gz"),
            &meta.bundle_sha256,
        ))))
        .collect::<Result<Vec<_>, StoreError>>()?;
    for (path, sha256) in &objects {
        let file = std::fs::File::open(path).map_err(local(path))?;
        {
            use xattr::FileExt;
            // Without xattr support the store falls back to hashing on first read.
            let _ = file.set_xattr(SHA_XATTR, sha256.as_bytes());
        }
        if fsync {
            file.sync_all().map_err(local(path))?;
        }
    }
    if meta.files.is_empty() {
        // an empty `files/` would outlive the bundle: deletes only prune emptied directories
        let _ = std::fs::remove_dir(&files_dir);
    } else if fsync {
        sync_dirs(&files_dir)?;
    }
    let parent = root.join("bundles");
    std::fs::create_dir_all(&parent).map_err(local(&parent))?;
    let dest = parent.join(id);
    match std::fs::rename(spool, &dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => return Ok(false),
        Err(source) => {
            return Err(Error::Local {
                path: dest,
                source: std::io::Error::new(
                    source.kind(),
                    format!("cannot move {} here: {source}", spool.display()),
                ),
            })
        }
    }
    if fsync {
        for d in [&dest, &parent] {
            std::fs::File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(local(d))?;
        }
    }
    Ok(true)
}

/// Flushes `dir` and every directory below it, so renamed-in entries survive a crash.
fn sync_dirs(dir: &Path) -> Result<(), Error> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let local = |source| Error::Local {
            path: d.clone(),
            source,
        };
        for entry in std::fs::read_dir(&d).map_err(local)? {
            let entry = entry.map_err(local)?;
            if entry.file_type().map_err(local)?.is_dir() {
                stack.push(entry.path());
            }
        }
        std::fs::File::open(&d)
            .and_then(|f| f.sync_all())
            .map_err(local)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecars_common::objstore::FileStore;

    fn meta(id: &str, files: &[(&str, &str)], bundle_sha: &str) -> BundleMeta {
        BundleMeta {
            version: 1,
            resource_id: id.into(),
            owner: Owner {
                owner_namespace: "ns".into(),
                owner_labels: Default::default(),
                owner_type: "Pod".into(),
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

    fn spool_with(dir: &Path, names: &[&str]) {
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(dir.join("bundle.tar.gz"), b"tgz").unwrap();
        for n in names {
            let p = dir.join("files").join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
    }

    /// The sha256s recorded at upload are what the store serves: deliberately wrong ones
    /// here prove the store read them instead of hashing the files (which it would do if the
    /// attribute name drifted from common's FileStore), and that the bytes were moved, not
    /// copied.
    #[tokio::test]
    async fn adopted_files_keep_the_recorded_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::new(dir.path().join("store")).unwrap());
        let bundles = Bundles::new(store.clone());
        assert!(bundles.local_root.is_some());
        let id = uuid::Uuid::new_v4().to_string();
        let spool = dir.path().join("spool").join(&id);
        spool_with(&spool, &["jars/a.jar", "b.txt"]);
        let (fake1, fake2, fake3) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
        let m = meta(&id, &[("jars/a.jar", &fake1), ("b.txt", &fake2)], &fake3);
        bundles.publish(m, &spool).await.unwrap();
        assert!(!spool.exists(), "spool was copied, not moved");
        let head = |k: String| {
            let s = store.clone();
            async move { s.head(&k).await.unwrap().sha256 }
        };
        assert_eq!(head(file_key(&id, "jars/a.jar")).await, fake1);
        assert_eq!(head(file_key(&id, "b.txt")).await, fake2);
        assert_eq!(head(bundle_key(&id)).await, fake3);
        assert_eq!(bundles.meta(&id).await.unwrap().files.len(), 2);
        bundles.delete(&id).await.unwrap();
        assert!(!dir.path().join("store/bundles").join(&id).exists());
    }

    /// Copying (the path for S3 and other filesystems) refuses a file whose bytes no longer
    /// match the sha256 taken at upload, and leaves nothing behind.
    #[tokio::test]
    async fn copied_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::new(dir.path().join("store")).unwrap());
        let mut bundles = Bundles::new(store.clone());
        bundles.local_root = None;
        let id = uuid::Uuid::new_v4().to_string();
        let spool = dir.path().join("spool").join(&id);
        spool_with(&spool, &["a"]);
        let x = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";
        let tgz = "93c6d5b5b0a6b5d2d2d4d0e6b5b0c0d7f2b9b3d5a6f0e1c2b3a4d5e6f7a8b9c0";
        let err = bundles
            .publish(meta(&id, &[("a", x)], tgz), &spool)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bundle.tar.gz"), "{err}");
        assert!(store.list("bundles/").await.unwrap().is_empty());
        let good = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"tgz"));
        bundles
            .publish(meta(&id, &[("a", x)], &good), &spool)
            .await
            .unwrap();
        assert_eq!(store.head(&file_key(&id, "a")).await.unwrap().sha256, x);
        assert!(spool.exists(), "copying leaves the spool to its owner");
    }
}
