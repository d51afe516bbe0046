//! The read ACLs of the routes whose handlers do not check them: every UI page of an
//! application (`/history/<appId>/...`) and its container logs (`/logs/<appId>/...`). A
//! layer in front of those routes, so the pages themselves stay free of access control.
//!
//! The application is taken from the path as the routes take it (the first non-empty
//! segment after the prefix, percent-decoded), and the viewer must be allowed to view every
//! attempt of it: a page cannot show an attempt the viewer may not see, whichever attempt the
//! page picks. Container logs of an application with no event log (nothing says whose they
//! are) go to the server's admins only. An unknown application passes (its page is a 404).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::access::Viewer;
use crate::api::{may_view, Catalog};

/// What a path under the gate shows.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A UI page of this application.
    Page(String),
    /// Container logs of this application.
    Logs(String),
    /// Nothing of one application.
    Other,
}

/// The application `path` belongs to; `Err` when its id is not valid percent-encoded UTF-8.
fn target(path: &str) -> Result<Target, ()> {
    let (rest, page) = if let Some(r) = path.strip_prefix("/history/") {
        (r, true)
    } else if let Some(r) = path.strip_prefix("/logs/") {
        (r, false)
    } else {
        return Ok(Target::Other);
    };
    let Some(raw) = rest.split('/').find(|s| !s.is_empty()) else {
        return Ok(Target::Other);
    };
    let id = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ())?
        .into_owned();
    Ok(if page {
        Target::Page(id)
    } else {
        Target::Logs(id)
    })
}

/// Use with `axum::middleware::from_fn_with_state(catalog, gate)`, inside the access layer
/// (which puts the [`Viewer`] in the request).
pub async fn gate(
    State(catalog): State<Arc<Catalog>>,
    viewer: Viewer,
    req: Request,
    next: Next,
) -> Response {
    if !viewer.acls_enabled() {
        return next.run(req).await;
    }
    let (app, page) = match target(req.uri().path()) {
        Ok(Target::Page(app)) => (app, true),
        Ok(Target::Logs(app)) => (app, false),
        Ok(Target::Other) => return next.run(req).await,
        Err(()) => {
            return (StatusCode::BAD_REQUEST, "the application id is not UTF-8\n").into_response()
        }
    };
    let attempts = catalog.attempts(&app);
    let allowed = if attempts.is_empty() {
        page || viewer.may_view("", None)
    } else {
        attempts.iter().all(|e| may_view(&viewer, e))
    };
    match (allowed, page) {
        (true, _) => next.run(req).await,
        (false, true) => viewer.forbidden_page(),
        (false, false) => viewer.forbidden_api(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_application_of_a_path() {
        let page = |s: &str| Ok(Target::Page(s.into()));
        let logs = |s: &str| Ok(Target::Logs(s.into()));
        assert_eq!(target("/history/local-1/jobs/"), page("local-1"));
        assert_eq!(target("/history//local-1/"), page("local-1"));
        assert_eq!(target("/history/local%2D1/"), page("local-1"));
        assert_eq!(target("/history/a%2Fb/jobs/"), page("a/b"));
        assert_eq!(target("/logs/spark-1/driver/stdout"), logs("spark-1"));
        assert_eq!(target("/history/"), Ok(Target::Other));
        assert_eq!(target("/"), Ok(Target::Other));
        assert_eq!(target("/api/v1/applications"), Ok(Target::Other));
        assert_eq!(target("/history/%FF/"), Err(()));
    }
}
