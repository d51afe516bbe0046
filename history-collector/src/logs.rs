//! Serves collected pod logs at stable URLs, `/logs/<appId>/<executorId>/<file>`, for Spark's
//! `spark.ui.custom.executor.log.url` / `spark.history.custom.executor.log.url` patterns
//! (`.../logs/{{APP_ID}}/{{EXECUTOR_ID}}/{{FILE_NAME}}`).
//!
//! Kubernetes keeps one log per container with stdout and stderr interleaved, so `stdout` and
//! `stderr` both name the Spark container's log (`spark-kubernetes-driver` or
//! `spark-kubernetes-executor`, else the pod's only container); `<container>.log` names any
//! container's log. `/logs/<appId>/` lists what is stored.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::io::ReaderStream;

use crate::ingest::layout::{check_component, podlog_key, LayoutError, LogStore};
use sidecars_common::objstore::StoreError;

/// Container names Spark gives its driver and executor containers.
const SPARK_CONTAINERS: [&str; 2] = ["spark-kubernetes-driver", "spark-kubernetes-executor"];

pub fn router(store: LogStore) -> Router {
    Router::new()
        .route("/logs/{app}/", get(list))
        .route("/logs/{app}/{exec}/{file}", get(one))
        .with_state(store)
}

fn error(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg + "\n",
    )
        .into_response()
}

fn layout_error(e: LayoutError) -> Response {
    match e {
        LayoutError::Store(StoreError::NotFound { .. }) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        LayoutError::BadName { .. } => error(StatusCode::BAD_REQUEST, e.to_string()),
        e => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn list(State(store): State<LogStore>, Path(app): Path<String>) -> Response {
    match store.list_podlogs(&app).await {
        Ok(files) => {
            let mut out = String::new();
            for f in files {
                out.push_str(&format!(
                    "{}\t{}\t{}\n",
                    f.rel,
                    f.len,
                    if f.complete { "complete" } else { "live" }
                ));
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
        }
        Err(e) => layout_error(e),
    }
}

async fn one(
    State(store): State<LogStore>,
    Path((app, exec, file)): Path<(String, String, String)>,
) -> Response {
    for name in [&app, &exec, &file] {
        if let Err(e) = check_component(name) {
            return layout_error(e);
        }
    }
    let container = if file == "stdout" || file == "stderr" {
        let files = match store.list_podlogs(&app).await {
            Ok(f) => f,
            Err(e) => return layout_error(e),
        };
        let mine: Vec<String> = files
            .iter()
            .filter_map(|f| {
                f.rel
                    .strip_prefix(&format!("{exec}/"))?
                    .strip_suffix(".log")
                    .map(str::to_string)
            })
            .collect();
        match mine.iter().find(|c| SPARK_CONTAINERS.contains(&c.as_str())) {
            Some(c) => c.clone(),
            None if mine.len() == 1 => mine[0].clone(),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no log stored for executor {exec} of {app} (containers: {mine:?})"),
                )
            }
        }
    } else if let Some(c) = file.strip_suffix(".log") {
        c.to_string()
    } else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown log file {file:?}: use stdout, stderr or <container>.log"),
        );
    };
    match store.open(&podlog_key(&app, &exec, &container)).await {
        Ok((len, body)) => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(header::CONTENT_LENGTH, len)
            .body(Body::from_stream(ReaderStream::new(body)))
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => layout_error(e),
    }
}
