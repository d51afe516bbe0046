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

/// The bundle store on top of an object store.
#[derive(Clone, Debug)]
pub struct Bundles {
    pub objects: Arc<dyn ObjectStore>,
}

impl Bundles {
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self { objects }
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

    /// Publishes an upload whose files were extracted under `files_dir` and whose archive is
    /// `archive`: every object first, `meta.json` last.
    pub async fn publish(
        &self,
        mut meta: BundleMeta,
        archive: &Path,
        files_dir: &Path,
    ) -> Result<BundleMeta, Error> {
        let id = meta.resource_id.clone();
        let result = async {
            for f in &mut meta.files {
                let path = files_dir.join(&f.name);
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|source| Error::Local {
                        path: path.clone(),
                        source,
                    })?;
                let put = self
                    .objects
                    .put(&file_key(&id, &f.name), Box::pin(file))
                    .await?;
                f.sha256 = put.sha256;
                f.size = put.size;
            }
            let file = tokio::fs::File::open(archive)
                .await
                .map_err(|source| Error::Local {
                    path: archive.to_path_buf(),
                    source,
                })?;
            let put = self.objects.put(&bundle_key(&id), Box::pin(file)).await?;
            meta.bundle_sha256 = put.sha256;
            meta.bundle_size = put.size;
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
