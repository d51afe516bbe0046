//! Per-task records, kept off the heap.
//!
//! Spark's History Server keeps every task of an application in its in-memory store; with
//! a million tasks that is most of its memory. Here a task's final state is encoded (varints)
//! into an unlinked spill file as soon as the task ends, and memory holds only the tasks
//! still running plus, per stage attempt, the runs of the file its records occupy. Readers
//! decode one stage attempt at a time with positioned reads, so serving is safe from many
//! threads while the file stays where the kernel keeps it (page cache or disk).
//!
//! The bookkeeping follows Spark's `AppStatusListener` in replay mode: a task exists once its
//! start was seen, its end replaces its state, executor-per-stage summaries are updated only
//! while the stage is live, and tasks still running when the log ends are written as such.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use compact_str::CompactString;
use foldhash::{HashMap, HashSet};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::{bump, m, App, Metrics, StageStatus, EXECUTOR_METRICS, METRIC_COUNT};

fn minus1() -> i64 {
    -1
}

/// The `Task Info` of a task event (only what the API shows).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TaskInfo {
    #[serde(rename = "Task ID", default)]
    pub task_id: i64,
    #[serde(rename = "Index", default)]
    pub index: i64,
    #[serde(rename = "Attempt", default)]
    pub attempt: i64,
    #[serde(rename = "Partition ID", default = "minus1")]
    pub partition_id: i64,
    #[serde(rename = "Launch Time", default)]
    pub launch_time: i64,
    #[serde(rename = "Executor ID", default)]
    pub executor_id: CompactString,
    #[serde(rename = "Host", default)]
    pub host: CompactString,
    #[serde(rename = "Locality", default)]
    pub locality: CompactString,
    #[serde(rename = "Speculative", default)]
    pub speculative: bool,
    #[serde(rename = "Getting Result Time", default)]
    pub getting_result_time: i64,
    #[serde(rename = "Finish Time", default)]
    pub finish_time: i64,
    #[serde(rename = "Failed", default)]
    pub failed: bool,
    #[serde(rename = "Killed", default)]
    pub killed: bool,
}

/// `SparkListenerTaskStart` and `SparkListenerTaskGettingResult`.
#[derive(Debug, Deserialize)]
pub struct TaskStartEvent {
    #[serde(rename = "Stage ID", default = "minus1")]
    pub stage_id: i64,
    #[serde(rename = "Stage Attempt ID", default)]
    pub stage_attempt: i64,
    #[serde(rename = "Task Info")]
    pub info: TaskInfo,
}

/// `SparkListenerTaskEnd`.
#[derive(Debug, Default, Deserialize)]
pub struct TaskEndEvent {
    #[serde(rename = "Stage ID", default = "minus1")]
    pub stage_id: i64,
    #[serde(rename = "Stage Attempt ID", default)]
    pub stage_attempt: i64,
    #[serde(rename = "Task End Reason", default)]
    pub reason: Option<Reason>,
    #[serde(rename = "Task Info")]
    pub info: TaskInfo,
    #[serde(rename = "Task Executor Metrics", default)]
    pub executor_metrics: Option<PeakMetrics>,
    #[serde(rename = "Task Metrics", default)]
    pub metrics: Option<TaskMetricsIn>,
}

/// `Task End Reason`.
#[derive(Debug, Default, Deserialize)]
pub struct Reason {
    #[serde(rename = "Reason", default)]
    pub reason: CompactString,
    #[serde(rename = "Kill Reason", default)]
    pub kill_reason: Option<String>,
    #[serde(rename = "Full Stack Trace", default)]
    pub full_stack_trace: Option<String>,
    #[serde(rename = "Class Name", default)]
    pub class_name: Option<String>,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    #[serde(rename = "Job ID", default)]
    pub job_id: Option<i64>,
    #[serde(rename = "Partition ID", default)]
    pub partition_id: Option<i64>,
    #[serde(rename = "Attempt Number", default)]
    pub attempt_number: Option<i64>,
    #[serde(rename = "Executor ID", default)]
    pub executor_id: Option<String>,
    #[serde(rename = "Exit Caused By App", default)]
    pub exit_caused_by_app: Option<bool>,
    #[serde(rename = "Loss Reason", default)]
    pub loss_reason: Option<String>,
    #[serde(rename = "Shuffle ID", default)]
    pub shuffle_id: Option<i64>,
    #[serde(rename = "Map ID", default)]
    pub map_id: Option<i64>,
    #[serde(rename = "Map Index", default)]
    pub map_index: Option<i64>,
    #[serde(rename = "Reduce ID", default)]
    pub reduce_id: Option<i64>,
    #[serde(rename = "Message", default)]
    pub message: Option<String>,
}

impl Reason {
    /// What Spark's `TaskEndReason.toErrorString` says (the task's `errorMessage`); `None`
    /// for a success.
    pub fn error_message(&self) -> Option<String> {
        let d = |x: &Option<i64>| x.unwrap_or(-1);
        Some(match self.reason.as_ref() {
            "Success" => return None,
            "TaskKilled" => self
                .kill_reason
                .clone()
                .unwrap_or_else(|| "unknown reason".into()),
            "ExceptionFailure" => match &self.full_stack_trace {
                Some(t) => t.clone(),
                None => format!(
                    "{}: {}\n",
                    self.class_name.as_deref().unwrap_or(""),
                    self.description.as_deref().unwrap_or("")
                ),
            },
            "TaskCommitDenied" => format!(
                "TaskCommitDenied (Driver denied task commit) for job: {}, partition: {}, attemptNumber: {}",
                d(&self.job_id),
                d(&self.partition_id),
                d(&self.attempt_number)
            ),
            "ExecutorLostFailure" => {
                let cause = if self.exit_caused_by_app.unwrap_or(true) {
                    "caused by one of the running tasks"
                } else {
                    "unrelated to the running tasks"
                };
                format!(
                    "ExecutorLostFailure (executor {} exited {cause}) Reason: {}",
                    self.executor_id.as_deref().unwrap_or(""),
                    self.loss_reason.as_deref().unwrap_or("")
                )
            }
            "FetchFailed" => format!(
                "FetchFailed(null, shuffleId={}, mapIndex={}, mapId={}, reduceId={}, message=\n{}\n)",
                d(&self.shuffle_id),
                d(&self.map_index),
                d(&self.map_id),
                d(&self.reduce_id),
                self.message.as_deref().unwrap_or("")
            ),
            "TaskResultLost" => "TaskResultLost (result lost from block manager)".into(),
            "Resubmitted" => "Resubmitted (resubmitted due to lost executor)".into(),
            _ => "UnknownReason".into(),
        })
    }
}

macro_rules! metric_struct {
    ($name:ident { $($field:ident = $key:literal),* $(,)? }) => {
        #[derive(Clone, Debug, Default, Deserialize)]
        pub struct $name {
            $(#[serde(rename = $key, default)] pub $field: i64,)*
        }
    };
}

metric_struct!(InputIn { bytes = "Bytes Read", records = "Records Read" });
metric_struct!(OutputIn { bytes = "Bytes Written", records = "Records Written" });
metric_struct!(WriteIn {
    bytes = "Shuffle Bytes Written",
    time = "Shuffle Write Time",
    records = "Shuffle Records Written",
});
metric_struct!(PushIn {
    corrupt = "Corrupt Merged Block Chunks",
    fallback = "Merged Fetch Fallback Count",
    remote_blocks = "Merged Remote Blocks Fetched",
    local_blocks = "Merged Local Blocks Fetched",
    remote_chunks = "Merged Remote Chunks Fetched",
    local_chunks = "Merged Local Chunks Fetched",
    remote_bytes = "Merged Remote Bytes Read",
    local_bytes = "Merged Local Bytes Read",
    remote_reqs = "Merged Remote Requests Duration",
});

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReadIn {
    #[serde(rename = "Remote Blocks Fetched", default)]
    pub remote_blocks: i64,
    #[serde(rename = "Local Blocks Fetched", default)]
    pub local_blocks: i64,
    #[serde(rename = "Fetch Wait Time", default)]
    pub fetch_wait: i64,
    #[serde(rename = "Remote Bytes Read", default)]
    pub remote_bytes: i64,
    #[serde(rename = "Remote Bytes Read To Disk", default)]
    pub remote_to_disk: i64,
    #[serde(rename = "Local Bytes Read", default)]
    pub local_bytes: i64,
    #[serde(rename = "Total Records Read", default)]
    pub records: i64,
    #[serde(rename = "Remote Requests Duration", default)]
    pub remote_reqs: i64,
    #[serde(rename = "Push Based Shuffle", default)]
    pub push: Option<PushIn>,
}

/// `Task Metrics` of a task end.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TaskMetricsIn {
    #[serde(rename = "Executor Deserialize Time", default)]
    pub deser_time: i64,
    #[serde(rename = "Executor Deserialize CPU Time", default)]
    pub deser_cpu: i64,
    #[serde(rename = "Executor Run Time", default)]
    pub run_time: i64,
    #[serde(rename = "Executor CPU Time", default)]
    pub cpu_time: i64,
    #[serde(rename = "Peak Execution Memory", default)]
    pub peak_mem: i64,
    #[serde(rename = "Result Size", default)]
    pub result_size: i64,
    #[serde(rename = "JVM GC Time", default)]
    pub gc_time: i64,
    #[serde(rename = "Result Serialization Time", default)]
    pub result_ser: i64,
    #[serde(rename = "Memory Bytes Spilled", default)]
    pub mem_spill: i64,
    #[serde(rename = "Disk Bytes Spilled", default)]
    pub disk_spill: i64,
    #[serde(rename = "Shuffle Read Metrics", default)]
    pub read: Option<ReadIn>,
    #[serde(rename = "Shuffle Write Metrics", default)]
    pub write: Option<WriteIn>,
    #[serde(rename = "Input Metrics", default)]
    pub input: Option<InputIn>,
    #[serde(rename = "Output Metrics", default)]
    pub output: Option<OutputIn>,
}

impl TaskMetricsIn {
    pub fn to_metrics(&self) -> Metrics {
        let mut v = [0; METRIC_COUNT];
        v[m::DESER_TIME] = self.deser_time;
        v[m::DESER_CPU] = self.deser_cpu;
        v[m::RUN_TIME] = self.run_time;
        v[m::CPU_TIME] = self.cpu_time;
        v[m::RESULT_SIZE] = self.result_size;
        v[m::GC_TIME] = self.gc_time;
        v[m::RESULT_SER] = self.result_ser;
        v[m::MEM_SPILL] = self.mem_spill;
        v[m::DISK_SPILL] = self.disk_spill;
        v[m::PEAK_EXEC_MEM] = self.peak_mem;
        if let Some(i) = &self.input {
            v[m::INPUT_BYTES] = i.bytes;
            v[m::INPUT_RECORDS] = i.records;
        }
        if let Some(o) = &self.output {
            v[m::OUTPUT_BYTES] = o.bytes;
            v[m::OUTPUT_RECORDS] = o.records;
        }
        if let Some(w) = &self.write {
            v[m::SHUFFLE_WRITE_BYTES] = w.bytes;
            v[m::SHUFFLE_WRITE_RECORDS] = w.records;
            v[m::SHUFFLE_WRITE_TIME] = w.time;
        }
        if let Some(r) = &self.read {
            v[m::SR_REMOTE_BLOCKS] = r.remote_blocks;
            v[m::SR_LOCAL_BLOCKS] = r.local_blocks;
            v[m::SR_FETCH_WAIT] = r.fetch_wait;
            v[m::SR_REMOTE_BYTES] = r.remote_bytes;
            v[m::SR_REMOTE_TO_DISK] = r.remote_to_disk;
            v[m::SR_LOCAL_BYTES] = r.local_bytes;
            v[m::SR_RECORDS] = r.records;
            v[m::SR_REMOTE_REQS_DURATION] = r.remote_reqs;
            if let Some(p) = &r.push {
                let push = [
                    p.corrupt,
                    p.fallback,
                    p.remote_blocks,
                    p.local_blocks,
                    p.remote_chunks,
                    p.local_chunks,
                    p.remote_bytes,
                    p.local_bytes,
                    p.remote_reqs,
                ];
                v[m::PUSH..m::PUSH + 9].copy_from_slice(&push);
            }
        }
        Metrics { v }
    }
}

/// Executor memory metrics as logged (`Task Executor Metrics`, `Executor Metrics`): the
/// ones present, by their place in [`EXECUTOR_METRICS`].
#[derive(Clone, Debug, Default)]
pub struct PeakMetrics(pub [Option<i64>; 23]);

impl<'de> Deserialize<'de> for PeakMetrics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PeakMetrics;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of executor metrics")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PeakMetrics, A::Error> {
                let mut out = PeakMetrics::default();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    match EXECUTOR_METRICS.iter().position(|n| *n == k) {
                        Some(i) => out.0[i] = Some(map.next_value::<i64>()?),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl PeakMetrics {
    /// Raises `peak` to these values (creating it, zeros, if absent: once any metrics arrived
    /// Spark reports the peaks, zeros included).
    pub fn raise(&self, peak: &mut Option<[i64; 23]>) {
        let p = peak.get_or_insert([0; 23]);
        for (slot, v) in p.iter_mut().zip(self.0.iter()) {
            if let Some(v) = v {
                if *v > *slot {
                    *slot = *v;
                }
            }
        }
    }
}

/// A task's state as Spark's `TaskInfo.status` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Running,
    GetResult,
    Failed,
    Killed,
    Success,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "RUNNING",
            TaskState::GetResult => "GET RESULT",
            TaskState::Failed => "FAILED",
            TaskState::Killed => "KILLED",
            TaskState::Success => "SUCCESS",
        }
    }
    fn code(self) -> u64 {
        self as u64
    }
    fn from_code(c: u64) -> TaskState {
        match c {
            0 => TaskState::Running,
            1 => TaskState::GetResult,
            2 => TaskState::Failed,
            3 => TaskState::Killed,
            _ => TaskState::Success,
        }
    }
    fn of(info: &TaskInfo) -> TaskState {
        if info.finish_time == 0 {
            if info.getting_result_time != 0 {
                TaskState::GetResult
            } else {
                TaskState::Running
            }
        } else if info.failed {
            TaskState::Failed
        } else if info.killed {
            TaskState::Killed
        } else {
            TaskState::Success
        }
    }
}

/// One task, decoded.
#[derive(Clone, Debug)]
pub struct TaskRec {
    pub task_id: i64,
    pub index: i64,
    pub attempt: i64,
    pub partition_id: i64,
    pub launch_time: i64,
    /// When the driver started fetching the result; 0 when it did not.
    pub result_fetch_start: i64,
    pub duration: i64,
    // short (executor ids, host names, locality levels): kept inline, no allocation per task
    pub executor_id: CompactString,
    pub host: CompactString,
    pub status: TaskState,
    pub locality: CompactString,
    pub speculative: bool,
    pub error: Option<String>,
    pub metrics: Option<Metrics>,
}

impl TaskRec {
    /// Spark's `AppStatusUtils.gettingResultTime`.
    pub fn getting_result_time(&self) -> i64 {
        if self.result_fetch_start > 0 {
            if self.duration > 0 {
                self.launch_time + self.duration - self.result_fetch_start
            } else {
                super::super::api::catalog::now_ms() - self.result_fetch_start
            }
        } else {
            0
        }
    }

    /// Spark's `AppStatusUtils.schedulerDelay` (0 without metrics or duration).
    pub fn scheduler_delay(&self) -> i64 {
        match &self.metrics {
            Some(mt) if self.duration > 0 => (self.duration
                - mt.v[m::RUN_TIME]
                - mt.v[m::DESER_TIME]
                - mt.v[m::RESULT_SER]
                - self.getting_result_time())
            .max(0),
            _ => 0,
        }
    }

    /// The run time Spark sorts `runtime` by: -1 without metrics, and for tasks that did
    /// not succeed `-runTime - 1` (Spark stores their metrics negated, SPARK-26260, so they
    /// stay out of the summaries).
    pub fn run_time(&self) -> i64 {
        match &self.metrics {
            None => -1,
            Some(mt) if self.status == TaskState::Success => mt.v[m::RUN_TIME],
            Some(mt) => -mt.v[m::RUN_TIME] - 1,
        }
    }
}

/// What Spark keeps per executor and stage attempt (`ExecutorStageSummary`).
#[derive(Clone, Debug, Default)]
pub struct ExecStageSummary {
    pub task_time: i64,
    pub failed: i64,
    pub succeeded: i64,
    pub killed: i64,
    pub metrics: Metrics,
    /// `None` until a task reported executor metrics.
    pub peak: Option<[i64; 23]>,
}

#[derive(Debug)]
struct LiveTask {
    stage: (i64, i64),
    rec: TaskRec,
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
    live: HashMap<i64, LiveTask>,
    /// Executor ids, hosts and localities, interned (records hold their number).
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
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

fn put(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            buf.push(b);
            return;
        }
        buf.push(b | 0x80);
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn get(&mut self) -> Option<i64> {
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *self.b.get(self.at)?;
            self.at += 1;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        Some(((z >> 1) as i64) ^ -((z & 1) as i64))
    }
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }
}

impl TaskStore {
    fn name_id(&mut self, s: &str) -> u32 {
        if let Some(i) = self.name_ids.get(s) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_string());
        self.name_ids.insert(s.to_string(), i);
        i
    }

    fn encode(&mut self, rec: &TaskRec, buf: &mut Vec<u8>) {
        let ex = self.name_id(&rec.executor_id);
        let host = self.name_id(&rec.host);
        let loc = self.name_id(&rec.locality);
        for v in [
            rec.task_id,
            rec.index,
            rec.attempt,
            rec.partition_id,
            rec.launch_time,
            rec.result_fetch_start,
            rec.duration,
            i64::from(ex),
            i64::from(host),
            rec.status.code() as i64,
            i64::from(loc),
            i64::from(rec.speculative),
        ] {
            put(buf, v);
        }
        match &rec.error {
            None => put(buf, -1),
            Some(e) => {
                put(buf, e.len() as i64);
                buf.extend_from_slice(e.as_bytes());
            }
        }
        match &rec.metrics {
            None => put(buf, 0),
            Some(mt) => {
                put(buf, 1);
                for v in mt.v {
                    put(buf, v);
                }
            }
        }
    }

    fn decode(&self, c: &mut Cursor) -> Option<TaskRec> {
        let mut h = [0i64; 12];
        for slot in h.iter_mut() {
            *slot = c.get()?;
        }
        let name = |i: i64| {
            self.names
                .get(i as usize)
                .map(|n| CompactString::from(n.as_str()))
                .unwrap_or_default()
        };
        let elen = c.get()?;
        let error = if elen < 0 {
            None
        } else {
            Some(String::from_utf8_lossy(c.bytes(elen as usize)?).into_owned())
        };
        let metrics = if c.get()? == 1 {
            let mut v = [0; METRIC_COUNT];
            for slot in v.iter_mut() {
                *slot = c.get()?;
            }
            Some(Metrics { v })
        } else {
            None
        };
        Some(TaskRec {
            task_id: h[0],
            index: h[1],
            attempt: h[2],
            partition_id: h[3],
            launch_time: h[4],
            result_fetch_start: h[5],
            duration: h[6],
            executor_id: name(h[7]),
            host: name(h[8]),
            status: TaskState::from_code(h[9] as u64),
            locality: name(h[10]),
            speculative: h[11] != 0,
            error,
            metrics,
        })
    }

    /// Appends a task's final state to the spill file.
    fn write(&mut self, stage: (i64, i64), rec: &TaskRec) {
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
        self.encode(rec, &mut buf);
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
                let mut c = Cursor { b: &buf, at: 0 };
                let mut got = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    match self.decode(&mut c) {
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

impl App {
    /// `SparkListenerTaskStart`.
    pub fn task_start_typed(&mut self, ev: &TaskStartEvent) {
        let (sid, att) = (ev.stage_id, ev.stage_attempt);
        let info = &ev.info;
        let launch = info.launch_time;
        if let Some(st) = self.stages.get_mut(&(sid, att)).filter(|s| s.live) {
            st.active_tasks += 1;
            st.first_launch_time = Some(st.first_launch_time.map_or(launch, |f| f.min(launch)));
            for j in &st.job_ids {
                if let Some(job) = self.jobs.get_mut(j) {
                    job.active_tasks += 1;
                }
            }
        }
        if let Some(e) = self.executors.get_mut(info.executor_id.as_str()) {
            if e.is_active {
                e.active_tasks += 1;
                e.total_tasks += 1;
            }
        }
        let rec = TaskRec {
            task_id: info.task_id,
            index: info.index,
            attempt: info.attempt,
            partition_id: info.partition_id,
            launch_time: launch,
            result_fetch_start: info.getting_result_time,
            duration: 0,
            executor_id: info.executor_id.clone(),
            host: info.host.clone(),
            status: TaskState::of(info),
            locality: info.locality.clone(),
            speculative: info.speculative,
            error: None,
            metrics: None,
        };
        self.tasks.live.insert(
            info.task_id,
            LiveTask {
                stage: (sid, att),
                rec,
            },
        );
    }

    /// `SparkListenerTaskGettingResult`.
    pub fn task_getting_result(&mut self, ev: &TaskStartEvent) {
        if let Some(t) = self.tasks.live.get_mut(&ev.info.task_id) {
            t.rec.result_fetch_start = ev.info.getting_result_time;
            t.rec.status = TaskState::of(&ev.info);
        }
    }

    /// `SparkListenerTaskEnd`.
    pub fn task_end_typed(&mut self, ev: &TaskEndEvent) {
        let (sid, att) = (ev.stage_id, ev.stage_attempt);
        let info = &ev.info;
        let kind = ev.reason.as_ref().map_or("", |r| r.reason.as_ref());
        let (done, failed, killed) = match kind {
            "Success" => (1, 0, 0),
            "TaskKilled" | "TaskCommitDenied" => (0, 0, 1),
            _ => (0, 1, 0),
        };
        let error = ev.reason.as_ref().and_then(Reason::error_message);
        let killed_reason = match kind {
            "TaskKilled" | "TaskCommitDenied" => error.clone(),
            _ => None,
        };
        let index = info.index;
        let delta = ev.metrics.as_ref().map(TaskMetricsIn::to_metrics);
        let duration = if info.finish_time > 0 {
            info.finish_time - info.launch_time
        } else {
            0
        };
        if let Some(st) = self.stages.get_mut(&(sid, att)).filter(|s| s.live) {
            if let Some(d) = &delta {
                for (a, b) in st.metrics.v.iter_mut().zip(d.v.iter()) {
                    *a += b;
                }
            }
            st.active_tasks -= 1;
            st.completed_tasks += done;
            if done > 0 {
                st.completed_indices.insert(index);
            }
            st.failed_tasks += failed;
            st.killed_tasks += killed;
            if let Some(r) = &killed_reason {
                bump(&mut st.killed_summary, r.clone());
            }
            if let Some(tm) = &ev.executor_metrics {
                let mut p = Some(st.peak);
                tm.raise(&mut p);
                if let Some(p) = p {
                    st.peak = p;
                }
                self.tasks.peak_set.insert((sid, att));
            }
            if st.active_tasks == 0
                && matches!(st.status, StageStatus::Complete | StageStatus::Failed)
            {
                st.live = false;
            }
            let per_exec = self.tasks.exec_summaries.entry((sid, att)).or_default();
            // look up before inserting: no allocation for an executor already seen
            if !per_exec.contains_key(info.executor_id.as_str()) {
                per_exec.insert(info.executor_id.to_string(), ExecStageSummary::default());
            }
            let Some(es) = per_exec.get_mut(info.executor_id.as_str()) else {
                return;
            };
            es.task_time += duration;
            es.succeeded += done;
            es.failed += failed;
            es.killed += killed;
            if let Some(d) = &delta {
                for (a, b) in es.metrics.v.iter_mut().zip(d.v.iter()) {
                    *a += b;
                }
            }
            if let Some(tm) = &ev.executor_metrics {
                tm.raise(&mut es.peak);
            }
            for j in &st.job_ids {
                if let Some(job) = self.jobs.get_mut(j) {
                    job.active_tasks -= 1;
                    job.completed_tasks += done;
                    if done > 0 {
                        job.completed_indices.insert((sid, index));
                    }
                    job.failed_tasks += failed;
                    job.killed_tasks += killed;
                    if let Some(r) = &killed_reason {
                        bump(&mut job.killed_summary, r.clone());
                    }
                }
            }
        }
        if let Some(e) = self.executors.get_mut(info.executor_id.as_str()) {
            if e.is_active {
                e.active_tasks -= 1;
                e.completed_tasks += done;
                e.failed_tasks += failed;
                e.total_duration += duration;
                if kind != "Resubmitted" {
                    if let Some(d) = &delta {
                        e.total_gc_time += d.v[m::GC_TIME];
                        e.total_input_bytes += d.v[m::INPUT_BYTES];
                        e.total_shuffle_read += d.v[m::SR_LOCAL_BYTES] + d.v[m::SR_REMOTE_BYTES];
                        e.total_shuffle_write += d.v[m::SHUFFLE_WRITE_BYTES];
                    }
                }
                if let Some(tm) = &ev.executor_metrics {
                    tm.raise(&mut e.peak);
                }
            }
        }
        // the task record: only for tasks whose start was seen, as Spark
        if let Some(mut t) = self.tasks.live.remove(&info.task_id) {
            let r = &mut t.rec;
            r.status = TaskState::of(info);
            r.result_fetch_start = info.getting_result_time;
            r.duration = duration;
            r.launch_time = info.launch_time;
            r.attempt = info.attempt;
            r.error = error;
            if let Some(d) = delta {
                r.metrics = Some(d);
            }
            self.tasks.write(t.stage, &t.rec);
        }
    }
}

impl App {
    /// A task event given as a parsed value (the typed events borrow from it).
    pub(super) fn task_event(&mut self, kind: &str, ev: &serde_json::Value) {
        match kind {
            "SparkListenerTaskStart" => {
                if let Ok(t) = TaskStartEvent::deserialize(ev) {
                    self.task_start_typed(&t);
                }
            }
            "SparkListenerTaskGettingResult" => {
                if let Ok(t) = TaskStartEvent::deserialize(ev) {
                    self.task_getting_result(&t);
                }
            }
            _ => {
                if let Ok(t) = TaskEndEvent::deserialize(ev) {
                    self.task_end_typed(&t);
                }
            }
        }
    }
}

impl App {
    /// One log line. Task events, nearly all of a big log, are parsed straight into typed,
    /// borrowing structures (no `Value` tree) unless a SQL execution needs their
    /// accumulables; every other line goes through [`App::apply`]. Returns whether the line
    /// was a valid event.
    pub fn apply_line(&mut self, line: &[u8]) -> bool {
        self.apply_parsed(super::pipeline::Parsed::parse(line), line)
    }

    /// One log line whose task event, if any, is already parsed (see [`App::apply_line`]).
    pub(super) fn apply_parsed(&mut self, parsed: super::pipeline::Parsed, line: &[u8]) -> bool {
        use super::pipeline::Parsed;
        match parsed {
            Parsed::TaskEnd(t) if !self.sql.wants_stage(t.stage_id) => {
                self.events += 1;
                self.task_end_typed(&t);
                return true;
            }
            Parsed::TaskStart(t) if !self.sql.wants_stage(t.stage_id) => {
                self.events += 1;
                self.task_start_typed(&t);
                return true;
            }
            _ => {}
        }
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => {
                self.apply(&v);
                true
            }
            _ => false,
        }
    }
}
