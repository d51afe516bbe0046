//! Spark's event-log file names: which application a file belongs to, its codec, and whether
//! it can still grow. Pure functions over names, so every layout rule is tested without I/O.
//! This is the one table of names and codecs: ingest (copying), serving (replaying, zipping)
//! and the agent all classify files through it, so whatever is served was ingested.

use std::collections::HashMap;

pub use super::codec::Codec;

/// The log name Spark gives an application attempt (`EventLogFileWriter.nameForAppAndAttempt`):
/// the ids with ` `, `:` and `/` made `-`, `.$`{}'"` made `_`, lower-cased, joined by `_`.
pub fn log_name_for(app_id: &str, attempt_id: Option<&str>) -> String {
    fn sanitize(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                ' ' | ':' | '/' => '-',
                '.' | '$' | '{' | '}' | '\'' | '"' => '_',
                c => c,
            })
            .flat_map(char::to_lowercase)
            .collect()
    }
    match attempt_id {
        Some(a) => format!("{}_{}", sanitize(app_id), sanitize(a)),
        None => sanitize(app_id),
    }
}

/// The application ids a log name can stand for: the name itself, or, with an attempt
/// suffix, the part before the last `_` (a name alone cannot tell `app_1` the application
/// from `app` attempt `1`).
pub fn app_ids_of(log: &str) -> Vec<&str> {
    let mut v = vec![log];
    if let Some((app, attempt)) = log.rsplit_once('_') {
        if !app.is_empty() && !attempt.is_empty() {
            v.push(app);
        }
    }
    v
}

pub const ROLLING_PREFIX: &str = "eventlog_v2_";
const INPROGRESS: &str = ".inprogress";

/// What kind of event-log file a path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `<log>[.codec][.inprogress]` at the top of the event-log dir.
    Single { in_progress: bool },
    /// `eventlog_v2_<log>/events_<index>_<log>[.codec][.compact]`.
    Events { index: u64 },
    /// `eventlog_v2_<log>/appstatus_<log>[.inprogress]`: a zero-byte marker.
    AppStatus { in_progress: bool },
}

/// A recognised event-log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLogName {
    /// `<appId>[_<attemptId>]`.
    pub log: String,
    /// Path relative to the event-log dir, `/`-separated.
    pub rel: String,
    pub kind: Kind,
    pub codec: Option<Codec>,
}

/// Strips `.compact`/`.inprogress` and takes the codec suffix, as Spark's `codecName` does.
fn split_codec(name: &str) -> (&str, Option<Codec>) {
    let base = name.strip_suffix(".compact").unwrap_or(name);
    match base.rsplit_once('.') {
        Some((stem, suffix)) => match Codec::from_suffix(suffix) {
            Some(c) => (stem, Some(c)),
            None => (base, None),
        },
        None => (base, None),
    }
}

fn plausible_log(log: &str) -> bool {
    !log.is_empty() && !log.starts_with('.') && !log.contains('/') && !log.contains('.')
}

/// Classifies a top-level file of the event-log dir.
pub fn single(name: &str) -> Option<EventLogName> {
    if name.starts_with('.') || name.ends_with(".crc") || name.ends_with(".tmp") {
        return None;
    }
    let (rest, in_progress) = match name.strip_suffix(INPROGRESS) {
        Some(r) => (r, true),
        None => (name, false),
    };
    let (log, codec) = split_codec(rest);
    if !plausible_log(log) || log.starts_with(ROLLING_PREFIX) {
        return None;
    }
    Some(EventLogName {
        log: log.to_string(),
        rel: name.to_string(),
        kind: Kind::Single { in_progress },
        codec,
    })
}

/// The log name of a rolling directory, `eventlog_v2_<log>`.
pub fn rolling_dir(dir: &str) -> Option<&str> {
    let log = dir.strip_prefix(ROLLING_PREFIX)?;
    plausible_log(log).then_some(log)
}

/// Classifies a file inside the rolling directory `dir`.
pub fn rolling_file(dir: &str, name: &str) -> Option<EventLogName> {
    let log = rolling_dir(dir)?;
    let rel = format!("{dir}/{name}");
    if let Some(rest) = name.strip_prefix("appstatus_") {
        let (rest, in_progress) = match rest.strip_suffix(INPROGRESS) {
            Some(r) => (r, true),
            None => (rest, false),
        };
        return (rest == log).then(|| EventLogName {
            log: log.to_string(),
            rel,
            kind: Kind::AppStatus { in_progress },
            codec: None,
        });
    }
    let rest = name.strip_prefix("events_")?;
    let (index, rest) = rest.split_once('_')?;
    let index: u64 = index.parse().ok()?;
    let (stem, codec) = split_codec(rest);
    (stem == log).then(|| EventLogName {
        log: log.to_string(),
        rel,
        kind: Kind::Events { index },
        codec,
    })
}

/// Whether each file of one rolling directory is complete (will not change any more): the
/// status marker always (it is empty), an events file once a later one exists or the app has
/// finished (the final `appstatus_` exists).
pub fn rolling_complete(files: &[EventLogName]) -> HashMap<String, bool> {
    let max_index = files
        .iter()
        .filter_map(|f| match f.kind {
            Kind::Events { index } => Some(index),
            _ => None,
        })
        .max();
    let finished = files
        .iter()
        .any(|f| f.kind == Kind::AppStatus { in_progress: false });
    files
        .iter()
        .map(|f| {
            let done = match f.kind {
                Kind::Events { index } => finished || Some(index) < max_index,
                _ => true,
            };
            (f.rel.clone(), done)
        })
        .collect()
}

/// The in-progress name a complete file replaces (`X` replaces `X.inprogress`), if any.
pub fn superseded(name: &EventLogName) -> Option<String> {
    match name.kind {
        Kind::Single { in_progress: false } | Kind::AppStatus { in_progress: false } => {
            Some(format!("{}{INPROGRESS}", name.rel))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_names() {
        let n = single("spark-a1b2.zstd.inprogress").unwrap();
        assert_eq!(n.log, "spark-a1b2");
        assert_eq!(n.codec, Some(Codec::Zstd));
        assert_eq!(n.kind, Kind::Single { in_progress: true });
        let n = single("local-17_1.lz4").unwrap();
        assert_eq!((n.log.as_str(), n.codec), ("local-17_1", Some(Codec::Lz4)));
        let n = single("app-2").unwrap();
        assert_eq!((n.log.as_str(), n.codec), ("app-2", None));
        assert_eq!(superseded(&n).as_deref(), Some("app-2.inprogress"));
        for bad in [
            ".app.crc",
            "app.tmp",
            "x.unknown",
            ".hidden",
            "eventlog_v2_x",
        ] {
            assert!(single(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dotted_names_are_not_logs() {
        // `.zst` is no codec of Spark's, and a dotted name is no application's log
        assert!(single("app-1.zst").is_none());
    }

    #[test]
    fn log_names_to_app_ids() {
        assert_eq!(app_ids_of("spark-1a2b"), ["spark-1a2b"]);
        assert_eq!(app_ids_of("spark-1a2b_1"), ["spark-1a2b_1", "spark-1a2b"]);
        assert_eq!(app_ids_of("_1"), ["_1"]);
    }

    #[test]
    fn log_names_as_spark_writes_them() {
        assert_eq!(log_name_for("local-1700", None), "local-1700");
        assert_eq!(log_name_for("spark-ABC", Some("1")), "spark-abc_1");
        assert_eq!(
            log_name_for("a b:c/d.e$f{g}h'i\"j", None),
            "a-b-c-d_e_f_g_h_i_j"
        );
    }

    #[test]
    fn rolling_names() {
        let d = "eventlog_v2_spark-1_2";
        let e1 = rolling_file(d, "events_1_spark-1_2.zstd").unwrap();
        assert_eq!(e1.kind, Kind::Events { index: 1 });
        assert_eq!(e1.codec, Some(Codec::Zstd));
        assert_eq!(e1.log, "spark-1_2");
        let e2 = rolling_file(d, "events_2_spark-1_2.zstd").unwrap();
        let st = rolling_file(d, "appstatus_spark-1_2.inprogress").unwrap();
        assert_eq!(st.kind, Kind::AppStatus { in_progress: true });
        assert!(rolling_file(d, "events_x_spark-1_2").is_none());
        assert!(rolling_file(d, "events_1_other").is_none());
        assert!(rolling_file(d, ".events_1_spark-1_2.crc").is_none());
        let c = rolling_complete(&[e1.clone(), e2.clone(), st]);
        assert!(c[&e1.rel]);
        assert!(!c[&e2.rel]);
        let fin = rolling_file(d, "appstatus_spark-1_2").unwrap();
        assert_eq!(
            superseded(&fin).unwrap(),
            format!("{d}/appstatus_spark-1_2.inprogress")
        );
        let c = rolling_complete(&[e1, e2.clone(), fin]);
        assert!(c[&e2.rel]);
    }
}
