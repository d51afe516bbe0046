//! The state of one application attempt, rebuilt by replaying its event log.
//!
//! This follows the bookkeeping of Spark's `AppStatusListener` as it runs inside the History
//! Server (replay mode), so the counts it derives (tasks per job, stages per status, executor
//! totals) are the ones Spark's REST API reports. Only aggregates and small per-entity
//! records are kept; no log text is retained.

pub mod accumulables;
mod exclusion;
pub mod listing;
mod ordered;
pub mod pipeline;
pub mod scala_order;
mod size;
pub mod sql;
pub mod storage;
mod taskjson;
pub mod tasks;

use std::collections::{BTreeMap, BTreeSet};

// replay hashes millions of task indices: a fast hash with a per-process seed
use foldhash::HashSet;

use serde_json::Value;

use crate::eventlog::{self, LogSource, ReadStats};

/// Executor memory metric names, in Spark's `ExecutorMetricType` order (what the REST API
/// prints in `peakMemoryMetrics`).
pub const EXECUTOR_METRICS: [&str; 23] = [
    "JVMHeapMemory",
    "JVMOffHeapMemory",
    "OnHeapExecutionMemory",
    "OffHeapExecutionMemory",
    "OnHeapStorageMemory",
    "OffHeapStorageMemory",
    "OnHeapUnifiedMemory",
    "OffHeapUnifiedMemory",
    "DirectPoolMemory",
    "MappedPoolMemory",
    "ProcessTreeJVMVMemory",
    "ProcessTreeJVMRSSMemory",
    "ProcessTreePythonVMemory",
    "ProcessTreePythonRSSMemory",
    "ProcessTreeOtherVMemory",
    "ProcessTreeOtherRSSMemory",
    "MinorGCCount",
    "MinorGCTime",
    "MajorGCCount",
    "MajorGCTime",
    "TotalGCTime",
    "ConcurrentGCCount",
    "ConcurrentGCTime",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "RUNNING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
            JobStatus::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageStatus {
    Active,
    Complete,
    Failed,
    Pending,
    Skipped,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Active => "ACTIVE",
            StageStatus::Complete => "COMPLETE",
            StageStatus::Failed => "FAILED",
            StageStatus::Pending => "PENDING",
            StageStatus::Skipped => "SKIPPED",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub submission_time: Option<i64>,
    pub completion_time: Option<i64>,
    pub stage_ids: Vec<i64>,
    pub job_group: Option<String>,
    pub job_tags: Vec<String>,
    pub status: JobStatus,
    pub num_tasks: i64,
    pub active_tasks: i64,
    pub completed_tasks: i64,
    pub skipped_tasks: i64,
    pub failed_tasks: i64,
    pub killed_tasks: i64,
    pub completed_indices: HashSet<(i64, i64)>,
    pub active_stages: i64,
    pub completed_stages: BTreeSet<i64>,
    pub skipped_stages: BTreeSet<i64>,
    pub failed_stages: i64,
    pub killed_summary: Vec<(String, i64)>,
    pub sql_execution_id: Option<i64>,
    live: bool,
}

/// Sums of the task metrics Spark aggregates per stage.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub v: [i64; METRIC_COUNT],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            v: [0; METRIC_COUNT],
        }
    }
}

/// Task metric names as the event log spells them (under "Task Metrics"), flattened.
pub const METRIC_COUNT: usize = 34;
pub mod m {
    pub const DESER_TIME: usize = 0;
    pub const DESER_CPU: usize = 1;
    pub const RUN_TIME: usize = 2;
    pub const CPU_TIME: usize = 3;
    pub const RESULT_SIZE: usize = 4;
    pub const GC_TIME: usize = 5;
    pub const RESULT_SER: usize = 6;
    pub const MEM_SPILL: usize = 7;
    pub const DISK_SPILL: usize = 8;
    pub const PEAK_EXEC_MEM: usize = 9;
    pub const INPUT_BYTES: usize = 10;
    pub const INPUT_RECORDS: usize = 11;
    pub const OUTPUT_BYTES: usize = 12;
    pub const OUTPUT_RECORDS: usize = 13;
    pub const SHUFFLE_WRITE_BYTES: usize = 14;
    pub const SHUFFLE_WRITE_RECORDS: usize = 15;
    pub const SHUFFLE_WRITE_TIME: usize = 16;
    pub const SR_REMOTE_BLOCKS: usize = 17;
    pub const SR_LOCAL_BLOCKS: usize = 18;
    pub const SR_FETCH_WAIT: usize = 19;
    pub const SR_REMOTE_BYTES: usize = 20;
    pub const SR_REMOTE_TO_DISK: usize = 21;
    pub const SR_LOCAL_BYTES: usize = 22;
    pub const SR_RECORDS: usize = 23;
    pub const SR_REMOTE_REQS_DURATION: usize = 24;
    /// Push-based shuffle read metrics, in the event log's order.
    pub const PUSH: usize = 25;
    pub const PUSH_NAMES: [&str; 9] = [
        "Corrupt Merged Block Chunks",
        "Merged Fetch Fallback Count",
        "Merged Remote Blocks Fetched",
        "Merged Local Blocks Fetched",
        "Merged Remote Chunks Fetched",
        "Merged Local Chunks Fetched",
        "Merged Remote Bytes Read",
        "Merged Local Bytes Read",
        "Merged Remote Requests Duration",
    ];
}

#[derive(Clone, Debug)]
pub struct Stage {
    pub stage_id: i64,
    pub attempt_id: i64,
    pub status: StageStatus,
    pub name: String,
    pub details: String,
    pub num_tasks: i64,
    pub submission_time: Option<i64>,
    pub completion_time: Option<i64>,
    pub failure_reason: Option<String>,
    pub description: Option<String>,
    pub scheduling_pool: String,
    pub rdd_ids: Vec<i64>,
    pub job_ids: Vec<i64>,
    pub active_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    pub killed_tasks: i64,
    pub completed_indices: HashSet<i64>,
    pub first_launch_time: Option<i64>,
    pub killed_summary: Vec<(String, i64)>,
    pub metrics: Metrics,
    pub resource_profile_id: i64,
    pub peak: [i64; 23],
    /// Named accumulators, from the latest `Stage Info` (see [`accumulables`]).
    pub accumulables: accumulables::StageAccumulables,
    /// Executors excluded for this attempt (see [`exclusion`]).
    pub excluded_executors: BTreeSet<String>,
    /// Speculative task counts, once a speculative copy of a task started.
    pub speculation: Option<Speculation>,
    live: bool,
    /// The stages this one reads the output of (`Parent IDs`): the edges of a job's DAG.
    pub parent_ids: Vec<i64>,
}

/// Spark's `SpeculationStageSummary`: the speculative copies among a stage attempt's tasks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Speculation {
    pub num_tasks: i64,
    pub active: i64,
    pub completed: i64,
    pub failed: i64,
    pub killed: i64,
}

#[derive(Clone, Debug)]
pub struct Executor {
    pub id: String,
    pub host: Option<String>,
    pub host_port: Option<String>,
    pub is_active: bool,
    pub total_cores: i64,
    pub max_tasks: i64,
    pub active_tasks: i64,
    pub failed_tasks: i64,
    pub completed_tasks: i64,
    pub total_tasks: i64,
    pub total_duration: i64,
    pub total_gc_time: i64,
    pub total_input_bytes: i64,
    pub total_shuffle_read: i64,
    pub total_shuffle_write: i64,
    pub max_memory: i64,
    pub add_time: i64,
    pub remove_time: Option<i64>,
    pub remove_reason: Option<String>,
    pub executor_logs: Vec<(String, String)>,
    pub attributes: Vec<(String, String)>,
    pub resources: Value,
    pub resource_profile_id: i64,
    pub total_on_heap: i64,
    pub total_off_heap: i64,
    pub peak: Option<[i64; 23]>,
    /// Block accounting (see [`storage`]).
    pub rdd_blocks: i64,
    pub memory_used: i64,
    pub disk_used: i64,
    pub used_on_heap: i64,
    pub used_off_heap: i64,
    /// Excluded for the application (see [`exclusion`]).
    pub is_excluded: bool,
    /// Running stages it is excluded for.
    pub excluded_in_stages: BTreeSet<i64>,
}

impl Executor {
    /// Spark's `LiveExecutor.hostname`: the host it was added on, else the host of its
    /// block manager's address.
    pub fn hostname(&self) -> Option<&str> {
        match (&self.host, &self.host_port) {
            (Some(h), _) => Some(h),
            (None, Some(hp)) => Some(hp.rsplit_once(':').map_or(hp.as_str(), |(h, _)| h.trim())),
            (None, None) => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub java_version: Option<String>,
    pub java_home: Option<String>,
    pub scala_version: Option<String>,
    pub spark: Vec<(String, String)>,
    pub hadoop: Vec<(String, String)>,
    pub system: Vec<(String, String)>,
    pub metrics: Vec<(String, String)>,
    pub classpath: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct ResourceProfile {
    pub id: i64,
    pub executor: Value,
    pub task: Value,
}

/// One application attempt.
#[derive(Debug, Default)]
pub struct App {
    pub id: Option<String>,
    pub name: String,
    pub attempt_id: Option<String>,
    pub start_time: i64,
    pub end_time: i64,
    pub spark_user: String,
    pub spark_version: String,
    pub completed: bool,
    pub exit_code: Option<i64>,
    pub jobs: BTreeMap<i64, Job>,
    pub stages: BTreeMap<(i64, i64), Stage>,
    pub executors: BTreeMap<String, Executor>,
    pub environment: Option<Environment>,
    /// The view and admin ACLs of the first environment update (what Spark's History
    /// Server reads them from; later updates do not change them).
    pub acls: Option<crate::access::AppAcls>,
    pub resource_profiles: Vec<ResourceProfile>,
    pub default_cpus_per_task: i64,
    pub stats: ReadStats,
    pub events: u64,
    /// SQL executions (see [`sql`]).
    pub sql: sql::SqlState,
    /// Cached RDDs and block accounting (see [`storage`]).
    pub storage: storage::StorageState,
    /// Every task, spilled off the heap (see [`tasks`]).
    pub tasks: tasks::TaskStore,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn i(v: &Value, k: &str) -> Option<i64> {
    let x = v.get(k)?;
    x.as_i64()
        .or_else(|| x.as_str().and_then(|t| t.parse().ok()))
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn prop<'a>(ev: &'a Value, key: &str) -> Option<&'a str> {
    ev.get("Properties")?.get(key)?.as_str()
}

fn bump(summary: &mut Vec<(String, i64)>, reason: String) {
    match summary.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => summary.push((reason, 1)),
    }
}

impl App {
    /// An application before its first event.
    pub fn empty() -> App {
        App {
            end_time: -1,
            default_cpus_per_task: 1,
            ..App::default()
        }
    }

    /// Replays a whole log; a running application's tasks are timed up to now.
    pub fn load(src: &LogSource) -> App {
        Self::load_as_of(src, crate::clock::now_ms())
    }

    /// Replays a whole log; a running application's tasks are timed up to `last_scan_ms`
    /// (when the catalog last saw the log change: Spark's "last updated" of a running
    /// application).
    pub fn load_as_of(src: &LogSource, last_scan_ms: i64) -> App {
        let mut app = App::empty();
        let mut replay = pipeline::Replay::new(&mut app);
        let mut stats = eventlog::replay_blocks(src, &mut |block| replay.push_block(block));
        let (lines, invalid) = replay.finish();
        stats.lines += lines;
        stats.skipped += invalid;
        app.stats = stats;
        app.sql.finish_replay();
        app.storage.finish_replay(&app.executors);
        // Spark's server counts a running task's time up to the application's last update:
        // the log's modification time once it completed, the time of the scan while it runs
        let last_update = if app.completed {
            src.modified_ms
        } else {
            last_scan_ms
        };
        app.tasks.finish(last_update);
        app
    }

    /// Applies one event.
    pub fn apply(&mut self, ev: &Value) {
        self.apply_event(ev, None);
    }

    /// Applies one event; `line` is its text when known (for the maps whose order the
    /// `Value` loses, see [`ordered`]).
    pub(crate) fn apply_event(&mut self, ev: &Value, line: Option<&[u8]>) {
        self.events += 1;
        let Some(kind) = ev.get("Event").and_then(Value::as_str) else {
            return;
        };
        // SQL metrics and storage first: the storage bookkeeping must see an executor as
        // it was before this event (Spark updates both in one listener, storage last)
        match kind {
            "SparkListenerTaskStart" => {
                if let (Some(sid), Some(info)) = (i(ev, "Stage ID"), ev.get("Task Info")) {
                    if self.sql.wants_stage(sid) {
                        self.sql.task_start(
                            sid,
                            i(ev, "Stage Attempt ID").unwrap_or(0),
                            i(info, "Task ID").unwrap_or(-1),
                            i(info, "Index").unwrap_or(-1),
                        );
                    }
                }
            }
            "SparkListenerTaskEnd" => {
                // parse accumulables only for stages of SQL executions
                if i(ev, "Stage ID").is_some_and(|sid| self.sql.wants_stage(sid)) {
                    if let Some(t) = sql::SqlTask::from_event(ev) {
                        self.sql.task_end(&t);
                    }
                }
            }
            "SparkListenerBlockUpdated"
            | "SparkListenerUnpersistRDD"
            | "SparkListenerExecutorRemoved"
            | "SparkListenerBlockManagerAdded" => self.storage.apply(kind, ev, &mut self.executors),
            "SparkListenerStageSubmitted" => {
                self.storage.apply(kind, ev, &mut self.executors);
                self.sql.apply(kind, ev);
            }
            _ => self.sql.apply(kind, ev),
        }
        match kind {
            "SparkListenerLogStart" => {
                self.spark_version = s(ev, "Spark Version").unwrap_or_default();
            }
            "SparkListenerApplicationStart" => {
                self.id = s(ev, "App ID");
                self.name = s(ev, "App Name").unwrap_or_default();
                self.attempt_id = s(ev, "App Attempt ID");
                self.start_time = i(ev, "Timestamp").unwrap_or(0);
                self.spark_user = s(ev, "User").unwrap_or_default();
                if let Some(logs) = ev.get("Driver Logs") {
                    if let Some(d) = self.executors.get_mut("driver") {
                        match line.and_then(ordered::application_start) {
                            Some((logs, attributes)) => {
                                d.executor_logs = logs;
                                d.attributes = attributes;
                            }
                            None => {
                                d.executor_logs = pairs(Some(logs));
                                d.attributes = pairs(ev.get("Driver Attributes"));
                            }
                        }
                    }
                }
            }
            "SparkListenerApplicationEnd" => {
                self.end_time = i(ev, "Timestamp").unwrap_or(0);
                self.exit_code = i(ev, "ExitCode");
                self.completed = true;
            }
            "SparkListenerEnvironmentUpdate" => {
                let jvm = ev.get("JVM Information");
                let g = |k: &str| jvm.and_then(|j| s(j, k));
                let env = Environment {
                    java_version: g("Java Version"),
                    java_home: g("Java Home"),
                    scala_version: g("Scala Version"),
                    spark: pairs(ev.get("Spark Properties")),
                    hadoop: pairs(ev.get("Hadoop Properties")),
                    system: pairs(ev.get("System Properties")),
                    metrics: pairs(ev.get("Metrics Properties")),
                    classpath: pairs(ev.get("Classpath Entries")),
                };
                if let Some((_, v)) = env.spark.iter().find(|(k, _)| k == "spark.task.cpus") {
                    self.default_cpus_per_task = v.parse().unwrap_or(1);
                }
                if self.acls.is_none() {
                    self.acls = Some(crate::access::AppAcls::from_properties(&env.spark));
                }
                self.environment = Some(env);
            }
            "SparkListenerResourceProfileAdded" => {
                self.resource_profiles.push(ResourceProfile {
                    id: i(ev, "Resource Profile Id").unwrap_or(0),
                    executor: ev
                        .get("Executor Resource Requests")
                        .cloned()
                        .unwrap_or(Value::Null),
                    task: ev
                        .get("Task Resource Requests")
                        .cloned()
                        .unwrap_or(Value::Null),
                });
            }
            "SparkListenerExecutorAdded" => self.executor_added(ev, line),
            "SparkListenerExecutorRemoved" => {
                if let Some(e) = s(ev, "Executor ID").and_then(|id| self.executors.get_mut(&id)) {
                    e.is_active = false;
                    e.remove_time = i(ev, "Timestamp");
                    e.remove_reason = s(ev, "Removed Reason");
                }
            }
            "SparkListenerBlockManagerAdded" => {
                let Some(bm) = ev.get("Block Manager ID") else {
                    return;
                };
                let Some(id) = s(bm, "Executor ID") else {
                    return;
                };
                let time = i(ev, "Timestamp").unwrap_or(0);
                let e = self.executor(&id, time);
                if let (Some(h), Some(p)) = (s(bm, "Host"), i(bm, "Port")) {
                    e.host_port = Some(format!("{h}:{p}"));
                }
                if let Some(on) = i(ev, "Maximum Onheap Memory") {
                    e.total_on_heap = on;
                    e.total_off_heap = i(ev, "Maximum Offheap Memory").unwrap_or(0);
                }
                e.is_active = true;
                e.max_memory = i(ev, "Maximum Memory").unwrap_or(0);
            }
            "SparkListenerJobStart" => self.job_start(ev),
            "SparkListenerJobEnd" => self.job_end(ev),
            "SparkListenerStageSubmitted" => self.stage_submitted(ev),
            "SparkListenerStageCompleted" => self.stage_completed(ev),
            "SparkListenerTaskStart"
            | "SparkListenerTaskGettingResult"
            | "SparkListenerTaskEnd" => self.task_event(kind, ev),
            k if exclusion::is_exclusion_event(k) => self.exclusion_event(k, ev),
            "SparkListenerStageExecutorMetrics" => {
                if let (Some(id), Some(m)) = (s(ev, "Executor ID"), ev.get("Executor Metrics")) {
                    if let Some(e) = self.executors.get_mut(&id) {
                        update_peak(&mut e.peak, m);
                    }
                }
            }
            _ => {}
        }
    }

    fn executor(&mut self, id: &str, time: i64) -> &mut Executor {
        self.executors
            .entry(id.to_string())
            .or_insert_with(|| Executor {
                id: id.to_string(),
                host: None,
                host_port: None,
                is_active: true,
                total_cores: 0,
                max_tasks: 0,
                active_tasks: 0,
                failed_tasks: 0,
                completed_tasks: 0,
                total_tasks: 0,
                total_duration: 0,
                total_gc_time: 0,
                total_input_bytes: 0,
                total_shuffle_read: 0,
                total_shuffle_write: 0,
                max_memory: 0,
                add_time: time,
                remove_time: None,
                remove_reason: None,
                executor_logs: Vec::new(),
                attributes: Vec::new(),
                resources: Value::Object(Default::default()),
                resource_profile_id: 0,
                total_on_heap: -1,
                total_off_heap: 0,
                peak: None,
                rdd_blocks: 0,
                memory_used: 0,
                disk_used: 0,
                used_on_heap: 0,
                used_off_heap: 0,
                is_excluded: false,
                excluded_in_stages: BTreeSet::new(),
            })
    }

    fn executor_added(&mut self, ev: &Value, line: Option<&[u8]>) {
        let Some(id) = s(ev, "Executor ID") else {
            return;
        };
        let time = i(ev, "Timestamp").unwrap_or(0);
        let info = ev.get("Executor Info").cloned().unwrap_or(Value::Null);
        let rp = i(&info, "Resource Profile Id").unwrap_or(0);
        let cpus = self
            .resource_profiles
            .iter()
            .find(|p| p.id == rp)
            .and_then(|p| p.task.get("cpus"))
            .and_then(|c| c.get("Amount"))
            .and_then(Value::as_f64)
            .map(|a| a as i64)
            .unwrap_or(self.default_cpus_per_task)
            .max(1);
        let e = self.executor(&id, time);
        e.host = s(&info, "Host");
        e.is_active = true;
        e.total_cores = i(&info, "Total Cores").unwrap_or(0);
        e.max_tasks = e.total_cores / cpus;
        match line.and_then(ordered::executor_added) {
            Some((logs, attributes)) => {
                e.executor_logs = logs;
                e.attributes = attributes;
            }
            None => {
                e.executor_logs = pairs(info.get("Log Urls"));
                e.attributes = pairs(info.get("Attributes"));
            }
        }
        e.resources = info
            .get("Resources")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        e.resource_profile_id = rp;
    }

    fn stage_from_info(&mut self, info: &Value) -> Option<&mut Stage> {
        let id = i(info, "Stage ID")?;
        let attempt = i(info, "Stage Attempt ID").unwrap_or(0);
        let st = self.stages.entry((id, attempt)).or_insert_with(|| Stage {
            stage_id: id,
            attempt_id: attempt,
            status: StageStatus::Pending,
            name: String::new(),
            details: String::new(),
            num_tasks: 0,
            submission_time: None,
            completion_time: None,
            failure_reason: None,
            description: None,
            scheduling_pool: "default".into(),
            rdd_ids: Vec::new(),
            job_ids: Vec::new(),
            active_tasks: 0,
            completed_tasks: 0,
            failed_tasks: 0,
            killed_tasks: 0,
            completed_indices: HashSet::default(),
            first_launch_time: None,
            killed_summary: Vec::new(),
            metrics: Metrics::default(),
            resource_profile_id: 0,
            peak: [0; 23],
            accumulables: Default::default(),
            excluded_executors: BTreeSet::new(),
            speculation: None,
            live: true,
            parent_ids: Vec::new(),
        });
        st.name = s(info, "Stage Name").unwrap_or_default();
        st.details = s(info, "Details").unwrap_or_default();
        st.num_tasks = i(info, "Number of Tasks").unwrap_or(0);
        st.submission_time = i(info, "Submission Time");
        st.completion_time = i(info, "Completion Time");
        st.failure_reason = s(info, "Failure Reason");
        st.resource_profile_id = i(info, "Resource Profile Id").unwrap_or(0);
        st.accumulables =
            accumulables::StageAccumulables::from_stage_info(info.get("Accumulables"));
        st.rdd_ids = info
            .get("RDD Info")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|r| i(r, "RDD ID")).collect())
            .unwrap_or_default();
        if let Some(p) = info.get("Parent IDs").and_then(Value::as_array) {
            st.parent_ids = p.iter().filter_map(Value::as_i64).collect();
        }
        Some(st)
    }

    fn job_start(&mut self, ev: &Value) {
        let Some(id) = i(ev, "Job ID") else { return };
        let infos: Vec<Value> = ev
            .get("Stage Infos")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let num_tasks = infos
            .iter()
            .filter(|si| si.get("Completion Time").is_none())
            .filter_map(|si| i(si, "Number of Tasks"))
            .sum();
        let name = infos
            .iter()
            .max_by_key(|si| i(si, "Stage ID").unwrap_or(i64::MIN))
            .and_then(|si| s(si, "Stage Name"))
            .unwrap_or_default();
        let mut tags: Vec<String> = prop(ev, "spark.job.tags")
            .map(|t| {
                t.split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags.dedup();
        let time = i(ev, "Submission Time").unwrap_or(-1);
        let job = Job {
            id,
            name,
            description: prop(ev, "spark.job.description").map(str::to_string),
            submission_time: (time > 0).then_some(time),
            completion_time: None,
            stage_ids: ev
                .get("Stage IDs")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default(),
            job_group: prop(ev, "spark.jobGroup.id").map(str::to_string),
            job_tags: tags,
            status: JobStatus::Running,
            num_tasks,
            active_tasks: 0,
            completed_tasks: 0,
            skipped_tasks: 0,
            failed_tasks: 0,
            killed_tasks: 0,
            completed_indices: HashSet::default(),
            active_stages: 0,
            completed_stages: BTreeSet::new(),
            skipped_stages: BTreeSet::new(),
            failed_stages: 0,
            killed_summary: Vec::new(),
            sql_execution_id: prop(ev, "spark.sql.execution.id").and_then(|x| x.parse().ok()),
            live: true,
        };
        self.jobs.insert(id, job);
        for si in &infos {
            if let Some(st) = self.stage_from_info(si) {
                if !st.job_ids.contains(&id) {
                    st.job_ids.push(id);
                }
            }
        }
    }

    fn job_end(&mut self, ev: &Value) {
        let Some(id) = i(ev, "Job ID") else { return };
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.live {
            return;
        }
        job.live = false;
        // pending stages of the job are now known to be skipped
        for st in self.stages.values_mut() {
            if st.live && job.stage_ids.contains(&st.stage_id) && st.status == StageStatus::Pending
            {
                st.status = StageStatus::Skipped;
                st.live = false;
                job.skipped_stages.insert(st.stage_id);
                job.skipped_tasks += st.num_tasks;
                // never submitted, so never counted active: Spark 4 reports 0 here, not -1
            }
        }
        let ok = ev
            .get("Job Result")
            .and_then(|r| r.get("Result"))
            .and_then(Value::as_str)
            == Some("JobSucceeded");
        job.status = if ok {
            JobStatus::Succeeded
        } else {
            JobStatus::Failed
        };
        let time = i(ev, "Completion Time").unwrap_or(-1);
        job.completion_time = (time > 0).then_some(time);
    }

    fn live_jobs_of(&self, stage_id: i64) -> Vec<i64> {
        self.jobs
            .values()
            .filter(|j| j.live && j.stage_ids.contains(&stage_id))
            .map(|j| j.id)
            .collect()
    }

    fn stage_submitted(&mut self, ev: &Value) {
        let Some(info) = ev.get("Stage Info") else {
            return;
        };
        let Some(stage_id) = i(info, "Stage ID") else {
            return;
        };
        let jobs = self.live_jobs_of(stage_id);
        let pool = prop(ev, "spark.scheduler.pool")
            .unwrap_or("default")
            .to_string();
        let desc = prop(ev, "spark.job.description").map(str::to_string);
        let Some(st) = self.stage_from_info(info) else {
            return;
        };
        st.status = StageStatus::Active;
        st.live = true;
        st.scheduling_pool = pool;
        st.description = desc;
        st.job_ids = jobs.clone();
        for j in jobs {
            if let Some(job) = self.jobs.get_mut(&j) {
                job.completed_stages.remove(&stage_id);
                job.active_stages += 1;
            }
        }
    }

    fn stage_completed(&mut self, ev: &Value) {
        let Some(info) = ev.get("Stage Info") else {
            return;
        };
        let (Some(id), attempt) = (
            i(info, "Stage ID"),
            i(info, "Stage Attempt ID").unwrap_or(0),
        ) else {
            return;
        };
        match self.stages.get(&(id, attempt)) {
            Some(st) if st.live => {}
            _ => return,
        }
        self.stage_exclusions_end((id, attempt));
        let Some(st) = self.stage_from_info(info) else {
            return;
        };
        st.status = if st.failure_reason.is_some() {
            StageStatus::Failed
        } else if st.submission_time.is_some() {
            StageStatus::Complete
        } else {
            StageStatus::Skipped
        };
        let status = st.status;
        let num_tasks = st.num_tasks;
        if st.active_tasks == 0 {
            st.live = false;
        }
        let jobs = st.job_ids.clone();
        for j in jobs {
            let Some(job) = self.jobs.get_mut(&j) else {
                continue;
            };
            match status {
                StageStatus::Complete => {
                    job.completed_stages.insert(id);
                }
                StageStatus::Skipped => {
                    job.skipped_stages.insert(id);
                    job.skipped_tasks += num_tasks;
                }
                _ => job.failed_stages += 1,
            }
            job.active_stages -= 1;
        }
    }
}

fn update_peak(peak: &mut Option<[i64; 23]>, m: &Value) {
    // once any metrics arrived Spark reports the peaks, zeros included
    let p = peak.get_or_insert([0; 23]);
    for (k, name) in EXECUTOR_METRICS.iter().enumerate() {
        if let Some(v) = i(m, name) {
            if v > p[k] {
                p[k] = v;
            }
        }
    }
}
