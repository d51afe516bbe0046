//! The SQL pages (the executions of an application, one execution with its plan graph as a
//! nested list, its metrics and its physical plan) and the storage page (cached RDDs and
//! their partitions). Every value from the event log is escaped with [`esc`].

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;

use super::{duration, esc, find, missing, page, seg};
use crate::api::json::date;
use crate::api::sql::{execution_data, rdd_info};
use crate::api::Catalog;

/// `/history/{app}/SQL/`: every execution, newest first.
pub async fn sql_page(State(catalog): State<Arc<Catalog>>, Path(id): Path<String>) -> Response {
    let Some(e) = find(&catalog, &id) else {
        return missing(&format!("unknown application {id}"));
    };
    let a = &e.app;
    let now = crate::clock::now_ms();
    let mut body = String::from("<table id=\"sql\"><thead><tr><th>ID</th><th>Description</th><th>Submitted</th><th>Duration</th><th>Status</th><th>Jobs</th></tr></thead><tbody>\n");
    for ex in a.sql.executions.values().rev() {
        let d = execution_data(ex, false, false, now);
        let jobs: Vec<String> = d
            .success_job_ids
            .iter()
            .chain(&d.failed_job_ids)
            .chain(&d.running_job_ids)
            .map(|j| j.to_string())
            .collect();
        let _ = writeln!(
            body,
            r#"<tr><td>{id}</td><td><a href="/history/{app}/SQL/execution/{id}/">{desc}</a></td><td>{sub}</td><td>{dur}</td><td class="{st}">{st}</td><td>{jobs}</td></tr>"#,
            id = ex.id,
            app = seg(&id),
            desc = esc(d.description.as_deref().unwrap_or("")),
            sub = date(ex.submission_time),
            dur = duration(d.duration),
            st = d.status,
            jobs = jobs.join(", "),
        );
    }
    body.push_str("</tbody></table>");
    page("SQL / DataFrame", Some(a), &body)
}

/// `/history/{app}/SQL/execution/{id}/`: one execution, its plan and metrics.
pub async fn execution_page(
    State(catalog): State<Arc<Catalog>>,
    Path((id, exec)): Path<(String, String)>,
) -> Response {
    let Some(e) = find(&catalog, &id) else {
        return missing(&format!("unknown application {id}"));
    };
    let a = &e.app;
    let Some(ex) = exec
        .parse::<i64>()
        .ok()
        .and_then(|n| a.sql.executions.get(&n))
    else {
        return missing(&format!("unknown query execution {exec}"));
    };
    let d = execution_data(ex, true, true, crate::clock::now_ms());
    let mut body = format!(
        r#"<p class="{st}">Status: {st} · Submitted: {sub} · Duration: {dur}</p><p>{desc}</p>"#,
        st = d.status,
        sub = date(ex.submission_time),
        dur = duration(d.duration),
        desc = esc(d.description.as_deref().unwrap_or("")),
    );
    if let Some(err) = d.error_message.as_deref().filter(|m| !m.is_empty()) {
        let _ = write!(
            body,
            "<h2>Error</h2><pre class=\"failed\">{}</pre>",
            esc(err)
        );
    }
    // the plan as a tree: each node lists the nodes feeding it (edges go child -> parent)
    body.push_str("<h2>Plan</h2><div id=\"plan\">");
    let by_id: std::collections::HashMap<i64, &crate::api::sql::Node> =
        d.nodes.iter().map(|n| (n.node_id, n)).collect();
    let children = |p: i64| -> Vec<i64> {
        let mut c: Vec<i64> = d
            .edges
            .iter()
            .filter(|e| e.to_id == p)
            .map(|e| e.from_id)
            .collect();
        c.sort();
        c
    };
    let has_parent: std::collections::HashSet<i64> = d.edges.iter().map(|e| e.from_id).collect();
    let mut roots: Vec<i64> = d
        .nodes
        .iter()
        .filter(|n| {
            !n.node_name.starts_with("WholeStageCodegen") && !has_parent.contains(&n.node_id)
        })
        .map(|n| n.node_id)
        .collect();
    roots.sort();
    fn render(
        out: &mut String,
        id: i64,
        by_id: &std::collections::HashMap<i64, &crate::api::sql::Node>,
        children: &dyn Fn(i64) -> Vec<i64>,
        depth: usize,
    ) {
        let Some(n) = by_id.get(&id) else { return };
        let _ = write!(
            out,
            "<li><b>{}</b>{} <small>{}</small>",
            esc(&n.node_name),
            n.whole_stage_codegen_id
                .map(|c| format!(" (codegen {c})"))
                .unwrap_or_default(),
            esc(n.desc.as_deref().unwrap_or(""))
        );
        if !n.metrics.is_empty() {
            out.push_str("<ul class=\"metrics\">");
            for m in &n.metrics {
                let _ = write!(
                    out,
                    "<li>{}: <pre>{}</pre></li>",
                    esc(&m.name),
                    esc(&m.value)
                );
            }
            out.push_str("</ul>");
        }
        // plans are trees of modest depth; the bound only guards against a corrupt cycle
        if depth < 200 {
            let kids = children(id);
            if !kids.is_empty() {
                out.push_str("<ul>");
                for k in kids {
                    render(out, k, by_id, children, depth + 1);
                }
                out.push_str("</ul>");
            }
        }
        out.push_str("</li>");
    }
    body.push_str("<ul>");
    for r in roots {
        render(&mut body, r, &by_id, &children, 0);
    }
    body.push_str("</ul></div>");
    let _ = write!(
        body,
        "<h2>Physical plan</h2><pre id=\"physical-plan\">{}</pre>",
        esc(d.plan_description.as_deref().unwrap_or(""))
    );
    page(&format!("SQL execution {}", ex.id), Some(a), &body)
}

/// `/history/{app}/storage/`: cached RDDs and their blocks.
pub async fn storage_page(State(catalog): State<Arc<Catalog>>, Path(id): Path<String>) -> Response {
    let Some(e) = find(&catalog, &id) else {
        return missing(&format!("unknown application {id}"));
    };
    let a = &e.app;
    let rdds: Vec<_> = a
        .storage
        .rdds
        .values()
        .filter(|r| !r.partitions.is_empty())
        .map(rdd_info)
        .collect();
    if rdds.is_empty() {
        return page(
            "Storage",
            Some(a),
            "<p>No cached RDD blocks were logged (Spark logs block updates only with spark.eventLog.logBlockUpdates.enabled).</p>",
        );
    }
    let mut body = String::from("<table id=\"rdds\"><thead><tr><th>ID</th><th>RDD Name</th><th>Storage Level</th><th>Cached Partitions</th><th>Fraction Cached</th><th>Size in Memory</th><th>Size on Disk</th></tr></thead><tbody>\n");
    for r in &rdds {
        let frac = if r.num_partitions > 0 {
            r.num_cached_partitions * 100 / r.num_partitions
        } else {
            0
        };
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}%</td><td>{}</td><td>{}</td></tr>",
            r.id,
            esc(&r.name),
            esc(&r.storage_level),
            r.num_cached_partitions,
            frac,
            crate::model::sql::bytes_to_string(r.memory_used),
            crate::model::sql::bytes_to_string(r.disk_used),
        );
    }
    body.push_str("</tbody></table>");
    for r in &rdds {
        let _ = write!(
            body,
            "<h2>RDD {} partitions</h2><table class=\"partitions\"><thead><tr><th>Block</th><th>Storage Level</th><th>Memory</th><th>Disk</th><th>Executors</th></tr></thead><tbody>",
            r.id
        );
        for p in r.partitions.iter().flatten() {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.block_name),
                esc(&p.storage_level),
                crate::model::sql::bytes_to_string(p.memory_used),
                crate::model::sql::bytes_to_string(p.disk_used),
                esc(&p.executors.join(", ")),
            );
        }
        body.push_str("</tbody></table>");
    }
    page("Storage", Some(a), &body)
}
