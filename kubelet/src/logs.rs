//! Container logs: written as the CRI runtimes write them, read back the way the API server's
//! `pods/log` asks the kubelet for them.
//!
//! Each run of a container ("attempt") gets its own file, `<pod>/logs/<container>/<n>.log`,
//! one line per output line: `<RFC 3339 nano time> <stdout|stderr> <F|P> <text>` (`P` marks a
//! piece of a line longer than 16 KiB; the next piece continues it). Readers get `follow`
//! (until the attempt ends), `previous` (the attempt before the last), `sinceTime`/
//! `sinceSeconds`, `timestamps`, `tailLines` and `limitBytes`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Longest line piece written as one record.
const MAX_PIECE: usize = 16 * 1024;

/// (namespace, pod, container)
pub type LogKey = (String, String, String);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    bytes: u64,
    done: bool,
}

struct Attempt {
    path: PathBuf,
    progress: watch::Receiver<Progress>,
}

/// Every container log of one node.
#[derive(Default, Clone)]
pub struct LogHub {
    inner: Arc<Mutex<HashMap<LogKey, Vec<Attempt>>>>,
}

/// What a reader asks for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since: Option<Timestamp>,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<u64>,
}

impl LogHub {
    /// Starts a new attempt's log at `path`, copying `stdout` and `stderr` into it until both
    /// close. The returned handle resolves when everything is written.
    pub fn capture(
        &self,
        key: LogKey,
        path: PathBuf,
        stdout: impl AsyncRead + Unpin + Send + 'static,
        stderr: impl AsyncRead + Unpin + Send + 'static,
    ) -> Result<tokio::task::JoinHandle<()>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let (tx_progress, rx_progress) = watch::channel(Progress::default());
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .push(Attempt {
                path,
                progress: rx_progress,
            });
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        tokio::spawn(read_stream(stdout, "stdout", tx.clone()));
        tokio::spawn(read_stream(stderr, "stderr", tx));
        Ok(tokio::spawn(async move {
            let mut file = tokio::fs::File::from_std(file);
            let mut bytes = 0u64;
            while let Some(record) = rx.recv().await {
                if let Err(e) = file.write_all(&record).await {
                    tracing::warn!(error = %e, "writing a container log");
                    break;
                }
                bytes += record.len() as u64;
                let _ = file.flush().await;
                tx_progress.send_replace(Progress { bytes, done: false });
            }
            let _ = file.flush().await;
            tx_progress.send_replace(Progress { bytes, done: true });
        }))
    }

    /// Forgets a pod's logs (its files go with the pod's directory).
    pub fn forget_pod(&self, namespace: &str, pod: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(ns, p, _), _| !(ns == namespace && p == pod));
    }

    /// Streams a container's log as `kubectl logs` shows it.
    pub fn read(&self, key: &LogKey, q: LogQuery) -> Result<mpsc::Receiver<Bytes>> {
        let (path, mut progress) = {
            let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let Some(attempts) = map.get(key) else {
                bail!(
                    "container {:?} in pod {}/{} has no log (it has not started)",
                    key.2,
                    key.0,
                    key.1
                );
            };
            let idx = if q.previous {
                if attempts.len() < 2 {
                    bail!(
                        "previous terminated container {:?} in pod {:?} not found",
                        key.2,
                        key.1
                    );
                }
                attempts.len() - 2
            } else {
                attempts.len() - 1
            };
            (attempts[idx].path.clone(), attempts[idx].progress.clone())
        };
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            if let Err(e) = stream_file(&path, &mut progress, q, &tx).await {
                tracing::debug!(error = %e, path = %path.display(), "log stream ended");
            }
        });
        Ok(rx)
    }
}

async fn read_stream(
    mut r: impl AsyncRead + Unpin,
    stream: &'static str,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if tx.send(record(stream, true, &line)).await.is_err() {
                    return;
                }
                line.clear();
            } else {
                line.push(b);
                if line.len() >= MAX_PIECE {
                    if tx.send(record(stream, false, &line)).await.is_err() {
                        return;
                    }
                    line.clear();
                }
            }
        }
    }
    if !line.is_empty() {
        let _ = tx.send(record(stream, true, &line)).await;
    }
}

fn record(stream: &str, full: bool, text: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{} {stream} {} ",
        Timestamp::now(),
        if full { 'F' } else { 'P' }
    )
    .into_bytes();
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// One parsed record: time, the text to show (with its newline when the line is complete).
struct Record<'a> {
    time: &'a str,
    text: Vec<u8>,
}

fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let mut text = parts.next().unwrap_or_default().to_vec();
    if tag == b"F" {
        text.push(b'\n');
    }
    Some(Record { time, text })
}

fn render(r: &Record<'_>, timestamps: bool) -> Vec<u8> {
    if timestamps {
        let mut out = format!("{} ", r.time).into_bytes();
        out.extend_from_slice(&r.text);
        out
    } else {
        r.text.clone()
    }
}

async fn stream_file(
    path: &Path,
    progress: &mut watch::Receiver<Progress>,
    q: LogQuery,
    tx: &mpsc::Sender<Bytes>,
) -> Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut sent = 0u64;
    let keep = |r: &Record<'_>| match &q.since {
        Some(since) => r
            .time
            .parse::<Timestamp>()
            .map(|t| t >= *since)
            .unwrap_or(true),
        None => true,
    };
    let mut send = |chunk: Vec<u8>| -> Option<Bytes> {
        let mut chunk = chunk;
        if let Some(limit) = q.limit_bytes {
            if sent >= limit {
                return None;
            }
            chunk.truncate((limit - sent) as usize);
        }
        sent += chunk.len() as u64;
        Some(Bytes::from(chunk))
    };

    // what is there now, with tailLines applied
    let mut pending = Vec::new();
    file.read_to_end(&mut pending).await?;
    let mut offset = pending.len() as u64;
    let complete = pending
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let mut tail: VecDeque<Vec<u8>> = VecDeque::new();
    for line in pending[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        if let Some(r) = parse(line).filter(|r| keep(r)) {
            tail.push_back(render(&r, q.timestamps));
            if q.tail_lines.is_some_and(|n| tail.len() > n) {
                tail.pop_front();
            }
        }
    }
    let mut rest = pending[complete..].to_vec();
    for chunk in tail {
        match send(chunk) {
            Some(b) => {
                if tx.send(b).await.is_err() {
                    return Ok(());
                }
            }
            None => return Ok(()),
        }
    }
    if !q.follow {
        return Ok(());
    }
    loop {
        let p = *progress.borrow_and_update();
        if p.bytes > offset {
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            let mut more = Vec::new();
            (&mut file)
                .take(p.bytes - offset)
                .read_to_end(&mut more)
                .await?;
            offset += more.len() as u64;
            rest.extend_from_slice(&more);
            let complete = rest.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let lines: Vec<u8> = rest.drain(..complete).collect();
            for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if let Some(r) = parse(line).filter(|r| keep(r)) {
                    match send(render(&r, q.timestamps)) {
                        Some(b) => {
                            if tx.send(b).await.is_err() {
                                return Ok(());
                            }
                        }
                        None => return Ok(()),
                    }
                }
            }
            continue;
        }
        if p.done {
            return Ok(());
        }
        tokio::select! {
            changed = progress.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = tx.closed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(mut rx: mpsc::Receiver<Bytes>) -> String {
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn capture_then_read_with_options() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LogHub::default();
        let key: LogKey = ("ns".into(), "p".into(), "c".into());
        let (mut w_out, r_out) = tokio::io::duplex(1024);
        let (w_err, r_err) = tokio::io::duplex(1024);
        let done = hub
            .capture(key.clone(), dir.path().join("0.log"), r_out, r_err)
            .unwrap();
        // a follower started before the output
        let follower = hub
            .read(
                &key,
                LogQuery {
                    follow: true,
                    ..Default::default()
                },
            )
            .unwrap();
        w_out
            .write_all(b"one\ntwo\nthree\nno newline")
            .await
            .unwrap();
        drop(w_out);
        drop(w_err);
        done.await.unwrap();
        assert_eq!(collect(follower).await, "one\ntwo\nthree\nno newline\n");
        let tail = hub
            .read(
                &key,
                LogQuery {
                    tail_lines: Some(2),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(collect(tail).await, "three\nno newline\n");
        let limited = hub
            .read(
                &key,
                LogQuery {
                    limit_bytes: Some(5),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(collect(limited).await, "one\nt");
        let stamped = collect(
            hub.read(
                &key,
                LogQuery {
                    timestamps: true,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
        .await;
        let first = stamped.lines().next().unwrap();
        let (ts, text) = first.split_once(' ').unwrap();
        assert!(ts.parse::<Timestamp>().is_ok(), "{first}");
        assert_eq!(text, "one");
        let future = Timestamp::now() + std::time::Duration::from_secs(60);
        let none = hub
            .read(
                &key,
                LogQuery {
                    since: Some(future),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(collect(none).await, "");
        assert!(hub
            .read(
                &key,
                LogQuery {
                    previous: true,
                    ..Default::default()
                }
            )
            .is_err());
    }

    #[tokio::test]
    async fn long_lines_are_split_and_joined() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LogHub::default();
        let key: LogKey = ("ns".into(), "p".into(), "c".into());
        let long = "x".repeat(40_000);
        let (mut w, r) = tokio::io::duplex(1 << 20);
        let (_w2, r2) = tokio::io::duplex(16);
        let done = hub
            .capture(key.clone(), dir.path().join("0.log"), r, r2)
            .unwrap();
        w.write_all(format!("{long}\n").as_bytes()).await.unwrap();
        drop(w);
        drop(_w2);
        done.await.unwrap();
        assert_eq!(
            collect(hub.read(&key, LogQuery::default()).unwrap()).await,
            format!("{long}\n")
        );
    }
}
