//! The stage page: the attempt's status, summary metrics over its successful tasks
//! (quantiles, as Spark's stage page shows them), per-executor totals, and the task table,
//! paged and sorted server-side from the task store so a stage with a million tasks costs
//! one page of HTML.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{duration, esc, find, missing, page, seg};
use crate::api::json::{date, java_double};
use crate::api::stages::{task_summary, N};
use crate::api::Catalog;
use crate::model::m;
use crate::model::tasks::TaskRec;

/// Tasks per page unless `size` says otherwise.
const PAGE: usize = 100;

#[derive(Deserialize, Default)]
pub struct TaskQuery {
    page: Option<usize>,
    size: Option<usize>,
    sort: Option<String>,
    status: Option<String>,
}

/// The leaves of a distribution tree, with their paths (`shuffleReadMetrics.readBytes`).
fn leaves(n: &N, prefix: &str, out: &mut Vec<(String, Vec<f64>)>) {
    match n {
        N::O(fields) => {
            for (k, v) in fields {
                let p = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &p, out);
            }
        }
        N::D(v) => out.push((prefix.to_string(), v.clone())),
        _ => {}
    }
}

fn metric(t: &TaskRec, i: usize) -> String {
    t.metrics
        .as_ref()
        .map(|mt| mt.v[i].to_string())
        .unwrap_or_default()
}

pub async fn stage_page(
    State(catalog): State<Arc<Catalog>>,
    Path((id, stage, attempt)): Path<(String, i64, i64)>,
    Query(q): Query<TaskQuery>,
) -> Response {
    let Some(e) = find(&catalog, &id) else {
        return missing(&format!("unknown application {id}"));
    };
    let a = &e.app;
    let Some(st) = a.stages.get(&(stage, attempt)) else {
        return missing(&format!("unknown stage {stage}.{attempt}"));
    };
    let mut body = format!(
        "<p>Status: <span class=\"{s}\">{s}</span> · Tasks: {} done, {} failed, {} killed of {} · Jobs: {:?}</p>",
        st.completed_tasks,
        st.failed_tasks,
        st.killed_tasks,
        st.num_tasks,
        st.job_ids,
        s = st.status.as_str()
    );
    if let Some(r) = &st.failure_reason {
        let _ = write!(body, "<h2>Failure</h2><pre>{}</pre>", esc(r));
    }
    let mut tasks = a.tasks.stage_tasks((stage, attempt));

    // summary metrics: quantiles over successful tasks, as Spark's stage page
    let qs = [0.0, 0.25, 0.5, 0.75, 1.0];
    body.push_str("<h2>Summary metrics for completed tasks</h2>");
    match task_summary(&tasks, &qs) {
        Some(N::O(fields)) => {
            body.push_str(
                "<table id=\"summary\"><thead><tr><th>Metric</th><th>Min</th><th>25th percentile</th><th>Median</th><th>75th percentile</th><th>Max</th></tr></thead><tbody>",
            );
            let mut rows = Vec::new();
            for (k, v) in &fields {
                if *k != "quantiles" {
                    leaves(v, k, &mut rows);
                }
            }
            for (name, vals) in rows {
                let _ = write!(body, "<tr><th>{}</th>", esc(&name));
                for v in vals {
                    let _ = write!(body, "<td>{}</td>", java_double(v));
                }
                body.push_str("</tr>");
            }
            body.push_str("</tbody></table>");
        }
        _ => body.push_str("<p id=\"summary\">No task has completed successfully.</p>"),
    }

    // per executor
    if let Some(sums) = a.tasks.exec_summaries.get(&(stage, attempt)) {
        body.push_str("<h2>Aggregated metrics by executor</h2><table id=\"executors\"><thead><tr><th>Executor</th><th>Task time</th><th>Succeeded</th><th>Failed</th><th>Killed</th><th>Input bytes</th><th>Shuffle read</th><th>Shuffle write</th><th>Spilled (memory / disk)</th></tr></thead><tbody>");
        for (ex, s) in sums {
            let v = &s.metrics.v;
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
                esc(ex),
                duration(s.task_time),
                s.succeeded,
                s.failed,
                s.killed,
                v[m::INPUT_BYTES],
                v[m::SR_LOCAL_BYTES] + v[m::SR_REMOTE_BYTES],
                v[m::SHUFFLE_WRITE_BYTES],
                v[m::MEM_SPILL],
                v[m::DISK_SPILL],
            );
        }
        body.push_str("</tbody></table>");
    }

    // the task table, one page of it
    let sort = match q.sort.as_deref() {
        Some("runtime") => "runtime",
        Some("-runtime") => "-runtime",
        _ => "id",
    };
    match sort {
        "runtime" => tasks.sort_by_key(|t| (t.run_time(), t.task_id)),
        "-runtime" => tasks.sort_by_key(|t| std::cmp::Reverse((t.run_time(), t.task_id))),
        _ => tasks.sort_by_key(|t| t.task_id),
    }
    let status = q
        .status
        .as_deref()
        .map(str::to_ascii_uppercase)
        .filter(|s| !s.is_empty());
    if let Some(s) = &status {
        tasks.retain(|t| t.status.as_str() == s);
    }
    let size = q.size.unwrap_or(PAGE).clamp(1, 10_000);
    let pages = tasks.len().div_ceil(size).max(1);
    let pg = q.page.unwrap_or(1).clamp(1, pages);
    let base = format!("/history/{}/stages/{stage}/{attempt}/", seg(&id));
    let link = |p: usize, s: &str| {
        let mut l = format!("{base}?page={p}&amp;size={size}&amp;sort={}", seg(s));
        if let Some(st) = &status {
            let _ = write!(l, "&amp;status={}", seg(st));
        }
        l
    };
    let _ = write!(
        body,
        "<h2>Tasks ({})</h2><p>Sort: <a href=\"{}\">by id</a> · <a href=\"{}\">by run time</a> · <a href=\"{}\">longest first</a> · Page {pg} of {pages}",
        tasks.len(),
        link(1, "id"),
        link(1, "runtime"),
        link(1, "-runtime"),
    );
    if pg > 1 {
        let _ = write!(body, " · <a href=\"{}\">previous</a>", link(pg - 1, sort));
    }
    if pg < pages {
        let _ = write!(body, " · <a href=\"{}\">next</a>", link(pg + 1, sort));
    }
    body.push_str("</p><table id=\"tasks\"><thead><tr><th>Task</th><th>Index</th><th>Attempt</th><th>Status</th><th>Executor</th><th>Host</th><th>Locality</th><th>Launch time</th><th>Duration</th><th>Run time (ms)</th><th>GC (ms)</th><th>Scheduler delay (ms)</th><th>Input (bytes)</th><th>Shuffle read (bytes)</th><th>Shuffle write (bytes)</th><th>Error</th></tr></thead><tbody>");
    for t in tasks.iter().skip((pg - 1) * size).take(size) {
        let read = t
            .metrics
            .as_ref()
            .map(|mt| (mt.v[m::SR_LOCAL_BYTES] + mt.v[m::SR_REMOTE_BYTES]).to_string())
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.task_id,
            t.index,
            t.attempt,
            t.status.as_str().replace(' ', "_"),
            t.status.as_str(),
            esc(&t.executor_id),
            esc(&t.host),
            esc(&t.locality),
            date(t.launch_time),
            if t.duration > 0 { duration(t.duration) } else { String::new() },
            metric(t, m::RUN_TIME),
            metric(t, m::GC_TIME),
            t.scheduler_delay(),
            metric(t, m::INPUT_BYTES),
            read,
            metric(t, m::SHUFFLE_WRITE_BYTES),
            t.error
                .as_deref()
                .map(|e| format!(
                    "<details><summary>{}</summary><pre>{}</pre></details>",
                    esc(e.lines().next().unwrap_or("")),
                    esc(e)
                ))
                .unwrap_or_default(),
        );
    }
    body.push_str("</tbody></table>");
    let _ = write!(body, "<h2>Details</h2><pre>{}</pre>", esc(&st.details));
    page(
        &format!("Stage {}.{}: {}", stage, attempt, st.name),
        Some(a),
        &body,
    )
}
