//! The task events as Spark's `JsonProtocol` writes them (`SparkListenerTaskStart`,
//! `SparkListenerTaskGettingResult`, `SparkListenerTaskEnd`): only the fields the API shows,
//! with serde's defaults where a field is missing, and the end reason's error text.

use compact_str::CompactString;
use serde::Deserialize;

use super::metrics::{PeakMetrics, TaskMetricsIn};
use crate::model::accumulables::AccumulableInfo;

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
    /// Named accumulators the task updated, as the API shows them.
    #[serde(
        rename = "Accumulables",
        default,
        deserialize_with = "crate::model::accumulables::shown_accumulables"
    )]
    pub accumulables: Vec<AccumulableInfo>,
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
