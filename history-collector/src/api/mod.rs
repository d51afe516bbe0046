//! The History Server REST API (`/api/v1`), answering as Spark's History Server does:
//! the same paths, query parameters, JSON field names and order, date format and status
//! codes, computed from the replayed [`crate::model::App`]s in a [`Catalog`]. The catalog
//! reads the local event-log directories and the object store ingest writes to (local disk
//! or S3), so applications stay visible after their driver's pod and disk are gone.
//!
//! Read ACLs apply as in Spark's History Server ([`crate::access`]): the list and an
//! application's (or attempt's) summary are answered to every authenticated user, every
//! other per-application path only to users who may view the application; others get
//! Spark's 403, `user "<name>" is not authorized`.

pub mod dialect;
pub mod json;
pub mod logs_zip;
pub mod sql;
pub mod stagedata;
pub mod stages;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;

pub use crate::catalog::{Catalog, Entry};
pub use dialect::Dialect;
use json::*;

use crate::access::Viewer;
use crate::clock::now_ms;
use crate::model::JobStatus;

/// The Spark version whose History Server this API mirrors by default (what `/version`
/// reports); a router given an `Extension<Dialect>` answers as that version instead.
pub const SPARK_API_VERSION: &str = "4.3.0";

/// The server version to answer as: the router's `Extension<Dialect>` layer, if any.
fn dialect_of(ext: Option<Extension<Dialect>>) -> Dialect {
    ext.map(|Extension(d)| d).unwrap_or_default()
}

/// The `/api/v1` routes.
pub fn router(catalog: Arc<Catalog>) -> Router {
    Router::new()
        .route("/api/v1/version", get(version))
        .route("/api/v1/applications", get(applications))
        .route("/api/v1/applications/", get(applications))
        .route("/api/v1/applications/{*rest}", get(per_app))
        .with_state(catalog)
}

fn json_ok<T: serde::Serialize>(v: &T) -> Response {
    match to_jackson(v) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn not_found(msg: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        msg,
    )
        .into_response()
}

fn bad_request(msg: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain")],
        msg,
    )
        .into_response()
}

async fn version(dialect: Option<Extension<Dialect>>) -> Response {
    json_ok(&VersionInfo {
        spark: dialect_of(dialect).version().into(),
    })
}

/// Query parameters, repeatable, in order.
fn params(q: &Option<String>) -> Vec<(String, String)> {
    let Some(q) = q else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |x: &str| {
                percent_encoding::percent_decode_str(&x.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn param<'a>(ps: &'a [(String, String)], name: &str) -> Option<&'a str> {
    ps.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn param_all<'a>(ps: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    ps.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Spark's `SimpleDateParam`: `yyyy-MM-dd'T'HH:mm:ss.SSSz` or `yyyy-MM-dd` (GMT).
fn parse_date(s: &str) -> Option<i64> {
    use chrono::{NaiveDate, NaiveDateTime};
    if let Some(base) = s.strip_suffix("GMT") {
        return NaiveDateTime::parse_from_str(base, "%Y-%m-%dT%H:%M:%S%.3f")
            .ok()
            .map(|t| t.and_utc().timestamp_millis());
    }
    if let Ok(t) = chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3f%z") {
        return Some(t.timestamp_millis());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

fn attempt_info(e: &Entry, dialect: Dialect) -> AttemptInfo {
    let a = &e.listing;
    let last = e.last_updated();
    let uri = dialect.is_spark4().then(|| e.dir_uri());
    AttemptInfo {
        attempt_id: a.attempt_id.as_deref().map(str::to_string),
        start_time: date(a.start_time),
        end_time: date(a.end_time),
        last_updated: date(last),
        duration: if a.completed {
            a.end_time - a.start_time
        } else {
            0
        },
        spark_user: a.spark_user.to_string(),
        completed: a.completed,
        app_spark_version: a.spark_version.to_string(),
        exit_code: a.exit_code.map(i64::from),
        log_source_name: uri.clone(),
        log_source_full_path: uri,
        start_time_epoch: a.start_time,
        end_time_epoch: a.end_time,
        last_updated_epoch: last,
    }
}

fn app_info(id: &str, attempts: &[Arc<Entry>], dialect: Dialect) -> ApplicationInfo {
    ApplicationInfo {
        id: id.to_string(),
        name: attempts
            .first()
            .map(|e| e.listing.name.to_string())
            .unwrap_or_default(),
        attempts: attempts.iter().map(|e| attempt_info(e, dialect)).collect(),
    }
}

/// Applications grouped by id, ordered as Spark lists them (latest end time first), each
/// with its attempts newest first: every attempt once, and each application as the range of
/// its attempts in it. One sort of the catalog, whatever its size, and no copy of any id.
fn grouped(catalog: &Catalog) -> (Arc<[Arc<Entry>]>, Vec<std::ops::Range<usize>>) {
    let mut all: Vec<Arc<Entry>> = catalog
        .entries()
        .into_iter()
        .filter(|e| e.listing.id.is_some())
        .collect();
    all.sort_by(|a, b| {
        a.listing
            .id
            .cmp(&b.listing.id)
            .then_with(|| b.listing.start_time.cmp(&a.listing.start_time))
    });
    let mut apps = Vec::new();
    let mut start = 0;
    for run in all.chunk_by(|a, b| a.listing.id == b.listing.id) {
        apps.push(start..start + run.len());
        start += run.len();
    }
    let end = |r: &std::ops::Range<usize>| all[r.start].listing.end_time;
    apps.sort_by(|a, b| {
        end(b)
            .cmp(&end(a))
            .then_with(|| all[b.start].listing.id.cmp(&all[a.start].listing.id))
    });
    (all.into(), apps)
}

async fn applications(
    State(catalog): State<Arc<Catalog>>,
    dialect: Option<Extension<Dialect>>,
    RawQuery(q): RawQuery,
) -> Response {
    let dialect = dialect_of(dialect);
    let ps = params(&q);
    let statuses = param_all(&ps, "status");
    let (mut want_completed, mut want_running) = (statuses.is_empty(), statuses.is_empty());
    for s in &statuses {
        match s.to_ascii_lowercase().as_str() {
            "completed" => want_completed = true,
            "running" => want_running = true,
            other => return bad_request(format!("unknown application status: {other}")),
        }
    }
    // the error is the offending value, turned into a 400 below
    let bound = |name: &str, default: i64| -> Result<i64, String> {
        match param(&ps, name) {
            None => Ok(default),
            Some(v) => parse_date(v).ok_or_else(|| v.to_string()),
        }
    };
    let (min_date, max_date, min_end, max_end) = match (
        bound("minDate", parse_date("2010-01-01").unwrap_or(0)),
        bound("maxDate", parse_date("3000-01-01").unwrap_or(i64::MAX)),
        bound("minEndDate", parse_date("2010-01-01").unwrap_or(0)),
        bound("maxEndDate", parse_date("3000-01-01").unwrap_or(i64::MAX)),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(v), ..) | (_, Err(v), ..) | (_, _, Err(v), _) | (.., Err(v)) => {
            return bad_request(format!("Couldn't parse date: {v}"))
        }
    };
    let limit = match param(&ps, "limit").map(str::parse::<usize>) {
        None => usize::MAX,
        Some(Ok(n)) => n,
        Some(Err(_)) => return bad_request("limit must be a number".into()),
    };
    let now = now_ms();
    let mut out = Vec::new();
    let (all, apps) = grouped(&catalog);
    for range in apps {
        let attempts = &all[range.clone()];
        if out.len() >= limit {
            break;
        }
        // as Spark: an application is running if its latest attempt is, and it is kept if
        // any attempt falls in the date windows (a running one only if maxEndDate is ahead)
        let running = attempts
            .first()
            .map(|e| !e.listing.completed)
            .unwrap_or(true);
        let status_ok = (running && want_running) || (!running && want_completed);
        let in_range = attempts.iter().any(|e| {
            let a = &e.listing;
            let start_ok = a.start_time >= min_date && a.start_time <= max_date;
            let end_ok = if running {
                max_end > now
            } else {
                a.end_time >= min_end && a.end_time <= max_end
            };
            start_ok && end_ok
        });
        if status_ok && in_range {
            out.push(range);
        }
    }
    json_array_streamed(out, move |range| {
        let attempts = &all[range];
        let id = attempts[0].listing.id.as_deref().unwrap_or_default();
        app_info(id, attempts, dialect)
    })
}

/// A JSON array of `items` as `show` makes each, laid out as [`json_ok`] lays out the
/// whole array, written a batch of items at a time: a list of 100,000 applications is never
/// held whole, neither as values nor as text.
fn json_array_streamed<I, T>(items: Vec<I>, show: impl Fn(I) -> T + Send + 'static) -> Response
where
    I: Send + 'static,
    T: serde::Serialize,
{
    const BATCH: usize = 512;
    if items.is_empty() {
        return json_ok(&Vec::<T>::new());
    }
    let mut items = items.into_iter().peekable();
    let mut first = true;
    let chunks = std::iter::from_fn(move || {
        items.peek()?;
        let mut buf = Vec::with_capacity(BATCH * 512);
        buf.extend_from_slice(if first { b"[ " } else { b", " });
        for (i, item) in items.by_ref().take(BATCH).enumerate() {
            if i > 0 {
                buf.extend_from_slice(b", ");
            }
            if let Err(e) = to_jackson_into(&mut buf, &show(item)) {
                return Some(Err(std::io::Error::other(e)));
            }
        }
        first = false;
        if items.peek().is_none() {
            buf.extend_from_slice(b" ]");
        }
        Some(Ok(bytes::Bytes::from(buf)))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

const SUBRESOURCES: [&str; 9] = [
    "jobs",
    "stages",
    "executors",
    "allexecutors",
    "environment",
    "storage",
    "sql",
    "logs",
    "allmiscellaneousprocess",
];

/// What Spark's History Server answers (404) for an application, or an attempt of it, it
/// does not know, by the path asked (`tail`: the segments after the application id).
fn unknown_app(app_id: &str, tail: &[&str]) -> String {
    match tail {
        [] => format!("unknown app: {app_id}"),
        // the logs without an attempt are looked up again as attempt "1" (for backwards
        // compatibility), and that second key is the one the error names
        ["logs"] => format!("no such app: {app_id}/1"),
        [first, ..] if SUBRESOURCES.contains(first) => format!("no such app: {app_id}"),
        [attempt] => format!("unknown app {app_id}, attempt {attempt}"),
        [attempt, ..] => format!("no such app: {app_id}/{attempt}"),
    }
}

/// Whether `viewer` may view the attempt `e`.
pub fn may_view(viewer: &Viewer, e: &Entry) -> bool {
    viewer.may_view(&e.listing.spark_user, e.listing.acls.as_deref())
}

async fn per_app(
    State(catalog): State<Arc<Catalog>>,
    dialect: Option<Extension<Dialect>>,
    viewer: Viewer,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let dialect = dialect_of(dialect);
    let ps = params(&q);
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let Some((&app_id, tail)) = segs.split_first() else {
        return not_found("unknown app: ".into());
    };
    let attempts = catalog.attempts(app_id);
    if attempts.is_empty() {
        return not_found(unknown_app(app_id, tail));
    }
    let (entry, sub) = match tail.first() {
        None => return json_ok(&app_info(app_id, &attempts, dialect)),
        Some(first) if SUBRESOURCES.contains(first) => (attempts[0].clone(), tail),
        Some(attempt) => {
            let Some(e) = attempts
                .iter()
                .find(|e| e.listing.attempt_id.as_deref() == Some(*attempt))
            else {
                return not_found(unknown_app(app_id, tail));
            };
            if tail.len() == 1 {
                return json_ok(&attempt_info(e, dialect));
            }
            (e.clone(), &tail[1..])
        }
    };
    // everything below shows the application's contents: its ACLs decide (the zip of all
    // attempts needs every attempt's)
    let zip_all = sub == ["logs"] && tail.first() == Some(&"logs");
    let allowed = if zip_all {
        attempts.iter().all(|e| may_view(&viewer, e))
    } else {
        may_view(&viewer, &entry)
    };
    if !allowed {
        return viewer.forbidden_api();
    }
    if sub == ["logs"] {
        // all attempts unless one was named, as Spark zips them
        return if zip_all {
            logs_zip::response(&attempts, app_id, format!("eventLogs-{app_id}.zip")).await
        } else {
            let attempt = entry.listing.attempt_id.clone().unwrap_or_default();
            logs_zip::response(
                std::slice::from_ref(&entry),
                app_id,
                format!("eventLogs-{app_id}-{attempt}.zip"),
            )
            .await
        };
    }
    let app = catalog.app(&entry).await;
    let app = &*app;
    let run_ms = if app.completed {
        app.end_time - app.start_time
    } else {
        entry.last_updated() - app.start_time
    };
    let executor_summary = |e: &crate::model::Executor| json::executor_summary(e, run_ms, dialect);
    match sub {
        ["jobs"] => {
            let statuses = param_all(&ps, "status");
            let mut wanted = Vec::new();
            for s in statuses {
                match s.to_ascii_uppercase().as_str() {
                    "RUNNING" => wanted.push(JobStatus::Running),
                    "SUCCEEDED" => wanted.push(JobStatus::Succeeded),
                    "FAILED" => wanted.push(JobStatus::Failed),
                    "UNKNOWN" => wanted.push(JobStatus::Unknown),
                    other => return bad_request(format!("unknown job status: {other}")),
                }
            }
            let jobs: Vec<JobData> = app
                .jobs
                .values()
                .rev()
                .filter(|j| wanted.is_empty() || wanted.contains(&j.status))
                .map(job_data)
                .collect();
            json_ok(&jobs)
        }
        ["jobs", id] => match id.parse::<i64>().ok().and_then(|n| app.jobs.get(&n)) {
            Some(j) => json_ok(&job_data(j)),
            None => not_found(format!("unknown job: {id}")),
        },
        ["stages", rest @ ..] => stages::route(app, rest, &ps, dialect),
        ["executors"] => {
            // Spark lists the active ones by its "active" index reversed: ids descending
            let v: Vec<ExecutorSummary> = app
                .executors
                .values()
                .rev()
                .filter(|e| e.is_active)
                .map(executor_summary)
                .collect();
            json_ok(&v)
        }
        ["allexecutors"] => {
            let v: Vec<ExecutorSummary> = app.executors.values().map(executor_summary).collect();
            json_ok(&v)
        }
        ["environment"] => match &app.environment {
            Some(env) => json_ok(&environment_for(env, app, dialect)),
            None => not_found(format!("unknown app: {app_id}")),
        },
        ["storage", "rdd"] => json_ok(&sql::rdd_list(app, dialect)),
        ["storage", "rdd", id] if id.bytes().all(|b| b.is_ascii_digit()) => {
            match id
                .parse::<i64>()
                .ok()
                .and_then(|n| app.storage.rdds.get(&n))
            {
                Some(r) => json_ok(&sql::rdd_info_for(r, dialect)),
                None => not_found(format!("no rdd found w/ id {id}")),
            }
        }
        ["sql"] => {
            let int = |name: &str, default: i32| match param(&ps, name) {
                None => Some(default),
                Some(v) => v.parse::<i32>().ok(),
            };
            // Spark 3.5 pages by 20 unless told; 4 lists everything (and ignores the offset)
            let default_length = if dialect.is_spark4() { -1 } else { 20 };
            // Jersey answers 404 to a query parameter that is not a number
            let (Some(offset), Some(length)) = (int("offset", 0), int("length", default_length))
            else {
                return not_found("Not Found".into());
            };
            let details = sql::bool_param(param(&ps, "details"), true);
            let plan = sql::bool_param(param(&ps, "planDescription"), true);
            let now = now_ms();
            let v: Vec<_> = sql::list(app, offset, length)
                .into_iter()
                .map(|e| sql::execution_data(e, details, plan, now).for_dialect(dialect))
                .collect();
            json_ok(&v)
        }
        ["sql", id] if id.bytes().all(|b| b.is_ascii_digit()) => {
            let details = sql::bool_param(param(&ps, "details"), true);
            let plan = sql::bool_param(param(&ps, "planDescription"), true);
            match id
                .parse::<i64>()
                .ok()
                .and_then(|n| app.sql.executions.get(&n))
            {
                Some(e) => {
                    json_ok(&sql::execution_data(e, details, plan, now_ms()).for_dialect(dialect))
                }
                None => not_found(format!("unknown query execution id: {id}")),
            }
        }
        _ => not_found(format!("unknown resource: {rest}")),
    }
}

#[cfg(test)]
mod tests {
    use super::unknown_app;

    /// The texts Spark 4.3's History Server answered for these paths (checked by hand
    /// against it; the parity test compares the listed paths only).
    #[test]
    fn unknown_app_texts_are_sparks() {
        for (tail, want) in [
            (&[][..], "unknown app: nope"),
            (&["logs"][..], "no such app: nope/1"),
            (&["1", "logs"][..], "no such app: nope/1"),
            (&["2", "jobs"][..], "no such app: nope/2"),
            (&["jobs"][..], "no such app: nope"),
            (&["1"][..], "unknown app nope, attempt 1"),
        ] {
            assert_eq!(unknown_app("nope", tail), want, "{tail:?}");
        }
    }
}
