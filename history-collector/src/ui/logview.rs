//! An executor's (or the driver's) collected container log, in the page
//! (`.../executors/logs/?executor=1&file=stdout`): the last part of the log by default
//! (`tail`), or every line matching a search (`q`) across the whole log, streamed from the
//! store so memory stays bounded whatever the log's size. Each line's Kubernetes timestamp
//! is shown apart from the text; WARN and ERROR lines are marked. Downloads go to the raw
//! `/logs/...` route.
//!
//! `file` is `stdout` or `stderr` (Kubernetes keeps one log per container, so both name the
//! Spark container's log, as the `/logs/` route answers them) or `<container>.log`.

use std::fmt::Write;

use axum::http::StatusCode;
use axum::response::Response;
use tokio::io::AsyncBufReadExt;

use super::executors::collected;
use super::html::{esc, esc_into, seg};
use super::layout::{render, Tab};
use super::{fmt, Ctx};
use crate::ingest::layout::{check_component, podlog_key};

/// Tail sizes offered, in bytes.
const TAILS: [(u64, &str); 4] = [
    (64 << 10, "64 KiB"),
    (1 << 20, "1 MiB"),
    (4 << 20, "4 MiB"),
    (16 << 20, "16 MiB"),
];
const DEFAULT_TAIL: u64 = 1 << 20;
/// Matches shown for a search (the count goes on past it).
const MAX_MATCHES: usize = 2000;
/// Longest line shown whole; longer ones are cut (the download has them whole).
const MAX_LINE: usize = 8192;

/// Spark's container names (`logs.rs` maps `stdout` / `stderr` to them the same way).
const SPARK_CONTAINERS: [&str; 2] = ["spark-kubernetes-driver", "spark-kubernetes-executor"];

fn status(mut r: Response, code: StatusCode) -> Response {
    *r.status_mut() = code;
    r
}

pub async fn page(ctx: &Ctx) -> Response {
    let exec = ctx.query.get("executor").unwrap_or("").to_string();
    let file = ctx.query.get("file").unwrap_or("stdout").to_string();
    let title = format!("Log of executor {exec} ({file})");
    let fail = |code: StatusCode, msg: String| {
        status(
            render(
                Some(ctx),
                Tab::Executors,
                &title,
                &format!("<p class=\"callout warn\">{}</p>{}", esc(&msg), back(ctx)),
            ),
            code,
        )
    };
    if let Err(e) = check_component(&exec).and_then(|_| check_component(&file)) {
        return fail(StatusCode::BAD_REQUEST, e.to_string());
    }
    let Some(store) = ctx.catalog.store() else {
        return fail(
            StatusCode::NOT_FOUND,
            "This server keeps no collected logs (no --storage).".into(),
        );
    };
    let logs = match collected(ctx).await {
        Ok(l) => l,
        Err(e) => {
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("The collected logs could not be listed: {e}"),
            )
        }
    };
    let mine = logs.get(&exec).cloned().unwrap_or_default();
    let container = if file == "stdout" || file == "stderr" {
        mine.iter()
            .find(|(c, _)| SPARK_CONTAINERS.contains(&c.as_str()))
            .or_else(|| (mine.len() == 1).then(|| &mine[0]))
            .map(|(c, _)| c.clone())
    } else {
        file.strip_suffix(".log")
            .filter(|c| mine.iter().any(|(m, _)| m == c))
            .map(str::to_string)
    };
    let Some(container) = container else {
        let spark_links = ctx
            .app()
            .executors
            .get(&exec)
            .map(|e| e.executor_logs.clone())
            .unwrap_or_default();
        let mut msg = format!(
            "No {file} log was collected for executor {exec}. Logs are collected from the pods' containers while they run (history-collector with Kubernetes access)."
        );
        if !spark_links.is_empty() {
            msg.push_str(" Spark logged its own log links for it; see the executors page.");
        }
        return fail(StatusCode::NOT_FOUND, msg);
    };
    let key = podlog_key(&ctx.app_id, &exec, &container);
    let len = mine
        .iter()
        .find(|(c, _)| *c == container)
        .map_or(0, |(_, f)| f.len);
    let live = mine
        .iter()
        .find(|(c, _)| *c == container)
        .is_some_and(|(_, f)| !f.complete);

    let q = ctx.query.get("q").map(str::to_string);
    let tail = ctx
        .query
        .int("tail")
        .map(|t| t.clamp(1024, 16 << 20) as u64)
        .unwrap_or(DEFAULT_TAIL);
    let raw_href = format!(
        "/logs/{}/{}/{}.log",
        seg(&ctx.app_id),
        seg(&exec),
        seg(&container)
    );
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>Container <b>{}</b> of executor <b>{}</b>, {} collected{}. \
<a href=\"{raw}\" download=\"{}\">Download</a> · <a href=\"{raw}?timestamps=true\" download=\"{}\">with timestamps</a> · {}</p>",
        esc(&container),
        esc(&exec),
        fmt::bytes(len as i64),
        if live { " so far (the container was still running)" } else { "" },
        esc(&format!("{}-{exec}-{container}.log", ctx.app_id)),
        esc(&format!("{}-{exec}-{container}-timestamps.log", ctx.app_id)),
        back(ctx),
        raw = raw_href,
    );
    // other logs of this executor and the same file of the others
    let others: Vec<String> = mine
        .iter()
        .filter(|(c, _)| *c != container)
        .map(|(c, _)| {
            format!(
                "<a href=\"{}\">{}</a>",
                ctx.log_href(&exec, &format!("{c}.log")),
                esc(c)
            )
        })
        .collect();
    if !others.is_empty() {
        let _ = write!(b, "<p>Other containers: {}</p>", others.join(" · "));
    }
    let peers: Vec<String> = logs
        .keys()
        .filter(|e| **e != exec)
        .take(50)
        .map(|e| format!("<a href=\"{}\">{}</a>", ctx.log_href(e, "stdout"), esc(e)))
        .collect();
    if !peers.is_empty() {
        let _ = write!(b, "<p>Other executors: {}</p>", peers.join(" · "));
    }
    let _ = write!(
        b,
        "<form class=\"search\" method=\"get\"><input type=\"hidden\" name=\"executor\" value=\"{}\"><input type=\"hidden\" name=\"file\" value=\"{}\">\
<input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"Search the whole log\" aria-label=\"Search the log\"><button type=\"submit\">Search</button></form>",
        esc(&exec),
        esc(&file),
        esc(q.as_deref().unwrap_or("")),
    );

    match q.as_deref().filter(|s| !s.is_empty()) {
        Some(needle) => {
            let (len, body) = match store.open(&key).await {
                Ok(x) => x,
                Err(e) => return fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            };
            let lower = needle.to_lowercase();
            let mut reader = tokio::io::BufReader::new(body);
            let mut line = Vec::new();
            let mut n = 0usize;
            let mut matches = 0usize;
            let mut out = String::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        let _ = write!(
                            out,
                            "<p class=\"callout warn\">Reading stopped: {}</p>",
                            esc(&e.to_string())
                        );
                        break;
                    }
                }
                n += 1;
                let text = String::from_utf8_lossy(&line);
                let (_, body) = split_ts(&text);
                if super::apps::contains_ci(body, &lower) {
                    matches += 1;
                    if matches <= MAX_MATCHES {
                        render_line(&mut out, n, &text, Some(&lower));
                    }
                }
            }
            let _ = write!(
                b,
                "<p id=\"log-summary\">{} matching lines of {} ({} searched){}. <a href=\"{}\">Show the end of the log</a></p>",
                fmt::group(matches as i64),
                fmt::group(n as i64),
                fmt::bytes(len as i64),
                if matches > MAX_MATCHES {
                    format!(", the first {MAX_MATCHES} shown")
                } else {
                    String::new()
                },
                ctx.log_href(&exec, &file),
            );
            let _ = write!(b, "<div class=\"log\" id=\"log\">{out}</div>");
        }
        None => {
            let (start, bytes) = match store.read_tail(&key, tail).await {
                Ok(x) => x,
                Err(e) => return fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            };
            let text = String::from_utf8_lossy(&bytes);
            // a tail that starts mid-line drops that partial line
            let body = if start > 0 {
                text.split_once('\n').map_or("", |(_, rest)| rest)
            } else {
                text.as_ref()
            };
            let mut choices = String::new();
            for (t, label) in TAILS {
                if t == tail {
                    let _ = write!(choices, " <b>{label}</b>");
                } else if t < len.max(64 << 10) * 2 {
                    let _ = write!(
                        choices,
                        " <a href=\"{}&amp;tail={t}\">{label}</a>",
                        ctx.log_href(&exec, &file)
                    );
                }
            }
            let _ = write!(
                b,
                "<p id=\"log-summary\">{}. Show the last:{choices}</p>",
                if start > 0 {
                    format!(
                        "The last {} of {} (line numbers count from there)",
                        fmt::bytes((len - start) as i64),
                        fmt::bytes(len as i64)
                    )
                } else {
                    format!("The whole log, {}", fmt::bytes(len as i64))
                },
            );
            let mut out = String::with_capacity(body.len() + body.len() / 4);
            for (i, l) in body.lines().enumerate() {
                render_line(&mut out, i + 1, l, None);
            }
            if body.is_empty() {
                out.push_str("<p class=\"muted\">The log is empty.</p>");
            }
            let _ = write!(b, "<div class=\"log\" id=\"log\">{out}</div>");
        }
    }
    render(Some(ctx), Tab::Executors, &title, &b)
}

fn back(ctx: &Ctx) -> String {
    format!("<a href=\"{}\">all executors</a>", ctx.href("executors/"))
}

/// A stored line's RFC 3339 timestamp (Kubernetes') and the rest.
fn split_ts(line: &str) -> (&str, &str) {
    match line.split_once(' ') {
        Some((ts, rest))
            if ts.len() >= 20 && ts.as_bytes()[0].is_ascii_digit() && ts.contains('T') =>
        {
            (ts, rest)
        }
        _ => ("", line),
    }
}

/// One line: number, timestamp, text (search hits marked), WARN/ERROR lines classed.
fn render_line(out: &mut String, n: usize, line: &str, mark: Option<&str>) {
    let line = line.trim_end_matches(['\n', '\r']);
    let (ts, text) = split_ts(line);
    let cut = super::html::shorten(text, MAX_LINE);
    let level =
        if text.contains(" ERROR ") || text.starts_with("ERROR") || text.contains("Exception") {
            " error"
        } else if text.contains(" WARN ") || text.starts_with("WARN") {
            " warn"
        } else {
            ""
        };
    let _ = write!(
        out,
        "<div class=\"ln{level}\"><span class=\"no\">{n}</span><span class=\"ts\" title=\"{}\">{}</span><span class=\"tx\">",
        esc(ts),
        esc(ts.get(11..23).unwrap_or(ts))
    );
    match mark {
        Some(needle) if !needle.is_empty() && needle.is_ascii() => {
            // mark each case-insensitive occurrence
            let lower = cut.to_ascii_lowercase();
            let mut at = 0;
            while let Some(i) = lower[at..].find(needle) {
                let s = at + i;
                esc_into(out, &cut[at..s]);
                out.push_str("<mark>");
                esc_into(out, &cut[s..s + needle.len()]);
                out.push_str("</mark>");
                at = s + needle.len();
            }
            esc_into(out, &cut[at..]);
        }
        _ => esc_into(out, &cut),
    }
    out.push_str("</span></div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_split_off() {
        assert_eq!(
            split_ts("2024-05-01T12:34:56.123456789Z hello world"),
            ("2024-05-01T12:34:56.123456789Z", "hello world")
        );
        assert_eq!(split_ts("no timestamp here"), ("", "no timestamp here"));
    }

    #[test]
    fn lines_are_escaped_and_marked() {
        let mut out = String::new();
        render_line(
            &mut out,
            3,
            "2024-05-01T12:34:56.123Z 24/05/01 ERROR <script>Boom</script> boom",
            Some("boom"),
        );
        assert!(out.contains("class=\"ln error\""), "{out}");
        assert!(
            out.contains("&lt;script&gt;<mark>Boom</mark>&lt;/script&gt; <mark>boom</mark>"),
            "{out}"
        );
        assert!(!out.contains("<script>"));
    }
}
