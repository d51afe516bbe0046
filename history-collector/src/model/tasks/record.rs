//! What is kept of one task (Spark's `TaskDataWrapper`) and of one executor's share of a
//! stage attempt (`ExecutorStageSummary`), with the values Spark derives from them.

use compact_str::CompactString;

use super::events::TaskInfo;
use crate::model::accumulables::AccumulableInfo;
use crate::model::{m, Metrics};

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
    pub(super) fn code(self) -> u64 {
        self as u64
    }
    pub(super) fn from_code(c: u64) -> TaskState {
        match c {
            0 => TaskState::Running,
            1 => TaskState::GetResult,
            2 => TaskState::Failed,
            3 => TaskState::Killed,
            _ => TaskState::Success,
        }
    }
    pub(super) fn of(info: &TaskInfo) -> TaskState {
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
    /// The task's updates of named accumulators, as the API shows them.
    pub accumulables: Vec<AccumulableInfo>,
}

impl TaskRec {
    /// Spark's `AppStatusUtils.gettingResultTime`.
    pub fn getting_result_time(&self) -> i64 {
        if self.result_fetch_start > 0 {
            if self.duration > 0 {
                self.launch_time + self.duration - self.result_fetch_start
            } else {
                crate::clock::now_ms() - self.result_fetch_start
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
    /// The executor is excluded for the stage attempt (see `model::exclusion`).
    pub is_excluded: bool,
}
