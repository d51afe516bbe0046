//! Where an incoming object's bytes go while they arrive, before it is published under its
//! key: on a local store, a temp file of the store itself (common's
//! [`FileStore::begin_write`](sidecars_common::objstore::FileStore::begin_write)), so that
//! publishing is a rename and no byte is written twice; on S3, a file in the local spool
//! directory, streamed into the store by its put once complete. Either way the writer gets a
//! plain file to write and flush from its own thread, and whatever is not published is
//! removed when the [`Spooled`] is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sidecars_common::objstore::{LocalWrite, ObjectMeta, ObjectStore, StoreError};

/// An object being received.
#[derive(Debug)]
pub struct Spooled {
    target: Target,
    /// Whether publishing flushes to disk first (local stores; see `--no-fsync`).
    fsync: bool,
}

#[derive(Debug)]
enum Target {
    Local(LocalWrite),
    Remote(RemoveOnDrop),
}

/// A spool file removed when dropped.
#[derive(Debug)]
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Spooled {
    /// A new object for `objects`: in the store itself when it is local, else under
    /// `spool_dir`. Returns it and a handle of the file to write (blocking).
    pub fn create(
        objects: &Arc<dyn ObjectStore>,
        spool_dir: &Path,
        fsync: bool,
    ) -> Result<(Spooled, std::fs::File), StoreError> {
        if let Some(fs) = objects.as_file_store() {
            let mut w = fs.begin_write()?;
            let file = w.file().try_clone().map_err(|source| StoreError::Io {
                url: objects.url().to_string(),
                source,
            })?;
            return Ok((
                Spooled {
                    target: Target::Local(w),
                    fsync,
                },
                file,
            ));
        }
        let path = spool_dir.join(uuid::Uuid::new_v4().to_string());
        let file = std::fs::File::create(&path).map_err(|source| StoreError::Io {
            url: format!("file://{}", path.display()),
            source,
        })?;
        Ok((
            Spooled {
                target: Target::Remote(RemoveOnDrop(path)),
                fsync,
            },
            file,
        ))
    }

    /// Whether the writer should flush the file to disk as it goes: when the file itself
    /// becomes the stored object (a local store, with fsync). On S3 the put is what makes it
    /// durable.
    pub fn flush_while_writing(&self) -> bool {
        self.fsync && matches!(self.target, Target::Local(_))
    }

    /// Publishes the finished file as `key`, whose bytes hash to `sha256` (computed while they
    /// were written). On S3 the store's own hash of what it received must agree.
    pub async fn publish(
        self,
        objects: &Arc<dyn ObjectStore>,
        key: &str,
        sha256: &str,
    ) -> Result<(), StoreError> {
        match self.target {
            Target::Local(w) => {
                let (store, k, sha, fsync) = (
                    objects.clone(),
                    key.to_string(),
                    sha256.to_string(),
                    self.fsync,
                );
                tokio::task::spawn_blocking(move || match store.as_file_store() {
                    Some(fs) => fs.commit(w, &k, &sha, fsync),
                    None => Err(StoreError::Other {
                        url: store.url().to_string(),
                        message: "the store stopped being local".into(),
                    }),
                })
                .await
                .map_err(|e| StoreError::Other {
                    url: objects.object_url(key),
                    message: format!("publish task failed: {e}"),
                })?
            }
            Target::Remote(spool) => {
                let file =
                    tokio::fs::File::open(&spool.0)
                        .await
                        .map_err(|source| StoreError::Io {
                            url: format!("file://{}", spool.0.display()),
                            source,
                        })?;
                let put: ObjectMeta = objects.put(key, Box::pin(file)).await?;
                if !put.sha256.is_empty() && put.sha256 != sha256 {
                    // the bytes changed between receiving and storing them
                    let _ = objects.delete(key).await;
                    return Err(StoreError::Other {
                        url: objects.object_url(key),
                        message: format!(
                            "stored with sha256 {}, but it had {sha256} when it was received",
                            put.sha256
                        ),
                    });
                }
                Ok(())
            }
        }
    }
}
