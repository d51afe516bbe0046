//! The spill store: each task's final state is appended to an unlinked file as soon as it
//! ends, memory holds only the tasks still running plus, per stage attempt, the runs of
//! the file its records occupy. Readers decode one stage attempt at a time with positioned
//! reads, so serving is safe from many threads while the file stays where the kernel keeps
//! it (page cache or disk).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use foldhash::{HashMap, HashSet};

use super::codec::{self, Cursor, Names};
use super::record::{ExecStageSummary, TaskRec};

/// A task whose start was seen and whose end was not (yet).
#[derive(Debug)]
pub(super) struct LiveTask {
    pub stage: (i64, i64),
    pub rec: TaskRec,
}

/// Every task of one application attempt: records in a spill file, running tasks in memory.
#[derive(Debug, Default)]
pub struct TaskStore {
    writer: Option<BufWriter<File>>,
    file: Option<File>,
    written: u64,
    /// Per stage attempt: runs of consecutive records (file offset, count).
    runs: HashMap<(i64, i64), Vec<(u64, u32)>>,
    last: Option<(i64, i64)>,
    pub(super) live: HashMap<i64, LiveTask>,
    /// Executor ids, hosts and localities, interned (records hold their number).
    names: Names,
    /// Per (stage, attempt): executor id -> summary.
    pub exec_summaries: HashMap<(i64, i64), BTreeMap<String, ExecStageSummary>>,
    /// Stage attempts a task reported executor metrics for (Spark reports a stage's peaks
    /// only then).
    pub peak_set: HashSet<(i64, i64)>,
    /// The spill file could not be created or written: tasks are not served.
    pub failed: bool,
    /// The record being encoded (one buffer for all).
    scratch: Vec<u8>,
}

/// Where spill files go: `$HISTORY_COLLECTOR_CACHE_DIR`, else the system temp directory.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HISTORY_COLLECTOR_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn spill_file() -> std::io::Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = cache_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        ".hc-tasks-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // unlinked at once: the space goes back when the last handle closes, even on a crash
    std::fs::remove_file(&path)?;
    Ok(f)
}

impl TaskStore {
    /// Appends a task's final state to the spill file.
    pub(super) fn write(&mut self, stage: (i64, i64), rec: &TaskRec) {
        if self.failed {
            return;
        }
        if self.writer.is_none() {
            match spill_file().and_then(|f| Ok((f.try_clone()?, f))) {
                Ok((w, r)) => {
                    self.writer = Some(BufWriter::with_capacity(256 << 10, w));
                    self.file = Some(r);
                }
                Err(e) => {
                    tracing::warn!(dir = %cache_dir().display(), error = %e, "cannot create a task spill file: tasks will not be served");
                    self.failed = true;
                    return;
                }
            }
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        codec::encode(rec, &mut self.names, &mut buf);
        let len = buf.len() as u64;
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let wrote = w.write_all(&buf);
        self.scratch = buf;
        if let Err(e) = wrote {
            tracing::warn!(dir = %cache_dir().display(), error = %e, "cannot write the task spill file: tasks will not be served");
            self.failed = true;
            return;
        }
        let runs = self.runs.entry(stage).or_default();
        match runs.last_mut() {
            Some((_, n)) if self.last == Some(stage) && *n < u32::MAX => *n += 1,
            _ => runs.push((self.written, 1)),
        }
        self.last = Some(stage);
        self.written += len;
    }

    /// Ends the replay: tasks still running are written as they are (their duration runs up
    /// to `now_ms`, as Spark's does up to its last update), and the file is flushed.
    pub fn finish(&mut self, now_ms: i64) {
        let mut live: Vec<LiveTask> = self.live.drain().map(|(_, t)| t).collect();
        live.sort_by_key(|t| t.rec.task_id);
        for mut t in live {
            t.rec.duration = now_ms - t.rec.launch_time;
            self.write(t.stage, &t.rec);
        }
        if let Some(mut w) = self.writer.take() {
            if let Err(e) = w.flush() {
                tracing::warn!(error = %e, "cannot write the task spill file: tasks will not be served");
                self.failed = true;
            }
        }
    }

    /// How many tasks are running (held in memory).
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Number of tasks recorded for a stage attempt.
    pub fn count(&self, stage: (i64, i64)) -> usize {
        self.runs
            .get(&stage)
            .map_or(0, |r| r.iter().map(|(_, n)| *n as usize).sum())
    }

    /// Every task of a stage attempt, in the order they were recorded.
    pub fn stage_tasks(&self, stage: (i64, i64)) -> Vec<TaskRec> {
        let (Some(runs), Some(file)) = (self.runs.get(&stage), self.file.as_ref()) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(self.count(stage));
        let mut buf = Vec::new();
        for &(off, n) in runs {
            // records are small: read generously and grow if a record crosses the end
            let mut want = (n as usize).saturating_mul(512).max(4096);
            loop {
                let avail = self.written.saturating_sub(off) as usize;
                let len = want.min(avail);
                buf.resize(len, 0);
                if let Err(e) = file.read_at(&mut buf, off) {
                    tracing::warn!(error = %e, "cannot read the task spill file");
                    return out;
                }
                let mut c = Cursor::new(&buf);
                let mut got = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    match codec::decode(&mut c, &self.names) {
                        Some(r) => got.push(r),
                        None => break,
                    }
                }
                if got.len() == n as usize || len == avail {
                    out.extend(got);
                    break;
                }
                want = want.saturating_mul(2);
            }
        }
        out
    }
}
