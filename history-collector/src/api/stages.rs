//! `/stages` and everything under it: stage attempts with their tasks and per-executor
//! summaries (`details`), metric quantiles (`withSummaries`, `taskSummary`) and the paged
//! task list, as Spark's `StagesResource` and `AppStatusStore` compute them.
//!
//! Ordering matters for parity: Spark serialises `tasks` and `executorSummary` as Scala
//! immutable maps built from a list (tasks by descending id, executors by id), so small maps
//! keep that order and larger ones iterate in hash-trie order ([`scala_order`]).

// Query-parameter helpers return the finished error response (Spark's 400/404 text) so
// handlers can `?` it straight out; boxing it would buy nothing on this cold path.
#![allow(clippy::result_large_err)]

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::dialect::Dialect;
use super::json::{
    accumulable_data, date, scala_map, speculation_summary, stage_data, AccumulableData, Ordered,
    StageData,
};
use super::{bad_request, json_ok, not_found, param, param_all, Entry};
use crate::model::scala_order::{immutable_order_of, java_string_hash, long_hash};
use crate::model::tasks::{ExecStageSummary, TaskRec, TaskState};
use crate::model::{m, App, Stage, EXECUTOR_METRICS};
use axum::response::Response;

/// A JSON tree of numbers, the shape of Spark's metric classes.
pub enum N {
    I(i64),
    B(bool),
    D(Vec<f64>),
    O(Vec<(&'static str, N)>),
}

impl Serialize for N {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            N::I(v) => s.serialize_i64(*v),
            N::B(v) => s.serialize_bool(*v),
            N::D(v) => v.serialize(s),
            N::O(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

pub type ExecutorStageSummary = N;
pub type TaskMetricDistributions = N;
pub type ExecutorMetricsDistributions = N;

/// How one value is taken from a task.
#[derive(Clone, Copy)]
enum Ex {
    M(usize),
    Duration,
    GettingResult,
    SchedulerDelay,
    ReadBytes,
    TotalBlocks,
}

enum Spec {
    Leaf(&'static str, Ex),
    Node(&'static str, Vec<Spec>),
}

use Ex::M;
use Spec::{Leaf, Node};

const PUSH_FIELDS: [&str; 9] = [
    "corruptMergedBlockChunks",
    "mergedFetchFallbackCount",
    "remoteMergedBlocksFetched",
    "localMergedBlocksFetched",
    "remoteMergedChunksFetched",
    "localMergedChunksFetched",
    "remoteMergedBytesRead",
    "localMergedBytesRead",
    "remoteMergedReqsDuration",
];

fn push_specs() -> Vec<Spec> {
    PUSH_FIELDS
        .iter()
        .enumerate()
        .map(|(i, n)| Leaf(n, M(m::PUSH + i)))
        .collect()
}

/// Spark's `TaskMetrics` (one task).
fn task_metric_specs() -> Vec<Spec> {
    vec![
        Leaf("executorDeserializeTime", M(m::DESER_TIME)),
        Leaf("executorDeserializeCpuTime", M(m::DESER_CPU)),
        Leaf("executorRunTime", M(m::RUN_TIME)),
        Leaf("executorCpuTime", M(m::CPU_TIME)),
        Leaf("resultSize", M(m::RESULT_SIZE)),
        Leaf("jvmGcTime", M(m::GC_TIME)),
        Leaf("resultSerializationTime", M(m::RESULT_SER)),
        Leaf("memoryBytesSpilled", M(m::MEM_SPILL)),
        Leaf("diskBytesSpilled", M(m::DISK_SPILL)),
        Leaf("peakExecutionMemory", M(m::PEAK_EXEC_MEM)),
        Node(
            "inputMetrics",
            vec![
                Leaf("bytesRead", M(m::INPUT_BYTES)),
                Leaf("recordsRead", M(m::INPUT_RECORDS)),
            ],
        ),
        Node(
            "outputMetrics",
            vec![
                Leaf("bytesWritten", M(m::OUTPUT_BYTES)),
                Leaf("recordsWritten", M(m::OUTPUT_RECORDS)),
            ],
        ),
        Node(
            "shuffleReadMetrics",
            vec![
                Leaf("remoteBlocksFetched", M(m::SR_REMOTE_BLOCKS)),
                Leaf("localBlocksFetched", M(m::SR_LOCAL_BLOCKS)),
                Leaf("fetchWaitTime", M(m::SR_FETCH_WAIT)),
                Leaf("remoteBytesRead", M(m::SR_REMOTE_BYTES)),
                Leaf("remoteBytesReadToDisk", M(m::SR_REMOTE_TO_DISK)),
                Leaf("localBytesRead", M(m::SR_LOCAL_BYTES)),
                Leaf("recordsRead", M(m::SR_RECORDS)),
                Leaf("remoteReqsDuration", M(m::SR_REMOTE_REQS_DURATION)),
                Node("shufflePushReadMetrics", push_specs()),
            ],
        ),
        Node(
            "shuffleWriteMetrics",
            vec![
                Leaf("bytesWritten", M(m::SHUFFLE_WRITE_BYTES)),
                Leaf("writeTime", M(m::SHUFFLE_WRITE_TIME)),
                Leaf("recordsWritten", M(m::SHUFFLE_WRITE_RECORDS)),
            ],
        ),
    ]
}

/// Spark's `TaskMetricDistributions` (after `quantiles`).
fn distribution_specs() -> Vec<Spec> {
    vec![
        Leaf("duration", Ex::Duration),
        Leaf("executorDeserializeTime", M(m::DESER_TIME)),
        Leaf("executorDeserializeCpuTime", M(m::DESER_CPU)),
        Leaf("executorRunTime", M(m::RUN_TIME)),
        Leaf("executorCpuTime", M(m::CPU_TIME)),
        Leaf("resultSize", M(m::RESULT_SIZE)),
        Leaf("jvmGcTime", M(m::GC_TIME)),
        Leaf("resultSerializationTime", M(m::RESULT_SER)),
        Leaf("gettingResultTime", Ex::GettingResult),
        Leaf("schedulerDelay", Ex::SchedulerDelay),
        Leaf("peakExecutionMemory", M(m::PEAK_EXEC_MEM)),
        Leaf("memoryBytesSpilled", M(m::MEM_SPILL)),
        Leaf("diskBytesSpilled", M(m::DISK_SPILL)),
        Node(
            "inputMetrics",
            vec![
                Leaf("bytesRead", M(m::INPUT_BYTES)),
                Leaf("recordsRead", M(m::INPUT_RECORDS)),
            ],
        ),
        Node(
            "outputMetrics",
            vec![
                Leaf("bytesWritten", M(m::OUTPUT_BYTES)),
                Leaf("recordsWritten", M(m::OUTPUT_RECORDS)),
            ],
        ),
        Node(
            "shuffleReadMetrics",
            vec![
                Leaf("readBytes", Ex::ReadBytes),
                Leaf("readRecords", M(m::SR_RECORDS)),
                Leaf("remoteBlocksFetched", M(m::SR_REMOTE_BLOCKS)),
                Leaf("localBlocksFetched", M(m::SR_LOCAL_BLOCKS)),
                Leaf("fetchWaitTime", M(m::SR_FETCH_WAIT)),
                Leaf("remoteBytesRead", M(m::SR_REMOTE_BYTES)),
                Leaf("remoteBytesReadToDisk", M(m::SR_REMOTE_TO_DISK)),
                Leaf("totalBlocksFetched", Ex::TotalBlocks),
                Leaf("remoteReqsDuration", M(m::SR_REMOTE_REQS_DURATION)),
                Node("shufflePushReadMetricsDist", push_specs()),
            ],
        ),
        Node(
            "shuffleWriteMetrics",
            vec![
                Leaf("writeBytes", M(m::SHUFFLE_WRITE_BYTES)),
                Leaf("writeRecords", M(m::SHUFFLE_WRITE_RECORDS)),
                Leaf("writeTime", M(m::SHUFFLE_WRITE_TIME)),
            ],
        ),
    ]
}

fn eval(t: &TaskRec, ex: Ex) -> i64 {
    let mv = |i: usize| t.metrics.as_ref().map_or(-1, |mt| mt.v[i]);
    match ex {
        M(i) => mv(i),
        Ex::Duration => t.duration,
        Ex::GettingResult => t.getting_result_time(),
        Ex::SchedulerDelay => t.scheduler_delay(),
        Ex::ReadBytes => mv(m::SR_LOCAL_BYTES) + mv(m::SR_REMOTE_BYTES),
        Ex::TotalBlocks => mv(m::SR_LOCAL_BLOCKS) + mv(m::SR_REMOTE_BLOCKS),
    }
}

fn build(specs: &[Spec], leaf: &mut impl FnMut(Ex) -> N) -> N {
    N::O(
        specs
            .iter()
            .map(|s| match s {
                Leaf(name, ex) => (*name, leaf(*ex)),
                Node(name, kids) => (*name, build(kids, leaf)),
            })
            .collect(),
    )
}

/// Spark's `TaskData`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskData {
    pub task_id: i64,
    pub index: i64,
    pub attempt: i64,
    pub partition_id: i64,
    pub launch_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_fetch_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    pub executor_id: String,
    pub host: String,
    pub status: &'static str,
    pub task_locality: String,
    pub speculative: bool,
    pub accumulator_updates: Vec<AccumulableData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_metrics: Option<N>,
    pub executor_logs: Ordered<String>,
    pub scheduler_delay: i64,
    pub getting_result_time: i64,
}

pub fn task_data(app: &App, t: &TaskRec, dialect: Dialect) -> TaskData {
    let specs = task_metric_specs();
    TaskData {
        task_id: t.task_id,
        index: t.index,
        attempt: t.attempt,
        partition_id: t.partition_id,
        launch_time: date(t.launch_time),
        result_fetch_start: (t.result_fetch_start > 0).then(|| date(t.result_fetch_start)),
        duration: (t.duration > 0).then_some(t.duration),
        executor_id: t.executor_id.to_string(),
        host: t.host.to_string(),
        status: t.status.as_str(),
        task_locality: t.locality.to_string(),
        speculative: t.speculative,
        accumulator_updates: t.accumulables.iter().map(accumulable_data).collect(),
        error_message: t.error.clone(),
        task_metrics: t
            .metrics
            .as_ref()
            .map(|_| build(&specs, &mut |ex| N::I(eval(t, ex)))),
        executor_logs: scala_map(
            app.executors
                .get(t.executor_id.as_str())
                .map_or(&[][..], |e| &e.executor_logs),
            dialect,
        ),
        scheduler_delay: t.scheduler_delay(),
        getting_result_time: t.getting_result_time(),
    }
}

/// Spark's `ExecutorStageSummary`.
pub fn executor_stage_summary(s: &ExecStageSummary, dialect: Dialect) -> N {
    let v = &s.metrics.v;
    let mut fields = vec![
        ("taskTime", N::I(s.task_time)),
        ("failedTasks", N::I(s.failed)),
        ("succeededTasks", N::I(s.succeeded)),
        ("killedTasks", N::I(s.killed)),
        ("inputBytes", N::I(v[m::INPUT_BYTES])),
        ("inputRecords", N::I(v[m::INPUT_RECORDS])),
        ("outputBytes", N::I(v[m::OUTPUT_BYTES])),
        ("outputRecords", N::I(v[m::OUTPUT_RECORDS])),
        (
            "shuffleRead",
            N::I(v[m::SR_REMOTE_BYTES] + v[m::SR_LOCAL_BYTES]),
        ),
        ("shuffleReadRecords", N::I(v[m::SR_RECORDS])),
        ("shuffleWrite", N::I(v[m::SHUFFLE_WRITE_BYTES])),
        ("shuffleWriteRecords", N::I(v[m::SHUFFLE_WRITE_RECORDS])),
        ("memoryBytesSpilled", N::I(v[m::MEM_SPILL])),
        ("diskBytesSpilled", N::I(v[m::DISK_SPILL])),
        ("isBlacklistedForStage", N::B(s.is_excluded)),
    ];
    if let Some(p) = &s.peak {
        fields.push((
            "peakMemoryMetrics",
            N::O(
                EXECUTOR_METRICS
                    .iter()
                    .zip(p.iter())
                    .take(dialect.executor_metric_count())
                    .map(|(k, v)| (*k, N::I(*v)))
                    .collect(),
            ),
        ));
    }
    fields.push(("isExcludedForStage", N::B(s.is_excluded)));
    N::O(fields)
}

/// Spark's `Distribution.getQuantiles` / the task-summary index: the value at
/// `min(floor(q * n), n - 1)` of the sorted values.
fn quantiles_of(mut values: Vec<i64>, qs: &[f64]) -> Vec<f64> {
    values.sort_unstable();
    let n = values.len();
    qs.iter()
        .map(|q| {
            let i = ((q * n as f64) as i64).clamp(0, n as i64 - 1) as usize;
            values.get(i).map_or(f64::NAN, |v| *v as f64)
        })
        .collect()
}

/// The value Spark's store indexes a task under for a summary metric (`TaskDataWrapper`'s
/// index getters). Spark stores the metrics of tasks that did not succeed negated
/// (`-v - 1`, SPARK-26260) and scans each index from 0, so those tasks drop out of the
/// metric quantiles, and so do tasks without metrics (-1), but not out of `duration`
/// (never negated) nor `schedulerDelay`, which Spark computes from the metrics un-negated
/// (`getMetricValue`). The shuffle totals add the stored (negated) values, as Spark does.
fn indexed(t: &TaskRec, ex: Ex) -> i64 {
    let Some(mt) = &t.metrics else {
        return if matches!(ex, Ex::Duration) {
            t.duration
        } else {
            -1
        };
    };
    let ok = t.status == TaskState::Success;
    let stored = |i: usize| if ok { mt.v[i] } else { -mt.v[i] - 1 };
    match ex {
        M(i) => stored(i),
        Ex::Duration => t.duration,
        Ex::GettingResult => t.getting_result_time(),
        Ex::SchedulerDelay => (t.duration
            - mt.v[m::RUN_TIME]
            - mt.v[m::DESER_TIME]
            - mt.v[m::RESULT_SER]
            - t.getting_result_time())
        .max(0),
        Ex::ReadBytes => stored(m::SR_LOCAL_BYTES) + stored(m::SR_REMOTE_BYTES),
        Ex::TotalBlocks => stored(m::SR_LOCAL_BLOCKS) + stored(m::SR_REMOTE_BLOCKS),
    }
}

/// `taskSummary`, as Spark's `AppStatusStore.taskSummary` computes it: `count` is the
/// number of tasks whose stored run time is not negative (the successful ones with
/// metrics), quantile `q` is the value at `min(floor(q * count), count - 1)` among the tasks
/// whose indexed value is not negative (see [`indexed`]), sorted; `None` when `count` is 0.
pub fn task_summary(tasks: &[TaskRec], qs: &[f64]) -> Option<N> {
    let count = tasks
        .iter()
        .filter(|t| indexed(t, M(m::RUN_TIME)) >= 0)
        .count();
    if count == 0 {
        return None;
    }
    let positions: Vec<usize> = qs
        .iter()
        .map(|q| ((q * count as f64) as i64).clamp(0, count as i64 - 1) as usize)
        .collect();
    let specs = distribution_specs();
    let N::O(mut fields) = build(&specs, &mut |ex| {
        let mut vals: Vec<i64> = tasks
            .iter()
            .map(|t| indexed(t, ex))
            .filter(|v| *v >= 0)
            .collect();
        vals.sort_unstable();
        N::D(
            positions
                .iter()
                .map(|i| vals.get(*i).map_or(f64::NAN, |v| *v as f64))
                .collect(),
        )
    }) else {
        return None;
    };
    fields.insert(0, ("quantiles", N::D(qs.to_vec())));
    Some(N::O(fields))
}

/// `executorMetricsDistributions`: quantiles over the executors' stage summaries.
fn executor_distributions(sums: &[&ExecStageSummary], qs: &[f64], dialect: Dialect) -> Option<N> {
    if sums.is_empty() {
        return None;
    }
    let q = |f: &dyn Fn(&ExecStageSummary) -> i64| {
        N::D(quantiles_of(sums.iter().map(|s| f(s)).collect(), qs))
    };
    let mv = |i: usize| move |s: &ExecStageSummary| s.metrics.v[i];
    Some(N::O(vec![
        ("quantiles", N::D(qs.to_vec())),
        ("taskTime", q(&|s| s.task_time)),
        ("failedTasks", q(&|s| s.failed)),
        ("succeededTasks", q(&|s| s.succeeded)),
        ("killedTasks", q(&|s| s.killed)),
        ("inputBytes", q(&mv(m::INPUT_BYTES))),
        ("inputRecords", q(&mv(m::INPUT_RECORDS))),
        ("outputBytes", q(&mv(m::OUTPUT_BYTES))),
        ("outputRecords", q(&mv(m::OUTPUT_RECORDS))),
        (
            "shuffleRead",
            q(&|s| s.metrics.v[m::SR_REMOTE_BYTES] + s.metrics.v[m::SR_LOCAL_BYTES]),
        ),
        ("shuffleReadRecords", q(&mv(m::SR_RECORDS))),
        ("shuffleWrite", q(&mv(m::SHUFFLE_WRITE_BYTES))),
        ("shuffleWriteRecords", q(&mv(m::SHUFFLE_WRITE_RECORDS))),
        ("memoryBytesSpilled", q(&mv(m::MEM_SPILL))),
        ("diskBytesSpilled", q(&mv(m::DISK_SPILL))),
        (
            "peakMemoryMetrics",
            N::O(
                EXECUTOR_METRICS
                    .iter()
                    .take(dialect.executor_metric_count())
                    .enumerate()
                    .map(|(i, k)| {
                        // over the executors that reported metrics
                        let vals: Vec<i64> =
                            sums.iter().filter_map(|s| s.peak.map(|p| p[i])).collect();
                        (*k, N::D(quantiles_of(vals, qs)))
                    })
                    .collect(),
            ),
        ),
    ]))
}

/// What `details`/`withSummaries` add to a stage.
struct Extras<'a> {
    dialect: Dialect,
    details: bool,
    summaries: bool,
    quantiles: Vec<f64>,
    statuses: &'a [&'static str],
}

fn stage_json(app: &App, st: &Stage, x: &Extras) -> StageData {
    let mut d = stage_data(st, x.dialect);
    if !app.tasks.peak_set.contains(&(st.stage_id, st.attempt_id)) {
        d.peak_executor_metrics = None;
    }
    if !x.details && !x.summaries {
        return d;
    }
    let key = (st.stage_id, st.attempt_id);
    let tasks = app.tasks.stage_tasks(key);
    let empty = Default::default();
    let sums = app.tasks.exec_summaries.get(&key).unwrap_or(&empty);
    if x.details {
        // Spark lists them by descending id, then builds a Scala map from that list
        let mut list: Vec<&TaskRec> = tasks
            .iter()
            .filter(|t| x.statuses.is_empty() || x.statuses.contains(&t.status.as_str()))
            .collect();
        list.sort_by_key(|t| std::cmp::Reverse(t.task_id));
        let hashes: Vec<i32> = list.iter().map(|t| long_hash(t.task_id)).collect();
        d.tasks = Some(Ordered(
            immutable_order_of(&hashes, x.dialect.scala())
                .into_iter()
                .map(|i| {
                    (
                        list[i].task_id.to_string(),
                        task_data(app, list[i], x.dialect),
                    )
                })
                .collect(),
        ));
        let execs: Vec<(&String, &ExecStageSummary)> = sums.iter().collect();
        let hashes: Vec<i32> = execs.iter().map(|(k, _)| java_string_hash(k)).collect();
        d.executor_summary = Some(Ordered(
            immutable_order_of(&hashes, x.dialect.scala())
                .into_iter()
                .map(|i| {
                    (
                        execs[i].0.clone(),
                        executor_stage_summary(execs[i].1, x.dialect),
                    )
                })
                .collect(),
        ));
        d.speculation_summary = st.speculation.as_ref().map(speculation_summary);
    }
    if x.summaries {
        d.task_metrics_distributions = task_summary(&tasks, &x.quantiles);
        let all: Vec<&ExecStageSummary> = sums.values().collect();
        d.executor_metrics_distributions = executor_distributions(&all, &x.quantiles, x.dialect);
    }
    d
}

/// JAX-RS reads a `Boolean` query parameter with `Boolean.valueOf`.
fn flag(ps: &[(String, String)], name: &str, default: bool) -> bool {
    param(ps, name).map_or(default, |v| v.eq_ignore_ascii_case("true"))
}

/// Spark's quantile list: comma-separated doubles, sorted; a bad one is a 400.
fn quantiles(ps: &[(String, String)], default: &str) -> Result<Vec<f64>, Response> {
    let text = param(ps, "quantiles").unwrap_or(default);
    let mut out = Vec::new();
    for s in text.split(',') {
        match s.trim().parse::<f64>() {
            Ok(q) => out.push(q),
            Err(_) => {
                return Err(bad_request(format!(
                    "Bad value for parameter \"quantiles\".  Expected a double, got \"{s}\""
                )))
            }
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// A `TaskStatus` filter (RUNNING, KILLED, FAILED, SUCCESS, UNKNOWN, any case); empty when
/// not given. A task matches by its status name, so UNKNOWN matches nothing recorded.
fn task_statuses(ps: &[(String, String)], name: &str) -> Result<Vec<&'static str>, Response> {
    param_all(ps, name)
        .iter()
        .map(|s| {
            let up = s.to_ascii_uppercase();
            ["RUNNING", "KILLED", "FAILED", "SUCCESS", "UNKNOWN"]
                .into_iter()
                .find(|k| *k == up)
                .ok_or_else(|| not_found(format!("unknown task status: {s}")))
        })
        .collect()
}

const DEFAULT_STAGE_QUANTILES: &str = "0.0,0.25,0.5,0.75,1.0";

/// Answers `/stages[/...]` (`rest` is what follows `stages`).
pub fn route(entry: &Entry, rest: &[&str], ps: &[(String, String)], dialect: Dialect) -> Response {
    let app = &entry.app;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let num = |s: &str| s.parse::<i64>().ok();
    let statuses = match task_statuses(ps, "taskStatus") {
        Ok(s) => s,
        Err(r) => return r,
    };
    match rest {
        [] => {
            let wanted: Vec<String> = param_all(ps, "status")
                .iter()
                .map(|s| s.to_ascii_uppercase())
                .collect();
            for s in &wanted {
                if !["ACTIVE", "COMPLETE", "FAILED", "PENDING", "SKIPPED"].contains(&s.as_str()) {
                    return bad_request(format!("unknown stage status: {s}"));
                }
            }
            let qs = match quantiles(ps, DEFAULT_STAGE_QUANTILES) {
                Ok(q) => q,
                Err(r) => return r,
            };
            let x = Extras {
                dialect,
                details: flag(ps, "details", false),
                summaries: flag(ps, "withSummaries", false),
                quantiles: qs,
                statuses: &statuses,
            };
            let v: Vec<StageData> = app
                .stages
                .values()
                .rev()
                .filter(|st| wanted.is_empty() || wanted.iter().any(|s| s == st.status.as_str()))
                .map(|st| stage_json(app, st, &x))
                // with a task status filter, Spark leaves out stages with no such task
                .filter(|d| statuses.is_empty() || d.tasks.as_ref().is_none_or(|t| !t.0.is_empty()))
                .collect();
            json_ok(&v)
        }
        [id] if digits(id) => {
            let qs = match quantiles(ps, DEFAULT_STAGE_QUANTILES) {
                Ok(q) => q,
                Err(r) => return r,
            };
            let x = Extras {
                dialect,
                details: flag(ps, "details", true),
                summaries: flag(ps, "withSummaries", false),
                quantiles: qs,
                statuses: &statuses,
            };
            let sid = num(id).unwrap_or(-1);
            let v: Vec<StageData> = app
                .stages
                .range((sid, i64::MIN)..=(sid, i64::MAX))
                .map(|(_, st)| stage_json(app, st, &x))
                .collect();
            if v.is_empty() {
                return not_found(format!("unknown stage: {id}"));
            }
            json_ok(&v)
        }
        [id, att, tail @ ..] if digits(id) && digits(att) => {
            let key = (num(id).unwrap_or(-1), num(att).unwrap_or(-1));
            match tail {
                [] => {
                    let qs = match quantiles(ps, DEFAULT_STAGE_QUANTILES) {
                        Ok(q) => q,
                        Err(r) => return r,
                    };
                    let x = Extras {
                        dialect,
                        details: flag(ps, "details", true),
                        summaries: flag(ps, "withSummaries", false),
                        quantiles: qs,
                        statuses: &statuses,
                    };
                    match app.stages.get(&key) {
                        Some(st) => json_ok(&stage_json(app, st, &x)),
                        None => {
                            let ids: Vec<String> = app
                                .stages
                                .range((key.0, i64::MIN)..=(key.0, i64::MAX))
                                .map(|(k, _)| k.1.to_string())
                                .collect();
                            not_found(if ids.is_empty() {
                                format!("unknown stage: {id}")
                            } else {
                                format!(
                                    "unknown attempt for stage {id}.  Found attempts: [{}]",
                                    ids.join(",")
                                )
                            })
                        }
                    }
                }
                ["taskSummary"] => {
                    let qs = match quantiles(ps, "0.05,0.25,0.5,0.75,0.95") {
                        Ok(q) => q,
                        Err(r) => return r,
                    };
                    match task_summary(&app.tasks.stage_tasks(key), &qs) {
                        Some(d) => json_ok(&d),
                        None => {
                            not_found(format!("No tasks reported metrics for {id} / {att} yet."))
                        }
                    }
                }
                ["taskList"] => task_list(app, key, ps, dialect),
                _ => not_found(format!("unknown resource: stages/{}", rest.join("/"))),
            }
        }
        _ => not_found(format!("unknown resource: stages/{}", rest.join("/"))),
    }
}

fn task_list(app: &App, key: (i64, i64), ps: &[(String, String)], dialect: Dialect) -> Response {
    let int = |name: &str, default: i64| -> Result<i64, Response> {
        match param(ps, name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<i32>()
                .map(i64::from)
                .map_err(|_| not_found(format!("bad {name}: {v}"))),
        }
    };
    let (offset, length) = match (int("offset", 0), int("length", 20)) {
        (Ok(o), Ok(l)) => (o.max(0) as usize, l.max(0) as usize),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    // Spark's TaskSorting: ID, runtime / INCREASING_RUNTIME, -runtime / DECREASING_RUNTIME
    let sort = param(ps, "sortBy").unwrap_or("ID");
    let by_runtime = match sort.to_ascii_lowercase().as_str() {
        "id" => None,
        "runtime" | "increasing_runtime" => Some(true),
        "-runtime" | "decreasing_runtime" => Some(false),
        _ => return not_found(format!("bad sortBy: {sort}")),
    };
    let statuses = match task_statuses(ps, "status") {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut tasks = app.tasks.stage_tasks(key);
    match by_runtime {
        None => tasks.sort_by_key(|t| t.task_id),
        Some(true) => tasks.sort_by_key(|t| (t.run_time(), t.task_id)),
        Some(false) => tasks.sort_by_key(|t| std::cmp::Reverse((t.run_time(), t.task_id))),
    }
    let out: Vec<TaskData> = tasks
        .iter()
        .filter(|t| statuses.is_empty() || statuses.contains(&t.status.as_str()))
        .skip(offset)
        .take(length)
        .map(|t| task_data(app, t, dialect))
        .collect();
    json_ok(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Metrics, METRIC_COUNT};

    fn task(id: i64, status: TaskState, duration: i64, run: i64, deser: i64) -> TaskRec {
        let mut v = [0; METRIC_COUNT];
        v[m::RUN_TIME] = run;
        v[m::DESER_TIME] = deser;
        TaskRec {
            task_id: id,
            index: id,
            attempt: 0,
            partition_id: id,
            launch_time: 1_000,
            result_fetch_start: 0,
            duration,
            executor_id: "1".into(),
            host: "h".into(),
            status,
            locality: "PROCESS_LOCAL".into(),
            speculative: false,
            error: None,
            metrics: Some(Metrics { v }),
            accumulables: Vec::new(),
        }
    }

    fn quantiles(n: &N, name: &str) -> Vec<f64> {
        let N::O(fields) = n else { panic!("an object") };
        match fields.iter().find(|(k, _)| *k == name) {
            Some((_, N::D(v))) => v.clone(),
            _ => panic!("no {name}"),
        }
    }

    /// Spark's store indexes a failed task's scheduler delay from its real metrics, so it
    /// sorts among the successful ones; its run time stays out (stored negated), and the
    /// positions come from the four successful tasks only.
    #[test]
    fn summary_indexes_tasks_as_sparks_store() {
        let tasks = vec![
            task(1, TaskState::Success, 100, 80, 10), // delay 10
            task(2, TaskState::Success, 120, 90, 14), // delay 16
            task(3, TaskState::Success, 100, 80, 6),  // delay 14
            task(4, TaskState::Success, 50, 40, 8),   // delay 2
            task(5, TaskState::Failed, 30, 10, 8),    // delay 12
            TaskRec {
                metrics: None,
                status: TaskState::Running,
                duration: 5000,
                ..task(6, TaskState::Running, 0, 0, 0)
            },
        ];
        let qs = [0.0, 0.25, 0.5, 0.75, 0.95];
        let s = task_summary(&tasks, &qs).expect("successful tasks");
        // delays 2, 10, 12, 14, 16: positions floor(q * 4)
        assert_eq!(
            quantiles(&s, "schedulerDelay"),
            [2.0, 10.0, 12.0, 14.0, 14.0]
        );
        // run times of the successful tasks only
        assert_eq!(
            quantiles(&s, "executorRunTime"),
            [40.0, 80.0, 80.0, 90.0, 90.0]
        );
        // durations of every task, the running one's too
        assert_eq!(quantiles(&s, "duration"), [30.0, 50.0, 100.0, 100.0, 100.0]);
        // no successful task with metrics: no summary
        assert!(task_summary(&tasks[4..], &qs).is_none());
    }
}
