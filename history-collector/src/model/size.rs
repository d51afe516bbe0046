//! About how much heap a replayed [`App`] holds, for the catalog's memory bound on the
//! applications it keeps replayed. An estimate, not an account: a fixed cost per item of
//! each kind (measured once against the allocator on real logs, rounded up) plus the text
//! the item carries. Tasks are not counted per task: they live in the spill file (see
//! [`super::tasks`]), only the running ones and the per-executor summaries stay on the heap.

use super::App;

const APP: u64 = 16 << 10;
const JOB: u64 = 512;
const STAGE: u64 = 2 << 10;
const EXECUTOR: u64 = 1 << 10;
const PROPERTY: u64 = 64;
const SQL_EXECUTION: u64 = 2 << 10;
const PLAN_NODE: u64 = 512;
const RDD: u64 = 512;
const RDD_PARTITION: u64 = 160;
const EXEC_STAGE_SUMMARY: u64 = 256;
const INDEX: u64 = 16;

fn text(s: &Option<String>) -> u64 {
    s.as_ref().map_or(0, |s| s.len() as u64)
}

impl App {
    /// About how many bytes of heap this application holds (see the module's text).
    pub fn approx_bytes(&self) -> u64 {
        let jobs: u64 = self
            .jobs
            .values()
            .map(|j| JOB + INDEX * (j.completed_indices.len() + j.stage_ids.len()) as u64)
            .sum();
        let stages: u64 = self
            .stages
            .values()
            .map(|s| {
                STAGE
                    + (s.name.len() + s.details.len()) as u64
                    + text(&s.description)
                    + text(&s.failure_reason)
                    + INDEX * s.completed_indices.len() as u64
            })
            .sum();
        let executors = EXECUTOR * self.executors.len() as u64;
        let environment = self.environment.as_ref().map_or(0, |e| {
            [&e.spark, &e.hadoop, &e.system, &e.metrics, &e.classpath]
                .iter()
                .flat_map(|v| v.iter())
                .map(|(k, v)| PROPERTY + (k.len() + v.len()) as u64)
                .sum()
        });
        let sql: u64 = self
            .sql
            .executions
            .values()
            .map(|x| {
                SQL_EXECUTION
                    + text(&x.description)
                    + text(&x.details)
                    + text(&x.physical_plan_description)
                    + PLAN_NODE * x.graph.nodes.len() as u64
            })
            .sum();
        let storage: u64 = self
            .storage
            .rdds
            .values()
            .map(|r| RDD + RDD_PARTITION * r.partitions.len() as u64)
            .sum();
        let tasks = EXEC_STAGE_SUMMARY
            * self
                .tasks
                .exec_summaries
                .values()
                .map(|m| m.len() as u64)
                .sum::<u64>()
            + STAGE * self.tasks.live_count() as u64;
        APP + jobs + stages + executors + environment + sql + storage + tasks
    }
}
