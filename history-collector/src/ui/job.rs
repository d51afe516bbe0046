//! The job page (`.../jobs/job/?id=N`): the job's facts, the DAG of its stages (skipped ones
//! shown as such), a timeline of its stage attempts, and its stages by status.

use std::fmt::Write;

use axum::response::Response;

use super::html::{badge, esc, progress};
use super::layout::{render, Tab};
use super::stages::stage_table;
use super::timeline::{self, Group, Item};
use super::{app_not_found, bad_request, dag, fmt, Ctx};
use crate::api::json::job_data;
use crate::model::{Stage, StageStatus};

pub fn page(ctx: &Ctx) -> Response {
    let Some(id) = ctx.query.int("id") else {
        return bad_request(ctx, Tab::Jobs, "The job page needs ?id=<job id>.");
    };
    let a = ctx.app();
    let Some(j) = a.jobs.get(&id) else {
        return app_not_found(ctx, Tab::Jobs, &format!("Unknown job {id}."));
    };
    let d = job_data(j);
    let end = super::app::app_end(ctx);
    let mut b = String::new();
    b.push_str("<dl class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = write!(b, "<div><dt>{k}</dt><dd>{v}</dd></div>");
    };
    fact("Status", badge(j.status.as_str()));
    if let Some(desc) = &j.description {
        fact("Description", esc(desc));
    }
    fact("Submitted", fmt::date(j.submission_time.unwrap_or(-1)));
    if let Some(s) = j.submission_time {
        fact(
            "Duration",
            match j.completion_time {
                Some(c) => fmt::ms(c - s),
                None => format!("{}+ (unfinished)", fmt::ms(end - s)),
            },
        );
    }
    if let Some(g) = &j.job_group {
        fact("Job group", esc(g));
    }
    if !j.job_tags.is_empty() {
        fact("Tags", esc(&j.job_tags.join(", ")));
    }
    if let Some(x) = j.sql_execution_id {
        if ctx.app().sql.executions.contains_key(&x) {
            fact(
                "SQL query",
                format!("<a href=\"{}\">{x}</a>", ctx.sql_href(x)),
            );
        }
    }
    fact(
        "Stages",
        format!(
            "{} completed, {} skipped, {} failed attempts, {} of the job",
            d.num_completed_stages,
            d.num_skipped_stages,
            d.num_failed_stages,
            d.stage_ids.len()
        ),
    );
    fact(
        "Tasks",
        progress(
            d.num_completed_indices,
            d.num_failed_tasks,
            d.num_killed_tasks,
            d.num_active_tasks,
            d.num_tasks - d.num_skipped_tasks,
        ),
    );
    b.push_str("</dl>");
    if !j.killed_summary.is_empty() {
        b.push_str("<p>Killed tasks: ");
        for (why, n) in &j.killed_summary {
            let _ = write!(b, "{} × {}; ", n, esc(why));
        }
        b.push_str("</p>");
    }

    b.push_str("<h2 id=\"dag-h\">DAG</h2><div class=\"scroll\">");
    b.push_str(&dag::job_dag(ctx, j));
    b.push_str("</div><p class=\"legend\"><span class=\"key ok\"></span>completed <span class=\"key bad\"></span>failed <span class=\"key run\"></span>running <span class=\"key skipped\"></span>skipped (its output was already there) <span class=\"key skip\"></span>pending</p>");

    let stages: Vec<&Stage> = a
        .stages
        .values()
        .rev()
        .filter(|s| j.stage_ids.contains(&s.stage_id))
        .collect();
    let items: Vec<Item> = stages
        .iter()
        .filter_map(|s| {
            let start = s.submission_time?;
            let done = s.completion_time;
            Some(Item {
                start,
                end: done.unwrap_or(j.completion_time.unwrap_or(end)),
                open: done.is_none(),
                class: match s.status {
                    StageStatus::Complete => "ok",
                    StageStatus::Failed => "bad",
                    StageStatus::Active => "run",
                    _ => "skip",
                },
                label: format!("{}.{}", s.stage_id, s.attempt_id),
                title: format!(
                    "Stage {}.{}: {} ({}), {}",
                    s.stage_id,
                    s.attempt_id,
                    s.name,
                    s.status.as_str(),
                    fmt::duration_text(
                        (done.unwrap_or(j.completion_time.unwrap_or(end)) - start) as f64
                    )
                ),
                href: Some(ctx.stage_href(s.stage_id, s.attempt_id)),
                data: ("stage", format!("{}.{}", s.stage_id, s.attempt_id)),
                end_mark: false,
            })
        })
        .collect();
    if !items.is_empty() {
        let t0 = items.iter().map(|i| i.start).min().unwrap_or(0);
        let t0 = j.submission_time.unwrap_or(t0).min(t0);
        let t1 = j
            .completion_time
            .unwrap_or(end)
            .max(items.iter().map(|i| i.end).max().unwrap_or(t0));
        b.push_str("<h2 id=\"timeline-h\">Stage timeline</h2>");
        b.push_str(&timeline::render(
            "job-timeline",
            t0,
            t1,
            &[Group {
                name: "Stages".into(),
                items,
                max_lanes: 30,
            }],
        ));
    }

    for (title, id, st) in [
        ("Active stages", "stages-active", StageStatus::Active),
        ("Pending stages", "stages-pending", StageStatus::Pending),
        ("Failed stages", "stages-failed", StageStatus::Failed),
        (
            "Completed stages",
            "stages-completed",
            StageStatus::Complete,
        ),
        ("Skipped stages", "stages-skipped", StageStatus::Skipped),
    ] {
        let list: Vec<&Stage> = stages.iter().copied().filter(|s| s.status == st).collect();
        if !list.is_empty() {
            b.push_str(&stage_table(ctx, title, id, &list, false));
        }
    }
    render(Some(ctx), Tab::Jobs, &format!("Job {id}: {}", j.name), &b)
}
