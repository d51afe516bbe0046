//! `POST /api/v0/resources`: the upload, streamed through three stages at once (receiving,
//! writing and hashing the archive, checking it) so memory stays bounded and every byte is
//! written once.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::bundle::{self, BundleError};
use crate::metrics::Metrics;
use crate::secrets;
use crate::spool::Spooled;
use crate::store::{BundleMeta, Owner};

/// The v0 upload answer; exactly these two fields, because the original client's JSON
/// mapper refuses unknown ones.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IdAndSecret {
    resource_id: String,
    resource_secret: String,
}

/// Chunks of an upload as they arrived, handed between the receiving stages together.
pub(crate) type Chunks = Vec<Bytes>;

/// A blocking reader over chunks arriving on a channel, for the checking thread. It is a
/// `BufRead` over the chunks themselves, so the decoder reads them in place.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Chunks>,
    batch: std::vec::IntoIter<Bytes>,
    cur: Bytes,
}

impl std::io::BufRead for ChannelReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.cur.is_empty() {
            if let Some(b) = self.batch.next() {
                self.cur = b;
                continue;
            }
            match self.rx.blocking_recv() {
                Some(batch) => self.batch = batch.into_iter(),
                None => break,
            }
        }
        Ok(&self.cur)
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.cur.len());
        bytes::Buf::advance(&mut self.cur, amt);
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        let avail = self.fill_buf()?;
        let n = buf.len().min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

pub(super) async fn upload(
    State(app): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    // The v0 API has no credential (the original client sends none), so its uploads are
    // counted per client address.
    let client = peer
        .map(|Extension(ConnectInfo(p))| p.ip().to_string())
        .unwrap_or_default();
    if let Err(wait) = app.uploads.check(&format!("ip:{client}")) {
        app.metrics.upload_result("rate_limited");
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than {} uploads a minute from this address (--uploads-per-minute); retry in {wait} s",
                app.uploads.limit()
            ),
        )
        .into_response();
        if let Ok(v) = wait.to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(r);
    }
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > app.max_bundle_size.saturating_add(1 << 20) {
            app.metrics.upload_result("too_large");
            return Err(too_large(app.max_bundle_size));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let started = std::time::Instant::now();
    let mut owner: Option<Owner> = None;
    let mut received: Option<Received> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e, app.max_bundle_size, &app.metrics)),
        };
        match field.name() {
            Some("resources") => {
                if received.is_some() {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "more than one `resources` part",
                    ));
                }
                received = Some(receive_bundle(&app, field).await?);
            }
            Some("resourcesOwner") => {
                let text = field
                    .bytes()
                    .await
                    .map_err(|e| multipart_error(e, app.max_bundle_size, &app.metrics))?;
                if text.len() > 64 << 10 {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "`resourcesOwner` is larger than 64 KiB",
                    ));
                }
                // serde's messages quote the input; only the position is said
                let o: Owner = serde_json::from_slice(&text).map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "`resourcesOwner` is not valid owner JSON (line {}, column {})",
                            e.line(),
                            e.column()
                        ),
                    )
                })?;
                if o.owner_type != "Pod" {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "`resourcesOwner.ownerType` is `{}`; only `Pod` is supported",
                            crate::bundle::shown_name(o.owner_type.as_bytes())
                        ),
                    ));
                }
                if !crate::auth::valid_namespace(&o.owner_namespace) {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "`resourcesOwner.ownerNamespace` is not a valid Kubernetes namespace name",
                    ));
                }
                owner = Some(o);
            }
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                    "unexpected multipart part `{}` (expected `resources` and `resourcesOwner`)",
                    other.unwrap_or("")
                ),
                ))
            }
        }
    }
    let Some(received) = received else {
        app.metrics.upload_result("bad_request");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing multipart part `resources` (the tar.gz bundle)",
        ));
    };
    let Some(owner) = owner else {
        app.metrics.upload_result("bad_request");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing multipart part `resourcesOwner` (owner JSON)",
        ));
    };
    // the namespace is known only now (the original client sends the owner after the bundle)
    let stored = received.size + received.files.iter().map(|f| f.size).sum::<u64>();
    let ns = owner.owner_namespace.clone();
    if let Err(e) = app.usage.charge(&ns, stored) {
        app.metrics.upload_result("quota");
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()));
    }
    let secret = secrets::new_secret(&id);
    let (size, sha256, files) = (
        received.size,
        received.sha256.clone(),
        received.files.clone(),
    );
    let meta = BundleMeta {
        version: 1,
        resource_id: id.clone(),
        owner,
        secret_sha256: secrets::hash(&secret),
        token_sha256: secrets::hash(&secrets::token_for(&secret)),
        created: Utc::now(),
        first_access: None,
        last_access: None,
        bundle_size: size,
        bundle_sha256: sha256,
        files,
    };
    let received_in = started.elapsed();
    let meta = match app.bundles.publish(meta, received.archive).await {
        Ok(m) => {
            app.usage.settle(&ns, stored, stored);
            m
        }
        Err(e) => {
            app.usage.settle(&ns, stored, 0);
            return Err(e.into());
        }
    };
    let published_in = started.elapsed() - received_in;
    // The per-file objects are extracted after the answer, off the upload's critical path;
    // a request that comes first waits for (or starts) this same extraction.
    if !meta.files.is_empty() {
        drop(app.bundles.materialise(meta.clone(), true));
    }
    app.metrics.upload_result("ok");
    app.metrics.bundle_added(meta.stored_bytes());
    tracing::info!(bundle = %id, size = meta.bundle_size, files = meta.files.len(), namespace = %meta.owner.owner_namespace, ?received_in, ?published_in, "bundle stored");
    Ok((
        StatusCode::OK,
        Json(IdAndSecret {
            resource_id: id,
            resource_secret: secret,
        }),
    )
        .into_response())
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("bundle is larger than --max-bundle-size ({max} bytes)"),
    )
}

fn multipart_error(e: axum::extract::multipart::MultipartError, max: u64, m: &Metrics) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        m.upload_result("too_large");
        return too_large(max);
    }
    m.upload_result("bad_request");
    ApiError::new(
        e.status(),
        format!("malformed multipart upload: {}", e.body_text()),
    )
}

/// What was received of the `resources` part: the archive (to publish), its size and sha256,
/// and its files.
struct Received {
    archive: Spooled,
    size: u64,
    sha256: String,
    files: Vec<bundle::FileEntry>,
}

/// Streams the `resources` part into the spool while checking it, so a bad entry stops the
/// upload early and memory stays bounded whatever the size. Three stages run at once, joined
/// by short channels: this task reads the body; a thread writes and hashes the archive as
/// uploaded (`bundle.tar.gz`), flushing it to disk as it goes, and hands each
/// chunk on; another thread gunzips and checks it, hashing each file. Every byte is written
/// once (the per-file objects are materialised later, see `store`); the store then takes the
/// spool over by rename.
async fn receive_bundle(
    app: &AppState,
    mut field: axum::extract::multipart::Field<'_>,
) -> Result<Received, ApiError> {
    let (spooled, out) = Spooled::create(&app.bundles.objects, &app.spool, app.bundles.fsync())
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot spool the upload: {e}"),
            )
        })?;
    let archive_path = std::path::PathBuf::from("the received archive");
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunks>(8);
    let (etx, erx) = tokio::sync::mpsc::channel::<Chunks>(8);
    let limits = app.limits;
    let checker = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx: erx,
            batch: Vec::new().into_iter(),
            cur: Bytes::new(),
        };
        bundle::validate(reader, limits)
    });
    let ap = archive_path.clone();
    let sync = spooled.flush_while_writing();
    let archiver = tokio::task::spawn_blocking(move || archive(out, rx, Some(etx), &ap, sync));
    let mut total = 0u64;
    let mut failure = None;
    let mut pending: Chunks = Vec::new();
    let mut pending_len = 0;
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                failure = Some(multipart_error(e, app.max_bundle_size, &app.metrics));
                break;
            }
        };
        total += chunk.len() as u64;
        if total > app.max_bundle_size {
            app.metrics.upload_result("too_large");
            failure = Some(too_large(app.max_bundle_size));
            break;
        }
        // Network chunks are handed on in batches (one hand-off per 512 KiB instead of
        // per read keeps the threads' wake-ups off the profile), without a copy.
        pending_len += chunk.len();
        pending.push(chunk);
        if pending_len < HANDOFF {
            continue;
        }
        pending_len = 0;
        if tx.send(std::mem::take(&mut pending)).await.is_err() {
            // The archiver stopped early: the checker found a bad entry, or a write
            // failed. Their errors are the answer.
            break;
        }
    }
    if failure.is_none() && !pending.is_empty() {
        let _ = tx.send(pending).await;
    }
    drop(tx);
    let archived = archiver.await.unwrap_or_else(|e| {
        Err(std::io::Error::other(format!(
            "the archive writer failed: {e}"
        )))
    });
    let checked = checker.await.unwrap_or_else(|e| {
        Err(BundleError::Write {
            path: archive_path.clone(),
            source: std::io::Error::other(format!("the bundle checker failed: {e}")),
        })
    });
    if let Some(f) = failure {
        return Err(f);
    }
    if total == 0 {
        app.metrics.upload_result("bad_request");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the `resources` part is empty (expected a tar.gz bundle)",
        ));
    }
    let (size, sha256, files) = verdict(archived, checked, &archive_path).inspect_err(|e| {
        if e.0 == StatusCode::BAD_REQUEST {
            app.metrics.upload_result("bad_bundle");
        }
    })?;
    if size != total {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "spooled {size} of {total} bytes to {}",
                archive_path.display()
            ),
        ));
    }
    tracing::debug!(size, files = files.len(), "bundle received");
    Ok(Received {
        archive: spooled,
        size,
        sha256,
        files,
    })
}

/// The answer once the archive writer and the checker have both stopped. A write failure
/// comes first: it stops the writer, which ends the checker's input early, so the checker's
/// own error then (a truncated archive) would blame the client for the server's disk. Only
/// when the archive was written whole is a checker's error the bundle's fault (400), unless
/// it is one of its own writes (500).
fn verdict(
    archived: std::io::Result<(u64, String)>,
    checked: Result<Vec<bundle::FileEntry>, BundleError>,
    archive_path: &std::path::Path,
) -> Result<(u64, String, Vec<bundle::FileEntry>), ApiError> {
    let (size, sha256) = archived.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {}: {e}", archive_path.display()),
        )
    })?;
    let files = checked.map_err(|e| {
        let status = match e {
            BundleError::Write { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    })?;
    Ok((size, sha256, files))
}

/// How much of the upload is passed between the receiving stages at a time.
pub(crate) const HANDOFF: usize = 512 << 10;

/// How much of the archive is written between two `fdatasync`s of it while it arrives (with
/// fsync on). Flushing as it goes, rather than once at the end, keeps the disk (and its write
/// cache) busy during the upload; a single fsync of 1 GiB after the last byte took a second
/// here, during which nothing else happened.
const SYNC_STEP: u64 = 32 << 20;

/// The archive stage of [`receive_bundle`]: writes and hashes each chunk, then passes it to
/// the checker. Stops (dropping `rx`, which ends the upload) when the checker has. With
/// `sync`, a thread of its own flushes the file to disk every [`SYNC_STEP`] while writing and
/// hashing go on; a flush that fails fails the upload (the error is the file's, and a later
/// fsync of it may no longer report it).
pub(crate) fn archive(
    mut out: std::fs::File,
    mut rx: tokio::sync::mpsc::Receiver<Chunks>,
    etx: Option<tokio::sync::mpsc::Sender<Chunks>>,
    path: &std::path::Path,
    sync: bool,
) -> std::io::Result<(u64, String)> {
    use sha2::Digest;
    use std::io::Write;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut requested = 0u64;
    let (stx, srx) = std::sync::mpsc::channel::<()>();
    let flusher = match sync {
        true => Some(out.try_clone()?),
        false => None,
    };
    std::thread::scope(|scope| -> std::io::Result<()> {
        let flushing = flusher.as_ref().map(|f| {
            scope.spawn(move || -> std::io::Result<()> {
                // requests that queued up during a flush are all served by the next one
                while srx.recv().is_ok() {
                    while srx.try_recv().is_ok() {}
                    f.sync_data()?;
                }
                Ok(())
            })
        });
        let written = (|| {
            while let Some(chunks) = rx.blocking_recv() {
                write_all_vectored(&mut out, &chunks)?;
                size += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                // the checker works on these chunks while they are hashed here
                match &etx {
                    Some(etx) => {
                        let hashed = chunks.clone();
                        if etx.blocking_send(chunks).is_err() {
                            break;
                        }
                        for c in &hashed {
                            hasher.update(c);
                        }
                    }
                    None => {
                        for c in &chunks {
                            hasher.update(c);
                        }
                    }
                }
                if sync && size - requested >= SYNC_STEP {
                    // fails only once the flusher has stopped on an error, reported below
                    let _ = stx.send(());
                    requested = size;
                }
            }
            Ok(())
        })();
        drop(stx);
        let flushed = match flushing {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the flushing thread panicked"))),
            None => Ok(()),
        };
        written.and(flushed)
    })?;
    out.flush()?;
    tracing::trace!(path = %path.display(), size, "archive spooled");
    Ok((size, hex::encode(hasher.finalize())))
}

/// Writes every chunk, as few system calls as the kernel allows.
fn write_all_vectored(out: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut slices: Vec<IoSlice> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{archive, verdict, Chunks, SYNC_STEP};
    use crate::bundle::BundleError;
    use axum::http::StatusCode;
    use bytes::Bytes;
    use sha2::Digest;

    /// The archive stage, flushing as it goes: every chunk lands in the file in order, is
    /// handed on unchanged, and the sha256 is the whole upload's, over several flush steps.
    #[test]
    fn archive_writes_hashes_and_hands_on_while_flushing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.tar.gz");
        let chunk = |i: u64| Bytes::from(vec![i as u8; (1 << 20) + i as usize]);
        let n = ((2 * SYNC_STEP) >> 20) + 3;
        let expected: Vec<u8> = (0..n).flat_map(|i| chunk(i).to_vec()).collect();
        for sync in [true, false] {
            let out = std::fs::File::create(&path).unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel::<Chunks>(4);
            let (etx, mut erx) = tokio::sync::mpsc::channel::<Chunks>(4);
            let p = path.clone();
            let writer = std::thread::spawn(move || archive(out, rx, Some(etx), &p, sync));
            let checker = std::thread::spawn(move || {
                let mut seen = Vec::new();
                while let Some(chunks) = erx.blocking_recv() {
                    chunks.iter().for_each(|c| seen.extend_from_slice(c));
                }
                seen
            });
            for i in (0..n).step_by(2) {
                let batch = (i..(i + 2).min(n)).map(chunk).collect();
                tx.blocking_send(batch).unwrap();
            }
            drop(tx);
            let (size, sha) = writer.join().unwrap().unwrap();
            assert_eq!(size, expected.len() as u64);
            assert_eq!(sha, hex::encode(sha2::Sha256::digest(&expected)));
            assert!(checker.join().unwrap() == expected, "handed on as received");
            assert!(
                std::fs::read(&path).unwrap() == expected,
                "written as received"
            );
        }
    }

    /// A full disk is the server's failure (500, naming the write), not the bundle's, even
    /// though the checker, whose input the failed writer cut short, saw a truncated archive.
    #[test]
    fn a_failed_write_is_the_answer_not_the_truncated_check() {
        let path = std::path::Path::new("/dev/full");
        let out = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunks>(1);
        let (etx, _erx) = tokio::sync::mpsc::channel::<Chunks>(1);
        let writer = std::thread::spawn(move || archive(out, rx, Some(etx), path, false));
        let _ = tx.blocking_send(vec![Bytes::from_static(b"bytes")]);
        drop(tx);
        let archived = writer.join().unwrap();
        assert!(archived.is_err(), "writing to /dev/full fails");
        let truncated = Err(BundleError::Corrupt("unexpected end of file".into()));
        let e = verdict(archived, truncated, path).unwrap_err();
        assert_eq!(e.0, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.1.starts_with("cannot write /dev/full: "), "{}", e.1);

        let bad = Err(BundleError::BadEntry {
            name: "../x".into(),
            reason: "`..` component".into(),
        });
        let e = verdict(Ok((5, "sha".into())), bad, path).unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(e.1.contains("`../x`"), "{}", e.1);
    }
}
