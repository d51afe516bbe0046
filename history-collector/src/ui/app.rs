//! The application page (`/history/<appId>/` and Spark's `.../jobs/`): what the application
//! was (user, times, status, and for a driver that never logged its end, what we know of
//! why), its event timeline (executors added and removed, jobs) as SVG, and its jobs by
//! status with progress bars.

use std::fmt::Write;

use axum::response::Response;

use super::html::{badge, esc, progress_note};
use super::k8s::DriverEnd;
use super::layout::{render, Tab};
use super::timeline::{self, Group, Item};
use super::{fmt, Ctx};
use crate::api::json::job_data;
use crate::model::{Job, JobStatus};

/// Jobs per table page.
const JOBS_PAGE: usize = 100;
/// Jobs drawn on the timeline (the latest ones).
const TIMELINE_JOBS: usize = 500;

/// The end of the application's time span: its end, or the last update of its log.
pub fn app_end(ctx: &Ctx) -> i64 {
    let a = ctx.app();
    if a.completed {
        a.end_time
    } else {
        ctx.entry.last_updated().max(a.start_time + 1)
    }
}

pub fn page(ctx: &Ctx, driver_end: Option<&DriverEnd>) -> Response {
    let a = ctx.app();
    let end = app_end(ctx);
    let mut b = String::with_capacity(32 * 1024);
    b.push_str("<dl class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = write!(b, "<div><dt>{k}</dt><dd>{v}</dd></div>");
    };
    fact("User", esc(&a.spark_user));
    fact("Started", fmt::date(a.start_time));
    if a.completed {
        fact("Ended", fmt::date(a.end_time));
        fact("Duration", fmt::ms(a.end_time - a.start_time));
    } else {
        fact("Last log update", fmt::date(ctx.entry.last_updated()));
        fact(
            "Logged for",
            format!("{}+", fmt::ms(ctx.entry.last_updated() - a.start_time)),
        );
    }
    let (status, bad) = match (a.completed, a.exit_code) {
        (true, Some(c)) if c != 0 => (format!("failed (exit code {c})"), true),
        (true, _) => ("completed".to_string(), false),
        (false, _) => ("incomplete".to_string(), true),
    };
    fact(
        "Status",
        badge(if bad && a.completed {
            "FAILED"
        } else if a.completed {
            "COMPLETED"
        } else {
            "INCOMPLETE"
        }) + &format!(" {}", esc(&status)),
    );
    fact("Spark", esc(&a.spark_version));
    if let Some(att) = &a.attempt_id {
        fact("Attempt", esc(att));
    }
    let (ok, failed, running) =
        a.jobs
            .values()
            .fold((0i64, 0i64, 0i64), |(o, f, r), j| match j.status {
                JobStatus::Succeeded => (o + 1, f, r),
                JobStatus::Failed => (o, f + 1, r),
                _ => (o, f, r + 1),
            });
    fact(
        "Jobs",
        format!(
            "{} succeeded, {} failed{}",
            fmt::group(ok),
            fmt::group(failed),
            if running > 0 {
                format!(", {} unfinished", fmt::group(running))
            } else {
                String::new()
            }
        ),
    );
    let active = a.executors.values().filter(|e| e.is_active).count();
    fact(
        "Executors",
        format!(
            "{} active, {} removed",
            fmt::group(active as i64),
            fmt::group((a.executors.len() - active) as i64)
        ),
    );
    b.push_str("</dl>");

    if !a.completed {
        // why the log ends without SparkListenerApplicationEnd
        b.push_str("<div class=\"callout warn\" id=\"incomplete\"><p><b>Incomplete:</b> the event log ends without the application's end. Either the driver was still running at the last scan, or it died without stopping Spark (killed, out of memory, its pod deleted).</p>");
        match driver_end {
            Some(r) => {
                let _ = write!(
                    b,
                    "<p id=\"driver-reason\"><b>Kubernetes:</b> {}{}</p>",
                    esc(&r.reason),
                    r.message
                        .as_ref()
                        .map(|m| format!(" — {}", esc(m)))
                        .unwrap_or_default()
                );
            }
            None => b.push_str("<p id=\"driver-reason\" class=\"muted\">No Kubernetes record of the driver pod's end.</p>"),
        }
        b.push_str("</div>");
    }

    // the event timeline
    let mut execs = Vec::new();
    for e in a.executors.values() {
        let removed = e.remove_time.filter(|_| !e.is_active);
        execs.push(Item {
            start: e.add_time,
            end: removed.unwrap_or(end),
            open: removed.is_none() && !a.completed,
            class: if removed.is_some() {
                "exec-dead"
            } else {
                "exec"
            },
            label: e.id.clone(),
            title: match removed {
                Some(t) => format!(
                    "Executor {} ({}): added {}, removed {}{}",
                    e.id,
                    e.host.as_deref().unwrap_or(""),
                    fmt::date_text(e.add_time),
                    fmt::date_text(t),
                    e.remove_reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                None => format!(
                    "Executor {} ({}): added {}",
                    e.id,
                    e.host.as_deref().unwrap_or(""),
                    fmt::date_text(e.add_time)
                ),
            },
            href: Some(ctx.href("executors/")),
            data: ("executor", e.id.clone()),
            end_mark: removed.is_some(),
        });
    }
    let mut jobs_items = Vec::new();
    for j in a.jobs.values().rev().take(TIMELINE_JOBS) {
        let Some(s) = j.submission_time else { continue };
        let running = j.completion_time.is_none();
        jobs_items.push(Item {
            start: s,
            end: j.completion_time.unwrap_or(end),
            open: running,
            class: job_class(j),
            label: format!("{}", j.id),
            title: format!(
                "Job {}: {} ({}), {}",
                j.id,
                j.description.as_deref().unwrap_or(&j.name),
                j.status.as_str(),
                fmt::duration_text((j.completion_time.unwrap_or(end) - s) as f64)
            ),
            href: Some(ctx.job_href(j.id)),
            data: ("job", j.id.to_string()),
            end_mark: false,
        });
    }
    b.push_str("<h2 id=\"timeline-h\">Event timeline</h2>");
    if a.jobs.len() > TIMELINE_JOBS {
        let _ = write!(
            b,
            "<p class=\"muted\">The latest {TIMELINE_JOBS} of {} jobs are drawn.</p>",
            a.jobs.len()
        );
    }
    b.push_str(&timeline::render(
        "app-timeline",
        a.start_time,
        end,
        &[
            Group {
                name: "Executors".into(),
                items: execs,
                max_lanes: 40,
            },
            Group {
                name: "Jobs".into(),
                items: jobs_items,
                max_lanes: 30,
            },
        ],
    ));
    b.push_str("<p class=\"legend\"><span class=\"key exec\"></span>executor <span class=\"key exec-dead\"></span>removed executor <span class=\"key ok\"></span>succeeded <span class=\"key bad\"></span>failed <span class=\"key run\"></span>unfinished</p>");

    // the jobs, by status
    for (title, id, want) in [
        ("Unfinished jobs", "jobs-running", JobStatus::Running),
        ("Failed jobs", "jobs-failed", JobStatus::Failed),
        ("Succeeded jobs", "jobs-succeeded", JobStatus::Succeeded),
        (
            "Jobs of unknown outcome",
            "jobs-unknown",
            JobStatus::Unknown,
        ),
    ] {
        let jobs: Vec<&Job> = a.jobs.values().rev().filter(|j| j.status == want).collect();
        if jobs.is_empty() {
            continue;
        }
        b.push_str(&job_table(ctx, title, id, &jobs, end));
    }
    if a.jobs.is_empty() {
        b.push_str("<p>No jobs were logged.</p>");
    }
    render(Some(ctx), Tab::Jobs, &a.name, &b)
}

pub fn job_class(j: &Job) -> &'static str {
    match j.status {
        JobStatus::Succeeded => "ok",
        JobStatus::Failed => "bad",
        JobStatus::Running => "run",
        JobStatus::Unknown => "skip",
    }
}

/// A table of jobs (newest first), paged by `<id>.page`.
pub fn job_table(ctx: &Ctx, title: &str, id: &str, jobs: &[&Job], end: i64) -> String {
    let param = format!("{id}.page");
    let pages = jobs.len().div_ceil(JOBS_PAGE).max(1);
    let page = ctx
        .query
        .int(&param)
        .map_or(1, |p| p.clamp(1, pages as i64) as usize);
    let mut b = format!(
        "<h2 id=\"{id}-h\">{} ({})</h2>",
        esc(title),
        fmt::group(jobs.len() as i64)
    );
    b.push_str(&super::html::pager(&ctx.query, &param, page, pages, id));
    let _ = write!(
        b,
        "<table id=\"{id}\" class=\"listing sortable\"><thead><tr>{}{}{}{}<th>Stages: succeeded/total</th><th>Tasks (all stages): succeeded/total</th></tr></thead><tbody>",
        super::html::th("Job", true),
        super::html::th("Description", false),
        super::html::th("Submitted", true),
        super::html::th("Duration", true),
    );
    for j in jobs.iter().skip((page - 1) * JOBS_PAGE).take(JOBS_PAGE) {
        let d = job_data(j);
        let dur = j
            .submission_time
            .map(|s| j.completion_time.unwrap_or(end) - s);
        let stages_total = d.stage_ids.len() as i64 - d.num_skipped_stages;
        let skipped = |n: i64| {
            if n > 0 {
                format!("({} skipped)", fmt::group(n))
            } else {
                String::new()
            }
        };
        let _ = write!(
            b,
            "<tr><td class=\"num\" data-v=\"{id}\"><a href=\"{href}\">{id}</a></td><td>{desc}<a class=\"sub\" href=\"{href}\">{name}</a>{group}</td>{sub}{dur}<td>{sp}</td><td>{tp}</td></tr>",
            id = j.id,
            href = ctx.job_href(j.id),
            desc = j
                .description
                .as_deref()
                .map(|d| format!("<span class=\"desc\">{}</span><br>", esc(d)))
                .unwrap_or_default(),
            name = esc(&j.name),
            group = j
                .job_group
                .as_deref()
                .map(|g| format!(" <small class=\"muted\">group {}</small>", esc(g)))
                .unwrap_or_default(),
            sub = fmt::date_td(j.submission_time.unwrap_or(-1)),
            dur = fmt::td(fmt::Unit::Ms, dur.map(|x| x as f64)),
            sp = progress_note(
                d.num_completed_stages,
                d.num_failed_stages,
                0,
                d.num_active_stages,
                stages_total,
                &skipped(d.num_skipped_stages),
            ),
            tp = progress_note(
                d.num_completed_indices,
                d.num_failed_tasks,
                d.num_killed_tasks,
                d.num_active_tasks,
                d.num_tasks - d.num_skipped_tasks,
                &skipped(d.num_skipped_tasks),
            ),
        );
    }
    b.push_str("</tbody></table>");
    b
}
