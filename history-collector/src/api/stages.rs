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

use super::dialect::Dialect;
use super::json::Ordered;
use super::stagedata::{
    executor_distributions, executor_stage_summary, speculation_summary, stage_data, task_data,
    task_summary, StageData, TaskData,
};
use super::{bad_request, json_ok, not_found, param, param_all};
use crate::model::scala_order::{immutable_order_of, java_string_hash, long_hash};
use crate::model::tasks::{ExecStageSummary, TaskRec};
use crate::model::{App, Stage};
use axum::response::Response;

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
pub fn route(app: &App, rest: &[&str], ps: &[(String, String)], dialect: Dialect) -> Response {
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
