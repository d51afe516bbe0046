//! Which found files are worth reading at all. A file named like a log may be huge, sparse (a
//! 2 GB hole reads as 2 GB of zeros, which a copy would store dense), or not Spark's at all;
//! such a file is refused before it costs a replay or a copy, logged once, counted, and not
//! looked at again until it changes (and then no sooner than a back-off that doubles up to
//! [`MAX_BACKOFF`]). Ingest and serving each keep an [`Admission`] over the same checks.
//!
//! The checks, cheapest first:
//! - size: more than [`Limits::max_file_bytes`];
//! - holes: `lseek(SEEK_HOLE)` finds one before the end. Spark only ever appends JSON text or
//!   compressed blocks, which never leave a hole;
//! - head: the first bytes, decoded by the file's codec, must be `{"Event":` (Spark writes
//!   every event as a JSON object whose first field is `Event`), and a status marker
//!   (`appstatus_…`) must be empty. A growing file too short to tell is asked again later.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::codec::{decoder, Codec};
use super::names::{EventLogName, Kind};

/// What every event line Spark writes starts with.
pub const EVENT_PREFIX: &[u8] = b"{\"Event\":";

/// The longest a refused file is left alone while it keeps changing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
const FIRST_BACKOFF: Duration = Duration::from_secs(2);

/// Bounds on what one event log may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest event-log file read, copied or accepted from an agent.
    pub max_file_bytes: u64,
    /// Longest event line kept when a log is replayed; a longer one is skipped (counted),
    /// so a replay's memory stays bounded whatever the log holds.
    pub max_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 16 << 30,
            max_line_bytes: 64 << 20,
        }
    }
}

/// Why a file is not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    TooLarge { size: u64, max: u64 },
    Sparse { hole_at: u64 },
    NotSpark(String),
}

impl Refusal {
    /// The `reason` label of the metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Sparse { .. } => "sparse",
            Refusal::NotSpark(_) => "not_spark",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooLarge { size, max } => write!(
                f,
                "{size} bytes, more than the largest event-log file accepted ({max} bytes, --max-event-log-file-size)"
            ),
            Refusal::Sparse { hole_at } => write!(
                f,
                "sparse: a hole at byte {hole_at} (Spark never writes one; it would be read and stored as zeros)"
            ),
            Refusal::NotSpark(why) => write!(f, "not a Spark event log: {why}"),
        }
    }
}

/// The outcome of looking at a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Too little of a growing file to tell yet.
    Undecided,
    Refuse(Refusal),
}

/// What the head of a file says, given its first decoded bytes (at most
/// [`EVENT_PREFIX`]`.len()` are looked at) and whether the stream ended there. `err`: the
/// decoder failed after giving `decoded`.
pub fn judge_head(decoded: &[u8], ended: bool, err: Option<&io::Error>, growing: bool) -> Verdict {
    let n = decoded.len().min(EVENT_PREFIX.len());
    if decoded[..n] != EVENT_PREFIX[..n] {
        return Verdict::Refuse(Refusal::NotSpark(format!(
            "starts with {:?}, not {:?}",
            String::from_utf8_lossy(&decoded[..n]),
            String::from_utf8_lossy(EVENT_PREFIX)
        )));
    }
    if n == EVENT_PREFIX.len() {
        return Verdict::Accept;
    }
    match err {
        // a unit cut short is what a growing compressed file looks like mid-write
        Some(e) if e.kind() == io::ErrorKind::UnexpectedEof && growing => Verdict::Undecided,
        Some(e) => Verdict::Refuse(Refusal::NotSpark(format!("cannot be decoded: {e}"))),
        None if growing || !ended => Verdict::Undecided,
        None => Verdict::Refuse(Refusal::NotSpark(format!(
            "ends after {n} bytes without an event"
        ))),
    }
}

/// Decodes the head of `input` (a whole stored file or its first bytes) and judges it.
pub fn check_head(codec: Option<Codec>, input: impl Read, growing: bool) -> Verdict {
    let mut r = match decoder(codec, input) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && growing => return Verdict::Undecided,
        Err(e) => return judge_head(&[], false, Some(&e), growing),
    };
    let mut buf = [0u8; EVENT_PREFIX.len()];
    let mut got = 0;
    loop {
        match r.read(&mut buf[got..]) {
            Ok(0) => return judge_head(&buf[..got], true, None, growing),
            Ok(n) => {
                got += n;
                if got == buf.len() {
                    return judge_head(&buf, false, None, growing);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return judge_head(&buf[..got], false, Some(&e), growing),
        }
    }
}

/// A `Read` over `file` from offset 0 up to `len`, by positioned reads (the file's own
/// position is left alone).
struct Prefix<'a> {
    file: &'a File,
    pos: u64,
    len: u64,
}

impl Read for Prefix<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// The first hole of `file` before `size`, if any.
fn first_hole(file: &File, size: u64) -> io::Result<Option<u64>> {
    if size == 0 {
        return Ok(None);
    }
    match lseek(file, 0, Whence::SeekHole) {
        Ok(at) if (at as u64) < size => Ok(Some(at as u64)),
        Ok(_) => Ok(None),
        // no hole support (or a file shorter than we thought): nothing to find
        Err(Errno::EINVAL) | Err(Errno::ENXIO) | Err(Errno::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Judges a local file, open, of `size` bytes. `head_known`: its head was accepted before
/// (same inode, not shorter), so only the size and holes are looked at again.
pub fn check_file(
    file: &File,
    name: &EventLogName,
    size: u64,
    growing: bool,
    head_known: bool,
    limits: &Limits,
) -> io::Result<Verdict> {
    if size > limits.max_file_bytes {
        return Ok(Verdict::Refuse(Refusal::TooLarge {
            size,
            max: limits.max_file_bytes,
        }));
    }
    if let Some(hole_at) = first_hole(file, size)? {
        return Ok(Verdict::Refuse(Refusal::Sparse { hole_at }));
    }
    if matches!(name.kind, Kind::AppStatus { .. }) {
        return Ok(if size == 0 {
            Verdict::Accept
        } else {
            Verdict::Refuse(Refusal::NotSpark(format!(
                "a status marker holding {size} bytes (Spark's are empty)"
            )))
        });
    }
    if head_known {
        return Ok(Verdict::Accept);
    }
    if size == 0 {
        return Ok(if growing {
            Verdict::Undecided
        } else {
            Verdict::Refuse(Refusal::NotSpark("empty".into()))
        });
    }
    // a compressed unit's header can claim up to 64 MiB; the read stops at the size anyway
    let prefix = Prefix {
        file,
        pos: 0,
        len: size,
    };
    Ok(check_head(name.codec, prefix, growing))
}

/// Admission counters, exported on `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct AdmitMetrics {
    /// Files refused, by reason (each examination that refused; a file is examined again
    /// only after it changed and its back-off passed).
    pub refused: Family<ReasonLabel, Counter>,
    /// Files currently refused.
    pub refused_now: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

impl AdmitMetrics {
    pub fn register(&self, registry: &mut Registry, prefix: &str) {
        registry.register(
            format!("{prefix}_refused_files"),
            "Event-log files refused (too large, sparse, not Spark's), by reason",
            self.refused.clone(),
        );
        registry.register(
            format!("{prefix}_refused_files_now"),
            "Event-log files currently refused and left alone until they change",
            self.refused_now.clone(),
        );
    }
}

/// How a file looked the last time it was examined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ident {
    pub ino: (u64, u64),
    pub size: u64,
    pub modified_ms: i64,
}

#[derive(Debug)]
enum Memo {
    /// Accepted as it looked then; its head is known good for this inode.
    Accepted(Ident),
    Refused {
        ident: Ident,
        reason: Refusal,
        retry_at: Instant,
        backoff: Duration,
    },
}

/// Remembers verdicts per file (keyed by a path or store key), so a refused file is read
/// once per change at most, with a growing back-off, and logged once.
#[derive(Debug)]
pub struct Admission {
    what: &'static str,
    memo: HashMap<String, Memo>,
    metrics: AdmitMetrics,
}

impl Admission {
    /// `what` names the user in logs ("ingest", "serving").
    pub fn new(what: &'static str, metrics: AdmitMetrics) -> Self {
        Admission {
            what,
            memo: HashMap::new(),
            metrics,
        }
    }

    /// Whether the file `key`, now looking like `ident`, may be read. `check` examines it
    /// (told whether its head is already known good) and runs only when the file is new or
    /// changed since it was last examined (if it was refused, no sooner than its back-off).
    pub fn admit(
        &mut self,
        key: &str,
        ident: Ident,
        check: impl FnOnce(bool) -> io::Result<Verdict>,
    ) -> bool {
        let now = Instant::now();
        let head_known = match self.memo.get(key) {
            Some(Memo::Refused {
                ident: old,
                retry_at,
                ..
            }) => {
                if *old == ident || now < *retry_at {
                    return false;
                }
                false
            }
            Some(Memo::Accepted(old)) if *old == ident => return true,
            Some(Memo::Accepted(old)) => old.ino == ident.ino && ident.size >= old.size,
            None => false,
        };
        let verdict = match check(head_known) {
            Ok(v) => v,
            Err(e) => {
                // unreadable now (vanished, permissions): not a verdict on the file
                tracing::debug!(file = %key, error = %e, "cannot examine event-log file");
                return false;
            }
        };
        match verdict {
            Verdict::Accept => {
                if let Some(Memo::Refused { .. }) = self.memo.get(key) {
                    self.metrics.refused_now.dec();
                    tracing::info!(file = %key, user = self.what, "event-log file accepted after a change");
                }
                self.memo.insert(key.to_string(), Memo::Accepted(ident));
                true
            }
            Verdict::Undecided => false,
            Verdict::Refuse(reason) => {
                self.metrics
                    .refused
                    .get_or_create(&ReasonLabel {
                        reason: reason.label(),
                    })
                    .inc();
                let (backoff, logged_same) = match self.memo.get(key) {
                    Some(Memo::Refused {
                        backoff,
                        reason: old,
                        ..
                    }) => ((*backoff * 2).min(MAX_BACKOFF), *old == reason),
                    _ => {
                        self.metrics.refused_now.inc();
                        (FIRST_BACKOFF, false)
                    }
                };
                if logged_same {
                    tracing::debug!(file = %key, reason = %reason, "event-log file still refused");
                } else {
                    tracing::warn!(file = %key, user = self.what, reason = %reason, "event-log file refused; left alone until it changes");
                }
                self.memo.insert(
                    key.to_string(),
                    Memo::Refused {
                        ident,
                        reason,
                        retry_at: now + backoff,
                        backoff,
                    },
                );
                false
            }
        }
    }

    /// Whether any file is currently refused.
    pub fn any_refused(&self) -> bool {
        self.memo
            .values()
            .any(|m| matches!(m, Memo::Refused { .. }))
    }

    /// Whether `key` is currently refused.
    pub fn is_refused(&self, key: &str) -> bool {
        matches!(self.memo.get(key), Some(Memo::Refused { .. }))
    }

    /// Forgets files no longer found (`keep` says which are).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let metrics = &self.metrics;
        self.memo.retain(|k, m| {
            let stays = keep(k);
            if !stays && matches!(m, Memo::Refused { .. }) {
                metrics.refused_now.dec();
            }
            stays
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logdir::names;
    use std::io::Write;

    fn ident(size: u64, t: i64) -> Ident {
        Ident {
            ino: (1, 2),
            size,
            modified_ms: t,
        }
    }

    #[test]
    fn heads() {
        let lz4 = |payload: &[u8]| {
            let mut v = b"LZ4Block".to_vec();
            v.push(0x10);
            v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            v.extend_from_slice(&[0; 4]);
            v.extend_from_slice(payload);
            v
        };
        let good = b"{\"Event\":\"SparkListenerLogStart\"}\n";
        let z = zstd::encode_all(&good[..], 3).unwrap();
        for (codec, data, growing, want) in [
            (None, &good[..], false, Verdict::Accept),
            (None, &b"{\"Eve"[..], true, Verdict::Undecided),
            (
                None,
                &b"{\"Eve"[..],
                false,
                Verdict::Refuse(Refusal::NotSpark(String::new())),
            ),
            (
                None,
                &b"garbage"[..],
                true,
                Verdict::Refuse(Refusal::NotSpark(String::new())),
            ),
            (Some(Codec::Zstd), &z[..], false, Verdict::Accept),
            (Some(Codec::Zstd), &z[..6], true, Verdict::Undecided),
            (
                Some(Codec::Zstd),
                &b"not zstd at all"[..],
                true,
                Verdict::Refuse(Refusal::NotSpark(String::new())),
            ),
            (Some(Codec::Lz4), &lz4(good)[..], false, Verdict::Accept),
            (
                Some(Codec::Lz4),
                &lz4(b"PK\x03\x04 a zip")[..],
                false,
                Verdict::Refuse(Refusal::NotSpark(String::new())),
            ),
            (
                Some(Codec::Snappy),
                &b"{\"Event\":"[..],
                false,
                Verdict::Refuse(Refusal::NotSpark(String::new())),
            ),
        ] {
            let got = check_head(codec, data, growing);
            let same = match (&got, &want) {
                (Verdict::Refuse(Refusal::NotSpark(_)), Verdict::Refuse(Refusal::NotSpark(_))) => {
                    true
                }
                (a, b) => a == b,
            };
            assert!(
                same,
                "{codec:?} {:?}: {got:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn sparse_and_large_files_are_refused() {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(b"{\"Event\":\"x\"}\n").unwrap();
        let f = t.as_file();
        let name = names::single("app-1").unwrap();
        let limits = Limits {
            max_file_bytes: 1 << 30,
            max_line_bytes: 1 << 20,
        };
        assert_eq!(
            check_file(f, &name, 14, false, false, &limits).unwrap(),
            Verdict::Accept
        );
        // a hole: the file grows by 8 MiB without a byte written
        f.set_len(8 << 20).unwrap();
        t.as_file_mut().write_all_at(b"{}\n", 8 << 20).unwrap();
        let size = t.as_file().metadata().unwrap().len();
        match check_file(t.as_file(), &name, size, false, true, &limits).unwrap() {
            Verdict::Refuse(Refusal::Sparse { hole_at }) => assert!(hole_at < size),
            v => panic!("a sparse file got {v:?}"),
        }
        let small = Limits {
            max_file_bytes: 10,
            ..limits
        };
        assert!(matches!(
            check_file(t.as_file(), &name, size, false, true, &small).unwrap(),
            Verdict::Refuse(Refusal::TooLarge { .. })
        ));
    }

    #[test]
    fn refused_files_are_examined_once_per_change_with_backoff() {
        let mut a = Admission::new("test", AdmitMetrics::default());
        let mut calls = 0;
        let mut refuse = |_: bool| {
            calls += 1;
            Ok(Verdict::Refuse(Refusal::NotSpark("x".into())))
        };
        assert!(!a.admit("f", ident(10, 1), &mut refuse));
        assert!(!a.admit("f", ident(10, 1), &mut refuse));
        // changed, but within the back-off
        assert!(!a.admit("f", ident(20, 2), &mut refuse));
        assert_eq!(calls, 1);
        assert!(a.is_refused("f"));
        assert_eq!(a.metrics.refused_now.get(), 1);
        a.retain(|_| false);
        assert_eq!(a.metrics.refused_now.get(), 0);
        // an accepted file keeps its head: only size and holes are looked at again
        let mut heads = Vec::new();
        let mut accept = |known: bool| {
            heads.push(known);
            Ok(Verdict::Accept)
        };
        assert!(a.admit("g", ident(10, 1), &mut accept));
        // unchanged: not looked at
        assert!(a.admit("g", ident(10, 1), &mut accept));
        assert!(a.admit("g", ident(30, 2), &mut accept));
        // shorter: rewritten, the head is looked at again
        assert!(a.admit("g", ident(5, 3), &mut accept));
        assert_eq!(heads, [false, true, false]);
    }
}
