//! Serves collected pod logs at stable URLs, `/logs/<appId>/<executorId>/<file>`, for Spark's
//! `spark.ui.custom.executor.log.url` / `spark.history.custom.executor.log.url` patterns
//! (`.../logs/{{APP_ID}}/{{EXECUTOR_ID}}/{{FILE_NAME}}`).
//!
//! Kubernetes keeps one log per container with stdout and stderr interleaved, so `stdout` and
//! `stderr` both name the Spark container's log (`spark-kubernetes-driver` or
//! `spark-kubernetes-executor`, else the pod's only container); `<container>.log` names any
//! container's log. `/logs/<appId>/` lists what is stored. Lines are stored with the API's
//! RFC 3339 timestamp first (what makes resuming exact); they are served without it unless
//! `?timestamps=true`.
//!
//! Making Spark's UI and History Server link here (collector reachable at `$H`):
//!
//! ```text
//! spark.ui.custom.executor.log.url       $H/logs/{{APP_ID}}/{{EXECUTOR_ID}}/{{FILE_NAME}}
//! spark.history.custom.executor.log.url  $H/logs/{{APP_ID}}/{{EXECUTOR_ID}}/{{FILE_NAME}}
//! spark.executorEnv.SPARK_EXECUTOR_ATTRIBUTE_LOG_FILES   stdout,stderr
//! # Spark 3.5 only (4.x adds APP_ID and EXECUTOR_ID attributes by itself when the key is set):
//! spark.executorEnv.SPARK_EXECUTOR_ATTRIBUTE_APP_ID       $(SPARK_APPLICATION_ID)
//! spark.executorEnv.SPARK_EXECUTOR_ATTRIBUTE_EXECUTOR_ID  $(SPARK_EXECUTOR_ID)
//! ```
//!
//! (`$(VAR)` is expanded by Kubernetes from the executor container's own environment, which
//! Spark fills with `SPARK_APPLICATION_ID` and `SPARK_EXECUTOR_ID`.)

use axum::body::Body;
use axum::extract::{Path, Query, State};
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

/// `?timestamps=true` keeps the stored timestamps.
#[derive(serde::Deserialize, Default)]
struct LogQuery {
    #[serde(default)]
    timestamps: bool,
}

/// The log without the leading `<timestamp> ` of each line, streamed.
fn strip_timestamps(body: sidecars_common::objstore::Reader) -> Body {
    use tokio::io::AsyncBufReadExt;
    let reader = tokio::io::BufReader::new(body);
    let lines = futures::stream::unfold(reader, |mut r| async move {
        let mut line = Vec::new();
        match r.read_until(b'\n', &mut line).await {
            Ok(0) => None,
            Ok(_) => {
                let cut = match line.iter().position(|&b| b == b' ') {
                    Some(i) if line[..i].first().is_some_and(u8::is_ascii_digit) => i + 1,
                    _ => 0,
                };
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(line.split_off(cut))),
                    r,
                ))
            }
            Err(e) => Some((Err(e), r)),
        }
    });
    Body::from_stream(lines)
}

async fn one(
    State(store): State<LogStore>,
    Path((app, exec, file)): Path<(String, String, String)>,
    Query(q): Query<LogQuery>,
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
        Ok((len, body)) if q.timestamps => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(header::CONTENT_LENGTH, len)
            .body(Body::from_stream(ReaderStream::new(body)))
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Ok((_, body)) => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(strip_timestamps(body))
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => layout_error(e),
    }
}
