//! The web UI: server-rendered HTML pages over the same [`Catalog`] as the REST API, at
//! Spark's own History Server paths (`/history/<appId>[/<attemptId>]/jobs/job/?id=3`, ...),
//! so a link into Spark's UI works here with only the host changed.
//!
//! Every page's text content is in the HTML (no page needs JavaScript to show its numbers);
//! pictures (timelines, the stage DAG, the SQL plan) are inline SVG; `ui.js` only adds
//! client-side sorting and filtering of small tables. The CSS and the script are compiled
//! into the binary and served from `/static/`, so nothing is fetched from another host.
//! Every string taken from an event log, a pod log or a query goes through [`html::esc`]
//! (or [`html::seg`] for URLs), and a strict Content-Security-Policy forbids inline scripts
//! as a second line of defence.

mod app;
mod apps;
mod dag;
mod environment;
mod executors;
pub mod fmt;
pub mod html;
mod job;
mod k8s;
mod layout;
mod logview;
mod plan;
mod sql;
mod stage;
mod stages;
mod storage;
mod timeline;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::api::{Catalog, Dialect, Entry};
pub use html::esc;
use html::{qv, seg, Query};

/// The REST shapes the pages read, as Spark 4's History Server answers them (it has every
/// field); the dialect matters only to API clients that want one version's exact bytes.
const DIALECT: Dialect = Dialect::Spark4;
pub use layout::Tab;

/// The UI routes: `/` (the application list), `/history/...` (an application's pages) and
/// `/static/...` (the stylesheet and script).
pub fn router(catalog: Arc<Catalog>) -> Router {
    Router::new()
        .route("/", get(apps::index))
        .route("/history/{*rest}", get(dispatch))
        .route("/static/{file}", get(layout::asset))
        .with_state(catalog)
}

/// One application attempt and the request for one of its pages.
pub struct Ctx {
    pub catalog: Arc<Catalog>,
    pub entry: Arc<Entry>,
    /// The attempt's whole state, replayed on demand (see [`Catalog::app`]).
    pub app: Arc<crate::model::App>,
    pub app_id: String,
    /// The attempt named in the URL, if any.
    pub attempt: Option<String>,
    /// `/history/<appId>/` or `/history/<appId>/<attemptId>/`, escaped for a link.
    pub base: String,
    pub query: Query,
}

impl Ctx {
    pub fn app(&self) -> &crate::model::App {
        &self.app
    }

    /// A link to an application page: `base` + `rel` (already escaped).
    pub fn href(&self, rel: &str) -> String {
        format!("{}{rel}", self.base)
    }

    pub fn job_href(&self, job: i64) -> String {
        self.href(&format!("jobs/job/?id={job}"))
    }

    pub fn stage_href(&self, stage: i64, attempt: i64) -> String {
        self.href(&format!("stages/stage/?id={stage}&amp;attempt={attempt}"))
    }

    pub fn sql_href(&self, exec: i64) -> String {
        self.href(&format!("SQL/execution/?id={exec}"))
    }

    /// The in-page viewer of an executor's collected log.
    pub fn log_href(&self, executor: &str, file: &str) -> String {
        self.href(&format!(
            "executors/logs/?executor={}&amp;file={}",
            qv(executor),
            qv(file)
        ))
    }
}

/// The pages of an application, by the path after its id (and attempt).
const PAGES: [&str; 6] = [
    "jobs",
    "stages",
    "executors",
    "environment",
    "storage",
    "SQL",
];

async fn dispatch(
    State(catalog): State<Arc<Catalog>>,
    Path(rest): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let Some((&app_id, mut tail)) = segs.split_first() else {
        return not_found("No application was named.");
    };
    let attempts = catalog.attempts(app_id);
    if attempts.is_empty() {
        return not_found(&format!("Unknown application {app_id}."));
    }
    // `/history/<app>/<attempt>/...` as Spark's History Server: a segment that is not a page
    // name and names an attempt of this application
    let mut attempt = None;
    let entry = match tail.first() {
        Some(first) if !PAGES.contains(first) => {
            match attempts
                .iter()
                .find(|e| e.listing.attempt_id.as_deref() == Some(*first))
            {
                Some(e) => {
                    attempt = Some(first.to_string());
                    tail = &tail[1..];
                    e.clone()
                }
                None => {
                    return not_found(&format!(
                        "Application {app_id} has no attempt or page {first}."
                    ))
                }
            }
        }
        _ => attempts[0].clone(),
    };
    let base = match &attempt {
        Some(a) => format!("/history/{}/{}/", seg(app_id), seg(a)),
        None => format!("/history/{}/", seg(app_id)),
    };
    let query = Query::parse(raw.as_deref());
    let app = catalog.app(&entry).await;
    let ctx = Ctx {
        catalog,
        entry,
        app,
        app_id: app_id.to_string(),
        attempt,
        base,
        query,
    };
    match tail {
        [] | ["jobs"] => {
            let end = k8s::driver_end(&ctx.catalog, &ctx.entry).await;
            app::page(&ctx, end.as_ref())
        }
        ["jobs", "job"] => job::page(&ctx),
        ["stages"] => stages::page(&ctx),
        ["stages", "stage"] => stage::page(&ctx).await,
        // the paths of earlier versions of this UI
        ["stages", id, att] => Redirect::permanent(&format!(
            "{}stages/stage/?id={}&attempt={}",
            ctx.base,
            seg(id),
            seg(att)
        ))
        .into_response(),
        ["SQL", "execution", id] => {
            Redirect::permanent(&format!("{}SQL/execution/?id={}", ctx.base, seg(id)))
                .into_response()
        }
        ["executors"] => executors::page(&ctx).await,
        ["executors", "logs"] => logview::page(&ctx).await,
        ["environment"] => environment::page(&ctx),
        ["storage"] => storage::page(&ctx),
        ["storage", "rdd"] => storage::rdd_page(&ctx),
        ["SQL"] => sql::list_page(&ctx),
        ["SQL", "execution"] => sql::execution_page(&ctx),
        _ => not_found(&format!("Unknown page {} of {app_id}.", tail.join("/"))),
    }
}

/// A 404 page naming what was not found.
pub fn not_found(what: &str) -> Response {
    let mut r = layout::render(
        None,
        Tab::None,
        "Not found",
        &format!("<p>{}</p>", esc(what)),
    );
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// A 404 inside an application (keeps its navigation).
pub fn app_not_found(ctx: &Ctx, tab: Tab, what: &str) -> Response {
    let mut r = layout::render(
        Some(ctx),
        tab,
        "Not found",
        &format!("<p>{}</p>", esc(what)),
    );
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// A 400 inside an application, naming the bad parameter.
pub fn bad_request(ctx: &Ctx, tab: Tab, what: &str) -> Response {
    let mut r = layout::render(
        Some(ctx),
        tab,
        "Bad request",
        &format!("<p>{}</p>", esc(what)),
    );
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}
