//! The stages page (`.../stages/`): every stage attempt by status, and the stage table the
//! job page shares: progress bars, durations, input, output and shuffle sizes in units.

use std::fmt::Write;

use axum::response::Response;

use super::html::{esc, pager, progress, th};
use super::layout::{render, Tab};
use super::{fmt, Ctx};
// the UI reads the REST shapes as Spark 4 answers them (every field); the dialect only
// matters to clients wanting byte-identical JSON
use crate::api::stagedata::stage_data;
use crate::model::{Stage, StageStatus};

/// Stages per table page.
const STAGES_PAGE: usize = 100;

pub fn page(ctx: &Ctx) -> Response {
    let a = ctx.app();
    let mut b = String::new();
    let groups = [
        ("Active stages", "stages-active", StageStatus::Active),
        ("Pending stages", "stages-pending", StageStatus::Pending),
        ("Failed stages", "stages-failed", StageStatus::Failed),
        (
            "Completed stages",
            "stages-completed",
            StageStatus::Complete,
        ),
        ("Skipped stages", "stages-skipped", StageStatus::Skipped),
    ];
    b.push_str("<p class=\"summary\">");
    for (title, id, st) in groups {
        let n = a.stages.values().filter(|s| s.status == st).count();
        if n > 0 {
            let _ = write!(
                b,
                "<a href=\"#{id}-h\">{title}: {}</a> · ",
                fmt::group(n as i64)
            );
        }
    }
    let _ = write!(
        b,
        "{} stage attempts in all.</p>",
        fmt::group(a.stages.len() as i64)
    );
    for (title, id, st) in groups {
        let list: Vec<&Stage> = a.stages.values().rev().filter(|s| s.status == st).collect();
        if !list.is_empty() {
            b.push_str(&stage_table(ctx, title, id, &list, true));
        }
    }
    if a.stages.is_empty() {
        b.push_str("<p>No stages were logged.</p>");
    }
    render(Some(ctx), Tab::Stages, "Stages", &b)
}

/// A table of stage attempts, paged by `<id>.page`.
pub fn stage_table(ctx: &Ctx, title: &str, id: &str, stages: &[&Stage], paged: bool) -> String {
    let param = format!("{id}.page");
    let per = if paged { STAGES_PAGE } else { usize::MAX };
    let pages = stages.len().div_ceil(per).max(1);
    let page = ctx
        .query
        .int(&param)
        .map_or(1, |p| p.clamp(1, pages as i64) as usize);
    let failed = stages.iter().any(|s| s.failure_reason.is_some());
    let mut b = format!(
        "<h2 id=\"{id}-h\">{} ({})</h2>",
        esc(title),
        fmt::group(stages.len() as i64)
    );
    b.push_str(&pager(&ctx.query, &param, page, pages, id));
    let _ = write!(
        b,
        "<table id=\"{id}\" class=\"listing sortable stages\"><thead><tr>{}{}{}{}<th>Tasks: succeeded/total</th>{}{}{}{}{}</tr></thead><tbody>",
        th("Stage", true),
        th("Description", false),
        th("Submitted", true),
        th("Duration", true),
        th("Input", true),
        th("Output", true),
        th("Shuffle read", true),
        th("Shuffle write", true),
        if failed {
            "<th>Failure reason</th>"
        } else {
            ""
        },
    );
    for st in stages.iter().skip((page - 1).saturating_mul(per)).take(per) {
        let d = stage_data(st, super::DIALECT);
        let dur = match (st.submission_time, st.completion_time) {
            (Some(s), Some(c)) => Some((c - s) as f64),
            (Some(s), None) if st.status == StageStatus::Active => {
                Some((super::app::app_end(ctx) - s) as f64)
            }
            _ => None,
        };
        let href = ctx.stage_href(st.stage_id, st.attempt_id);
        let _ = write!(
            b,
            "<tr class=\"st-{}\" data-stage=\"{}\"><td class=\"num\" data-v=\"{}\"><a href=\"{href}\">{}</a>{}</td><td>{}<a class=\"sub\" href=\"{href}\">{}</a> {}</td>{}{}<td>{}</td>{}{}{}{}",
            st.status.as_str().to_ascii_lowercase(),
            st.stage_id,
            st.stage_id,
            st.stage_id,
            if st.attempt_id > 0 {
                format!(" <small>(retry {})</small>", st.attempt_id)
            } else {
                String::new()
            },
            st.description
                .as_deref()
                .map(|d| format!("<span class=\"desc\">{}</span><br>", esc(d)))
                .unwrap_or_default(),
            esc(&st.name),
            if matches!(st.status, StageStatus::Skipped | StageStatus::Pending) {
                super::html::badge(st.status.as_str())
            } else {
                String::new()
            },
            fmt::date_td(st.submission_time.unwrap_or(-1)),
            fmt::td(fmt::Unit::Ms, dur),
            progress(
                d.num_complete_tasks,
                d.num_failed_tasks,
                d.num_killed_tasks,
                d.num_active_tasks,
                d.num_tasks,
            ),
            size_records(d.input_bytes, d.input_records),
            size_records(d.output_bytes, d.output_records),
            size_records(d.shuffle_read_bytes, d.shuffle_read_records),
            size_records(d.shuffle_write_bytes, d.shuffle_write_records),
        );
        if failed {
            let reason = st.failure_reason.as_deref().unwrap_or("");
            let first = reason.lines().next().unwrap_or("");
            if reason.is_empty() {
                b.push_str("<td></td>");
            } else {
                let _ = write!(
                    b,
                    "<td class=\"error\"><details><summary>{}</summary><pre>{}</pre></details></td>",
                    esc(&super::html::shorten(first, 120)),
                    esc(reason)
                );
            }
        }
        b.push_str("</tr>");
    }
    b.push_str("</tbody></table>");
    b
}

/// A size cell with its record count beside it; empty when nothing was read or written.
pub fn size_records(bytes: i64, records: i64) -> String {
    if bytes == 0 && records == 0 {
        return "<td class=\"num\" data-v=\"0\"></td>".into();
    }
    format!(
        "<td class=\"num\" data-v=\"{bytes}\">{}<br><small>{} records</small></td>",
        fmt::bytes(bytes),
        fmt::count(records)
    )
}
