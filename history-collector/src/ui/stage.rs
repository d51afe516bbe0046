//! The stage page (`.../stages/stage/?id=N&attempt=M`): the attempt's facts, hints where
//! the numbers point at a cause (skew, spill, GC, failed tasks grouped by error with the
//! first stack trace), the summary quantiles over its successful tasks (computed by the same
//! function as the REST API's `taskSummary`, shown in units, metrics that are zero for every
//! task folded away), per-executor aggregates, a timeline of the slowest tasks split into
//! their phases, and the task table, paged, sorted and filtered on the server from the task
//! store, so a stage with a million tasks costs one page of HTML.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::response::Response;

use super::fmt::{self, Unit};
use super::html::{badge, esc, progress, seg, shorten, th};
use super::layout::{render, Tab};
use super::timeline::{self, TaskPhases};
use super::{app_not_found, bad_request, Ctx};
// the UI reads the REST shapes as Spark 4 answers them (every field); the dialect only
// matters to clients wanting byte-identical JSON
use crate::api::stagedata::stage_data;
use crate::api::stagedata::{task_summary, N};
use crate::model::m;
use crate::model::tasks::{TaskRec, TaskState};

/// Tasks per page unless `task.pageSize` says otherwise.
const PAGE: usize = 100;
/// Tasks drawn on the task timeline (the slowest).
const TIMELINE_TASKS: usize = 40;
/// Quantiles of the summary table (Spark's stage page shows the same five).
const QUANTILES: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// A summary row: label, path in Spark's `TaskMetricDistributions`, unit, and the path of a
/// record count shown beside it.
struct Row {
    label: &'static str,
    path: &'static [&'static str],
    unit: Unit,
    records: Option<&'static [&'static str]>,
    tip: &'static str,
}

const ROWS: &[Row] = &[
    Row { label: "Duration", path: &["duration"], unit: Unit::Ms, records: None, tip: "Wall-clock time of the task, launch to end." },
    Row { label: "Scheduler delay", path: &["schedulerDelay"], unit: Unit::Ms, records: None, tip: "Time to ship the task to the executor and its result back, not counting fetching a large result." },
    Row { label: "Task deserialization", path: &["executorDeserializeTime"], unit: Unit::Ms, records: None, tip: "Time to deserialize the task's closure on the executor." },
    Row { label: "Executor run time", path: &["executorRunTime"], unit: Unit::Ms, records: None, tip: "Time the executor spent running the task." },
    Row { label: "Executor CPU time", path: &["executorCpuTime"], unit: Unit::Ns, records: None, tip: "CPU time of the executor thread running the task (reported in nanoseconds)." },
    Row { label: "GC time", path: &["jvmGcTime"], unit: Unit::Ms, records: None, tip: "Time the executor JVM spent in garbage collection while the task ran." },
    Row { label: "Result serialization", path: &["resultSerializationTime"], unit: Unit::Ms, records: None, tip: "Time to serialize the task result." },
    Row { label: "Getting result", path: &["gettingResultTime"], unit: Unit::Ms, records: None, tip: "Time the driver spent fetching a large task result." },
    Row { label: "Result size", path: &["resultSize"], unit: Unit::Bytes, records: None, tip: "Size of the serialized task result." },
    Row { label: "Peak execution memory", path: &["peakExecutionMemory"], unit: Unit::Bytes, records: None, tip: "Peak memory of sorts, aggregations and joins in the task." },
    Row { label: "Input size / records", path: &["inputMetrics", "bytesRead"], unit: Unit::Bytes, records: Some(&["inputMetrics", "recordsRead"]), tip: "Bytes and records read from storage." },
    Row { label: "Output size / records", path: &["outputMetrics", "bytesWritten"], unit: Unit::Bytes, records: Some(&["outputMetrics", "recordsWritten"]), tip: "Bytes and records written to storage." },
    Row { label: "Shuffle read size / records", path: &["shuffleReadMetrics", "readBytes"], unit: Unit::Bytes, records: Some(&["shuffleReadMetrics", "readRecords"]), tip: "Shuffle bytes and records read, local and remote." },
    Row { label: "Shuffle read blocked time", path: &["shuffleReadMetrics", "fetchWaitTime"], unit: Unit::Ms, records: None, tip: "Time the task waited for shuffle data from other executors." },
    Row { label: "Shuffle remote reads", path: &["shuffleReadMetrics", "remoteBytesRead"], unit: Unit::Bytes, records: None, tip: "Shuffle bytes read from other executors." },
    Row { label: "Shuffle remote reads to disk", path: &["shuffleReadMetrics", "remoteBytesReadToDisk"], unit: Unit::Bytes, records: None, tip: "Remote shuffle bytes fetched to disk rather than memory." },
    Row { label: "Shuffle blocks fetched", path: &["shuffleReadMetrics", "totalBlocksFetched"], unit: Unit::Count, records: None, tip: "Shuffle blocks read, local and remote." },
    Row { label: "Shuffle remote requests", path: &["shuffleReadMetrics", "remoteReqsDuration"], unit: Unit::Ms, records: None, tip: "Time spent in remote shuffle fetch requests." },
    Row { label: "Shuffle write size / records", path: &["shuffleWriteMetrics", "writeBytes"], unit: Unit::Bytes, records: Some(&["shuffleWriteMetrics", "writeRecords"]), tip: "Shuffle bytes and records written." },
    Row { label: "Shuffle write time", path: &["shuffleWriteMetrics", "writeTime"], unit: Unit::Ns, records: None, tip: "Time spent writing shuffle files (reported in nanoseconds)." },
    Row { label: "Spill (memory)", path: &["memoryBytesSpilled"], unit: Unit::Bytes, records: None, tip: "Deserialized size in memory of data spilled." },
    Row { label: "Spill (disk)", path: &["diskBytesSpilled"], unit: Unit::Bytes, records: None, tip: "Size on disk of data spilled." },
];

/// Push-based shuffle metrics: zero unless push-based shuffle (YARN only) was on.
const PUSH_ROWS: [(&str, &str, Unit); 9] = [
    (
        "corruptMergedBlockChunks",
        "Corrupt merged block chunks",
        Unit::Count,
    ),
    (
        "mergedFetchFallbackCount",
        "Merged fetch fallbacks",
        Unit::Count,
    ),
    (
        "remoteMergedBlocksFetched",
        "Remote merged blocks",
        Unit::Count,
    ),
    (
        "localMergedBlocksFetched",
        "Local merged blocks",
        Unit::Count,
    ),
    (
        "remoteMergedChunksFetched",
        "Remote merged chunks",
        Unit::Count,
    ),
    (
        "localMergedChunksFetched",
        "Local merged chunks",
        Unit::Count,
    ),
    ("remoteMergedBytesRead", "Remote merged bytes", Unit::Bytes),
    ("localMergedBytesRead", "Local merged bytes", Unit::Bytes),
    (
        "remoteMergedReqsDuration",
        "Remote merged requests",
        Unit::Ms,
    ),
];

/// The values at `path` in a distribution tree.
fn at<'a>(n: &'a N, path: &[&str]) -> Option<&'a Vec<f64>> {
    let mut cur = n;
    for p in path {
        let N::O(fields) = cur else { return None };
        cur = &fields.iter().find(|(k, _)| k == p)?.1;
    }
    match cur {
        N::D(v) => Some(v),
        _ => None,
    }
}

fn metric(t: &TaskRec, i: usize) -> Option<i64> {
    t.metrics.as_ref().map(|mt| mt.v[i])
}

/// A task's metric as a number, `None` without metrics.
fn mf(t: &TaskRec, i: usize) -> Option<f64> {
    metric(t, i).map(|v| v as f64)
}

fn shuffle_read(t: &TaskRec) -> Option<i64> {
    t.metrics
        .as_ref()
        .map(|mt| mt.v[m::SR_LOCAL_BYTES] + mt.v[m::SR_REMOTE_BYTES])
}

/// The phases Spark's stage timeline splits a task into.
fn phases(t: &TaskRec) -> TaskPhases {
    let g = |i| metric(t, i).unwrap_or(0).max(0);
    let shuffle_read = g(m::SR_FETCH_WAIT);
    // shuffle write time is in nanoseconds
    let shuffle_write = g(m::SHUFFLE_WRITE_TIME) / 1_000_000;
    TaskPhases {
        task_id: t.task_id,
        index: t.index,
        attempt: t.attempt,
        executor: t.executor_id.to_string(),
        status: t.status.as_str(),
        launch: t.launch_time,
        duration: t.duration.max(0),
        scheduler_delay: t.scheduler_delay(),
        deserialize: g(m::DESER_TIME),
        shuffle_read,
        compute: (g(m::RUN_TIME) - shuffle_read - shuffle_write).max(0),
        shuffle_write,
        serialize: g(m::RESULT_SER),
        getting_result: t.getting_result_time().max(0),
    }
}

/// Sortable task columns: query value, header, numeric.
const TASK_COLUMNS: [(&str, &str, bool); 16] = [
    ("index", "Index", true),
    ("id", "Task ID", true),
    ("attempt", "Attempt", true),
    ("status", "Status", false),
    ("locality", "Locality", false),
    ("executor", "Executor", false),
    ("host", "Host", false),
    ("launch", "Launch time", true),
    ("duration", "Duration", true),
    ("delay", "Scheduler delay", true),
    ("gc", "GC time", true),
    ("input", "Input", true),
    ("read", "Shuffle read", true),
    ("write", "Shuffle write", true),
    ("spill", "Spill (disk)", true),
    ("error", "Error", false),
];

fn sort_key(t: &TaskRec, col: &str) -> (i64, String) {
    let n = |v: Option<i64>| (v.unwrap_or(-1), String::new());
    match col {
        "id" => n(Some(t.task_id)),
        "attempt" => n(Some(t.attempt)),
        "status" => (0, t.status.as_str().to_string()),
        "locality" => (0, t.locality.to_string()),
        "executor" => (0, t.executor_id.to_string()),
        "host" => (0, t.host.to_string()),
        "launch" => n(Some(t.launch_time)),
        "duration" => n(Some(t.duration)),
        "delay" => n(Some(t.scheduler_delay())),
        "gc" => n(metric(t, m::GC_TIME)),
        "input" => n(metric(t, m::INPUT_BYTES)),
        "read" => n(shuffle_read(t)),
        "write" => n(metric(t, m::SHUFFLE_WRITE_BYTES)),
        "spill" => n(metric(t, m::DISK_SPILL)),
        "error" => (0, t.error.clone().unwrap_or_default()),
        _ => n(Some(t.index)),
    }
}

pub async fn page(ctx: &Ctx) -> Response {
    let logs = super::executors::collected(ctx).await.unwrap_or_default();
    let log_links = |ex: &str| -> String {
        match logs.get(ex) {
            Some(files) if !files.is_empty() => format!(
                "<a href=\"{}\">stdout</a> <a href=\"{}\">stderr</a>",
                ctx.log_href(ex, "stdout"),
                ctx.log_href(ex, "stderr")
            ),
            _ => String::new(),
        }
    };
    let (Some(stage), attempt) = (ctx.query.int("id"), ctx.query.int("attempt")) else {
        return bad_request(
            ctx,
            Tab::Stages,
            "The stage page needs ?id=<stage id>&attempt=<attempt>.",
        );
    };
    let a = ctx.app();
    // without an attempt, the latest (Spark needs one; a link with the id alone still works)
    let attempt = attempt.or_else(|| {
        a.stages
            .range((stage, i64::MIN)..=(stage, i64::MAX))
            .next_back()
            .map(|(k, _)| k.1)
    });
    let Some(st) = attempt.and_then(|att| a.stages.get(&(stage, att))) else {
        return app_not_found(
            ctx,
            Tab::Stages,
            &format!(
                "Unknown stage {stage} (attempt {}).",
                attempt.map(|x| x.to_string()).unwrap_or_default()
            ),
        );
    };
    let key = (st.stage_id, st.attempt_id);
    let d = stage_data(st, super::DIALECT);
    let tasks = a.tasks.stage_tasks(key);
    let end = super::app::app_end(ctx);
    let mut b = String::with_capacity(64 * 1024);

    // facts
    b.push_str("<dl class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = write!(b, "<div><dt>{k}</dt><dd>{v}</dd></div>");
    };
    fact("Status", badge(st.status.as_str()));
    fact("Submitted", fmt::date(st.submission_time.unwrap_or(-1)));
    if let Some(s) = st.submission_time {
        fact(
            "Duration",
            match st.completion_time {
                Some(c) => fmt::ms(c - s),
                None => format!("{}+", fmt::ms(end - s)),
            },
        );
    }
    fact(
        "Tasks",
        progress(
            d.num_complete_tasks,
            d.num_failed_tasks,
            d.num_killed_tasks,
            d.num_active_tasks,
            d.num_tasks,
        ),
    );
    fact("Total time across all tasks", fmt::ms(d.executor_run_time));
    fact("Total CPU time", fmt::ns(d.executor_cpu_time));
    let mut localities: BTreeMap<&str, i64> = BTreeMap::new();
    for t in &tasks {
        *localities.entry(t.locality.as_str()).or_default() += 1;
    }
    if !localities.is_empty() {
        fact(
            "Locality",
            localities
                .iter()
                .map(|(l, n)| format!("{}: {}", esc(l), fmt::group(*n)))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    for (label, bytes, records) in [
        ("Input", d.input_bytes, d.input_records),
        ("Output", d.output_bytes, d.output_records),
        ("Shuffle read", d.shuffle_read_bytes, d.shuffle_read_records),
        (
            "Shuffle write",
            d.shuffle_write_bytes,
            d.shuffle_write_records,
        ),
    ] {
        if bytes != 0 || records != 0 {
            fact(label, fmt::bytes_records(bytes, records));
        }
    }
    if d.memory_bytes_spilled != 0 || d.disk_bytes_spilled != 0 {
        fact(
            "Spill (memory / disk)",
            format!(
                "{} / {}",
                fmt::bytes(d.memory_bytes_spilled),
                fmt::bytes(d.disk_bytes_spilled)
            ),
        );
    }
    if !st.job_ids.is_empty() {
        fact(
            "Jobs",
            st.job_ids
                .iter()
                .map(|j| format!("<a href=\"{}\">{j}</a>", ctx.job_href(*j)))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    let attempts: Vec<i64> = a
        .stages
        .range((stage, i64::MIN)..=(stage, i64::MAX))
        .map(|(k, _)| k.1)
        .collect();
    if attempts.len() > 1 {
        fact(
            "Attempts",
            attempts
                .iter()
                .map(|x| {
                    if *x == st.attempt_id {
                        format!("<b>{x}</b>")
                    } else {
                        format!("<a href=\"{}\">{x}</a>", ctx.stage_href(stage, *x))
                    }
                })
                .collect::<Vec<_>>()
                .join(" · "),
        );
    }
    if st.scheduling_pool != "default" {
        fact("Pool", esc(&st.scheduling_pool));
    }
    fact("Resource profile", st.resource_profile_id.to_string());
    b.push_str("</dl>");
    if let Some(desc) = &st.description {
        let _ = write!(b, "<p class=\"desc\">{}</p>", esc(desc));
    }
    if let Some(r) = &st.failure_reason {
        let _ = write!(
            b,
            "<div class=\"callout bad\" id=\"failure\"><p><b>Stage failed:</b> {}</p><details><summary>Full reason</summary><pre>{}</pre></details></div>",
            esc(r.lines().next().unwrap_or("")),
            esc(r)
        );
    }
    if !st.details.is_empty() {
        let _ = write!(
            b,
            "<details class=\"callsite\"><summary>Call site</summary><pre>{}</pre></details>",
            esc(&st.details)
        );
    }

    b.push_str(&hints(ctx, &tasks, &d, &log_links));

    // summary quantiles
    let succeeded = tasks
        .iter()
        .filter(|t| t.status == TaskState::Success)
        .count();
    let _ = write!(
        b,
        "<h2 id=\"summary-h\">Summary metrics for {} completed tasks</h2>",
        fmt::group(succeeded as i64)
    );
    match task_summary(&tasks, &QUANTILES) {
        Some(n) => b.push_str(&summary_table(&n)),
        None => b.push_str("<p id=\"summary\">No task has completed successfully.</p>"),
    }

    // per executor; data columns that are zero for the whole stage are left out
    if let Some(sums) = a.tasks.exec_summaries.get(&key) {
        type Col = (&'static str, bool, fn(&[i64]) -> (i64, i64));
        let data: [Col; 6] = [
            ("Input", d.input_bytes != 0 || d.input_records != 0, |v| {
                (v[m::INPUT_BYTES], v[m::INPUT_RECORDS])
            }),
            (
                "Output",
                d.output_bytes != 0 || d.output_records != 0,
                |v| (v[m::OUTPUT_BYTES], v[m::OUTPUT_RECORDS]),
            ),
            (
                "Shuffle read",
                d.shuffle_read_bytes != 0 || d.shuffle_read_records != 0,
                |v| {
                    (
                        v[m::SR_LOCAL_BYTES] + v[m::SR_REMOTE_BYTES],
                        v[m::SR_RECORDS],
                    )
                },
            ),
            (
                "Shuffle write",
                d.shuffle_write_bytes != 0 || d.shuffle_write_records != 0,
                |v| (v[m::SHUFFLE_WRITE_BYTES], v[m::SHUFFLE_WRITE_RECORDS]),
            ),
            ("Spill (memory)", d.memory_bytes_spilled != 0, |v| {
                (v[m::MEM_SPILL], -1)
            }),
            ("Spill (disk)", d.disk_bytes_spilled != 0, |v| {
                (v[m::DISK_SPILL], -1)
            }),
        ];
        let _ = write!(
            b,
            "<h2 id=\"executors-h\">Aggregated metrics by executor ({})</h2><table id=\"stage-executors\" class=\"listing sortable\"><thead><tr>{}{}<th>Logs</th>{}{}{}{}{}",
            sums.len(),
            th("Executor", false),
            th("Address", false),
            th("Task time", true),
            th("Tasks", true),
            th("Failed", true),
            th("Killed", true),
            th("Succeeded", true),
        );
        for (label, on, _) in &data {
            if *on {
                b.push_str(&th(label, true));
            }
        }
        b.push_str("</tr></thead><tbody>");
        for (ex, s) in sums {
            let v = &s.metrics.v;
            let addr = a
                .executors
                .get(ex)
                .and_then(|e| e.host_port.clone().or_else(|| e.host.clone()))
                .unwrap_or_default();
            let _ = write!(
                b,
                "<tr><td><a href=\"{}executors/#exec-{}\">{}</a></td><td>{}</td><td>{}</td>{}{}{}{}{}",
                ctx.base,
                seg(ex),
                esc(ex),
                esc(&addr),
                log_links(ex),
                fmt::td(Unit::Ms, Some(s.task_time as f64)),
                fmt::td(Unit::Count, Some((s.succeeded + s.failed + s.killed) as f64)),
                fmt::td(Unit::Count, Some(s.failed as f64)),
                fmt::td(Unit::Count, Some(s.killed as f64)),
                fmt::td(Unit::Count, Some(s.succeeded as f64)),
            );
            for (_, on, get) in &data {
                if *on {
                    let (bytes, records) = get(&v[..]);
                    if records < 0 {
                        b.push_str(&fmt::td(Unit::Bytes, Some(bytes as f64)));
                    } else {
                        b.push_str(&super::stages::size_records(bytes, records));
                    }
                }
            }
            b.push_str("</tr>");
        }
        b.push_str("</tbody></table>");
    }

    // the slowest tasks, as a timeline of their phases
    let mut slow: Vec<&TaskRec> = tasks.iter().filter(|t| t.duration > 0).collect();
    slow.sort_by_key(|t| std::cmp::Reverse((t.duration, -t.task_id)));
    slow.truncate(TIMELINE_TASKS);
    slow.sort_by_key(|t| (t.launch_time, t.task_id));
    if !slow.is_empty() {
        let _ = write!(
            b,
            "<h2 id=\"task-timeline-h\">Task timeline: the {} slowest of {} tasks</h2>",
            slow.len(),
            fmt::group(tasks.len() as i64)
        );
        let rows: Vec<TaskPhases> = slow.iter().map(|t| phases(t)).collect();
        b.push_str("<div class=\"scroll\">");
        b.push_str(&timeline::tasks("task-timeline", &rows));
        b.push_str("</div>");
        b.push_str(&timeline::task_legend());
    }

    b.push_str(&task_table(ctx, &tasks, &log_links));
    render(
        Some(ctx),
        Tab::Stages,
        &format!("Stage {} (attempt {}): {}", stage, st.attempt_id, st.name),
        &b,
    )
}

/// The quantile table, rows in units, all-zero rows folded into one line.
fn summary_table(n: &N) -> String {
    let mut b = String::from("<table id=\"summary\" class=\"listing quantiles\"><thead><tr><th>Metric</th><th class=\"num\">Min</th><th class=\"num\">25th percentile</th><th class=\"num\">Median</th><th class=\"num\">75th percentile</th><th class=\"num\">Max</th></tr></thead><tbody>");
    let mut zero = Vec::new();
    for r in ROWS {
        let Some(vals) = at(n, r.path) else { continue };
        let recs = r.records.and_then(|p| at(n, p));
        let all_zero = vals.iter().all(|v| *v == 0.0 || v.is_nan())
            && recs.is_none_or(|rv| rv.iter().all(|v| *v == 0.0 || v.is_nan()));
        if all_zero {
            zero.push(r.label);
            continue;
        }
        let _ = write!(b, "<tr><th title=\"{}\">{}</th>", esc(r.tip), r.label);
        for (i, v) in vals.iter().enumerate() {
            let _ = write!(b, "<td class=\"num\">{}", fmt::cell(r.unit, Some(*v)));
            if let Some(rv) = recs {
                let _ = write!(b, " / {}", fmt::cell(Unit::Count, rv.get(i).copied()));
            }
            b.push_str("</td>");
        }
        b.push_str("</tr>");
    }
    // push-based shuffle: one group, folded whole when zero
    let mut push_zero = true;
    let mut push_rows = String::new();
    for (field, label, unit) in PUSH_ROWS {
        let Some(vals) = at(
            n,
            &["shuffleReadMetrics", "shufflePushReadMetricsDist", field],
        ) else {
            continue;
        };
        if vals.iter().any(|v| *v != 0.0 && !v.is_nan()) {
            push_zero = false;
        }
        let _ = write!(push_rows, "<tr><th>Push-based shuffle: {label}</th>");
        for v in vals {
            let _ = write!(
                push_rows,
                "<td class=\"num\">{}</td>",
                fmt::cell(unit, Some(*v))
            );
        }
        push_rows.push_str("</tr>");
    }
    if push_zero {
        zero.push("push-based shuffle (9 metrics)");
    } else {
        b.push_str(&push_rows);
    }
    b.push_str("</tbody></table>");
    if !zero.is_empty() {
        let _ = write!(
            b,
            "<p class=\"folded muted\" id=\"zero-metrics\">Zero for every task, not shown: {}.</p>",
            zero.join(", ")
        );
    }
    b
}

/// Hints where the numbers say something: failed tasks grouped by error, skew, spill, GC.
fn hints(
    ctx: &Ctx,
    tasks: &[TaskRec],
    d: &crate::api::stagedata::StageData,
    log_links: &dyn Fn(&str) -> String,
) -> String {
    let mut b = String::new();
    let ok: Vec<&TaskRec> = tasks
        .iter()
        .filter(|t| t.status == TaskState::Success)
        .collect();

    // skew: the slowest task far above the median, in time or in data read
    if ok.len() >= 4 {
        let mut durs: Vec<i64> = ok.iter().map(|t| t.duration).collect();
        durs.sort_unstable();
        let med = durs[durs.len() / 2];
        let max = *durs.last().unwrap_or(&0);
        if max >= 2 * med.max(1) && max - med >= 1000 {
            let slow = ok.iter().max_by_key(|t| t.duration);
            let _ = write!(
                b,
                "<div class=\"callout warn hint\" id=\"hint-skew\"><p><b>Skew:</b> the slowest task took {} against a median of {} ({:.1}×){}. Tasks of uneven size usually mean unevenly distributed keys; see the <a href=\"{}\">slowest tasks</a>.</p></div>",
                fmt::ms(max),
                fmt::ms(med),
                max as f64 / med.max(1) as f64,
                slow.map(|t| format!(" (task {}, partition {})", t.task_id, t.partition_id))
                    .unwrap_or_default(),
                esc(&ctx.query.with(&[("task.sort", Some("duration")), ("task.desc", Some("1")), ("task.page", None)])) + "#tasks-h",
            );
        }
        let mut reads: Vec<i64> = ok.iter().filter_map(|t| shuffle_read(t)).collect();
        reads.sort_unstable();
        if let (Some(&max), false) = (reads.last(), reads.is_empty()) {
            let med = reads[reads.len() / 2];
            if max >= 2 * med.max(1) && max - med >= 8 << 20 {
                let _ = write!(
                    b,
                    "<div class=\"callout warn hint\" id=\"hint-data-skew\"><p><b>Data skew:</b> the largest shuffle read of a task is {} against a median of {}.</p></div>",
                    fmt::bytes(max),
                    fmt::bytes(med)
                );
            }
        }
    }

    // spill
    if d.disk_bytes_spilled > 0 || d.memory_bytes_spilled > 0 {
        let n = tasks
            .iter()
            .filter(|t| {
                metric(t, m::DISK_SPILL).unwrap_or(0) > 0
                    || metric(t, m::MEM_SPILL).unwrap_or(0) > 0
            })
            .count();
        let _ = write!(
            b,
            "<div class=\"callout warn hint\" id=\"hint-spill\"><p><b>Spill:</b> {} of {} tasks spilled {} to disk ({} in memory). Data that does not fit in execution memory is sorted in pieces on disk; more memory per task (<code>spark.executor.memory</code>, fewer cores per executor) or more, smaller partitions (<code>spark.sql.shuffle.partitions</code>) avoid it.</p></div>",
            fmt::group(n as i64),
            fmt::group(tasks.len() as i64),
            fmt::bytes(d.disk_bytes_spilled),
            fmt::bytes(d.memory_bytes_spilled),
        );
    }

    // GC share (Spark's executors page marks more than 10 %)
    if d.executor_run_time > 0 && d.jvm_gc_time * 10 > d.executor_run_time {
        let _ = write!(
            b,
            "<div class=\"callout warn hint\" id=\"hint-gc\"><p><b>Garbage collection:</b> {} of the {} the tasks ran ({}) went to JVM garbage collection. More executor memory, or less data cached in it, usually helps.</p></div>",
            fmt::ms(d.jvm_gc_time),
            fmt::ms(d.executor_run_time),
            fmt::percent_text(d.jvm_gc_time as f64 / d.executor_run_time as f64),
        );
    }

    // failed and killed tasks grouped by their error's first line
    let mut groups: Vec<(String, Vec<&TaskRec>)> = Vec::new();
    for t in tasks
        .iter()
        .filter(|t| matches!(t.status, TaskState::Failed | TaskState::Killed))
    {
        let first = t
            .error
            .as_deref()
            .and_then(|e| e.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or("(no error message)")
            .trim()
            .to_string();
        match groups.iter_mut().find(|(k, _)| *k == first) {
            Some((_, v)) => v.push(t),
            None => groups.push((first, vec![t])),
        }
    }
    if !groups.is_empty() {
        groups.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let total: usize = groups.iter().map(|(_, v)| v.len()).sum();
        let _ = write!(
            b,
            "<div class=\"callout bad hint\" id=\"hint-failures\"><p><b>{} failed or killed task attempts</b>, by error:</p><table class=\"listing errors\"><thead><tr><th class=\"num\">Tasks</th><th>Error</th><th>Executors</th><th>First stack trace</th></tr></thead><tbody>",
            fmt::group(total as i64)
        );
        for (first, ts) in &groups {
            let mut execs: Vec<&str> = ts.iter().map(|t| t.executor_id.as_str()).collect();
            execs.sort_unstable();
            execs.dedup();
            let shown: Vec<String> = execs
                .iter()
                .take(8)
                .map(|e| {
                    let l = log_links(e);
                    if l.is_empty() {
                        esc(e)
                    } else {
                        format!("{} <small>({l})</small>", esc(e))
                    }
                })
                .collect();
            let earliest = ts.iter().min_by_key(|t| (t.launch_time, t.task_id));
            let _ = write!(
                b,
                "<tr><td class=\"num\">{}</td><td><code>{}</code><br><small>tasks {}</small></td><td>{}{}</td><td><details><summary>task {}</summary><pre>{}</pre></details></td></tr>",
                ts.len(),
                esc(&shorten(first, 300)),
                esc(&ts.iter().take(10).map(|t| t.task_id.to_string()).collect::<Vec<_>>().join(", "))
                    + if ts.len() > 10 { ", …" } else { "" },
                shown.join(", "),
                if execs.len() > 8 { ", …" } else { "" },
                earliest.map(|t| t.task_id).unwrap_or(-1),
                esc(earliest.and_then(|t| t.error.as_deref()).unwrap_or("")),
            );
        }
        b.push_str("</tbody></table></div>");
    }
    b
}

/// One page of the task table.
fn task_table(ctx: &Ctx, all: &[TaskRec], log_links: &dyn Fn(&str) -> String) -> String {
    let q = &ctx.query;
    let status = q.get("task.status").map(str::to_ascii_uppercase);
    let sort = q
        .get("task.sort")
        .filter(|s| TASK_COLUMNS.iter().any(|(k, _, _)| k == s))
        .unwrap_or("index");
    let desc = q.get("task.desc").is_some_and(|d| d == "1" || d == "true");
    let size = q
        .int("task.pageSize")
        .map_or(PAGE, |s| s.clamp(1, 10_000) as usize);
    let mut tasks: Vec<&TaskRec> = all
        .iter()
        .filter(|t| status.as_deref().is_none_or(|s| t.status.as_str() == s))
        .collect();
    tasks.sort_by(|x, y| {
        let o = sort_key(x, sort)
            .cmp(&sort_key(y, sort))
            .then(x.task_id.cmp(&y.task_id));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let pages = tasks.len().div_ceil(size).max(1);
    let page = q
        .int("task.page")
        .map_or(1, |p| p.clamp(1, pages as i64) as usize);

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in all {
        *counts.entry(t.status.as_str()).or_default() += 1;
    }
    let mut b = format!(
        "<h2 id=\"tasks-h\">Tasks ({})</h2><p class=\"filters\">Status: ",
        fmt::group(all.len() as i64)
    );
    let filt = |label: String, value: Option<&str>, on: bool| {
        if on {
            format!("<b>{label}</b>")
        } else {
            format!(
                "<a href=\"{}#tasks-h\">{label}</a>",
                esc(&q.with(&[("task.status", value), ("task.page", None)]))
            )
        }
    };
    b.push_str(&filt(format!("all {}", all.len()), None, status.is_none()));
    for (s, n) in &counts {
        b.push_str(" · ");
        b.push_str(&filt(
            format!("{} {}", s.to_ascii_lowercase(), n),
            Some(*s),
            status.as_deref() == Some(*s),
        ));
    }
    b.push_str("</p>");
    b.push_str(&super::html::pager(
        &ctx.query,
        "task.page",
        page,
        pages,
        "tasks",
    ));
    // columns that are empty for the whole stage are left out
    let any = |f: &dyn Fn(&TaskRec) -> bool| all.iter().any(f);
    let shown: Vec<(&str, &str, bool)> = TASK_COLUMNS
        .iter()
        .copied()
        .filter(|(k, _, _)| match *k {
            "input" => any(&|t| metric(t, m::INPUT_BYTES).unwrap_or(0) != 0),
            "read" => any(&|t| shuffle_read(t).unwrap_or(0) != 0),
            "write" => any(&|t| metric(t, m::SHUFFLE_WRITE_BYTES).unwrap_or(0) != 0),
            "spill" => any(&|t| metric(t, m::DISK_SPILL).unwrap_or(0) != 0),
            "error" => any(&|t| t.error.is_some()),
            _ => true,
        })
        .collect();
    b.push_str("<div class=\"scroll\"><table id=\"tasks\" class=\"listing\"><thead><tr>");
    for &(k, label, num) in &shown {
        let next = if k == sort && !desc { "1" } else { "0" };
        let arrow = match (k == sort, desc) {
            (true, true) => " ▾",
            (true, false) => " ▴",
            _ => "",
        };
        let _ = write!(
            b,
            "<th{}><a href=\"{}#tasks-h\">{label}{arrow}</a></th>",
            if num { " class=\"num\"" } else { "" },
            esc(&q.with(&[
                ("task.sort", Some(k)),
                ("task.desc", Some(next)),
                ("task.page", None)
            ])),
        );
    }
    b.push_str("</tr></thead><tbody>");
    for t in tasks.iter().skip((page - 1) * size).take(size) {
        let _ = write!(b, "<tr data-task=\"{}\">", t.task_id);
        for &(k, _, _) in &shown {
            let cell = match k {
                "index" => format!("<td class=\"num\">{}</td>", t.index),
                "id" => format!("<td class=\"num\">{}</td>", t.task_id),
                "attempt" => format!(
                    "<td class=\"num\">{}{}</td>",
                    t.attempt,
                    if t.speculative {
                        " <small>(speculative)</small>"
                    } else {
                        ""
                    }
                ),
                "status" => format!("<td>{}</td>", badge(t.status.as_str())),
                "locality" => format!("<td>{}</td>", esc(&t.locality)),
                "executor" => format!(
                    "<td><a href=\"{}executors/#exec-{}\">{}</a> <small>{}</small></td>",
                    ctx.base,
                    seg(&t.executor_id),
                    esc(&t.executor_id),
                    log_links(&t.executor_id)
                ),
                "host" => format!("<td>{}</td>", esc(&t.host)),
                "launch" => fmt::date_td(t.launch_time),
                "duration" => fmt::td(Unit::Ms, (t.duration > 0).then_some(t.duration as f64)),
                "delay" => fmt::td(
                    Unit::Ms,
                    t.metrics.as_ref().map(|_| t.scheduler_delay() as f64),
                ),
                "gc" => fmt::td(Unit::Ms, mf(t, m::GC_TIME)),
                "input" => fmt::td(Unit::Bytes, mf(t, m::INPUT_BYTES)),
                "read" => fmt::td(Unit::Bytes, shuffle_read(t).map(|v| v as f64)),
                "write" => fmt::td(Unit::Bytes, mf(t, m::SHUFFLE_WRITE_BYTES)),
                "spill" => fmt::td(Unit::Bytes, mf(t, m::DISK_SPILL)),
                _ => format!(
                    "<td class=\"error\">{}</td>",
                    t.error
                        .as_deref()
                        .map(|e| format!(
                            "<details><summary>{}</summary><pre>{}</pre></details>",
                            esc(&shorten(e.lines().next().unwrap_or(""), 100)),
                            esc(e)
                        ))
                        .unwrap_or_default()
                ),
            };
            b.push_str(&cell);
        }
        b.push_str("</tr>");
    }
    b.push_str("</tbody></table></div>");
    b.push_str(&super::html::pager(
        &ctx.query,
        "task.page",
        page,
        pages,
        "tasks",
    ));
    b
}
