//! What the application list shows of one attempt, read without replaying the whole log.
//!
//! The listing fields (id, name, attempt, times, user, Spark version, whether it completed
//! and how it exited, its view ACLs) come from four events only: the log start, the
//! application start and end and the first environment update. [`Listing::scan`] reads the
//! log as a replay does (same reader, same codecs, same line limit) but parses only the
//! lines of those events, and applies them through [`App::apply_line`], so every field is
//! computed by the same code a full replay runs: [`Listing::of`] a replayed [`App`] equals
//! the scan of its log (a test checks it over real Spark logs).
//!
//! Spark writes every event as one line starting `{"Event":"SparkListener<Name>"`; a line
//! laid out otherwise (a hand-written or re-serialised log) is parsed to learn its name.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::App;
use crate::access::AppAcls;
use crate::eventlog::{self, LogSource, ReadStats};

/// The listing fields of one application attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub id: Option<CompactString>,
    pub name: CompactString,
    pub attempt_id: Option<CompactString>,
    pub start_time: i64,
    pub end_time: i64,
    pub spark_user: CompactString,
    pub spark_version: CompactString,
    pub completed: bool,
    /// As Spark reads it: an `Int` (a wider number is cut to its low 32 bits, as Jackson's
    /// `intValue` cuts it).
    pub exit_code: Option<i32>,
    /// The view and admin ACLs of the first environment update (see [`App::acls`]), `None`
    /// when it set none (which grants the same as an empty set: the compact form of a list of
    /// many applications, nearly all of which set none).
    pub acls: Option<Box<AppAcls>>,
}

/// The events the listing is made of, as Spark names them after `SparkListener`.
const LISTED: [&[u8]; 4] = [
    b"LogStart\"",
    b"ApplicationStart\"",
    b"ApplicationEnd\"",
    b"EnvironmentUpdate\"",
];

/// Whether `line` is one of the [`LISTED`] events.
fn listed(line: &[u8]) -> bool {
    const PREFIX: &[u8] = b"{\"Event\":\"SparkListener";
    match line.strip_prefix(PREFIX) {
        Some(rest) => LISTED.iter().any(|name| rest.starts_with(name)),
        // Spark's layout always starts with the name; anything else is looked at whole
        None if line.starts_with(b"{\"Event\":\"") => false,
        None => serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                v.get("Event")?
                    .as_str()?
                    .strip_prefix("SparkListener")
                    .map(|n| {
                        LISTED
                            .iter()
                            .any(|l| l.strip_suffix(b"\"") == Some(n.as_bytes()))
                    })
            })
            .unwrap_or(false),
    }
}

fn is_environment(line: &[u8]) -> bool {
    line.starts_with(b"{\"Event\":\"SparkListenerEnvironmentUpdate\"")
}

/// The ACLs of an environment update, as a replay takes them (see [`App::apply_line`]),
/// with only its Spark properties built; `None` if the line does not parse.
fn environment_acls(line: &[u8]) -> Option<AppAcls> {
    #[derive(Deserialize)]
    struct Environment {
        #[serde(rename = "Spark Properties")]
        spark: Option<serde_json::Value>,
    }
    // held to what a replay parses: valid UTF-8, then JSON
    let env: Environment = serde_json::from_str(std::str::from_utf8(line).ok()?).ok()?;
    Some(AppAcls::from_properties(&super::pairs(env.spark.as_ref())))
}

impl Listing {
    /// The listing fields of a replayed application.
    pub fn of(app: &App) -> Listing {
        Listing {
            id: app.id.as_deref().map(CompactString::from),
            name: app.name.as_str().into(),
            attempt_id: app.attempt_id.as_deref().map(CompactString::from),
            start_time: app.start_time,
            end_time: app.end_time,
            spark_user: app.spark_user.as_str().into(),
            spark_version: app.spark_version.as_str().into(),
            completed: app.completed,
            exit_code: app.exit_code.map(|c| c as i32),
            acls: app
                .acls
                .as_ref()
                .filter(|a| **a != AppAcls::default())
                .map(|a| Box::new(a.clone())),
        }
    }

    /// Reads `src` for its listing fields only (see the module's text).
    pub fn scan(src: &LogSource) -> (Listing, ReadStats) {
        thread_local! {
            // one read buffer per scanning thread, reused from log to log
            static SPARE: std::cell::Cell<eventlog::Block> = std::cell::Cell::default();
        }
        let mut app = App::empty();
        let spare = SPARE.take();
        let (mut stats, spare) = eventlog::replay_blocks_reusing(src, spare, &mut |block| {
            for line in block.lines() {
                if !listed(line) {
                    continue;
                }
                if is_environment(line) {
                    // only the first one's ACLs are listed; the rest of it (the classpath,
                    // the system properties: nearly all of a small log) is skipped unparsed
                    if app.acls.is_some() {
                        continue;
                    }
                    if let Some(acls) = environment_acls(line) {
                        app.acls = Some(acls);
                        continue;
                    }
                }
                app.apply_line(line);
            }
            block
        });
        SPARE.set(spare);
        stats.lines = 0;
        (Listing::of(&app), stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_events_are_picked() {
        for (line, want) in [
            (
                &br#"{"Event":"SparkListenerLogStart","Spark Version":"4.3.0"}"#[..],
                true,
            ),
            (
                br#"{"Event":"SparkListenerApplicationStart","App Name":"x"}"#,
                true,
            ),
            (
                br#"{"Event":"SparkListenerApplicationEnd","Timestamp":1}"#,
                true,
            ),
            (br#"{"Event":"SparkListenerEnvironmentUpdate"}"#, true),
            (br#"{"Event":"SparkListenerTaskEnd","Stage ID":1}"#, false),
            (br#"{"Event":"SparkListenerApplicationStartX"}"#, false),
            (
                br#"{"Event":"org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart"}"#,
                false,
            ),
            (
                br#"{ "Timestamp":1, "Event":"SparkListenerApplicationEnd"}"#,
                true,
            ),
            (br#"{ "Timestamp":1, "Event":"SparkListenerJobEnd"}"#, false),
            (b"garbage", false),
        ] {
            assert_eq!(listed(line), want, "{}", String::from_utf8_lossy(line));
        }
    }
}
