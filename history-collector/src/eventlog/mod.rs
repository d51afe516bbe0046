//! Spark event logs on disk: finding them, decoding them, and splitting them into events.
//!
//! A log is either one file (`<appId>[_<attempt>][.<codec>][.inprogress]`) or a rolling
//! directory (`eventlog_v2_<appId>[_<attempt>]/` with `events_<n>_...` files and an
//! `appstatus_...[.inprogress]` marker). Every reader streams: a log is decoded block by
//! block and parsed line by line, and no raw text outlives its line. Lines that do not
//! parse (a truncated last line, corrupt bytes, an undecodable block) are skipped and
//! counted, never fatal.

pub mod codec;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use codec::Codec;

/// One application attempt's event log, as found in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    /// The directory entry (file or rolling directory) name, unique within the directory.
    pub name: String,
    /// The files to replay, in order.
    pub files: Vec<PathBuf>,
    /// Still being written (`.inprogress` file or marker).
    pub in_progress: bool,
    /// Total size of `files` in bytes.
    pub size: u64,
    /// Modification time of the newest file, in ms since the epoch: what Spark shows as
    /// "last updated".
    pub modified_ms: i64,
}

const ROLLING_PREFIX: &str = "eventlog_v2_";

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Every event log directly under `dir`, in name order. Entries that cannot be read are
/// left out (and logged), so one bad entry never hides the others.
pub fn scan_dir(dir: &Path) -> std::io::Result<Vec<LogSource>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".crc") {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if name.starts_with(ROLLING_PREFIX) {
                match rolling_source(&path, &name) {
                    Ok(Some(src)) => out.push(src),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read rolling event log")
                    }
                }
            }
        } else if meta.is_file() {
            out.push(LogSource {
                in_progress: name.ends_with(".inprogress"),
                files: vec![path],
                size: meta.len(),
                modified_ms: mtime_ms(&meta),
                name,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The index `n` of an `events_<n>_<appId>...` file name.
fn event_file_index(name: &str) -> Option<u64> {
    name.strip_prefix("events_")?
        .split('_')
        .next()?
        .parse()
        .ok()
}

fn rolling_source(dir: &Path, name: &str) -> std::io::Result<Option<LogSource>> {
    let mut events = Vec::new();
    let mut in_progress = None;
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let fname = entry.file_name().to_string_lossy().into_owned();
        if fname.starts_with("appstatus_") {
            in_progress = Some(fname.ends_with(".inprogress"));
        } else if let Some(idx) = event_file_index(&fname) {
            let Ok(meta) = entry.metadata() else { continue };
            events.push((idx, entry.path(), meta));
        }
    }
    // Spark skips a rolling directory without its status marker or event files
    let Some(in_progress) = in_progress else {
        return Ok(None);
    };
    if events.is_empty() {
        return Ok(None);
    }
    events.sort_by_key(|(idx, _, _)| *idx);
    // a compacted file replaces everything before it
    if let Some(last_compact) = events
        .iter()
        .rposition(|(_, p, _)| p.to_string_lossy().ends_with(".compact"))
    {
        events.drain(..last_compact);
    }
    let size = events.iter().map(|(_, _, m)| m.len()).sum();
    let modified_ms = events.last().map(|(_, _, m)| mtime_ms(m)).unwrap_or(0);
    Ok(Some(LogSource {
        name: name.to_string(),
        files: events.into_iter().map(|(_, p, _)| p).collect(),
        in_progress,
        size,
        modified_ms,
    }))
}

/// What a replay saw, beyond the events themselves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub lines: u64,
    /// Lines that were not valid JSON objects (truncated or corrupt) and were skipped.
    pub skipped: u64,
    /// Files that ended in an undecodable or truncated block.
    pub damaged_files: u64,
}

/// Decodes each file of `src` in turn and hands every JSON line to `f`.
pub fn replay(src: &LogSource, mut f: impl FnMut(serde_json::Value)) -> ReadStats {
    replay_raw(src, |line| {
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => {
                f(v);
                true
            }
            _ => false,
        }
    })
}

/// Decodes each file of `src` in turn and hands every non-empty line's bytes to `f`, which
/// says whether it was a valid event (lines it refuses are counted as skipped). This lets a
/// caller parse the frequent events straight into typed, borrowing structures.
pub fn replay_raw(src: &LogSource, mut f: impl FnMut(&[u8]) -> bool) -> ReadStats {
    let mut stats = ReadStats::default();
    for path in &src.files {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open event log file");
                stats.damaged_files += 1;
                continue;
            }
        };
        let codec = Codec::from_file_name(&path.to_string_lossy());
        replay_reader(
            codec,
            BufReader::with_capacity(256 << 10, file),
            path,
            &mut stats,
            &mut f,
        );
    }
    stats
}

/// Decodes one stream and hands every line to `f` (see [`replay_raw`]).
pub fn replay_reader(
    codec: Codec,
    input: impl Read,
    what: &Path,
    stats: &mut ReadStats,
    f: &mut impl FnMut(&[u8]) -> bool,
) {
    let decoded = match codec.reader(input) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %what.display(), error = %e, "cannot decode event log");
            stats.damaged_files += 1;
            return;
        }
    };
    let mut lines = BufReader::with_capacity(256 << 10, decoded);
    let mut line = Vec::with_capacity(64 << 10);
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %what.display(), error = %e, "event log ends in a damaged block");
                stats.damaged_files += 1;
                // whatever was decoded before the damage is still a (possibly partial) line
                if !line.is_empty() {
                    stats.skipped += 1;
                }
                break;
            }
        }
        let text = trim_line(&line);
        if text.is_empty() {
            continue;
        }
        stats.lines += 1;
        if !f(text) {
            stats.skipped += 1;
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_corrupt_lines_are_skipped() {
        let data = b"{\"Event\":\"A\"}\nnot json\n\n{\"Event\":\"B\"}\n{\"Event\":\"C\",\"x\":";
        let mut got = Vec::new();
        let mut stats = ReadStats::default();
        replay_reader(
            Codec::None,
            &data[..],
            Path::new("t"),
            &mut stats,
            &mut |line| match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(v) if v.is_object() => {
                    got.push(v["Event"].as_str().unwrap_or_default().to_string());
                    true
                }
                _ => false,
            },
        );
        assert_eq!(got, ["A", "B"]);
        assert_eq!(stats.skipped, 2);
        assert_eq!(stats.lines, 4);
    }

    #[test]
    fn scan_finds_single_files_and_rolling_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("local-1"), b"{}\n").unwrap();
        std::fs::write(d.join("local-2.lz4.inprogress"), b"").unwrap();
        std::fs::write(d.join(".hidden"), b"").unwrap();
        let r = d.join("eventlog_v2_spark-3");
        std::fs::create_dir(&r).unwrap();
        std::fs::write(r.join("appstatus_spark-3.inprogress"), b"").unwrap();
        std::fs::write(r.join("events_10_spark-3.zstd"), b"").unwrap();
        std::fs::write(r.join("events_2_spark-3.zstd"), b"").unwrap();
        std::fs::create_dir(d.join("eventlog_v2_empty")).unwrap();
        let found = scan_dir(d).unwrap();
        let names: Vec<_> = found.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["eventlog_v2_spark-3", "local-1", "local-2.lz4.inprogress"]
        );
        assert!(found[0].in_progress && !found[1].in_progress && found[2].in_progress);
        let files: Vec<_> = found[0]
            .files
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(files, ["events_2_spark-3.zstd", "events_10_spark-3.zstd"]);
    }
}
