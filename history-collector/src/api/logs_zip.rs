//! `/applications/{id}[/{attemptId}]/logs`: the event log files of an application as one
//! zip, laid out as Spark's History Server lays it out (`EventLogFileReader.zipEventLogFiles`):
//! a single-file log is one entry named like the file; a rolling log is a directory entry
//! `eventlog_v2_<id>/` followed by every file of that directory (event files and the
//! `appstatus_` marker; Hadoop's hidden `.crc` checksum files are not listed).
//!
//! The files are read from where the catalog found the log: a local event-log directory
//! (listed and opened as the catalog does, never through a link), or the object store (a
//! file still growing is read as its stored parts, as one stream).
//! The zip is streamed: a blocking task deflates file after file into a channel that feeds
//! the response body, so a large log is never held in memory.

use std::io::{self, Read, Write};

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::Entry;
use crate::eventlog::Origin;

/// One zip entry: its name, and where it is read from (`None` for a directory entry): the
/// log's origin and the path relative to its event-log directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipItem {
    pub name: String,
    pub file: Option<(Origin, String)>,
}

/// Spark hides Hadoop's checksum files (`.<name>.crc`) when it lists a log directory.
fn is_checksum(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".crc")
}

/// The names of the files in the rolling directory `dir` of `origin`, sorted.
async fn rolling_files(origin: &Origin, dir: &str) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = match origin {
        // the one scanner: regular files Spark named, no link followed
        Origin::Dir(d) => crate::eventlog::scan_dir(d)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", d.display())))?
            .into_iter()
            .filter_map(|f| {
                let name = f.name.rel.strip_prefix(dir)?.strip_prefix('/')?;
                Some(name.to_string())
            })
            .collect(),
        Origin::Store { at, log } => at
            .store
            .list_files(log)
            .await
            .map_err(|e| io::Error::other(format!("{}: {e}", origin.uri())))?
            .into_iter()
            .filter_map(|f| {
                let name = f.rel.strip_prefix(dir)?.strip_prefix('/')?;
                (!name.contains('/')).then(|| name.to_string())
            })
            .collect(),
    };
    names.retain(|n| !is_checksum(n));
    names.sort();
    Ok(names)
}

/// The entries for one attempt's log, listed now (a rolling log may have rolled since the
/// last scan).
pub async fn items(e: &Entry) -> io::Result<Vec<ZipItem>> {
    let src = &e.source;
    if src.files.is_empty() {
        return Ok(Vec::new());
    }
    if !src.name.starts_with("eventlog_v2_") {
        return Ok(vec![ZipItem {
            name: src.name.to_string(),
            file: Some((src.origin.clone(), src.name.to_string())),
        }]);
    }
    let names = rolling_files(&src.origin, &src.name).await?;
    let mut out = vec![ZipItem {
        name: format!("{}/", src.name),
        file: None,
    }];
    out.extend(names.into_iter().map(|n| {
        let rel = format!("{}/{n}", src.name);
        ZipItem {
            name: rel.clone(),
            file: Some((src.origin.clone(), rel)),
        }
    }));
    Ok(out)
}

/// Sends what is written to it as body chunks.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(64 << 10),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 << 10 {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

fn write_zip(items: &[ZipItem], out: ChannelWriter) -> io::Result<()> {
    let mut zip = zip::ZipWriter::new_stream(out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for it in items {
        match &it.file {
            None => zip.add_directory(it.name.trim_end_matches('/'), opts),
            Some((origin, rel)) => {
                let mut f = origin.open(rel)?;
                zip.start_file(it.name.as_str(), opts)
                    .map_err(io::Error::other)?;
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    zip.write_all(&buf[..n])?;
                }
                Ok(())
            }
        }
        .map_err(|e| io::Error::other(e.to_string()))?;
    }
    let mut w = zip.finish().map_err(io::Error::other)?;
    w.flush()
}

/// The response: `attempts` are the attempts to include (all of the application's, or the
/// one asked for), `file_name` what Spark names the download.
pub async fn response(
    attempts: &[std::sync::Arc<Entry>],
    app_id: &str,
    file_name: String,
) -> Response {
    let mut all = Vec::new();
    for e in attempts {
        match items(e).await {
            Ok(v) => all.extend(v),
            Err(err) => {
                tracing::warn!(app = %app_id, error = %err, "cannot list event log files");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Event logs are not available for app: {app_id}."),
                )
                    .into_response();
            }
        }
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let app = app_id.to_string();
    tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(64 << 10),
        };
        if let Err(e) = write_zip(&all, w) {
            tracing::warn!(app = %app, error = %e, "event log zip failed");
            // a failed body tells the client the download is incomplete
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename={file_name}"),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
