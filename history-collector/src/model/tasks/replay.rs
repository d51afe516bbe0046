//! Replaying the task events, following Spark's `AppStatusListener` in replay mode: a task
//! exists once its start was seen, its end replaces its state, the stage, job and executor
//! counts move only while their entity is live, executor-per-stage summaries are updated
//! only while the stage is live, and tasks still running when the log ends are written as
//! such.

use serde::Deserialize;

use super::events::{Reason, TaskEndEvent, TaskStartEvent};
use super::metrics::TaskMetricsIn;
use super::record::{ExecStageSummary, TaskRec, TaskState};
use super::store::LiveTask;
use crate::model::{bump, m, App, StageStatus};

impl App {
    /// `SparkListenerTaskStart`.
    pub fn task_start_typed(&mut self, ev: &TaskStartEvent) {
        let (sid, att) = (ev.stage_id, ev.stage_attempt);
        let info = &ev.info;
        let launch = info.launch_time;
        if let Some(st) = self.stages.get_mut(&(sid, att)).filter(|s| s.live) {
            if info.speculative {
                let spec = st.speculation.get_or_insert_with(Default::default);
                spec.active += 1;
                spec.num_tasks += 1;
            }
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
            accumulables: info.accumulables.clone(),
        };
        self.tasks.live.insert(
            info.task_id,
            LiveTask {
                stage: (sid, att),
                rec,
            },
        );
    }

    /// `SparkListenerTaskGettingResult` changes nothing in replay: Spark's listener only
    /// rewrites the task it holds, whose info came from the task's start event, not from
    /// this one, so a task that never ended is shown as running without a result fetch.
    pub fn task_getting_result(&mut self, _ev: &TaskStartEvent) {}

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
            if info.speculative {
                let spec = st.speculation.get_or_insert_with(Default::default);
                spec.active -= 1;
                spec.completed += done;
                spec.failed += failed;
                spec.killed += killed;
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
            r.accumulables = info.accumulables.clone();
            if let Some(d) = delta {
                r.metrics = Some(d);
            }
            self.tasks.write(t.stage, &t.rec);
        }
    }
}

impl App {
    /// A task event given as a parsed value (the typed events borrow from it).
    pub(in crate::model) fn task_event(&mut self, kind: &str, ev: &serde_json::Value) {
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
        self.apply_parsed(crate::model::pipeline::Parsed::parse(line), line)
    }

    /// One log line whose task event, if any, is already parsed (see [`App::apply_line`]).
    pub(in crate::model) fn apply_parsed(
        &mut self,
        parsed: crate::model::pipeline::Parsed,
        line: &[u8],
    ) -> bool {
        use crate::model::pipeline::Parsed;
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
                self.apply_event(&v, Some(line));
                true
            }
            _ => false,
        }
    }
}
