//! `/sql`, `/sql/{executionId}`, `/storage/rdd` and `/storage/rdd/{rddId}`: the documents of
//! Spark's `SqlResource` (`ExecutionData`, `Node`, `Metric`, `SparkPlanGraphEdge`) and of
//! its storage endpoints (`RDDStorageInfo`), with the same query parameters and errors.

use std::collections::HashMap;

use serde::Serialize;

use super::dialect::Dialect;
use super::json::{date, Ordered};
use crate::model::sql::{Execution, SqlJobStatus};
use crate::model::storage::{DistSnapshot, Rdd};
use crate::model::App;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    pub value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub node_id: i64,
    pub node_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whole_stage_codegen_id: Option<i64>,
    pub metrics: Vec<Metric>,
    /// Spark 4 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub from_id: i64,
    pub to_id: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionData {
    pub id: i64,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_description: Option<String>,
    pub submission_time: String,
    pub duration: i64,
    pub running_job_ids: Vec<i64>,
    pub success_job_ids: Vec<i64>,
    pub failed_job_ids: Vec<i64>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_id: Option<String>,
    /// These three: Spark 4 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_execution_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_configs: Option<Ordered<String>>,
}

impl ExecutionData {
    /// The document as `dialect`'s server writes it (Spark 3.5's lacks Spark 4's fields).
    pub fn for_dialect(mut self, dialect: Dialect) -> Self {
        if !dialect.is_spark4() {
            self.error_message = None;
            self.root_execution_id = None;
            self.modified_configs = None;
            for n in &mut self.nodes {
                n.desc = None;
            }
        }
        self
    }
}

/// The `WholeStageCodegen (<n>)` id of a cluster name.
fn codegen_id(name: &str) -> Option<i64> {
    let inner = name.trim().strip_prefix("WholeStageCodegen (")?;
    inner.get(..inner.len().checked_sub(1)?)?.parse().ok()
}

/// `now_ms`: what Spark uses as the end of a running execution.
pub fn execution_data(e: &Execution, details: bool, plan: bool, now_ms: i64) -> ExecutionData {
    let (mut running, mut ok, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for (id, st) in e.jobs() {
        match st {
            SqlJobStatus::Running => running.push(id),
            SqlJobStatus::Succeeded => ok.push(id),
            SqlJobStatus::Failed => failed.push(id),
        }
    }
    let empty = HashMap::new();
    let values = e.metric_values.as_ref().unwrap_or(&empty);
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    if details {
        for (n, cluster) in e.graph.all_nodes() {
            let metrics = n
                .metrics
                .iter()
                .filter_map(|m| {
                    let v = values.get(&m.accumulator_id)?;
                    Some(Metric {
                        name: m.name.trim().to_string(),
                        value: v.strip_prefix('\n').unwrap_or(v).to_string(),
                    })
                })
                .collect();
            nodes.push(Node {
                node_id: n.id,
                node_name: n.name.trim().to_string(),
                whole_stage_codegen_id: cluster
                    .filter(|c| c.name.trim().starts_with("WholeStageCodegen"))
                    .and_then(|c| codegen_id(&c.name)),
                metrics,
                desc: Some(n.desc.clone()),
            });
        }
        // Spark sorts by id and reverses; a stable sort keeps equal ids in reverse order too
        nodes.reverse();
        nodes.sort_by_key(|n| std::cmp::Reverse(n.node_id));
        edges = e
            .graph
            .edges
            .iter()
            .map(|(f, t)| Edge {
                from_id: *f,
                to_id: *t,
            })
            .collect();
    }
    ExecutionData {
        id: e.id,
        status: e.status(),
        description: e.description.clone(),
        plan_description: if plan {
            e.physical_plan_description.clone()
        } else {
            Some(String::new())
        },
        submission_time: date(e.submission_time),
        duration: e.completion_time.unwrap_or(now_ms) - e.submission_time,
        running_job_ids: running,
        success_job_ids: ok,
        failed_job_ids: failed,
        nodes,
        edges,
        query_id: e.query_id.clone(),
        error_message: e.error_message.clone(),
        root_execution_id: Some(e.root_execution_id),
        modified_configs: Some(Ordered(e.modified_configs.clone())),
    }
}

/// Jersey's boolean query parameter: `true` in any case, anything else is false.
pub fn bool_param(v: Option<&str>, default: bool) -> bool {
    v.map_or(default, |s| s.eq_ignore_ascii_case("true"))
}

/// `/sql?offset&length`: every execution when `length <= 0`, else a page by id.
pub fn list(app: &App, offset: i32, length: i32) -> Vec<&Execution> {
    let all = app.sql.executions.values();
    if length <= 0 {
        all.collect()
    } else {
        all.skip(offset.max(0) as usize)
            .take(length as usize)
            .collect()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RddDataDistribution {
    pub address: String,
    pub memory_used: i64,
    pub memory_remaining: i64,
    pub disk_used: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_heap_memory_used: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_heap_memory_used: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_heap_memory_remaining: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_heap_memory_remaining: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RddPartitionInfo {
    pub block_name: String,
    pub storage_level: String,
    pub memory_used: i64,
    pub disk_used: i64,
    pub executors: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RddStorageInfo {
    pub id: i64,
    pub name: String,
    pub num_partitions: i64,
    pub num_cached_partitions: i64,
    pub storage_level: String,
    pub memory_used: i64,
    pub disk_used: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_distribution: Option<Vec<RddDataDistribution>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<RddPartitionInfo>>,
}

fn dist(d: DistSnapshot) -> RddDataDistribution {
    RddDataDistribution {
        address: d.address,
        memory_used: d.memory_used,
        memory_remaining: d.memory_remaining,
        disk_used: d.disk_used,
        on_heap_memory_used: d.on_heap_memory_used,
        off_heap_memory_used: d.off_heap_memory_used,
        on_heap_memory_remaining: d.on_heap_memory_remaining,
        off_heap_memory_remaining: d.off_heap_memory_remaining,
    }
}

/// An RDD as Spark 4's server shows it.
pub fn rdd_info(r: &Rdd) -> RddStorageInfo {
    rdd_info_for(r, Dialect::Spark4)
}

/// An RDD as `dialect`'s server shows it (its executors' distributions in that Scala's
/// hash-map order).
pub fn rdd_info_for(r: &Rdd, dialect: Dialect) -> RddStorageInfo {
    let level = r.level.description();
    RddStorageInfo {
        id: r.id,
        name: r.name.clone(),
        num_partitions: r.num_partitions,
        num_cached_partitions: r.partitions.len() as i64,
        storage_level: level,
        memory_used: r.memory_used,
        disk_used: r.disk_used,
        data_distribution: r
            .distributions(dialect.scala())
            .map(|v| v.into_iter().map(dist).collect()),
        partitions: Some(
            r.partitions
                .iter()
                .map(|p| RddPartitionInfo {
                    block_name: p.block_name.clone(),
                    // Spark describes where the block actually is
                    storage_level: crate::model::storage::Level {
                        use_disk: p.disk_used > 0,
                        use_memory: p.memory_used > 0,
                        use_off_heap: r.level.use_off_heap,
                        deserialized: p.memory_used > 0 && r.level.deserialized,
                        replication: p.executors.len() as i64,
                    }
                    .description(),
                    memory_used: p.memory_used,
                    disk_used: p.disk_used,
                    executors: p.executors.clone(),
                })
                .collect(),
        ),
    }
}

/// `/storage/rdd`: the RDDs with at least one cached partition.
pub fn rdd_list(app: &App, dialect: Dialect) -> Vec<RddStorageInfo> {
    app.storage
        .rdds
        .values()
        .filter(|r| !r.partitions.is_empty())
        .map(|r| rdd_info_for(r, dialect))
        .collect()
}
