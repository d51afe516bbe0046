//! Every task of an application: the task events as the log spells them, the record kept
//! of each task, the store that keeps those records off the heap, and the replay of the
//! events into them and into the stage, job and executor counts they move.
//!
//! Spark's History Server keeps every task of an application in its in-memory store; with
//! a million tasks that is most of its memory. Here a task's final state is encoded into an
//! unlinked spill file as soon as the task ends ([`store`]), and memory holds only the tasks
//! still running plus, per stage attempt, the runs of the file its records occupy.

mod codec;
mod events;
mod metrics;
mod record;
mod replay;
mod store;

pub use events::{Reason, TaskEndEvent, TaskInfo, TaskStartEvent};
pub use metrics::{InputIn, OutputIn, PeakMetrics, PushIn, ReadIn, TaskMetricsIn, WriteIn};
pub use record::{ExecStageSummary, TaskRec, TaskState};
pub use store::{cache_dir, TaskStore};
