//! Building blocks for the HTML the pages write: escaping (every string that came from an
//! event log, a query or a log file goes through [`esc`]), URL pieces, query parameters,
//! progress bars and sortable table headers.

use std::fmt::Write;

/// HTML-escapes text, for element content and quoted attribute values alike.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    esc_into(&mut out, s);
    out
}

/// [`esc`], appending to `out`.
pub fn esc_into(out: &mut String, s: &str) {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&s[last..]);
}

const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// A path segment or query value for a link: application ids like `local-1` stay readable;
/// everything outside the unreserved characters is escaped (`.` and `/` too, so no value can
/// form a `..` segment or a new path).
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

const QUERY_VALUE: &percent_encoding::AsciiSet = &UNRESERVED.remove(b'.');

/// A query value for a link: as [`seg`], except that `.` stays (a query value cannot form a
/// path segment), so file names read as themselves (`file=stdout.log`).
pub fn qv(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Query parameters, in order, decoded (`+` is a space).
#[derive(Clone, Debug, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let Some(raw) = raw else {
            return Query::default();
        };
        let dec = |x: &str| {
            percent_encoding::percent_decode_str(&x.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        Query(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (dec(k), dec(v))
                })
                .collect(),
        )
    }

    /// The first value of `name`, if not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(|v| v.trim().parse().ok())
    }

    /// This query with `name` set to `value` (or removed when `None`), as `?a=1&b=2` (or a
    /// bare `?`), for a link relative to the current page (escape it with [`esc`] when
    /// writing it into an attribute).
    pub fn with(&self, changes: &[(&str, Option<&str>)]) -> String {
        let mut out: Vec<(String, String)> = self
            .0
            .iter()
            .filter(|(k, v)| !v.is_empty() && !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .collect();
        for (k, v) in changes {
            if let Some(v) = v {
                out.push((k.to_string(), v.to_string()));
            }
        }
        // a bare "?" still replaces the current query when used as a relative link
        let mut s = String::from("?");
        for (i, (k, v)) in out.iter().enumerate() {
            if i > 0 {
                s.push('&');
            }
            let _ = write!(s, "{}={}", seg(k), seg(v));
        }
        s
    }
}

/// A progress bar of task (or stage) counts of `total`: the succeeded part and the running
/// part drawn, failed and killed attempts (which retries may have made up for) written in
/// the label, as Spark draws its bars; readable without the picture.
pub fn progress(done: i64, failed: i64, killed: i64, running: i64, total: i64) -> String {
    progress_note(done, failed, killed, running, total, "")
}

/// [`progress`] with `note` (text) added to the label, e.g. "(2 skipped)".
pub fn progress_note(
    done: i64,
    failed: i64,
    killed: i64,
    running: i64,
    total: i64,
    note: &str,
) -> String {
    let total_f = total.max(1) as f64;
    let w = |n: i64| (n.max(0) as f64 * 100.0 / total_f).min(100.0);
    let wd = w(done);
    let wr = w(running).min(100.0 - wd);
    let mut label = format!("{}/{}", super::fmt::group(done), super::fmt::group(total));
    if running > 0 {
        let _ = write!(label, " ({} running)", super::fmt::group(running));
    }
    if failed > 0 {
        let _ = write!(label, " ({} failed)", super::fmt::group(failed));
    }
    if killed > 0 {
        let _ = write!(label, " ({} killed)", super::fmt::group(killed));
    }
    if !note.is_empty() {
        label.push(' ');
        label.push_str(&esc(note));
    }
    format!(
        "<span class=\"pb\" title=\"{label}\"><svg viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\" aria-hidden=\"true\">\
<rect class=\"pb-done\" x=\"0\" y=\"0\" width=\"{wd:.2}\" height=\"10\"/>\
<rect class=\"pb-running\" x=\"{wd:.2}\" y=\"0\" width=\"{wr:.2}\" height=\"10\"/></svg>\
<span class=\"pb-label{}\">{label}</span></span>",
        if failed > 0 { " failed" } else { "" },
    )
}

/// A status word as a coloured badge (`SUCCEEDED`, `FAILED`, ...).
pub fn badge(status: &str) -> String {
    let class = match status {
        "SUCCEEDED" | "COMPLETE" | "COMPLETED" | "SUCCESS" | "completed" => "ok",
        "FAILED" | "failed" | "KILLED" | "killed" => "bad",
        "RUNNING" | "ACTIVE" | "GET RESULT" | "running" => "run",
        "SKIPPED" | "PENDING" | "UNKNOWN" => "skip",
        _ => "skip",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(status))
}

/// A `<th>` of a table sorted on the client (ui.js); `num` sorts by `data-v` numbers.
pub fn th(label: &str, num: bool) -> String {
    if num {
        format!("<th class=\"num\" data-sort=\"num\">{}</th>", esc(label))
    } else {
        format!("<th data-sort=\"text\">{}</th>", esc(label))
    }
}

/// A `<th>` with a tooltip explaining the column.
pub fn th_tip(label: &str, tip: &str, num: bool) -> String {
    format!(
        "<th{} data-sort=\"{}\" title=\"{}\">{}</th>",
        if num { " class=\"num\"" } else { "" },
        if num { "num" } else { "text" },
        esc(tip),
        esc(label)
    )
}

/// Shortens `s` to at most `max` characters (on a character boundary), adding "…".
pub fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Previous / next links for a table paged by query parameter `param`, relative to the
/// current page (the other parameters kept), jumping back to the table `anchor`.
pub fn pager(query: &Query, param: &str, page: usize, pages: usize, anchor: &str) -> String {
    if pages <= 1 {
        return String::new();
    }
    let mut s = format!("<nav class=\"pager\">Page {page} of {pages}");
    let link = |p: usize, label: &str| {
        format!(
            " <a href=\"{}#{}-h\">{label}</a>",
            esc(&query.with(&[(param, Some(&p.to_string()))])),
            esc(anchor)
        )
    };
    if page > 1 {
        s.push_str(&link(1, "« first"));
        s.push_str(&link(page - 1, "‹ previous"));
    }
    if page < pages {
        s.push_str(&link(page + 1, "next ›"));
        s.push_str(&link(pages, "last »"));
    }
    s.push_str("</nav>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<b>x</b> & \"y\" 'z' ü"),
            "&lt;b&gt;x&lt;/b&gt; &amp; &quot;y&quot; &#39;z&#39; ü"
        );
        assert_eq!(esc(""), "");
        assert_eq!(esc("plain"), "plain");
    }

    #[test]
    fn segments_cannot_leave_their_place() {
        assert_eq!(seg("local-1700_a~"), "local-1700_a~");
        assert_eq!(seg("../x"), "%2E%2E%2Fx");
        assert_eq!(qv("../x.log&y=1"), "..%2Fx.log%26y%3D1");
        assert_eq!(seg("a b&c=d\"<"), "a%20b%26c%3Dd%22%3C");
    }

    #[test]
    fn queries_round_trip() {
        let q = Query::parse(Some("q=a+b%26c&page=2&empty=&sort=name"));
        assert_eq!(q.get("q"), Some("a b&c"));
        assert_eq!(q.int("page"), Some(2));
        assert_eq!(q.get("empty"), None);
        assert_eq!(
            q.with(&[("page", Some("3")), ("sort", None)]),
            "?q=a%20b%26c&page=3"
        );
        assert_eq!(Query::default().with(&[]), "?");
    }

    #[test]
    fn progress_bars_are_proportional_and_labelled() {
        let p = progress(3, 1, 0, 2, 8);
        assert!(p.contains("width=\"37.50\""), "{p}");
        assert!(p.contains("x=\"37.50\" y=\"0\" width=\"25.00\""), "{p}");
        assert!(p.contains("3/8 (2 running) (1 failed)"), "{p}");
        // more finished than the total (retries): capped, not overflowing
        let p = progress(12, 0, 0, 0, 10);
        assert!(p.contains("width=\"100.00\""), "{p}");
        let p = progress(0, 0, 0, 0, 0);
        assert!(p.contains("0/0"), "{p}");
    }

    #[test]
    fn shortening_respects_characters() {
        assert_eq!(shorten("äöü", 2), "äö…");
        assert_eq!(shorten("abc", 3), "abc");
    }
}
