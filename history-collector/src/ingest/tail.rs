//! Tails event-log directories: finds every file Spark writes there, decides how much of each
//! is a consistent prefix, and hands the new bytes to a [`Sink`] (the object store in the
//! collector, the gRPC stream in the agent). One poll is idempotent: after a restart the sink
//! says how much it already has, and copying resumes there.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::io::AsyncSeekExt;

use super::auth::Identity;
use super::cut::{self, CutError};
use super::layout::{eventlog_key, LogStore, Stored};
use super::owners::Owners;
use crate::logdir::admit::{self, Admission, AdmitMetrics, Ident, Limits};
use crate::logdir::names::{self, EventLogName};
use crate::logdir::open::Root;
use crate::logdir::scan;

/// Where tailed bytes go.
#[async_trait]
pub trait Sink: Send + Sync {
    /// How much of `rel` (in event log `log`) is durably stored.
    async fn stored(&self, log: &str, rel: &str) -> anyhow::Result<Stored>;
    /// Stores bytes `offset..offset+len` of `rel`, read from `file` (the open source file);
    /// with `complete`, the file will not change any more and `offset + len` is its size.
    async fn append(
        &self,
        log: &str,
        rel: &str,
        offset: u64,
        len: u64,
        file: File,
        complete: bool,
    ) -> anyhow::Result<()>;
    /// Drops the stored copy of `rel` (a superseded `.inprogress`, or a rewritten file).
    async fn remove(&self, log: &str, rel: &str) -> anyhow::Result<()>;
}

/// A sink that writes straight into the object store, as the owner
/// [`Identity::Directory`] (a log an agent owns is not written).
#[derive(Clone, Debug)]
pub struct StoreSink {
    store: LogStore,
    owners: Option<Arc<Owners>>,
}

impl StoreSink {
    /// `owners`: the ownership records to claim logs in (`None`: no owners are kept, for
    /// tests of the copying alone).
    pub fn new(store: LogStore, owners: Option<Arc<Owners>>) -> Self {
        StoreSink { store, owners }
    }

    async fn claim(&self, log: &str) -> anyhow::Result<()> {
        if let Some(o) = &self.owners {
            o.claim(log, &Identity::Directory).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for StoreSink {
    async fn stored(&self, log: &str, rel: &str) -> anyhow::Result<Stored> {
        self.claim(log).await?;
        Ok(self.store.stored(&eventlog_key(log, rel)).await?)
    }

    async fn append(
        &self,
        log: &str,
        rel: &str,
        offset: u64,
        len: u64,
        file: File,
        complete: bool,
    ) -> anyhow::Result<()> {
        self.claim(log).await?;
        let key = eventlog_key(log, rel);
        let mut f = tokio::fs::File::from_std(file);
        f.seek(std::io::SeekFrom::Start(offset)).await?;
        if complete && offset == 0 {
            self.store.put_complete(&key, len, Box::pin(f)).await?;
            return Ok(());
        }
        if len > 0 {
            self.store.append(&key, offset, len, Box::pin(f)).await?;
        }
        if complete {
            self.store.complete(&key).await?;
        }
        Ok(())
    }

    async fn remove(&self, log: &str, rel: &str) -> anyhow::Result<()> {
        self.claim(log).await?;
        Ok(self.store.remove(&eventlog_key(log, rel)).await?)
    }
}

/// Ingest counters, exported on `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct TailMetrics {
    pub bytes: Counter,
    pub files_completed: Counter,
    pub errors: Counter,
    /// Files refused before copying (see [`crate::logdir::admit`]).
    pub admit: AdmitMetrics,
}

impl TailMetrics {
    pub fn register(&self, registry: &mut Registry, prefix: &str) {
        registry.register(
            format!("{prefix}_bytes"),
            "Event-log bytes stored",
            self.bytes.clone(),
        );
        registry.register(
            format!("{prefix}_files_completed"),
            "Event-log files stored complete",
            self.files_completed.clone(),
        );
        registry.register(
            format!("{prefix}_errors"),
            "Event-log copy attempts that failed (retried on the next poll)",
            self.errors.clone(),
        );
        self.admit.register(registry, prefix);
    }
}

/// One source file found by a scan, with the directory it is opened from.
#[derive(Clone, Debug)]
struct Source {
    root: Arc<Root>,
    path: PathBuf,
    name: EventLogName,
    size: u64,
    ino: (u64, u64),
    modified_ms: i64,
    complete: bool,
}

#[derive(Debug)]
struct FileState {
    ino: (u64, u64),
    stored: u64,
    complete: bool,
    /// No newline exists in `stored..no_newline_to` (huge lines are scanned once).
    no_newline_to: u64,
    /// The last problem reported, so a stuck file logs once, not every poll.
    last_problem: Option<String>,
}

/// Tails a set of event-log directories into one sink.
pub struct Tailer<S> {
    dirs: Vec<PathBuf>,
    sink: Arc<S>,
    files: HashMap<PathBuf, FileState>,
    /// The last problem reported per file, so a stuck file logs once, not every poll.
    problems: HashMap<PathBuf, String>,
    metrics: TailMetrics,
    limits: Limits,
    admission: Admission,
}

impl<S: Sink + 'static> Tailer<S> {
    pub fn new(dirs: Vec<PathBuf>, sink: Arc<S>, metrics: TailMetrics, limits: Limits) -> Self {
        let admission = Admission::new("ingest", metrics.admit.clone());
        Self {
            dirs,
            sink,
            files: HashMap::new(),
            problems: HashMap::new(),
            metrics,
            limits,
            admission,
        }
    }

    /// One pass over every directory. Per-file problems are logged and retried next time.
    pub async fn poll_once(&mut self) {
        let dirs = self.dirs.clone();
        let found = match tokio::task::spawn_blocking(move || scan_all(&dirs)).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "event-log directory scan failed");
                return;
            }
        };
        let seen: HashSet<PathBuf> = found.iter().map(|s| s.path.clone()).collect();
        self.files.retain(|p, _| seen.contains(p));
        self.admission
            .retain(|k| seen.contains(std::path::Path::new(k)));
        for src in found {
            let path = src.path.clone();
            match self.process(src).await {
                Ok(()) => {
                    self.problems.remove(&path);
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    let msg = format!("{e:#}");
                    if self.problems.get(&path) != Some(&msg) {
                        tracing::warn!(path = %path.display(), error = %msg, "cannot copy event-log file yet; will retry");
                        self.problems.insert(path.clone(), msg);
                    }
                    // ask the sink again next time: what it holds may have changed
                    self.files.remove(&path);
                }
            }
        }
        self.problems.retain(|p, _| seen.contains(p));
    }

    async fn process(&mut self, src: Source) -> anyhow::Result<()> {
        let (log, rel) = (src.name.log.clone(), src.name.rel.clone());
        let rewritten = match self.files.get(&src.path) {
            Some(st) => st.ino != src.ino || src.size < st.stored,
            None => false,
        };
        if let Some(st) = self.files.get_mut(&src.path).filter(|_| !rewritten) {
            if st.complete {
                if st.stored != src.size && st.last_problem.is_none() {
                    let msg = format!(
                        "{} changed after it was stored complete ({} bytes stored, {} now); keeping the stored copy",
                        src.path.display(),
                        st.stored,
                        src.size
                    );
                    tracing::warn!("{msg}");
                    st.last_problem = Some(msg);
                }
                return Ok(());
            }
        }
        // the file is opened, and judged, before the sink hears of it: a refused file claims
        // nothing and stores nothing
        let file = match src.root.open_file(&src.name.rel) {
            Ok(f) => f,
            // renamed (`.inprogress` dropped) or deleted since the scan: the next scan sees it
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", src.path.display())),
        };
        let md = file.metadata()?;
        if (md.dev(), md.ino()) != src.ino {
            return Ok(());
        }
        let size = md.len().max(src.size);
        let ident = Ident {
            ino: src.ino,
            size,
            modified_ms: src.modified_ms,
        };
        let key = src.path.to_string_lossy().into_owned();
        let limits = self.limits;
        let growing = !src.complete;
        let admitted = self.admission.admit(&key, ident, |head_known| {
            admit::check_file(&file, &src.name, size, growing, head_known, &limits)
        });
        if !admitted {
            return Ok(());
        }
        if rewritten {
            tracing::warn!(path = %src.path.display(), "event-log file was replaced or truncated; copying it again");
            self.sink.remove(&log, &rel).await?;
            self.files.remove(&src.path);
        }
        if !self.files.contains_key(&src.path) {
            let stored = self
                .sink
                .stored(&log, &rel)
                .await
                .with_context(|| format!("asking what is stored of {rel}"))?;
            self.files.insert(
                src.path.clone(),
                FileState {
                    ino: src.ino,
                    stored: stored.len,
                    complete: stored.complete,
                    no_newline_to: 0,
                    last_problem: None,
                },
            );
        }
        let Some(st) = self.files.get_mut(&src.path) else {
            return Ok(());
        };
        if st.complete {
            return Ok(());
        }
        if size < st.stored {
            // a restart found less source than stored: a different file under the same name
            tracing::warn!(path = %src.path.display(), stored = st.stored, size, "source is shorter than the stored copy; copying it again");
            self.sink.remove(&log, &rel).await?;
            st.stored = 0;
        }
        let target = if src.complete {
            size
        } else {
            let (stored, codec) = (st.stored, src.name.codec);
            // compressed cuts must start on a unit boundary, which only `stored` is known to be
            let from = if codec.is_none() {
                st.no_newline_to.max(stored)
            } else {
                stored
            };
            let f2 = file.try_clone()?;
            let cut =
                tokio::task::spawn_blocking(move || cut::consistent_len(&f2, from, size, codec))
                    .await?;
            match cut {
                Ok(c) if c == from && codec.is_none() => {
                    st.no_newline_to = size;
                    stored
                }
                Ok(c) => c.max(stored),
                Err(CutError::Corrupt {
                    codec,
                    offset,
                    what,
                }) => {
                    // keep what is good; the whole file is copied as-is once it is complete
                    anyhow::bail!("{}: corrupt {codec:?} data at offset {offset} ({what}); holding the stored copy at {stored} bytes", src.path.display())
                }
                Err(CutError::Io(e)) => {
                    return Err(e).with_context(|| format!("reading {}", src.path.display()))
                }
            }
        };
        if target == st.stored && !src.complete {
            st.last_problem = None;
            return Ok(());
        }
        let offset = st.stored;
        self.sink
            .append(&log, &rel, offset, target - offset, file, src.complete)
            .await
            .with_context(|| format!("storing {} bytes {offset}..{target}", src.path.display()))?;
        self.metrics.bytes.inc_by(target - offset);
        st.stored = target;
        st.no_newline_to = target;
        st.last_problem = None;
        if src.complete {
            st.complete = true;
            self.metrics.files_completed.inc();
            tracing::info!(path = %src.path.display(), bytes = target, "event-log file stored complete");
            if let Some(old) = names::superseded(&src.name) {
                self.sink.remove(&log, &old).await?;
            }
        }
        Ok(())
    }
}

/// Every event-log file in `dirs` (see [`scan`]). Directories that cannot be read are
/// logged and skipped.
fn scan_all(dirs: &[PathBuf]) -> Vec<Source> {
    let mut out = Vec::new();
    for dir in dirs {
        let found = Root::open(dir).and_then(|root| Ok((scan::scan(&root)?, root)));
        match found {
            Ok((files, root)) => {
                let root = Arc::new(root);
                out.extend(files.into_iter().map(|f| Source {
                    root: root.clone(),
                    path: dir.join(&f.name.rel),
                    size: f.meta.size,
                    ino: f.meta.ino,
                    modified_ms: f.meta.modified_ms,
                    complete: f.complete,
                    name: f.name,
                }));
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list event-log directory")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const GOOD: &[u8] = b"{\"Event\":\"SparkListenerLogStart\"}\n";

    async fn setup() -> (tempfile::TempDir, tempfile::TempDir, LogStore) {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let store = sidecars_common::objstore::open(
            &format!("file://{}", dst.path().display()),
            &Default::default(),
        )
        .await
        .unwrap();
        (src, dst, LogStore::new(store))
    }

    /// A tailer of `src` into `ls` with default metrics and limits.
    fn tailer(src: &tempfile::TempDir, ls: &LogStore) -> Tailer<StoreSink> {
        Tailer::new(
            vec![src.path().to_path_buf()],
            Arc::new(StoreSink::new(ls.clone(), None)),
            TailMetrics::default(),
            Limits::default(),
        )
    }

    #[tokio::test]
    async fn single_file_lifecycle() {
        let (src, _dst, ls) = setup().await;
        let sink = Arc::new(StoreSink::new(ls.clone(), None));
        let mut t = Tailer::new(
            vec![src.path().to_path_buf()],
            sink.clone(),
            TailMetrics::default(),
            Limits::default(),
        );
        let ip = src.path().join("app-1.inprogress");
        let mut f = std::fs::File::create(&ip).unwrap();
        f.write_all(b"{\"Event\":\"SparkListenerLogStart\"}\n{\"Event\":\"half")
            .unwrap();
        t.poll_once().await;
        let key = eventlog_key("app-1", "app-1.inprogress");
        assert_eq!(
            &ls.read_all(&key).await.unwrap()[..],
            b"{\"Event\":\"SparkListenerLogStart\"}\n"
        );
        f.write_all(b"\"}\n").unwrap();
        t.poll_once().await;
        t.poll_once().await;
        let whole = std::fs::read(&ip).unwrap();
        assert_eq!(ls.read_all(&key).await.unwrap(), whole);
        // a restarted tailer resumes without duplicating
        let mut t2 = Tailer::new(
            vec![src.path().to_path_buf()],
            sink,
            TailMetrics::default(),
            Limits::default(),
        );
        f.write_all(b"{\"Event\":\"more\"}\n").unwrap();
        t2.poll_once().await;
        assert_eq!(
            ls.read_all(&key).await.unwrap(),
            std::fs::read(&ip).unwrap()
        );
        // the app ends: renamed; the final copy replaces the in-progress one
        std::fs::rename(&ip, src.path().join("app-1")).unwrap();
        t2.poll_once().await;
        assert_eq!(
            ls.read_all(&eventlog_key("app-1", "app-1")).await.unwrap(),
            std::fs::read(src.path().join("app-1")).unwrap()
        );
        let files = ls.list_files("app-1").await.unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].rel, "app-1");
    }

    #[tokio::test]
    async fn corrupt_and_vanishing_files_do_not_stop_others() {
        let (src, _dst, ls) = setup().await;
        let mut t = tailer(&src, &ls);
        std::fs::write(
            src.path().join("bad.zstd.inprogress"),
            b"this is not zstd at all",
        )
        .unwrap();
        std::fs::write(src.path().join("good"), GOOD).unwrap();
        std::fs::write(src.path().join("gone.inprogress"), GOOD).unwrap();
        t.poll_once().await;
        std::fs::remove_file(src.path().join("gone.inprogress")).unwrap();
        t.poll_once().await;
        assert_eq!(
            &ls.read_all(&eventlog_key("good", "good")).await.unwrap()[..],
            GOOD
        );
        // the stored copy of a vanished source is kept
        assert_eq!(
            &ls.read_all(&eventlog_key("gone", "gone.inprogress"))
                .await
                .unwrap()[..],
            GOOD
        );
        assert_eq!(
            ls.stored(&eventlog_key("bad", "bad.zstd.inprogress"))
                .await
                .unwrap()
                .len,
            0
        );
        // not a Spark log: refused, complete or not, and left alone until it changes
        std::fs::rename(
            src.path().join("bad.zstd.inprogress"),
            src.path().join("bad.zstd"),
        )
        .unwrap();
        t.poll_once().await;
        assert!(ls.list_files("bad").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn huge_lines_and_rewritten_files() {
        let (src, _dst, ls) = setup().await;
        let mut t = tailer(&src, &ls);
        let key = eventlog_key("app-h", "app-h.inprogress");
        let ip = src.path().join("app-h.inprogress");
        let mut f = std::fs::File::create(&ip).unwrap();
        f.write_all(b"{\"Event\":\"first\"}\n").unwrap();
        // a 6 MiB line written over several polls: nothing of it is stored until it ends
        let huge = format!("{{\"Event\":\"big\",\"x\":\"{}\"}}\n", "x".repeat(6 << 20));
        for piece in huge.as_bytes()[..huge.len() - 1].chunks(2 << 20) {
            f.write_all(piece).unwrap();
            t.poll_once().await;
            assert_eq!(
                &ls.read_all(&key).await.unwrap()[..],
                b"{\"Event\":\"first\"}\n"
            );
        }
        f.write_all(b"\n").unwrap();
        t.poll_once().await;
        assert_eq!(
            ls.read_all(&key).await.unwrap(),
            std::fs::read(&ip).unwrap()
        );

        // the file is truncated and rewritten in place, shorter: copied again from scratch
        drop(f);
        std::fs::write(&ip, b"{\"Event\":\"new\"}\n").unwrap();
        t.poll_once().await;
        assert_eq!(
            &ls.read_all(&key).await.unwrap()[..],
            b"{\"Event\":\"new\"}\n"
        );
        // replaced by another file (a new inode) under the same name: copied again
        let other = src.path().join("tmp-other");
        std::fs::write(&other, b"{\"Event\":\"replaced\"}\n{\"Event\":\"more\"}\n").unwrap();
        std::fs::rename(&other, &ip).unwrap();
        t.poll_once().await;
        assert_eq!(
            ls.read_all(&key).await.unwrap(),
            std::fs::read(&ip).unwrap()
        );
        // a restarted tailer (no memory of inodes) sees a shorter source than stored: recopies
        let mut t2 = tailer(&src, &ls);
        std::fs::write(&ip, GOOD).unwrap();
        t2.poll_once().await;
        assert_eq!(&ls.read_all(&key).await.unwrap()[..], GOOD);
    }
}
