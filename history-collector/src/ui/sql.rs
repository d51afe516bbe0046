//! The SQL pages: the application's queries (`.../SQL/`) and one query
//! (`.../SQL/execution/?id=N`) with its plan drawn as a graph with its metrics, linked to
//! its jobs, a table of every operator's metrics and the physical plan text. The numbers
//! come from the REST API's `execution_data`.

use std::fmt::Write;

use axum::response::Response;

use super::fmt::{self, Unit};
use super::html::{badge, esc, shorten, th};
use super::layout::{render, Tab};
use super::{app_not_found, bad_request, plan, Ctx};
use crate::api::sql::{execution_data, ExecutionData};
use crate::clock::now_ms;
use crate::model::JobStatus;

/// A job id as a link coloured by its outcome.
fn job_link(ctx: &Ctx, id: i64) -> String {
    let class = match ctx.app().jobs.get(&id).map(|j| j.status) {
        Some(JobStatus::Succeeded) => "ok",
        Some(JobStatus::Failed) => "bad",
        Some(JobStatus::Running) => "run",
        _ => "skip",
    };
    if ctx.app().jobs.contains_key(&id) {
        format!(
            "<a class=\"job {class}\" href=\"{}\">{id}</a>",
            ctx.job_href(id)
        )
    } else {
        id.to_string()
    }
}

fn jobs_of(ctx: &Ctx, d: &ExecutionData) -> String {
    let mut ids: Vec<i64> = d
        .success_job_ids
        .iter()
        .chain(&d.failed_job_ids)
        .chain(&d.running_job_ids)
        .copied()
        .collect();
    ids.sort_unstable();
    ids.iter()
        .map(|j| job_link(ctx, *j))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn list_page(ctx: &Ctx) -> Response {
    let a = ctx.app();
    let now = now_ms();
    let mut b = String::new();
    if a.sql.executions.is_empty() {
        b.push_str("<p>No SQL or DataFrame queries were logged.</p>");
        return render(Some(ctx), Tab::Sql, "SQL / DataFrame", &b);
    }
    let _ = write!(
        b,
        "<table id=\"sql\" class=\"listing sortable\"><thead><tr>{}{}{}{}{}{}</tr></thead><tbody>",
        th("ID", true),
        th("Description", false),
        th("Submitted", true),
        th("Duration", true),
        th("Status", false),
        th("Jobs", false),
    );
    for ex in a.sql.executions.values().rev() {
        let d = execution_data(ex, false, false, now);
        let _ = write!(
            b,
            "<tr data-execution=\"{id}\"><td class=\"num\" data-v=\"{id}\">{id}{}</td><td><a href=\"{}\">{}</a>{}</td>{}{}<td>{}</td><td>{}</td></tr>",
            if ex.root_execution_id != ex.id && ex.root_execution_id >= 0 {
                format!(
                    "<br><small>in <a href=\"{}\">{}</a></small>",
                    ctx.sql_href(ex.root_execution_id),
                    ex.root_execution_id
                )
            } else {
                String::new()
            },
            ctx.sql_href(ex.id),
            esc(&shorten(d.description.as_deref().filter(|s| !s.is_empty()).unwrap_or("(no description)"), 200)),
            ex.details
                .as_deref()
                .map(|x| format!("<br><small class=\"muted\">{}</small>", esc(&shorten(x.lines().next().unwrap_or(""), 120))))
                .unwrap_or_default(),
            fmt::date_td(ex.submission_time),
            fmt::td(Unit::Ms, Some(d.duration as f64)),
            badge(d.status),
            jobs_of(ctx, &d),
            id = ex.id,
        );
    }
    b.push_str("</tbody></table>");
    render(Some(ctx), Tab::Sql, "SQL / DataFrame", &b)
}

pub fn execution_page(ctx: &Ctx) -> Response {
    let Some(id) = ctx.query.int("id") else {
        return bad_request(ctx, Tab::Sql, "The query page needs ?id=<execution id>.");
    };
    let a = ctx.app();
    let Some(ex) = a.sql.executions.get(&id) else {
        return app_not_found(ctx, Tab::Sql, &format!("Unknown query {id}."));
    };
    let d = execution_data(ex, true, true, now_ms());
    let mut b = String::new();
    b.push_str("<dl class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = write!(b, "<div><dt>{k}</dt><dd>{v}</dd></div>");
    };
    fact("Status", badge(d.status));
    fact("Submitted", fmt::date(ex.submission_time));
    fact("Duration", fmt::ms(d.duration));
    fact("Jobs", jobs_of(ctx, &d));
    if ex.root_execution_id != ex.id && ex.root_execution_id >= 0 {
        fact(
            "Part of",
            format!(
                "<a href=\"{}\">query {}</a>",
                ctx.sql_href(ex.root_execution_id),
                ex.root_execution_id
            ),
        );
    }
    let subs: Vec<String> = a
        .sql
        .executions
        .values()
        .filter(|x| x.root_execution_id == ex.id && x.id != ex.id)
        .map(|x| format!("<a href=\"{}\">{}</a>", ctx.sql_href(x.id), x.id))
        .collect();
    if !subs.is_empty() {
        fact("Sub-queries", subs.join(" "));
    }
    if let Some(q) = &d.query_id {
        fact("Query id", esc(q));
    }
    b.push_str("</dl>");
    if let Some(desc) = d.description.as_deref().filter(|s| !s.is_empty()) {
        let _ = write!(b, "<p class=\"desc\">{}</p>", esc(desc));
    }
    if let Some(err) = d.error_message.as_deref().filter(|m| !m.is_empty()) {
        let _ = write!(
            b,
            "<div class=\"callout bad\" id=\"error\"><p><b>Failed:</b> {}</p><details><summary>Full error</summary><pre>{}</pre></details></div>",
            esc(err.lines().next().unwrap_or("")),
            esc(err)
        );
    }
    b.push_str("<h2 id=\"plan-h\">Plan</h2><p class=\"muted\">Data flows from the scans at the top down to the result; hover a node for all its metrics.</p><div class=\"scroll\">");
    b.push_str(&plan::graph(&d.nodes, &d.edges));
    b.push_str("</div>");

    // every operator's metrics, readable and searchable without the picture
    let _ = write!(
        b,
        "<h2 id=\"metrics-h\">Operators ({})</h2><p><input type=\"search\" class=\"filter\" data-table=\"plan-nodes\" placeholder=\"Filter rows\" aria-label=\"Filter operators\"></p><table id=\"plan-nodes\" class=\"listing sortable\"><thead><tr>{}{}{}<th>Metrics</th></tr></thead><tbody>",
        d.nodes.len(),
        th("Node", true),
        th("Operator", false),
        th("Codegen stage", true),
    );
    for n in &d.nodes {
        let mut metrics = String::new();
        for m in &n.metrics {
            let _ = write!(
                metrics,
                "<div><b>{}</b>: <span class=\"mv\">{}</span></div>",
                esc(&m.name),
                esc(m.value.trim())
            );
        }
        let _ = write!(
            b,
            "<tr data-node=\"{id}\"><td class=\"num\" data-v=\"{id}\">{id}</td><td>{}{}</td><td class=\"num\">{}</td><td class=\"metrics\">{metrics}</td></tr>",
            esc(&n.node_name),
            match n.desc.as_deref() {
                Some(desc) if !desc.is_empty() && desc != n.node_name => format!(
                    "<details><summary>details</summary><pre>{}</pre></details>",
                    esc(desc)
                ),
                _ => String::new(),
            },
            n.whole_stage_codegen_id
                .map(|c| c.to_string())
                .unwrap_or_default(),
            id = n.node_id,
        );
    }
    b.push_str("</tbody></table>");
    let _ = write!(
        b,
        "<details id=\"physical-plan-d\"><summary><h2 id=\"physical-plan-h\">Physical plan</h2></summary><pre id=\"physical-plan\">{}</pre></details>",
        esc(d.plan_description.as_deref().unwrap_or(""))
    );
    if !ex.modified_configs.is_empty() {
        b.push_str("<h2 id=\"configs-h\">Configurations set for this query</h2><table class=\"listing sortable\"><thead><tr><th data-sort=\"text\">Name</th><th data-sort=\"text\">Value</th></tr></thead><tbody>");
        for (k, v) in &ex.modified_configs {
            let shown = if crate::api::json::is_sensitive(k) || crate::api::json::is_sensitive(v) {
                "*********(redacted)"
            } else {
                v.as_str()
            };
            let _ = write!(b, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(shown));
        }
        b.push_str("</tbody></table>");
    }
    render(Some(ctx), Tab::Sql, &format!("Query {id}"), &b)
}
