//! Replay on several cores.
//!
//! Nearly all of a big event log is task events, and nearly all of the replay time is
//! parsing their JSON. Parsing a line does not depend on the model, so the log is read in
//! blocks of whole lines (about 1 MiB, read straight into reused buffers by
//! [`eventlog::replay_blocks`]); worker threads split each block into lines and parse its
//! task events, while the calling thread keeps reading and applies the parsed blocks to the
//! [`App`] strictly in log order. Every other event, and a task event whose stage belongs to
//! a SQL execution (those need their accumulables), is parsed on the calling thread exactly
//! as in a sequential replay, so the result is the same either way.
//!
//! Memory stays bounded: at most two blocks per worker are in flight, and their buffers
//! are reused. Logs smaller than one block never start a thread.

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use super::taskjson;
use super::tasks::{TaskEndEvent, TaskStartEvent};
use super::App;
#[cfg(doc)]
use crate::eventlog;
use crate::eventlog::{Block, BLOCK_BYTES};

/// Blocks each worker may hold (queued or being parsed).
const IN_FLIGHT_PER_WORKER: u64 = 2;
/// Upper bound on parsing threads; more cores do not help once reading is the limit.
const MAX_WORKERS: usize = 4;

/// One log line, parsed as far as can be done without the model.
pub(super) enum Parsed {
    TaskStart(TaskStartEvent),
    TaskEnd(Box<TaskEndEvent>),
    /// Any other event, or a task event that did not parse as one: the model parses it.
    Other,
}

impl Parsed {
    /// Recognises task events by the prefix Spark writes them with and parses them typed.
    pub(super) fn parse(line: &[u8]) -> Parsed {
        const TASK: &[u8] = b"{\"Event\":\"SparkListenerTask";
        if let Some(rest) = line.strip_prefix(TASK) {
            // Spark's own layout is read by the fast path; whatever it leaves, serde reads
            if rest.starts_with(b"End\"") {
                let t = taskjson::task_end(line).or_else(|| {
                    sonic_rs::from_slice::<TaskEndEvent>(line)
                        .ok()
                        .map(Box::new)
                });
                if let Some(t) = t {
                    return Parsed::TaskEnd(t);
                }
            } else if rest.starts_with(b"Start\"") {
                let t = taskjson::task_start(line)
                    .or_else(|| sonic_rs::from_slice::<TaskStartEvent>(line).ok());
                if let Some(t) = t {
                    return Parsed::TaskStart(t);
                }
            }
        }
        Parsed::Other
    }
}

/// A block back from a worker: where its lines are, and one parse result per line.
struct Done {
    seq: u64,
    block: Block,
    lines: Vec<(usize, usize)>,
    items: Vec<Parsed>,
}

fn line(block: &Block, (start, end): (usize, usize)) -> &[u8] {
    &block.bytes()[start..end]
}

struct Workers {
    inputs: Vec<SyncSender<(u64, Block)>>,
    results: Receiver<Done>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    fn start(n: usize) -> Option<Workers> {
        let (done_tx, results) = channel::<Done>();
        let mut inputs = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = sync_channel::<(u64, Block)>(IN_FLIGHT_PER_WORKER as usize);
            let done = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("replay-parse-{i}"))
                .spawn(move || worker(rx, done));
            match spawned {
                Ok(h) => {
                    inputs.push(tx);
                    handles.push(h);
                }
                // no thread to be had: parse on the calling thread instead
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a replay thread; replaying on one core");
                    break;
                }
            }
        }
        if inputs.is_empty() {
            return None;
        }
        Some(Workers {
            inputs,
            results,
            handles,
        })
    }
}

fn worker(input: Receiver<(u64, Block)>, done: Sender<Done>) {
    for (seq, block) in input {
        let mut lines = Vec::with_capacity(4096);
        block.line_ranges(&mut lines);
        let items = lines
            .iter()
            .map(|&r| Parsed::parse(line(&block, r)))
            .collect();
        let done_block = Done {
            seq,
            block,
            lines,
            items,
        };
        if done.send(done_block).is_err() {
            return;
        }
    }
}

/// Feeds log blocks to an [`App`], parsing task events on other cores.
pub struct Replay<'a> {
    app: &'a mut App,
    threads: usize,
    workers: Option<Workers>,
    spare: Vec<Block>,
    sent: u64,
    applied: u64,
    pending: BTreeMap<u64, Done>,
    lines: u64,
    invalid: u64,
    /// Lines given one at a time, gathered into a block.
    #[cfg(test)]
    gathered: Block,
}

impl<'a> Replay<'a> {
    /// A replay into `app` using up to as many parsing threads as there are cores.
    pub fn new(app: &'a mut App) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads(app, cores.min(MAX_WORKERS))
    }

    /// A replay with `threads` parsing threads; 0 or 1 parses on the calling thread.
    pub fn with_threads(app: &'a mut App, threads: usize) -> Self {
        Replay {
            app,
            threads,
            workers: None,
            spare: Vec::new(),
            sent: 0,
            applied: 0,
            pending: BTreeMap::new(),
            lines: 0,
            invalid: 0,
            #[cfg(test)]
            gathered: Block::default(),
        }
    }

    /// One line of the log (without its newline).
    #[cfg(test)]
    pub fn push(&mut self, line: &[u8]) {
        self.gathered.push_line(line);
        if self.gathered.bytes().len() >= BLOCK_BYTES {
            let block = std::mem::take(&mut self.gathered);
            self.gathered = self.push_block(block);
            self.gathered.clear();
        }
    }

    /// A block of whole lines; returns a block to fill next (this one once applied, or one
    /// applied earlier: [`eventlog::replay_blocks`] empties it). Whether its lines were
    /// valid events is known only once they are applied: see [`Replay::finish`].
    pub fn push_block(&mut self, block: Block) -> Block {
        if self.threads > 1 && self.workers.is_none() && block.bytes().len() >= BLOCK_BYTES {
            self.workers = Workers::start(self.threads);
            if self.workers.is_none() {
                self.threads = 1;
            }
        }
        let Some(n) = self.workers.as_ref().map(|w| w.inputs.len() as u64) else {
            // one core, or a log of one block: apply here
            self.apply_inline(&block);
            return block;
        };
        // keep at most IN_FLIGHT_PER_WORKER blocks per worker outstanding
        while self.sent - self.applied >= n * IN_FLIGHT_PER_WORKER && self.receive_one() {}
        let target = (self.sent % n) as usize;
        let sent = match &self.workers {
            Some(w) => w.inputs[target].send((self.sent, block)),
            None => return Block::default(),
        };
        match sent {
            Ok(()) => self.sent += 1,
            // the worker is gone (it panicked): parse this block, and the rest, here
            Err(e) => {
                let (_, block) = e.0;
                self.drain();
                self.apply_inline(&block);
                self.threads = 1;
                return block;
            }
        }
        self.spare.pop().unwrap_or_default()
    }

    /// Waits for one block from the workers and applies every block now due, in order.
    /// False if no more results can come.
    fn receive_one(&mut self) -> bool {
        let Some(workers) = self.workers.as_ref() else {
            return false;
        };
        match workers.results.recv() {
            Ok(done) => {
                self.pending.insert(done.seq, done);
                while let Some(done) = self.pending.remove(&self.applied) {
                    self.apply_done(done);
                }
                true
            }
            Err(_) => false,
        }
    }

    fn apply_done(&mut self, done: Done) {
        let Done {
            block,
            lines,
            items,
            ..
        } = done;
        self.lines += lines.len() as u64;
        for (&r, item) in lines.iter().zip(items) {
            if !self.app.apply_parsed(item, line(&block, r)) {
                self.invalid += 1;
            }
        }
        self.applied += 1;
        self.spare.push(block);
    }

    fn apply_inline(&mut self, block: &Block) {
        for line in block.lines() {
            self.lines += 1;
            if !self.app.apply_line(line) {
                self.invalid += 1;
            }
        }
    }

    /// Applies everything still in flight and stops the workers.
    fn drain(&mut self) {
        while self.applied < self.sent {
            if !self.receive_one() {
                // a worker died with blocks in it; what it held cannot be recovered here
                tracing::warn!(
                    lost = self.sent - self.applied,
                    "a replay thread stopped; some events were not applied"
                );
                self.applied = self.sent;
                break;
            }
        }
        self.stop_workers();
    }

    /// Closes the workers' inputs and waits for them to end.
    fn stop_workers(&mut self) {
        if let Some(w) = self.workers.take() {
            drop(w.inputs);
            for h in w.handles {
                let _ = h.join();
            }
        }
    }

    /// Applies the rest of the log; returns how many lines there were, and how many of
    /// them were not valid events.
    pub fn finish(mut self) -> (u64, u64) {
        #[cfg(test)]
        if !self.gathered.is_empty() {
            let block = std::mem::take(&mut self.gathered);
            self.push_block(block);
        }
        self.drain();
        (self.lines, self.invalid)
    }
}

impl Drop for Replay<'_> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A log of `jobs` one-stage jobs with `tasks` tasks each; every 7th task fails once and
    /// is retried, and a damaged line sits in the middle of every job.
    fn log(jobs: i64, tasks: i64) -> Vec<Vec<u8>> {
        let mut lines = vec![
            json!({"Event":"SparkListenerApplicationStart","App Name":"p","App ID":"app-1",
                   "Timestamp":1000,"User":"u"}),
            json!({"Event":"SparkListenerExecutorAdded","Timestamp":1001,"Executor ID":"1",
                   "Executor Info":{"Host":"h1","Total Cores":2,"Log Urls":{}}}),
        ];
        let mut out: Vec<Vec<u8>> = lines
            .drain(..)
            .map(|v| v.to_string().into_bytes())
            .collect();
        let mut tid = 0;
        for job in 0..jobs {
            let t = 2000 + job * 10_000;
            let info = json!({"Stage ID":job,"Stage Attempt ID":0,"Stage Name":"s",
                              "Number of Tasks":tasks,"RDD Info":[],"Parent IDs":[],
                              "Details":"","Submission Time":t,"Accumulables":[]});
            out.push(
                json!({"Event":"SparkListenerJobStart","Job ID":job,"Submission Time":t,
                            "Stage Infos":[info],"Stage IDs":[job],"Properties":{}})
                .to_string()
                .into_bytes(),
            );
            out.push(
                json!({"Event":"SparkListenerStageSubmitted","Stage Info":info,"Properties":{}})
                    .to_string()
                    .into_bytes(),
            );
            for k in 0..tasks {
                let attempts = if k % 7 == 0 { 2 } else { 1 };
                for a in 0..attempts {
                    let ti = json!({"Task ID":tid,"Index":k,"Attempt":a,"Partition ID":k,
                                    "Launch Time":t + k,"Executor ID":"1","Host":"h1",
                                    "Locality":"PROCESS_LOCAL","Speculative":false,
                                    "Getting Result Time":0,"Finish Time":0,"Failed":false,
                                    "Killed":false,"Accumulables":[]});
                    out.push(
                        json!({"Event":"SparkListenerTaskStart","Stage ID":job,
                                    "Stage Attempt ID":0,"Task Info":ti})
                        .to_string()
                        .into_bytes(),
                    );
                    let failed = attempts == 2 && a == 0;
                    let mut te = ti.clone();
                    te["Finish Time"] = json!(t + k + 3 + tid % 5);
                    te["Failed"] = json!(failed);
                    let reason = if failed {
                        json!({"Reason":"ExceptionFailure","Class Name":"E","Description":"boom",
                               "Stack Trace":[],"Full Stack Trace":"E: boom","Accumulables":[]})
                    } else {
                        json!({"Reason":"Success"})
                    };
                    out.push(json!({"Event":"SparkListenerTaskEnd","Stage ID":job,
                                    "Stage Attempt ID":0,"Task Type":"ResultTask",
                                    "Task End Reason":reason,"Task Info":te,
                                    "Task Metrics":{"Executor Run Time":tid % 13,
                                                    "Result Size":100 + k,
                                                    "Input Metrics":{"Bytes Read":k,"Records Read":1}}})
                        .to_string().into_bytes());
                    tid += 1;
                }
                if k == tasks / 2 {
                    out.push(b"{\"Event\":\"SparkListenerTaskEnd\",\"Stage ID\":".to_vec());
                }
            }
            let mut done = info.clone();
            done["Completion Time"] = json!(t + 9_000);
            out.push(
                json!({"Event":"SparkListenerStageCompleted","Stage Info":done})
                    .to_string()
                    .into_bytes(),
            );
            out.push(
                json!({"Event":"SparkListenerJobEnd","Job ID":job,"Completion Time":t + 9_000,
                            "Job Result":{"Result":"JobSucceeded"}})
                .to_string()
                .into_bytes(),
            );
        }
        out.push(
            json!({"Event":"SparkListenerApplicationEnd","Timestamp":9_999_999})
                .to_string()
                .into_bytes(),
        );
        out
    }

    fn replay(lines: &[Vec<u8>], threads: usize) -> (App, u64) {
        let mut app = App {
            end_time: -1,
            default_cpus_per_task: 1,
            ..App::default()
        };
        let mut r = Replay::with_threads(&mut app, threads);
        for l in lines {
            r.push(l);
        }
        let (_, invalid) = r.finish();
        app.tasks.finish(0);
        (app, invalid)
    }

    /// Everything the API would answer about the app, as JSON lines.
    fn summary(app: &App) -> String {
        use crate::api::{json, stagedata};
        let j = |v: &dyn erased::Ser| v.json();
        let mut out = vec![app.events.to_string()];
        out.extend(app.jobs.values().map(|x| j(&json::job_data(x))));
        let d = crate::api::Dialect::default();
        out.extend(app.stages.values().map(|x| j(&stagedata::stage_data(x, d))));
        out.extend(
            app.executors
                .values()
                .map(|x| j(&json::executor_summary(x, 0, d))),
        );
        for key in app.stages.keys() {
            let tasks = app.tasks.stage_tasks(*key);
            out.extend(tasks.iter().map(|t| j(&stagedata::task_data(app, t, d))));
        }
        out.join("\n")
    }

    mod erased {
        pub trait Ser {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Ser for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap_or_else(|e| e.to_string())
            }
        }
    }

    #[test]
    fn parallel_replay_equals_sequential_replay() {
        // about 6 MiB: several batches per worker, so order across workers matters
        let lines = log(40, 300);
        let total: usize = lines.iter().map(Vec::len).sum();
        assert!(
            total > 5 * BLOCK_BYTES,
            "log too small to span batches: {total}"
        );
        let (seq, seq_invalid) = replay(&lines, 1);
        let (par, par_invalid) = replay(&lines, 3);
        assert_eq!(seq_invalid, 40, "one damaged line per job");
        assert_eq!(par_invalid, seq_invalid);
        assert_eq!(seq.jobs.len(), 40);
        let stage0 = seq.tasks.stage_tasks((0, 0));
        assert_eq!(
            stage0.len(),
            300 + 300usize.div_ceil(7),
            "every attempt of stage 0"
        );
        assert_eq!(summary(&par), summary(&seq));
    }

    #[test]
    fn a_small_log_starts_no_thread() {
        let lines = log(1, 5);
        let mut app = App::default();
        let mut r = Replay::with_threads(&mut app, 4);
        for l in &lines {
            r.push(l);
        }
        assert!(r.workers.is_none());
        assert_eq!(r.finish(), (lines.len() as u64, 1));
        assert_eq!(app.jobs.len(), 1);
    }
}
