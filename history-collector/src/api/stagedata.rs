//! Spark's `v1.StageData` and what `details` and `withSummaries` put in it: the task list
//! (`TaskData`), the per-executor summaries (`ExecutorStageSummary`) and the metric
//! quantiles (`TaskMetricDistributions`, `ExecutorMetricsDistributions`), as Spark's
//! `AppStatusStore` computes them. [`super::stages`] routes the requests.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::dialect::Dialect;
use super::json::{accumulable_data, date, peak_map, scala_map, AccumulableData, Ordered};
use crate::model::tasks::{ExecStageSummary, TaskRec, TaskState};
use crate::model::{m, App, Stage, EXECUTOR_METRICS};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageData {
    pub status: &'static str,
    pub stage_id: i64,
    pub attempt_id: i64,
    pub num_tasks: i64,
    pub num_active_tasks: i64,
    pub num_complete_tasks: i64,
    pub num_failed_tasks: i64,
    pub num_killed_tasks: i64,
    pub num_completed_indices: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submission_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_task_launched_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub executor_deserialize_time: i64,
    pub executor_deserialize_cpu_time: i64,
    pub executor_run_time: i64,
    pub executor_cpu_time: i64,
    pub result_size: i64,
    pub jvm_gc_time: i64,
    pub result_serialization_time: i64,
    pub memory_bytes_spilled: i64,
    pub disk_bytes_spilled: i64,
    pub peak_execution_memory: i64,
    pub input_bytes: i64,
    pub input_records: i64,
    pub output_bytes: i64,
    pub output_records: i64,
    pub shuffle_remote_blocks_fetched: i64,
    pub shuffle_local_blocks_fetched: i64,
    pub shuffle_fetch_wait_time: i64,
    pub shuffle_remote_bytes_read: i64,
    pub shuffle_remote_bytes_read_to_disk: i64,
    pub shuffle_local_bytes_read: i64,
    pub shuffle_read_bytes: i64,
    pub shuffle_read_records: i64,
    pub shuffle_corrupt_merged_block_chunks: i64,
    pub shuffle_merged_fetch_fallback_count: i64,
    pub shuffle_merged_remote_blocks_fetched: i64,
    pub shuffle_merged_local_blocks_fetched: i64,
    pub shuffle_merged_remote_chunks_fetched: i64,
    pub shuffle_merged_local_chunks_fetched: i64,
    pub shuffle_merged_remote_bytes_read: i64,
    pub shuffle_merged_local_bytes_read: i64,
    pub shuffle_remote_reqs_duration: i64,
    pub shuffle_merged_remote_reqs_duration: i64,
    pub shuffle_write_bytes: i64,
    pub shuffle_write_time: i64,
    pub shuffle_write_records: i64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub details: String,
    pub scheduling_pool: String,
    pub rdd_ids: Vec<i64>,
    pub accumulator_updates: Vec<AccumulableData>,
    /// With `details`: the tasks and per-executor summaries (see [`super::stages`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Ordered<TaskData>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor_summary: Option<Ordered<ExecutorStageSummary>>,
    /// With `details`, once a speculative task started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speculation_summary: Option<SpeculationSummary>,
    pub killed_tasks_summary: Ordered<i64>,
    pub resource_profile_id: i64,
    /// Absent until a task of the stage reported executor metrics (Spark's `isSet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_executor_metrics: Option<Ordered<i64>>,
    /// With `withSummaries`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_metrics_distributions: Option<TaskMetricDistributions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor_metrics_distributions: Option<ExecutorMetricsDistributions>,
    pub is_shuffle_push_enabled: bool,
    pub shuffle_mergers_count: i64,
}

/// Spark's `SpeculationStageSummary`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpeculationSummary {
    pub num_tasks: i64,
    pub num_active_tasks: i64,
    pub num_completed_tasks: i64,
    pub num_failed_tasks: i64,
    pub num_killed_tasks: i64,
}

pub fn speculation_summary(s: &crate::model::Speculation) -> SpeculationSummary {
    SpeculationSummary {
        num_tasks: s.num_tasks,
        num_active_tasks: s.active,
        num_completed_tasks: s.completed,
        num_failed_tasks: s.failed,
        num_killed_tasks: s.killed,
    }
}

pub fn stage_data(st: &Stage, dialect: Dialect) -> StageData {
    let v = &st.metrics.v;
    StageData {
        status: st.status.as_str(),
        stage_id: st.stage_id,
        attempt_id: st.attempt_id,
        num_tasks: st.num_tasks,
        num_active_tasks: st.active_tasks,
        num_complete_tasks: st.completed_tasks,
        num_failed_tasks: st.failed_tasks,
        num_killed_tasks: st.killed_tasks,
        num_completed_indices: st.completed_indices.len() as i64,
        submission_time: st.submission_time.map(date),
        first_task_launched_time: st.first_launch_time.map(date),
        completion_time: st.completion_time.map(date),
        failure_reason: st.failure_reason.clone(),
        executor_deserialize_time: v[m::DESER_TIME],
        executor_deserialize_cpu_time: v[m::DESER_CPU],
        executor_run_time: v[m::RUN_TIME],
        executor_cpu_time: v[m::CPU_TIME],
        result_size: v[m::RESULT_SIZE],
        jvm_gc_time: v[m::GC_TIME],
        result_serialization_time: v[m::RESULT_SER],
        memory_bytes_spilled: v[m::MEM_SPILL],
        disk_bytes_spilled: v[m::DISK_SPILL],
        peak_execution_memory: v[m::PEAK_EXEC_MEM],
        input_bytes: v[m::INPUT_BYTES],
        input_records: v[m::INPUT_RECORDS],
        output_bytes: v[m::OUTPUT_BYTES],
        output_records: v[m::OUTPUT_RECORDS],
        shuffle_remote_blocks_fetched: v[m::SR_REMOTE_BLOCKS],
        shuffle_local_blocks_fetched: v[m::SR_LOCAL_BLOCKS],
        shuffle_fetch_wait_time: v[m::SR_FETCH_WAIT],
        shuffle_remote_bytes_read: v[m::SR_REMOTE_BYTES],
        shuffle_remote_bytes_read_to_disk: v[m::SR_REMOTE_TO_DISK],
        shuffle_local_bytes_read: v[m::SR_LOCAL_BYTES],
        shuffle_read_bytes: v[m::SR_LOCAL_BYTES] + v[m::SR_REMOTE_BYTES],
        shuffle_read_records: v[m::SR_RECORDS],
        shuffle_corrupt_merged_block_chunks: v[m::PUSH],
        shuffle_merged_fetch_fallback_count: v[m::PUSH + 1],
        shuffle_merged_remote_blocks_fetched: v[m::PUSH + 2],
        shuffle_merged_local_blocks_fetched: v[m::PUSH + 3],
        shuffle_merged_remote_chunks_fetched: v[m::PUSH + 4],
        shuffle_merged_local_chunks_fetched: v[m::PUSH + 5],
        shuffle_merged_remote_bytes_read: v[m::PUSH + 6],
        shuffle_merged_local_bytes_read: v[m::PUSH + 7],
        shuffle_remote_reqs_duration: v[m::SR_REMOTE_REQS_DURATION],
        shuffle_merged_remote_reqs_duration: v[m::PUSH + 8],
        shuffle_write_bytes: v[m::SHUFFLE_WRITE_BYTES],
        shuffle_write_time: v[m::SHUFFLE_WRITE_TIME],
        shuffle_write_records: v[m::SHUFFLE_WRITE_RECORDS],
        name: st.name.clone(),
        description: st.description.clone(),
        details: st.details.clone(),
        scheduling_pool: st.scheduling_pool.clone(),
        rdd_ids: st.rdd_ids.clone(),
        accumulator_updates: st
            .accumulables
            .in_order(dialect.scala())
            .into_iter()
            .map(accumulable_data)
            .collect(),
        tasks: None,
        executor_summary: None,
        speculation_summary: None,
        killed_tasks_summary: Ordered(st.killed_summary.clone()),
        resource_profile_id: st.resource_profile_id,
        peak_executor_metrics: Some(peak_map(&st.peak, dialect)),
        is_shuffle_push_enabled: false,
        task_metrics_distributions: None,
        executor_metrics_distributions: None,
        shuffle_mergers_count: 0,
    }
}

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
pub fn executor_distributions(
    sums: &[&ExecStageSummary],
    qs: &[f64],
    dialect: Dialect,
) -> Option<N> {
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
