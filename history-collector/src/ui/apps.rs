//! `/`: the application list. Search (id, name, user, Spark version), a status filter,
//! sorting by any column and paging all happen on the server, so the page costs the same
//! few kilobytes with 100,000 applications as with ten. Per request the work is one pass
//! over the catalog to filter (case-insensitive matching without allocating), a partial
//! sort that orders only what the asked page needs, and one page of rows.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::fmt;
use super::html::{badge, esc, seg, Query};
use super::k8s;
use super::layout::{render, Tab};
use crate::api::{Catalog, Entry};

/// Rows per page unless `size` says otherwise.
const PAGE: usize = 100;

/// Sortable columns: query value, header.
const COLUMNS: [(&str, &str); 9] = [
    ("id", "App ID"),
    ("name", "App Name"),
    ("attempt", "Attempt"),
    ("start", "Started"),
    ("end", "Completed"),
    ("duration", "Duration"),
    ("user", "Spark User"),
    ("version", "Spark"),
    ("updated", "Last Updated"),
];

/// Whether `hay` contains `needle` (already lower-case), ignoring ASCII case, without
/// allocating; a non-ASCII needle falls back to Unicode lower-casing.
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.is_ascii() {
        let n = needle.as_bytes();
        let first = n[0];
        let h = hay.as_bytes();
        if h.len() < n.len() {
            return false;
        }
        let upper = first.to_ascii_uppercase();
        (0..=h.len() - n.len())
            .any(|i| (h[i] == first || h[i] == upper) && h[i..i + n.len()].eq_ignore_ascii_case(n))
    } else {
        hay.to_lowercase().contains(needle)
    }
}

fn duration(e: &Entry) -> i64 {
    let a = &e.listing;
    if a.completed {
        a.end_time - a.start_time
    } else {
        e.last_updated() - a.start_time
    }
}

fn compare(key: &str, x: &Entry, y: &Entry) -> Ordering {
    let (a, b) = (&x.listing, &y.listing);
    match key {
        "id" => a.id.cmp(&b.id),
        "name" => a.name.cmp(&b.name),
        "attempt" => a.attempt_id.cmp(&b.attempt_id),
        "end" => (a.completed, a.end_time).cmp(&(b.completed, b.end_time)),
        "duration" => duration(x).cmp(&duration(y)),
        "user" => a.spark_user.cmp(&b.spark_user),
        "version" => a.spark_version.cmp(&b.spark_version),
        "updated" => x.last_updated().cmp(&y.last_updated()),
        _ => a.start_time.cmp(&b.start_time),
    }
    // a total order, so pages never overlap
    .then_with(|| a.id.cmp(&b.id))
    .then_with(|| a.attempt_id.cmp(&b.attempt_id))
}

/// The status text of an attempt and whether it is bad (failed or killed).
fn status(ends: &HashMap<String, k8s::DriverEnd>, e: &Entry) -> (String, Option<String>) {
    let a = &e.listing;
    if a.completed {
        return match a.exit_code {
            Some(c) if c != 0 => ("failed".into(), Some(format!("exit code {c}"))),
            _ => ("completed".into(), None),
        };
    }
    match a.id.as_deref().and_then(|id| ends.get(id)) {
        Some(r) if r.killed => ("killed".into(), Some(r.reason.clone())),
        Some(r) => ("incomplete".into(), Some(r.reason.clone())),
        None => ("incomplete".into(), None),
    }
}

pub async fn index(State(catalog): State<Arc<Catalog>>, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw.as_deref());
    let body = list(&catalog, &q).await;
    render(None, Tab::None, "Spark applications", &body)
}

/// The list's HTML for query `q` (public within the crate for the benchmark).
pub async fn list(catalog: &Catalog, q: &Query) -> String {
    let all = catalog.entries();
    let total = all.len();
    let incomplete_total = all.iter().filter(|e| !e.listing.completed).count();
    let any_attempts = all.iter().any(|e| e.listing.attempt_id.is_some());
    let mut attempts: HashMap<&str, usize> = HashMap::new();
    if any_attempts {
        for e in &all {
            *attempts
                .entry(e.listing.id.as_deref().unwrap_or(""))
                .or_default() += 1;
        }
    }

    let needle = q.get("q").unwrap_or("").trim().to_lowercase();
    let show = q.get("status").unwrap_or("all");
    let mut rows: Vec<&Arc<Entry>> = all
        .iter()
        .filter(|e| {
            let a = &e.listing;
            let status_ok = match show {
                "completed" => a.completed,
                "incomplete" | "running" => !a.completed,
                _ => true,
            };
            status_ok
                && (needle.is_empty()
                    || contains_ci(a.id.as_deref().unwrap_or(""), &needle)
                    || contains_ci(&a.name, &needle)
                    || contains_ci(&a.spark_user, &needle)
                    || contains_ci(&a.spark_version, &needle))
        })
        .collect();

    let matched = rows.len();
    let sort = q
        .get("sort")
        .filter(|s| COLUMNS.iter().any(|(k, _)| k == s))
        .unwrap_or("start");
    let desc = q.get("desc").map(|d| d != "0").unwrap_or(true);
    let size = q.int("size").map_or(PAGE, |s| s.clamp(10, 1000) as usize);
    let pages = matched.div_ceil(size).max(1);
    let page = q
        .int("page")
        .map_or(1, |p| p.clamp(1, pages as i64) as usize);
    let cmp = |x: &&Arc<Entry>, y: &&Arc<Entry>| {
        let o = compare(sort, x, y);
        if desc {
            o.reverse()
        } else {
            o
        }
    };
    // only the first page * size need an order: select them, then sort just those
    let end = (page * size).min(rows.len());
    if end < rows.len() {
        rows.select_nth_unstable_by(end, cmp);
        rows.truncate(end);
    }
    rows.sort_unstable_by(cmp);
    let shown = &rows[((page - 1) * size).min(rows.len())..];
    // how the drivers of the incomplete ones on this page ended: one small read each
    let ends = k8s::driver_ends(catalog, shown).await;

    let mut b = String::with_capacity(64 * 1024);
    let sel = |v: &str| if show == v { " selected" } else { "" };
    let _ = write!(
        b,
        "<form class=\"search\" method=\"get\" action=\"/\">\
<input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"Search id, name, user, version\" aria-label=\"Search\">\
<select name=\"status\" aria-label=\"Status\"><option value=\"all\"{}>all</option><option value=\"completed\"{}>completed</option><option value=\"incomplete\"{}>incomplete</option></select>\
<input type=\"hidden\" name=\"sort\" value=\"{}\"><input type=\"hidden\" name=\"desc\" value=\"{}\">\
<button type=\"submit\">Search</button></form>",
        esc(&needle),
        sel("all"),
        sel("completed"),
        sel("incomplete"),
        esc(sort),
        if desc { "1" } else { "0" },
    );
    let first = if shown.is_empty() {
        0
    } else {
        (page - 1) * size + 1
    };
    let _ = write!(
        b,
        "<p class=\"summary\" id=\"apps-summary\">Showing {}–{} of {} matching application attempts ({} in all, {} incomplete).</p>",
        fmt::group(first as i64),
        fmt::group(((page - 1) * size + shown.len()) as i64),
        fmt::group(matched as i64),
        fmt::group(total as i64),
        fmt::group(incomplete_total as i64),
    );
    let pager = pager(q, page, pages);
    b.push_str(&pager);
    b.push_str("<table id=\"apps\" class=\"listing\"><thead><tr>");
    for (key, label) in COLUMNS {
        if key == "attempt" && !any_attempts {
            continue;
        }
        let (arrow, next_desc) = if key == sort {
            (if desc { " ▾" } else { " ▴" }, if desc { "0" } else { "1" })
        } else {
            ("", "1")
        };
        let href = q.with(&[
            ("sort", Some(key)),
            ("desc", Some(next_desc)),
            ("page", None),
        ]);
        let _ = write!(
            b,
            "<th{}><a href=\"/{}\">{}{arrow}</a></th>",
            if key == sort { " class=\"sorted\"" } else { "" },
            esc(&href),
            label
        );
    }
    b.push_str("<th>Status</th></tr></thead><tbody>\n");
    for e in shown {
        let a = &e.listing;
        let id = a.id.as_deref().unwrap_or("");
        let href = match &a.attempt_id {
            Some(att) => format!("/history/{}/{}/", seg(id), seg(att)),
            None => format!("/history/{}/", seg(id)),
        };
        let (st, why) = status(&ends, e);
        let _ = write!(
            b,
            "<tr><td><a href=\"{href}\">{}</a></td><td>{}</td>",
            esc(id),
            esc(&a.name)
        );
        if any_attempts {
            let n = attempts.get(id).copied().unwrap_or(1);
            let _ = write!(
                b,
                "<td>{}{}</td>",
                esc(a.attempt_id.as_deref().unwrap_or("")),
                if n > 1 {
                    format!(" <small>(of {n})</small>")
                } else {
                    String::new()
                }
            );
        }
        let _ = write!(
            b,
            "<td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}",
            fmt::date(a.start_time),
            if a.completed {
                fmt::date(a.end_time)
            } else {
                String::from("<span class=\"na\">–</span>")
            },
            if a.completed {
                fmt::ms(duration(e))
            } else {
                format!(
                    "<span class=\"muted\" title=\"from the start to the last update of the log\">{}+</span>",
                    fmt::duration_text(duration(e) as f64)
                )
            },
            esc(&a.spark_user),
            esc(&a.spark_version),
            fmt::date(e.last_updated()),
            badge(&st),
        );
        if let Some(w) = why {
            let _ = write!(b, " <small>{}</small>", esc(&w));
        }
        b.push_str("</td></tr>\n");
    }
    b.push_str("</tbody></table>");
    b.push_str(&pager);
    b
}

/// "« 1 2 … 7 8 9 … 40 »" links for the list.
fn pager(q: &Query, page: usize, pages: usize) -> String {
    if pages <= 1 {
        return String::new();
    }
    let mut s = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
    let link = |p: usize, label: &str| {
        format!(
            "<a href=\"/{}\">{label}</a>",
            esc(&q.with(&[("page", Some(&p.to_string()))]))
        )
    };
    if page > 1 {
        s.push_str(&link(page - 1, "« previous"));
    }
    let mut last = 0;
    for p in 1..=pages {
        let near = p == 1 || p == pages || p.abs_diff(page) <= 2;
        if !near {
            continue;
        }
        if last != 0 && p > last + 1 {
            s.push_str("<span>…</span>");
        }
        if p == page {
            let _ = write!(s, "<span class=\"current\">{p}</span>");
        } else {
            s.push_str(&link(p, &p.to_string()));
        }
        last = p;
    }
    if page < pages {
        s.push_str(&link(page + 1, "next »"));
    }
    s.push_str("</nav>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_search() {
        assert!(contains_ci("Spark Pi", "pi"));
        assert!(contains_ci("LOCAL-123", "local-1"));
        assert!(!contains_ci("abc", "abcd"));
        assert!(contains_ci("anything", ""));
        assert!(contains_ci("Größe", "größe"));
        assert!(!contains_ci("", "a"));
    }
}
