//! The executors page (`.../executors/`): totals for active and removed executors, then one
//! row per executor (the driver first) with its cores, tasks, task time and GC share (marked
//! above 10 %, as Spark marks it), input, shuffle, storage memory, when it was added and
//! removed and why, and its container logs as we collected them (viewable in the page, with
//! search, and downloadable). The numbers come from the REST API's `executor_summary`.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::response::Response;

use super::fmt::{self, Unit};
use super::html::{badge, esc, seg, th};
use super::layout::{render, Tab};
use super::Ctx;
// the UI reads the REST shapes as Spark 4 answers them (every field); the dialect only
// matters to clients wanting byte-identical JSON
use crate::api::json::{executor_summary, ExecutorSummary};
use crate::ingest::layout::LogFile;

/// Spark's container names: their log is "the" log of the executor.
const SPARK_CONTAINERS: [&str; 2] = ["spark-kubernetes-driver", "spark-kubernetes-executor"];

/// GC time above this share of task time is marked (Spark's executors page uses 10 %).
const GC_WARN: f64 = 0.1;

/// The collected container logs of each executor of the application: executor id ->
/// (container, file).
pub async fn collected(ctx: &Ctx) -> Result<BTreeMap<String, Vec<(String, LogFile)>>, String> {
    let Some(store) = ctx.catalog.store() else {
        return Ok(BTreeMap::new());
    };
    let files = store
        .list_podlogs(&ctx.app_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut out: BTreeMap<String, Vec<(String, LogFile)>> = BTreeMap::new();
    for f in files {
        if let Some((exec, file)) = f.rel.split_once('/') {
            if let Some(container) = file.strip_suffix(".log") {
                out.entry(exec.to_string())
                    .or_default()
                    .push((container.to_string(), f.clone()));
            }
        }
    }
    Ok(out)
}

/// How long the application ran, as the API reports the driver's task time.
fn run_ms(ctx: &Ctx) -> i64 {
    let a = ctx.app();
    if a.completed {
        a.end_time - a.start_time
    } else {
        ctx.entry.last_updated() - a.start_time
    }
}

fn gc_cell(task_time: i64, gc: i64) -> String {
    let share = if task_time > 0 {
        gc as f64 / task_time as f64
    } else {
        0.0
    };
    format!(
        "<td class=\"num{}\" data-v=\"{}\">{} <small>({} GC{})</small></td>",
        if share > GC_WARN { " gc-high" } else { "" },
        task_time,
        fmt::ms(task_time),
        fmt::ms(gc),
        if task_time > 0 {
            format!(", {}", fmt::percent_text(share))
        } else {
            String::new()
        }
    )
}

fn storage_cell(used: i64, max: i64) -> String {
    format!(
        "<td class=\"num\" data-v=\"{used}\">{} / {}</td>",
        fmt::bytes(used),
        fmt::bytes(max)
    )
}

pub async fn page(ctx: &Ctx) -> Response {
    let a = ctx.app();
    let run = run_ms(ctx);
    let logs = collected(ctx).await;
    let mut execs: Vec<ExecutorSummary> = a
        .executors
        .values()
        .map(|e| executor_summary(e, run, super::DIALECT))
        .collect();
    // the driver first, then executors by number (Spark's ids are numbers in strings)
    execs.sort_by_key(|e| {
        (
            e.id != "driver",
            e.id.parse::<i64>().unwrap_or(i64::MAX),
            e.id.clone(),
        )
    });
    let mut b = String::new();

    // totals
    b.push_str("<h2 id=\"summary-h\">Summary</h2><div class=\"scroll\"><table id=\"exec-summary\" class=\"listing\"><thead><tr><th></th><th class=\"num\">Executors</th><th class=\"num\">RDD blocks</th><th class=\"num\">Storage memory</th><th class=\"num\">Disk used</th><th class=\"num\">Cores</th><th class=\"num\">Active tasks</th><th class=\"num\">Failed tasks</th><th class=\"num\">Complete tasks</th><th class=\"num\">Total tasks</th><th class=\"num\">Task time (GC time)</th><th class=\"num\">Input</th><th class=\"num\">Shuffle read</th><th class=\"num\">Shuffle write</th></tr></thead><tbody>");
    for (label, want) in [
        ("Active", Some(true)),
        ("Removed", Some(false)),
        ("Total", None),
    ] {
        let set: Vec<&ExecutorSummary> = execs
            .iter()
            .filter(|e| want.is_none_or(|w| e.is_active == w))
            .collect();
        let sum = |f: &dyn Fn(&ExecutorSummary) -> i64| set.iter().map(|&e| f(e)).sum::<i64>();
        let _ = write!(
            b,
            "<tr><th>{label}</th>{}{}{}{}{}{}{}{}{}{}{}{}{}</tr>",
            fmt::td(Unit::Count, Some(set.len() as f64)),
            fmt::td(Unit::Count, Some(sum(&|e| e.rdd_blocks) as f64)),
            storage_cell(sum(&|e| e.memory_used), sum(&|e| e.max_memory)),
            fmt::td(Unit::Bytes, Some(sum(&|e| e.disk_used) as f64)),
            fmt::td(Unit::Count, Some(sum(&|e| e.total_cores) as f64)),
            fmt::td(Unit::Count, Some(sum(&|e| e.active_tasks) as f64)),
            fmt::td(Unit::Count, Some(sum(&|e| e.failed_tasks) as f64)),
            fmt::td(Unit::Count, Some(sum(&|e| e.completed_tasks) as f64)),
            fmt::td(Unit::Count, Some(sum(&|e| e.total_tasks) as f64)),
            gc_cell(sum(&|e| e.total_duration), sum(&|e| e.total_gc_time)),
            fmt::td(Unit::Bytes, Some(sum(&|e| e.total_input_bytes) as f64)),
            fmt::td(Unit::Bytes, Some(sum(&|e| e.total_shuffle_read) as f64)),
            fmt::td(Unit::Bytes, Some(sum(&|e| e.total_shuffle_write) as f64)),
        );
    }
    b.push_str("</tbody></table></div>");

    if let Err(e) = &logs {
        let _ = write!(
            b,
            "<p class=\"callout warn\">The collected logs could not be listed: {}</p>",
            esc(e)
        );
    }
    let logs = logs.unwrap_or_default();
    // columns that are zero (or unknown) for every executor are left out
    let has_rdd = execs.iter().any(|e| e.rdd_blocks != 0 || e.disk_used != 0);
    let has_peak = a.executors.values().any(|x| x.peak.is_some());
    let has_input = execs.iter().any(|e| e.total_input_bytes != 0);
    let has_shuffle = execs
        .iter()
        .any(|e| e.total_shuffle_read != 0 || e.total_shuffle_write != 0);
    let _ = write!(
        b,
        "<h2 id=\"executors-h\">Executors ({})</h2><p><input type=\"search\" class=\"filter\" data-table=\"executors\" placeholder=\"Filter rows\" aria-label=\"Filter executors\"></p><div class=\"scroll\"><table id=\"executors\" class=\"listing sortable\"><thead><tr>{}{}{}<th>Logs</th>{}{}{}",
        execs.len(),
        th("Executor", false),
        th("Address", false),
        th("Status", false),
        th("Cores", true),
        th("Tasks: active / failed / done / total", true),
        th("Task time (GC)", true),
    );
    if has_input {
        b.push_str(&th("Input", true));
    }
    if has_shuffle {
        b.push_str(&th("Shuffle read", true));
        b.push_str(&th("Shuffle write", true));
    }
    b.push_str(&th("Storage memory", true));
    if has_rdd {
        b.push_str(&th("RDD blocks", true));
        b.push_str(&th("Disk used", true));
    }
    if has_peak {
        b.push_str(&th("Peak JVM heap", true));
    }
    b.push_str(&th("Added", true));
    b.push_str(&th("Removed", true));
    b.push_str("</tr></thead><tbody>");
    for e in &execs {
        let ex = a.executors.get(&e.id);
        let status = if e.is_active {
            badge("ACTIVE")
        } else {
            format!(
                "{}{}",
                badge("REMOVED"),
                e.remove_reason
                    .as_deref()
                    .map(|r| format!("<br><small class=\"reason\">{}</small>", esc(r)))
                    .unwrap_or_default()
            )
        };
        let _ = write!(
            b,
            "<tr id=\"exec-{}\" data-executor=\"{}\"><td>{}</td><td>{}</td><td>{status}</td><td class=\"logs\">{}</td>{}<td class=\"num{}\" data-v=\"{}\">{} / {} / {} / {}</td>{}",
            esc(&seg(&e.id)),
            esc(&e.id),
            esc(&e.id),
            esc(&e.host_port),
            log_links(
                ctx,
                &e.id,
                logs.get(&e.id),
                ex.map(|x| x.executor_logs.as_slice()).unwrap_or(&[])
            ),
            fmt::td(Unit::Count, Some(e.total_cores as f64)),
            if e.failed_tasks > 0 { " failed-tasks" } else { "" },
            e.total_tasks,
            fmt::group(e.active_tasks),
            fmt::group(e.failed_tasks),
            fmt::group(e.completed_tasks),
            fmt::group(e.total_tasks),
            gc_cell(e.total_duration, e.total_gc_time),
        );
        if has_input {
            b.push_str(&fmt::td(Unit::Bytes, Some(e.total_input_bytes as f64)));
        }
        if has_shuffle {
            b.push_str(&fmt::td(Unit::Bytes, Some(e.total_shuffle_read as f64)));
            b.push_str(&fmt::td(Unit::Bytes, Some(e.total_shuffle_write as f64)));
        }
        b.push_str(&storage_cell(e.memory_used, e.max_memory));
        if has_rdd {
            b.push_str(&fmt::td(Unit::Count, Some(e.rdd_blocks as f64)));
            b.push_str(&fmt::td(Unit::Bytes, Some(e.disk_used as f64)));
        }
        if has_peak {
            b.push_str(&fmt::td(
                Unit::Bytes,
                ex.and_then(|x| x.peak.as_ref()).map(|p| p[0] as f64),
            ));
        }
        b.push_str(&fmt::date_td(ex.map_or(-1, |x| x.add_time)));
        b.push_str(&fmt::date_td(ex.and_then(|x| x.remove_time).unwrap_or(-1)));
        b.push_str("</tr>");
    }
    b.push_str("</tbody></table></div>");
    render(Some(ctx), Tab::Executors, "Executors", &b)
}

/// The log cell: each collected container log (view in the page, download), or, when none
/// was collected, the log links Spark logged (to the cluster manager's own log pages).
fn log_links(
    ctx: &Ctx,
    exec: &str,
    collected: Option<&Vec<(String, LogFile)>>,
    spark: &[(String, String)],
) -> String {
    let mut s = String::new();
    match collected {
        Some(files) if !files.is_empty() => {
            for (container, f) in files {
                let file = format!("{container}.log");
                let _ = write!(
                    s,
                    "<div><a href=\"{}\">{}</a> <small>{}{}</small> <a class=\"dl\" href=\"/logs/{}/{}/{}\" download=\"{}\">download</a></div>",
                    ctx.log_href(exec, &file),
                    if SPARK_CONTAINERS.contains(&container.as_str()) {
                        "log".to_string()
                    } else {
                        esc(container)
                    },
                    fmt::bytes(f.len as i64),
                    if f.complete { "" } else { ", live" },
                    seg(&ctx.app_id),
                    seg(exec),
                    seg(&file),
                    esc(&format!("{}-{exec}-{container}.log", ctx.app_id)),
                );
            }
        }
        _ => {
            let links: Vec<String> = spark
                .iter()
                .filter(|(_, url)| url.starts_with("http://") || url.starts_with("https://"))
                .map(|(name, url)| {
                    format!(
                        "<a class=\"external\" href=\"{}\" rel=\"noreferrer nofollow\" title=\"Spark's log link (served by the cluster manager, gone with it)\">{}</a>",
                        esc(url),
                        esc(name)
                    )
                })
                .collect();
            if links.is_empty() {
                s.push_str("<span class=\"muted\">not collected</span>");
            } else {
                let _ = write!(
                    s,
                    "<span class=\"muted\">not collected;</span> {}",
                    links.join(" ")
                );
            }
        }
    }
    s
}
