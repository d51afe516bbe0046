//! The frame every page shares: the top bar with the application's tabs (Jobs, Stages,
//! Storage, Environment, Executors, SQL, as in Spark's UI), the response headers (a strict
//! Content-Security-Policy: scripts and styles only from `/static/`, nothing inline), and the
//! embedded stylesheet and script.

use std::fmt::Write;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::html::{esc, seg};
use super::Ctx;

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

/// A short digest of both assets, appended to their URLs so a new build is never served a
/// stale cached copy.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    // FNV-1a: a fingerprint, not a security measure
    let mut h: u64 = 0xcbf29ce484222325;
    for b in CSS.bytes().chain(JS.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
});

/// The policy every page is served with: no inline script or style, nothing from another
/// host, no plugins, no framing by other sites, forms only to ourselves.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'";

/// The tab a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Jobs,
    Stages,
    Storage,
    Environment,
    Executors,
    Sql,
    None,
}

/// `/static/ui.css`, `/static/ui.js`.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, ty) = match file.as_str() {
        "ui.css" => (CSS, "text/css; charset=utf-8"),
        "ui.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            // the URL carries the content's digest, so a copy never goes stale
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The whole page around `body` (HTML, already escaped where it needs to be).
pub fn render(ctx: Option<&Ctx>, tab: Tab, title: &str, body: &str) -> Response {
    let v = ASSET_VERSION.as_str();
    let mut page = String::with_capacity(body.len() + 4096);
    let doc_title = match ctx {
        Some(c) => format!("{title} · {}", c.app().name),
        None => title.to_string(),
    };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><link rel=\"icon\" href=\"data:,\">\
<link rel=\"stylesheet\" href=\"/static/ui.css?v={v}\">\
<script src=\"/static/ui.js?v={v}\" defer></script></head><body>\
<header class=\"top\"><a class=\"brand\" href=\"/\" title=\"All applications\">Spark history</a>",
        esc(&doc_title)
    );
    if let Some(c) = ctx {
        let a = c.app();
        let _ = write!(
            page,
            "<a class=\"appname\" href=\"{}\" title=\"{}\">{}</a>",
            c.href(""),
            esc(&c.app_id),
            esc(&super::html::shorten(&a.name, 60))
        );
        page.push_str("<nav class=\"tabs\">");
        let sql_count = a.sql.executions.len();
        for (t, rel, label) in [
            (Tab::Jobs, "jobs/", "Jobs".to_string()),
            (Tab::Stages, "stages/", "Stages".to_string()),
            (Tab::Storage, "storage/", "Storage".to_string()),
            (Tab::Environment, "environment/", "Environment".to_string()),
            (Tab::Executors, "executors/", "Executors".to_string()),
            (
                Tab::Sql,
                "SQL/",
                if sql_count > 0 {
                    format!("SQL / DataFrame ({sql_count})")
                } else {
                    "SQL / DataFrame".to_string()
                },
            ),
        ] {
            let _ = write!(
                page,
                "<a href=\"{}\"{}>{}</a>",
                c.href(rel),
                if t == tab { " class=\"active\"" } else { "" },
                esc(&label)
            );
        }
        page.push_str("</nav>");
        let _ = write!(
            page,
            "<span class=\"meta\">Spark {} · <a href=\"/api/v1/applications/{}\">REST API</a></span>",
            esc(&a.spark_version),
            seg(&c.app_id)
        );
    }
    let _ = write!(
        page,
        "</header><main><h1>{}</h1>\n{body}\n</main>\
<footer>history-collector {} · times in UTC · hover a number for its exact value</footer></body></html>",
        esc(title),
        env!("CARGO_PKG_VERSION")
    );
    let mut r = Html(page).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // an incomplete application's pages change with every scan
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
