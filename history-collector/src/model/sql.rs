//! SQL executions, rebuilt as Spark's `SQLAppStatusListener` does in the History Server
//! (replay mode): the plan graph of each execution (from `SparkListenerSQLExecutionStart`
//! and the latest `SparkListenerSQLAdaptiveExecutionUpdate`), its jobs and their outcome, and
//! the SQL metric values aggregated from the accumulator updates of the tasks of its stages
//! plus the driver's updates, formatted as Spark formats them (`sum`, `size`, `timing`,
//! `nsTiming`, `average`).
//!
//! What is kept per execution is the plan (names, descriptions, metric ids), the final metric
//! strings, and while an execution runs, one value per task index and metric of its stages,
//! as Spark keeps them.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::scala_order::{immutable_order, java_string_hash, long_hash};

/// One SQL metric of a plan node.
#[derive(Clone, Debug)]
pub struct SqlMetric {
    pub name: String,
    pub accumulator_id: i64,
    pub metric_type: String,
}

/// One node of a plan graph; a `WholeStageCodegen` cluster holds its nodes in `cluster`.
#[derive(Clone, Debug)]
pub struct PlanNode {
    pub id: i64,
    pub name: String,
    pub desc: String,
    pub metrics: Vec<SqlMetric>,
    pub cluster: Option<Vec<PlanNode>>,
}

/// Spark's `SparkPlanGraph`: the nodes (clusters at top level) and the child -> parent edges.
#[derive(Clone, Debug, Default)]
pub struct PlanGraph {
    pub nodes: Vec<PlanNode>,
    pub edges: Vec<(i64, i64)>,
}

impl PlanGraph {
    /// Every node, cluster members before their cluster, with the cluster it belongs to.
    pub fn all_nodes(&self) -> Vec<(&PlanNode, Option<&PlanNode>)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            match &n.cluster {
                Some(members) => {
                    out.extend(members.iter().map(|m| (m, Some(n))));
                    out.push((n, None));
                }
                None => out.push((n, None)),
            }
        }
        out
    }

    /// Builds the graph from a `sparkPlanInfo` JSON tree, as `SparkPlanGraph.apply` does.
    pub fn build(info: &Value) -> PlanGraph {
        let mut b = Builder::default();
        b.node(info, None, None);
        PlanGraph {
            nodes: b.nodes,
            edges: b.edges,
        }
    }
}

#[derive(Default)]
struct Builder {
    next_id: i64,
    nodes: Vec<PlanNode>,
    edges: Vec<(i64, i64)>,
    /// Exchanges and subqueries already placed, by their structural identity (Spark keys a
    /// map by `SparkPlanInfo`, whose equality is name, simple string and children).
    exchanges: HashMap<String, i64>,
}

fn str_of(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn children(v: &Value) -> &[Value] {
    v.get("children")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn identity(v: &Value) -> String {
    let mut s = String::new();
    fn walk(v: &Value, s: &mut String) {
        s.push_str(
            v.get("nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        s.push('\u{0}');
        s.push_str(
            v.get("simpleString")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        s.push('[');
        for c in children(v) {
            walk(c, s);
            s.push(',');
        }
        s.push(']');
    }
    walk(v, &mut s);
    s
}

fn plan_metrics(v: &Value) -> Vec<SqlMetric> {
    v.get("metrics")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some(SqlMetric {
                        name: str_of(m, "name"),
                        accumulator_id: m.get("accumulatorId")?.as_i64()?,
                        metric_type: str_of(m, "metricType"),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Builder {
    /// `cluster`: index into `nodes` of the enclosing WholeStageCodegen cluster.
    fn node(&mut self, info: &Value, parent: Option<i64>, cluster: Option<usize>) {
        let name = str_of(info, "nodeName");
        let first = children(info).first();
        let edge = |b: &mut Builder, from: i64| {
            if let Some(p) = parent {
                b.edges.push((from, p));
            }
        };
        if name.starts_with("WholeStageCodegen") {
            let id = self.take_id();
            self.nodes.push(PlanNode {
                id,
                name: name.clone(),
                desc: str_of(info, "simpleString"),
                metrics: plan_metrics(info),
                cluster: Some(Vec::new()),
            });
            let idx = self.nodes.len() - 1;
            if let Some(c) = first {
                self.node(c, parent, Some(idx));
            }
            return;
        }
        match name.as_str() {
            "InputAdapter" => {
                if let Some(c) = first {
                    self.node(c, parent, None);
                }
                return;
            }
            "BroadcastQueryStage" | "ShuffleQueryStage" => {
                if let Some(c) = first {
                    match self.exchanges.get(&identity(c)).copied() {
                        Some(id) => edge(self, id),
                        None => self.node(c, parent, None),
                    }
                }
                return;
            }
            "TableCacheQueryStage" | "ResultQueryStage" => {
                if let Some(c) = first {
                    self.node(c, parent, None);
                }
                return;
            }
            "Subquery" if cluster.is_some() => {
                self.node(info, parent, None);
                return;
            }
            "Subquery" => {
                if let Some(id) = self.exchanges.get(&identity(info)).copied() {
                    if let Some(p) = parent {
                        if !self.edges.contains(&(id, p)) {
                            self.edges.push((id, p));
                        }
                    }
                    return;
                }
            }
            "ReusedSubquery" => {
                if let Some(c) = first {
                    self.node(c, parent, cluster);
                }
                return;
            }
            "ReusedExchange" => {
                if let Some(id) = first.and_then(|c| self.exchanges.get(&identity(c)).copied()) {
                    edge(self, id);
                    return;
                }
            }
            _ => {}
        }
        let id = self.take_id();
        let node = PlanNode {
            id,
            name: name.clone(),
            desc: str_of(info, "simpleString"),
            metrics: plan_metrics(info),
            cluster: None,
        };
        match cluster.and_then(|c| self.nodes.get_mut(c)) {
            Some(PlanNode {
                cluster: Some(members),
                ..
            }) => members.push(node),
            _ => self.nodes.push(node),
        }
        if name.contains("Exchange") || name == "Subquery" {
            self.exchanges.insert(identity(info), id);
        }
        edge(self, id);
        for c in children(info) {
            self.node(c, Some(id), cluster);
        }
    }

    fn take_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// A job's outcome as a SQL execution records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlJobStatus {
    Running,
    Succeeded,
    Failed,
}

/// One SQL execution.
#[derive(Clone, Debug)]
pub struct Execution {
    pub id: i64,
    pub root_execution_id: i64,
    pub query_id: Option<String>,
    pub description: Option<String>,
    pub details: Option<String>,
    pub physical_plan_description: Option<String>,
    pub modified_configs: Vec<(String, String)>,
    pub graph: PlanGraph,
    /// The plan's metrics, in Spark's order (adaptive updates append).
    metrics: Vec<(i64, String)>,
    /// Metric type per accumulator id (the last plan that named it wins).
    metric_types: HashMap<i64, String>,
    pub submission_time: i64,
    pub completion_time: Option<i64>,
    pub error_message: Option<String>,
    /// Jobs in insertion order (Spark's `Map` iteration order is derived from it).
    jobs: Vec<(i64, SqlJobStatus)>,
    /// Stages in insertion order.
    stages: Vec<i64>,
    driver_updates: Vec<(i64, i64)>,
    /// The aggregated metric strings, once computed.
    pub metric_values: Option<HashMap<i64, String>>,
    end_events: usize,
    live: bool,
}

impl Execution {
    fn new(id: i64) -> Self {
        Execution {
            id,
            root_execution_id: 0,
            query_id: None,
            description: None,
            details: None,
            physical_plan_description: None,
            modified_configs: Vec::new(),
            graph: PlanGraph::default(),
            metrics: Vec::new(),
            metric_types: HashMap::new(),
            submission_time: -1,
            completion_time: None,
            error_message: None,
            jobs: Vec::new(),
            stages: Vec::new(),
            driver_updates: Vec::new(),
            metric_values: None,
            end_events: 0,
            live: true,
        }
    }

    /// Job ids in the order Spark iterates the execution's job map.
    pub fn jobs(&self) -> Vec<(i64, SqlJobStatus)> {
        let hashes: Vec<i32> = self.jobs.iter().map(|(j, _)| *j as i32).collect();
        immutable_order(&hashes)
            .into_iter()
            .map(|i| self.jobs[i])
            .collect()
    }

    /// Spark's `SQLExecutionUIData.executionStatus`.
    pub fn status(&self) -> &'static str {
        match &self.error_message {
            Some(e) if e.is_empty() => "COMPLETED",
            Some(_) => "FAILED",
            None if self.completion_time.is_none() => "RUNNING",
            None if self.jobs.iter().any(|(_, s)| *s == SqlJobStatus::Failed) => "FAILED",
            None => "COMPLETED",
        }
    }

    fn add_metrics(&mut self, graph: &PlanGraph) {
        // Spark collects them through a map keyed by accumulator id; the order it then
        // lists them in does not matter for what the API shows
        let mut seen = HashSet::new();
        for (n, _) in graph.all_nodes() {
            for m in &n.metrics {
                if seen.insert(m.accumulator_id) {
                    self.metrics.push((m.accumulator_id, m.metric_type.clone()));
                    self.metric_types
                        .insert(m.accumulator_id, m.metric_type.clone());
                }
            }
        }
    }
}

/// Per stage attempt of a SQL job: the latest value of each SQL metric per task index, and
/// the task with the largest value.
#[derive(Clone, Debug)]
struct StageMetrics {
    attempt: i64,
    num_tasks: usize,
    execution: i64,
    task_indices: HashMap<i64, usize>,
    completed: HashSet<usize>,
    values: HashMap<i64, Vec<i64>>,
    /// accumulator id -> (value, task id)
    max: HashMap<i64, (i64, i64)>,
}

/// The SQL side of an application.
#[derive(Clone, Debug, Default)]
pub struct SqlState {
    pub executions: BTreeMap<i64, Execution>,
    /// Stage id -> metrics of its current attempt, while a SQL execution tracks it.
    stages: HashMap<i64, StageMetrics>,
}

/// What the SQL listener needs of a task event.
#[derive(Debug, Default)]
pub struct SqlTask {
    pub stage_id: i64,
    pub stage_attempt: i64,
    pub task_id: i64,
    pub index: i64,
    pub successful: bool,
    /// (accumulator id, update) of the task's accumulables that carry an update.
    pub updates: Vec<(i64, i64)>,
}

fn num(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

impl SqlTask {
    /// Reads a `SparkListenerTaskEnd`/`TaskStart` event.
    pub fn from_event(ev: &Value) -> Option<SqlTask> {
        let info = ev.get("Task Info")?;
        let g = |k: &str| info.get(k).and_then(num);
        let b = |k: &str| info.get(k).and_then(Value::as_bool).unwrap_or(false);
        let finished = g("Finish Time").unwrap_or(0) != 0;
        Some(SqlTask {
            stage_id: ev.get("Stage ID").and_then(num)?,
            stage_attempt: ev.get("Stage Attempt ID").and_then(num).unwrap_or(0),
            task_id: g("Task ID")?,
            index: g("Index").unwrap_or(0),
            successful: finished && !b("Failed") && !b("Killed"),
            updates: info
                .get("Accumulables")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|acc| {
                            Some((acc.get("ID").and_then(num)?, num(acc.get("Update")?)?))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

impl SqlState {
    /// Whether a stage's task events matter to SQL metrics (cheap; call before parsing
    /// accumulables on the hot path).
    pub fn wants_stage(&self, stage_id: i64) -> bool {
        self.stages.contains_key(&stage_id)
    }

    fn is_sql_stage(&self, stage_id: i64) -> bool {
        self.executions
            .values()
            .any(|e| e.live && e.stages.contains(&stage_id))
    }

    /// SQL events and the job/stage events the SQL listener also follows.
    pub fn apply(&mut self, kind: &str, ev: &Value) {
        match kind {
            "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart" => {
                self.execution_start(ev)
            }
            "org.apache.spark.sql.execution.ui.SparkListenerSQLAdaptiveExecutionUpdate" => {
                let Some(id) = ev.get("executionId").and_then(num) else {
                    return;
                };
                let graph = ev
                    .get("sparkPlanInfo")
                    .map(PlanGraph::build)
                    .unwrap_or_default();
                let e = self.execution(id);
                e.physical_plan_description = ev
                    .get("physicalPlanDescription")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                e.add_metrics(&graph);
                e.graph = graph;
            }
            "org.apache.spark.sql.execution.ui.SparkListenerSQLAdaptiveSQLMetricUpdates" => {
                let Some(id) = ev.get("executionId").and_then(num) else {
                    return;
                };
                let node = PlanNode {
                    id: 0,
                    name: String::new(),
                    desc: String::new(),
                    metrics: ev
                        .get("sqlPlanMetrics")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|m| {
                                    Some(SqlMetric {
                                        name: str_of(m, "name"),
                                        accumulator_id: m.get("accumulatorId").and_then(num)?,
                                        metric_type: str_of(m, "metricType"),
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    cluster: None,
                };
                let g = PlanGraph {
                    nodes: vec![node],
                    edges: Vec::new(),
                };
                self.execution(id).add_metrics(&g);
            }
            "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionEnd" => {
                self.execution_end(ev)
            }
            "org.apache.spark.sql.execution.ui.SparkListenerDriverAccumUpdates" => {
                let Some(id) = ev.get("executionId").and_then(num) else {
                    return;
                };
                let Some(e) = self.executions.get_mut(&id).filter(|e| e.live) else {
                    return;
                };
                if let Some(a) = ev.get("accumUpdates").and_then(Value::as_array) {
                    for pair in a {
                        if let (Some(k), Some(v)) =
                            (pair.get(0).and_then(num), pair.get(1).and_then(num))
                        {
                            e.driver_updates.push((k, v));
                        }
                    }
                }
            }
            "SparkListenerJobStart" => self.job_start(ev),
            "SparkListenerJobEnd" => self.job_end(ev),
            "SparkListenerStageSubmitted" => {
                let Some(info) = ev.get("Stage Info") else {
                    return;
                };
                let (Some(sid), attempt) = (
                    info.get("Stage ID").and_then(num),
                    info.get("Stage Attempt ID").and_then(num).unwrap_or(0),
                ) else {
                    return;
                };
                if !self.is_sql_stage(sid) {
                    return;
                }
                if let Some(st) = self.stages.get_mut(&sid) {
                    if st.attempt != attempt {
                        *st = StageMetrics {
                            attempt,
                            num_tasks: st.num_tasks,
                            execution: st.execution,
                            task_indices: HashMap::new(),
                            completed: HashSet::new(),
                            values: HashMap::new(),
                            max: HashMap::new(),
                        };
                    }
                }
            }
            _ => {}
        }
    }

    /// A task started (`SparkListenerTaskStart`).
    pub fn task_start(&mut self, stage_id: i64, attempt: i64, task_id: i64, index: i64) {
        if let Some(st) = self.stages.get_mut(&stage_id) {
            if st.attempt == attempt && index >= 0 {
                st.task_indices.insert(task_id, index as usize);
            }
        }
    }

    /// A task ended (`SparkListenerTaskEnd`).
    pub fn task_end(&mut self, t: &SqlTask) {
        if !self.wants_stage(t.stage_id) || !self.is_sql_stage(t.stage_id) {
            return;
        }
        let Some(st) = self.stages.get_mut(&t.stage_id) else {
            return;
        };
        if st.attempt != t.stage_attempt || t.index < 0 {
            return;
        }
        let idx = t.index as usize;
        st.task_indices.insert(t.task_id, idx);
        if st.completed.contains(&idx) {
            return;
        }
        let Some(exec) = self.executions.get(&st.execution) else {
            return;
        };
        for (id, value) in &t.updates {
            let Some(ty) = exec.metric_types.get(id) else {
                continue;
            };
            let values = st
                .values
                .entry(*id)
                .or_insert_with(|| vec![0; st.num_tasks]);
            if let Some(slot) = values.get_mut(idx) {
                *slot = *value;
            }
            if ty != "sum" {
                let m = st.max.entry(*id).or_insert((*value, t.task_id));
                if *value > m.0 {
                    *m = (*value, t.task_id);
                }
            }
        }
        if t.successful {
            st.completed.insert(idx);
        }
    }

    fn execution(&mut self, id: i64) -> &mut Execution {
        self.executions
            .entry(id)
            .or_insert_with(|| Execution::new(id))
    }

    fn execution_start(&mut self, ev: &Value) {
        let Some(id) = ev.get("executionId").and_then(num) else {
            return;
        };
        let graph = ev
            .get("sparkPlanInfo")
            .map(PlanGraph::build)
            .unwrap_or_default();
        let mut configs: Vec<(String, String)> = ev
            .get("modifiedConfigs")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let hashes: Vec<i32> = configs.iter().map(|(k, _)| java_string_hash(k)).collect();
        let order = immutable_order(&hashes);
        configs = order.into_iter().map(|i| configs[i].clone()).collect();
        let e = self.execution(id);
        e.root_execution_id = ev.get("rootExecutionId").and_then(num).unwrap_or(id);
        e.query_id = ev
            .get("queryId")
            .and_then(Value::as_str)
            .map(str::to_string);
        e.description = ev
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string);
        e.details = ev
            .get("details")
            .and_then(Value::as_str)
            .map(str::to_string);
        e.physical_plan_description = ev
            .get("physicalPlanDescription")
            .and_then(Value::as_str)
            .map(str::to_string);
        e.modified_configs = configs;
        e.add_metrics(&graph);
        e.graph = graph;
        e.submission_time = ev.get("time").and_then(num).unwrap_or(-1);
    }

    fn execution_end(&mut self, ev: &Value) {
        let Some(id) = ev.get("executionId").and_then(num) else {
            return;
        };
        if !self.executions.get(&id).is_some_and(|e| e.live) {
            return;
        }
        let values = self.aggregate(id);
        let Some(e) = self.executions.get_mut(&id) else {
            return;
        };
        e.completion_time = ev.get("time").and_then(num);
        e.error_message = ev
            .get("errorMessage")
            .and_then(Value::as_str)
            .map(str::to_string);
        if e.metric_values.is_none() {
            e.metric_values = Some(values);
        }
        self.remove_stale_stage_metrics(id);
        if let Some(e) = self.executions.get_mut(&id) {
            e.end_events += 1;
        }
        self.maybe_finish(id);
    }

    fn job_start(&mut self, ev: &Value) {
        let Some(exec_id) = ev
            .get("Properties")
            .and_then(|p| p.get("spark.sql.execution.id"))
            .and_then(num)
        else {
            return;
        };
        let Some(job_id) = ev.get("Job ID").and_then(num) else {
            return;
        };
        let e = self.execution(exec_id);
        if !e.live {
            // Spark reads the stored execution back and tracks it again
            e.live = true;
            e.end_events = e.jobs.len() + 1;
        }
        let has_metrics = !e.metric_types.is_empty();
        match e.jobs.iter_mut().find(|(j, _)| *j == job_id) {
            Some(j) => j.1 = SqlJobStatus::Running,
            None => e.jobs.push((job_id, SqlJobStatus::Running)),
        }
        let stage_ids: Vec<i64> = ev
            .get("Stage IDs")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(num).collect())
            .unwrap_or_default();
        for s in stage_ids {
            if !e.stages.contains(&s) {
                e.stages.push(s);
            }
        }
        if has_metrics {
            if let Some(infos) = ev.get("Stage Infos").and_then(Value::as_array) {
                for si in infos {
                    let Some(sid) = si.get("Stage ID").and_then(num) else {
                        continue;
                    };
                    let n = si
                        .get("Number of Tasks")
                        .and_then(num)
                        .unwrap_or(0)
                        .clamp(0, 1 << 24) as usize;
                    self.stages.insert(
                        sid,
                        StageMetrics {
                            attempt: 0,
                            num_tasks: n,
                            execution: exec_id,
                            task_indices: HashMap::new(),
                            completed: HashSet::new(),
                            values: HashMap::new(),
                            max: HashMap::new(),
                        },
                    );
                }
            }
        }
    }

    fn job_end(&mut self, ev: &Value) {
        let Some(job_id) = ev.get("Job ID").and_then(num) else {
            return;
        };
        let ok = ev
            .get("Job Result")
            .and_then(|r| r.get("Result"))
            .and_then(Value::as_str)
            == Some("JobSucceeded");
        let ids: Vec<i64> = self
            .executions
            .values()
            .filter(|e| e.live && e.jobs.iter().any(|(j, _)| *j == job_id))
            .map(|e| e.id)
            .collect();
        for id in ids {
            if let Some(e) = self.executions.get_mut(&id) {
                for j in e.jobs.iter_mut().filter(|(j, _)| *j == job_id) {
                    j.1 = if ok {
                        SqlJobStatus::Succeeded
                    } else {
                        SqlJobStatus::Failed
                    };
                }
                e.end_events += 1;
            }
            self.maybe_finish(id);
        }
    }

    /// Spark stops tracking an execution once its end and all its jobs' ends were seen.
    fn maybe_finish(&mut self, id: i64) {
        let done = self
            .executions
            .get(&id)
            .is_some_and(|e| e.live && e.end_events > e.jobs.len());
        if done {
            self.remove_stale_stage_metrics(id);
            if let Some(e) = self.executions.get_mut(&id) {
                e.live = false;
            }
        }
    }

    fn remove_stale_stage_metrics(&mut self, id: i64) {
        let active: HashSet<i64> = self
            .executions
            .values()
            .filter(|e| e.live && e.id != id)
            .flat_map(|e| e.stages.iter().copied())
            .collect();
        self.stages.retain(|s, _| active.contains(s));
    }

    /// Computes the metric strings of executions still running when the log ends, as the
    /// History Server does when it flushes its listeners after a replay.
    pub fn finish_replay(&mut self) {
        let ids: Vec<i64> = self
            .executions
            .values()
            .filter(|e| e.live)
            .map(|e| e.id)
            .collect();
        for id in ids {
            let v = self.aggregate(id);
            if let Some(e) = self.executions.get_mut(&id) {
                if e.metric_values.is_none() {
                    e.metric_values = Some(v);
                }
            }
        }
        self.stages.clear();
    }

    /// Spark's `aggregateMetrics`: every task value of the execution's stages and the
    /// driver's updates, per metric, as display strings.
    fn aggregate(&self, id: i64) -> HashMap<i64, String> {
        let Some(e) = self.executions.get(&id) else {
            return HashMap::new();
        };
        if let Some(v) = &e.metric_values {
            return v.clone();
        }
        let types = &e.metric_types;
        let hashes: Vec<i32> = e.stages.iter().map(|s| long_hash(*s)).collect();
        let stage_order: Vec<i64> = immutable_order(&hashes)
            .into_iter()
            .map(|i| e.stages[i])
            .collect();
        let mut all: HashMap<i64, Vec<i64>> = HashMap::new();
        // accumulator id -> (value, stage, attempt, task)
        let mut max: HashMap<i64, (i64, i64, i64, i64)> = HashMap::new();
        for sid in &stage_order {
            let Some(st) = self.stages.get(sid) else {
                continue;
            };
            for (acc, vals) in &st.values {
                if types.contains_key(acc) {
                    all.entry(*acc).or_default().extend_from_slice(vals);
                }
            }
            for (acc, (value, task)) in &st.max {
                if !types.contains_key(acc) {
                    continue;
                }
                let m = max.entry(*acc).or_insert((*value, *sid, st.attempt, *task));
                if *value > m.0 {
                    *m = (*value, *sid, st.attempt, *task);
                }
            }
        }
        for (acc, value) in &e.driver_updates {
            if !types.contains_key(acc) {
                continue;
            }
            if all.contains_key(acc) && max.get(acc).is_some_and(|m| *value > m.0) {
                max.remove(acc);
            }
            all.entry(*acc).or_default().push(*value);
        }
        all.into_iter()
            .map(|(acc, vals)| {
                let ty = types.get(&acc).map(String::as_str).unwrap_or("");
                let s = string_value(ty, &vals, max.get(&acc).copied());
                (acc, s)
            })
            .collect()
    }
}

/// Spark's `Utils.bytesToString`: one decimal, binary units, rounding half up.
pub fn bytes_to_string(size: i64) -> String {
    const UNITS: [(&str, u32); 6] = [
        ("EiB", 60),
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ];
    let size = size as i128;
    for (unit, shift) in UNITS {
        let u = 1i128 << shift;
        if size >= 2 * u {
            return format!("{} {unit}", tenths(size * 10, u));
        }
    }
    format!("{} B", tenths(size * 10, 1))
}

/// `num / den` (in tenths) rounded half up, as `d.d`.
fn tenths(num: i128, den: i128) -> String {
    let neg = num < 0;
    let t = (num.abs() * 2 + den) / (den * 2);
    format!("{}{}.{}", if neg { "-" } else { "" }, t / 10, t % 10)
}

/// Spark's `Utils.msDurationToString`: `"%.1f s".formatLocal(locale, t.toFloat / second)`
/// and the like, so the quotient is a `Float`, and Java's formatter rounds half up the
/// shortest decimal digits of that float widened to a double (1050 ms is "1.0 s": the float
/// nearest 1.05 is below it).
pub fn ms_duration_to_string(ms: i64) -> String {
    let quotient = |unit: f32| (ms as f32 / unit) as f64;
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{} s", java_fixed(quotient(1000.0), 1))
    } else if ms < 3_600_000 {
        format!("{} m", java_fixed(quotient(60_000.0), 1))
    } else {
        format!("{} h", java_fixed(quotient(3_600_000.0), 2))
    }
}

/// `String.format("%.{prec}f", v)` for a finite, non-negative double: its shortest decimal
/// digits (what `Double.toString` prints) rounded half up to `prec` places.
fn java_fixed(v: f64, prec: u32) -> String {
    let sci = format!("{:e}", v.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: Vec<u8> = mant
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|c| c - b'0')
        .collect();
    // the value is 0.d1 d2 ... x 10^(exp + 1): count it in units of 10^-prec
    let keep = exp + 1 + i64::from(prec);
    let digit = |i: i64| -> u128 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .map_or(0, |d| u128::from(*d))
    };
    let mut units: u128 = (0..keep.max(0)).fold(0, |acc, i| acc * 10 + digit(i));
    if keep >= 0 && digit(keep) >= 5 {
        units += 1;
    }
    let scale = 10u128.pow(prec);
    if prec == 0 {
        units.to_string()
    } else {
        format!(
            "{}.{:0width$}",
            units / scale,
            units % scale,
            width = prec as usize
        )
    }
}

/// `NumberFormat.getIntegerInstance(Locale.US)`: grouped thousands.
pub fn group_thousands(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// An average metric (stored times ten) as `NumberFormat.getNumberInstance(Locale.US)`.
fn average(v: i64) -> String {
    let whole = group_thousands(v / 10);
    match (v % 10).abs() {
        0 => whole,
        d => format!("{whole}.{d}"),
    }
}

/// Spark's `SQLMetrics.stringValue` / `MetricUtils.stringValue`.
pub fn string_value(ty: &str, values: &[i64], max: Option<(i64, i64, i64, i64)>) -> String {
    let task = match max {
        Some((_, stage, attempt, task)) => format!("(stage {stage}.{attempt}: task {task})"),
        None => "(driver)".to_string(),
    };
    const SUFFIX: &str = "(min, med, max (stageId: taskId))";
    match ty {
        "sum" => group_thousands(values.iter().sum()),
        "average" => {
            let mut v: Vec<i64> = values.iter().copied().filter(|x| *x > 0).collect();
            if v.len() <= 1 {
                return average(v.first().copied().unwrap_or(0));
            }
            v.sort();
            format!(
                "{SUFFIX}:\n({}, {}, {} {task})",
                average(v[0]),
                average(v[v.len() / 2]),
                average(v[v.len() - 1])
            )
        }
        _ => {
            let f: fn(i64) -> String = match ty {
                "size" => bytes_to_string,
                "timing" => ms_duration_to_string,
                "nsTiming" => |ns| ms_duration_to_string(ns / 1_000_000),
                _ => |v| format!("[unknown] {}", group_thousands(v)),
            };
            let mut v: Vec<i64> = values.iter().copied().filter(|x| *x >= 0).collect();
            if v.len() <= 1 {
                return f(v.first().copied().unwrap_or(0));
            }
            v.sort();
            format!(
                "total {SUFFIX}\n{} ({}, {}, {} {task})",
                f(v.iter().sum()),
                f(v[0]),
                f(v[v.len() / 2]),
                f(v[v.len() - 1])
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_spark() {
        assert_eq!(bytes_to_string(298), "298.0 B");
        assert_eq!(bytes_to_string(2048), "2.0 KiB");
        assert_eq!(bytes_to_string(8_493_465), "8.1 MiB");
        // half up, as Java's formatter rounds
        assert_eq!(bytes_to_string(2_359_296), "2.3 MiB");
        assert_eq!(ms_duration_to_string(828), "828 ms");
        // as Java 17 printed them (`String.format(Locale.US, "%.1f s", (float) t / 1000)`)
        for (ms, java) in [
            (1250, "1.3 s"),
            (2050, "2.0 s"),
            (2070, "2.1 s"),
            (1050, "1.0 s"),
            (1150, "1.1 s"),
            (1350, "1.4 s"),
            (1450, "1.5 s"),
            (2150, "2.2 s"),
            (3050, "3.0 s"),
            (59950, "60.0 s"),
            (90000, "1.5 m"),
            (5400000, "1.50 h"),
            (3650000, "1.01 h"),
            (1005, "1.0 s"),
            (9950, "9.9 s"),
            (10050, "10.1 s"),
            (12345, "12.3 s"),
            (33333, "33.3 s"),
            (150000, "2.5 m"),
            (7206000, "2.00 h"),
            (4325000, "1.20 h"),
        ] {
            assert_eq!(ms_duration_to_string(ms), java, "{ms} ms");
        }
        assert_eq!(group_thousands(1234567), "1,234,567");
        assert_eq!(average(12345), "1,234.5");
        assert_eq!(average(10), "1");
        assert_eq!(
            string_value("timing", &[828, 831, 831], Some((831, 0, 0, 0))),
            "total (min, med, max (stageId: taskId))\n2.5 s (828 ms, 831 ms, 831 ms (stage 0.0: task 0))"
        );
        assert_eq!(string_value("size", &[118], None), "118.0 B");
        assert_eq!(
            string_value("average", &[10, 10, 10], Some((10, 9, 0, 20))),
            "(min, med, max (stageId: taskId)):\n(1, 1, 1 (stage 9.0: task 20))"
        );
    }
}
