//! Server-rendered HTML pages over the same [`Catalog`] as the REST API: the application
//! list (search, sort, running/completed), each application's jobs and stages, a stage's
//! metrics, executors with links to their collected logs, and the environment. Plain HTML
//! and a little CSS, no scripts; every value taken from an event log goes through [`esc`].

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

mod driver_end;
mod sql;
mod stage;

use crate::api::json::date;
use crate::api::{Catalog, Entry};
use crate::model::{m, App};

/// The UI routes: `/`, `/history/{appId}/...`.
pub fn router(catalog: Arc<Catalog>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/history/{app}/", get(app_page))
        .route("/history/{app}/jobs/", get(app_page))
        .route(
            "/history/{app}/stages/{stage}/{attempt}/",
            get(stage::stage_page),
        )
        .route("/history/{app}/executors/", get(executors_page))
        .route("/history/{app}/environment/", get(environment_page))
        .route("/history/{app}/storage/", get(sql::storage_page))
        .route("/history/{app}/SQL/", get(sql::sql_page))
        .route(
            "/history/{app}/SQL/execution/{exec}/",
            get(sql::execution_page),
        )
        .with_state(catalog)
}

/// HTML-escapes text (element content and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A path segment for a link: application ids like `local-1` stay readable; everything
/// outside the unreserved characters is escaped (`.` too, so no id can form a `..` segment).
fn seg(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

fn duration(ms: i64) -> String {
    if ms < 0 {
        return String::new();
    }
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{:.1} min", ms as f64 / 60_000.0)
    } else {
        format!("{:.1} h", ms as f64 / 3_600_000.0)
    }
}

fn page(title: &str, app: Option<&App>, body: &str) -> Response {
    let mut nav = String::from(r#"<a href="/">Applications</a>"#);
    if let Some(a) = app {
        let id = seg(a.id.as_deref().unwrap_or(""));
        let _ = write!(
            nav,
            r#" | <a href="/history/{id}/">Jobs</a> | <a href="/history/{id}/executors/">Executors</a> | <a href="/history/{id}/environment/">Environment</a> | <a href="/history/{id}/storage/">Storage</a> | <a href="/history/{id}/SQL/">SQL</a> | <a href="/api/v1/applications/{id}">API</a>"#
        );
    }
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>
body{{font-family:sans-serif;margin:1.5em;color:#222}} nav{{margin-bottom:1em}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}} th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}}
th{{background:#eef}} .FAILED,.failed{{color:#b00}} .RUNNING,.running{{color:#06c}} pre{{white-space:pre-wrap;max-width:70em}}
</style></head><body><nav>{nav}</nav><h1>{t}</h1>
{body}
</body></html>"#,
        t = esc(title),
    ))
    .into_response()
}

fn missing(what: &str) -> Response {
    let mut r = page("Not found", None, &format!("<p>{}</p>", esc(what)));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    sort: Option<String>,
    desc: Option<String>,
    show: Option<String>,
}

async fn index(State(catalog): State<Arc<Catalog>>, Query(q): Query<ListQuery>) -> Response {
    let mut entries = catalog.entries();
    let needle = q.q.clone().unwrap_or_default().to_lowercase();
    entries.retain(|e| {
        let a = &e.app;
        let text_ok = needle.is_empty()
            || a.id
                .as_deref()
                .unwrap_or("")
                .to_lowercase()
                .contains(&needle)
            || a.name.to_lowercase().contains(&needle)
            || a.spark_user.to_lowercase().contains(&needle);
        let show_ok = match q.show.as_deref() {
            Some("running") => !a.completed,
            Some("completed") => a.completed,
            _ => true,
        };
        text_ok && show_ok
    });
    let sort = q.sort.clone().unwrap_or_else(|| "start".into());
    let desc = q.desc.as_deref() != Some("0");
    entries.sort_by(|x, y| {
        let (a, b) = (&x.app, &y.app);
        let o = match sort.as_str() {
            "name" => a.name.cmp(&b.name),
            "id" => a.id.cmp(&b.id),
            "end" => a.end_time.cmp(&b.end_time),
            "duration" => dur(a).cmp(&dur(b)),
            "user" => a.spark_user.cmp(&b.spark_user),
            _ => a.start_time.cmp(&b.start_time),
        };
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let qs = esc(&q.q.clone().unwrap_or_default());
    let show = q.show.clone().unwrap_or_default();
    let mut body = format!(
        r#"<form method="get" action="/"><input type="search" name="q" value="{qs}" placeholder="id, name or user">
<select name="show"><option value="">all</option><option value="running"{r}>running</option><option value="completed"{c}>completed</option></select>
<button type="submit">Search</button></form>
<p>{n} application(s)</p><table id="apps"><thead><tr>"#,
        n = entries.len(),
        r = if show == "running" { " selected" } else { "" },
        c = if show == "completed" { " selected" } else { "" },
    );
    for (key, label) in [
        ("id", "App ID"),
        ("name", "App Name"),
        ("start", "Started"),
        ("end", "Completed"),
        ("duration", "Duration"),
        ("user", "Spark User"),
    ] {
        let flip = if sort == key && desc { "0" } else { "1" };
        let _ = write!(
            body,
            r#"<th><a href="/?sort={key}&amp;desc={flip}&amp;q={}&amp;show={}">{label}</a></th>"#,
            esc(&seg(&q.q.clone().unwrap_or_default())),
            esc(&seg(&show)),
        );
    }
    body.push_str("<th>Status</th><th>Spark</th></tr></thead><tbody>\n");
    for e in &entries {
        let a = &e.app;
        let id = a.id.as_deref().unwrap_or("");
        let _ = writeln!(
            body,
            r#"<tr><td><a href="/history/{}/">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="{}">{}</td><td>{}</td></tr>"#,
            seg(id),
            esc(id),
            esc(&a.name),
            date(a.start_time),
            if a.completed {
                date(a.end_time)
            } else {
                String::new()
            },
            if a.completed {
                duration(dur(a))
            } else {
                String::new()
            },
            esc(&a.spark_user),
            if a.completed { "completed" } else { "running" },
            if a.completed {
                "completed"
            } else {
                "incomplete"
            },
            esc(&a.spark_version),
        );
    }
    body.push_str("</tbody></table>");
    page("Spark applications", None, &body)
}

fn dur(a: &App) -> i64 {
    if a.completed {
        a.end_time - a.start_time
    } else {
        -1
    }
}

fn find(catalog: &Catalog, id: &str) -> Option<Arc<Entry>> {
    catalog.attempts(id).into_iter().next()
}

async fn app_page(State(catalog): State<Arc<Catalog>>, Path(id): Path<String>) -> Response {
    let Some(e) = find(&catalog, &id) else {
        return missing(&format!("unknown application {id}"));
    };
    let a = &e.app;
    let mut body = format!(
        "<p>User: {} · Started: {} · {} · Spark {}</p>",
        esc(&a.spark_user),
        date(a.start_time),
        if a.completed {
            format!("Duration: {}", duration(dur(a)))
        } else {
            "<span class=\"running\">incomplete</span>".into()
        },
        esc(&a.spark_version),
    );
    body.push_str(&driver_end::note(&catalog, &e).await);
    body.push_str("<h2>Jobs</h2><table id=\"jobs\"><thead><tr><th>Job</th><th>Description</th><th>Submitted</th><th>Duration</th><th>Status</th><th>Stages</th><th>Tasks (done/failed/killed of total)</th></tr></thead><tbody>\n");
    for j in a.jobs.values().rev() {
        let stages: Vec<String> = j
            .stage_ids
            .iter()
            .map(
                |s| match a.stages.range((*s, i64::MIN)..=(*s, i64::MAX)).next_back() {
                    Some(((sid, att), st)) => format!(
                        r#"<a href="/history/{}/stages/{sid}/{att}/" class="{}">{sid}</a>"#,
                        seg(&id),
                        st.status.as_str()
                    ),
                    None => s.to_string(),
                },
            )
            .collect();
        let _ = writeln!(
            body,
            r#"<tr><td>{}</td><td>{}<br><small>{}</small></td><td>{}</td><td>{}</td><td class="{st}">{st}</td><td>{}</td><td>{}/{}/{} of {}</td></tr>"#,
            j.id,
            esc(j.description.as_deref().unwrap_or("")),
            esc(&j.name),
            j.submission_time.map(date).unwrap_or_default(),
            match (j.submission_time, j.completion_time) {
                (Some(s), Some(c)) => duration(c - s),
                _ => String::new(),
            },
            stages.join(" "),
            j.completed_tasks,
            j.failed_tasks,
            j.killed_tasks,
            j.num_tasks,
            st = j.status.as_str(),
        );
    }
    body.push_str("</tbody></table><h2>Stages</h2><table id=\"stages\"><thead><tr><th>Stage</th><th>Name</th><th>Status</th><th>Submitted</th><th>Duration</th><th>Tasks</th><th>Shuffle write</th></tr></thead><tbody>\n");
    for st in a.stages.values().rev() {
        let _ = writeln!(
            body,
            r#"<tr><td><a href="/history/{}/stages/{}/{}/">{}.{}</a></td><td>{}</td><td class="{s}">{s}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td></tr>"#,
            seg(&id),
            st.stage_id,
            st.attempt_id,
            st.stage_id,
            st.attempt_id,
            esc(&st.name),
            st.submission_time.map(date).unwrap_or_default(),
            match (st.submission_time, st.completion_time) {
                (Some(s), Some(c)) => duration(c - s),
                _ => String::new(),
            },
            st.completed_tasks,
            st.num_tasks,
            st.metrics.v[m::SHUFFLE_WRITE_BYTES],
            s = st.status.as_str(),
        );
    }
    body.push_str("</tbody></table>");
    page(&format!("{} ({})", a.name, id), Some(a), &body)
}

async fn executors_page(State(catalog): State<Arc<Catalog>>, Path(id): Path<String>) -> Response {
    let Some(e) = find(&catalog, &id) else {
        return missing(&format!("unknown application {id}"));
    };
    let a = &e.app;
    let mut body = String::from("<table id=\"executors\"><thead><tr><th>Executor</th><th>Address</th><th>Status</th><th>Cores</th><th>Tasks (done/failed of total)</th><th>Task time</th><th>Shuffle read/write</th><th>Logs</th></tr></thead><tbody>\n");
    for x in a.executors.values() {
        let logs = format!(
            r#"<a href="/logs/{app}/{ex}/stdout">stdout</a> <a href="/logs/{app}/{ex}/stderr">stderr</a>"#,
            app = seg(&id),
            ex = seg(&x.id)
        );
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{} of {}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
            esc(&x.id),
            esc(x.host_port.as_deref().or(x.host.as_deref()).unwrap_or("")),
            if x.is_active { "active".to_string() } else { format!("dead: {}", esc(x.remove_reason.as_deref().unwrap_or(""))) },
            x.total_cores,
            x.completed_tasks,
            x.failed_tasks,
            x.total_tasks,
            duration(x.total_duration),
            x.total_shuffle_read,
            x.total_shuffle_write,
            logs
        );
    }
    body.push_str("</tbody></table>");
    page("Executors", Some(a), &body)
}

fn kv_table(title: &str, rows: &[(String, String)]) -> String {
    let mut s = format!("<h2>{}</h2><table><tbody>", esc(title));
    for (k, v) in rows {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    s.push_str("</tbody></table>");
    s
}

async fn environment_page(State(catalog): State<Arc<Catalog>>, Path(id): Path<String>) -> Response {
    let Some(e) = find(&catalog, &id) else {
        return missing(&format!("unknown application {id}"));
    };
    let a = &e.app;
    let Some(env) = &a.environment else {
        return page("Environment", Some(a), "<p>No environment was logged.</p>");
    };
    let runtime = vec![
        (
            "Java Version".to_string(),
            env.java_version.clone().unwrap_or_default(),
        ),
        (
            "Java Home".to_string(),
            env.java_home.clone().unwrap_or_default(),
        ),
        (
            "Scala Version".to_string(),
            env.scala_version.clone().unwrap_or_default(),
        ),
    ];
    // the same redaction as the REST API
    let shown = crate::api::json::environment(env, a);
    let body = [
        kv_table("Runtime Information", &runtime),
        kv_table("Spark Properties", &shown.spark_properties),
        kv_table("Hadoop Properties", &shown.hadoop_properties),
        kv_table("System Properties", &shown.system_properties),
        kv_table("Metrics Properties", &shown.metrics_properties),
        kv_table("Classpath Entries", &shown.classpath_entries),
    ]
    .concat();
    page("Environment", Some(a), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<b>x</b> & \"y\" 'z'"),
            "&lt;b&gt;x&lt;/b&gt; &amp; &quot;y&quot; &#39;z&#39;"
        );
    }
}
