//! Spark event logs: finding them, in a local directory or in the object store's ingest
//! layout, decoding them, and splitting them into events.
//!
//! A log is either one file (`<appId>[_<attempt>][.<codec>][.inprogress]`) or a rolling
//! directory (`eventlog_v2_<appId>[_<attempt>]/` with `events_<n>_...` files and an
//! `appstatus_...[.inprogress]` marker). The same rules ([`crate::logdir::names`]) find logs
//! in a local event-log directory ([`scan_dir`], through the one scanner ingest uses too:
//! regular files only, no symbolic link followed) and in the copies ingest keeps in the
//! object store ([`sources_from`] over [`LogStore::list_all_eventlogs`], where a file still
//! growing is a run of parts that [`LogStore::open_eventlog`] reads as one stream). A local
//! file is opened relative to its directory without following links
//! ([`crate::logdir::open`]), so nothing outside a watched directory is read.
//!
//! Every reader streams: a log is decoded block by block and parsed line by line, and no raw
//! text outlives its line; a stored file is read through the store's async reader, waited
//! on from the blocking replay thread. Lines that do not parse (a truncated last line,
//! corrupt bytes, an undecodable block) are skipped and counted, never fatal; so are lines
//! longer than the log's `max_line_bytes`, which are never held whole in memory.

use compact_str::CompactString;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use crate::logdir::codec::Codec;

use crate::ingest::layout::{LogFile, LogStore, EVENTLOGS};
use crate::logdir::codec::decoder;
use crate::logdir::names::{self, Kind};
use crate::logdir::open::Root;
use crate::logdir::scan::{self, Found};
use sidecars_common::objstore::BlockingReader;

/// The ingest store and the runtime its reads are waited on from blocking code: one, shared
/// by every log read from it.
#[derive(Clone, Debug)]
pub struct StoreAt {
    pub store: LogStore,
    pub rt: tokio::runtime::Handle,
}

/// Where the files of a log are read from.
#[derive(Clone, Debug)]
pub enum Origin {
    /// A local event-log directory (Spark's `spark.eventLog.dir`).
    Dir(PathBuf),
    /// The copy ingest keeps in the object store for the log named `log`
    /// (`<appId>[_<attemptId>]`).
    Store {
        at: Arc<StoreAt>,
        log: CompactString,
    },
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Origin::Dir(a), Origin::Dir(b)) => a == b,
            (Origin::Store { at: a, log: la }, Origin::Store { at: b, log: lb }) => {
                la == lb && (Arc::ptr_eq(a, b) || a.store.store().url() == b.store.store().url())
            }
            _ => false,
        }
    }
}

impl Eq for Origin {}

impl Origin {
    /// Whether the log is read from a local directory (the freshest view of a log the driver
    /// is still writing: the store's copy follows it).
    pub fn is_local(&self) -> bool {
        matches!(self, Origin::Dir(_))
    }

    /// The directory holding the log, as a URI in Hadoop's form (`file:/dir`,
    /// `s3://bucket/prefix/eventlogs/<log>`): what Spark reports as the log source.
    pub fn uri(&self) -> String {
        match self {
            Origin::Dir(d) => format!("file:{}", d.display()),
            Origin::Store { at, log } => {
                let url = at.store.store().object_url(&format!("{EVENTLOGS}/{log}"));
                match url.strip_prefix("file://") {
                    Some(path) => format!("file:{path}"),
                    None => url,
                }
            }
        }
    }

    /// Opens the file at `rel` (relative to the event-log directory) for a blocking read.
    /// For the store this waits on the runtime: call it off the async worker threads (from
    /// `spawn_blocking`), never from async code.
    pub fn open(&self, rel: &str) -> io::Result<Box<dyn Read + Send>> {
        match self {
            Origin::Dir(d) => Ok(Box::new(Root::open(d)?.open_file(rel)?)),
            Origin::Store { at, log } => {
                let (store, rt) = (&at.store, &at.rt);
                // a local-disk store's complete object is read in place, without a trip
                // through the runtime per read (one still stored as parts is not a file)
                if let Some(fs) = store.store().as_file_store() {
                    crate::ingest::layout::check_component(log).map_err(io::Error::other)?;
                    let path = fs
                        .object_path(&format!("{EVENTLOGS}/{log}/{rel}"))
                        .map_err(io::Error::other)?;
                    use std::os::unix::fs::OpenOptionsExt;
                    let opened = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                        .open(&path);
                    match opened {
                        Ok(f) if f.metadata()?.is_file() => return Ok(Box::new(f)),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                let (_, reader) = rt.block_on(store.open_eventlog(log, rel)).map_err(|e| {
                    io::Error::other(format!(
                        "{}: {e}",
                        store
                            .store()
                            .object_url(&format!("{EVENTLOGS}/{log}/{rel}"))
                    ))
                })?;
                Ok(Box::new(BlockingReader::new(rt.clone(), reader)))
            }
        }
    }
}

/// One file of a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the event-log directory, `/`-separated, as Spark named it.
    pub rel: CompactString,
    pub len: u64,
    /// Modification time (a stored copy: the object's last-modified), ms since the epoch.
    pub modified_ms: i64,
}

/// One application attempt's event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    pub origin: Origin,
    /// The file or rolling directory name as Spark wrote it, unique within its directory.
    pub name: CompactString,
    /// The files to replay, in order.
    pub files: Vec<SourceFile>,
    /// Still being written (`.inprogress` file or marker), or, for a stored copy, not
    /// stored complete yet.
    pub in_progress: bool,
    /// Lines longer than this are skipped when the log is replayed (see [`line_limit`]).
    pub max_line_bytes: u32,
    /// Modification time of the newest file, in ms since the epoch: what Spark shows as
    /// "last updated" of a finished application.
    pub modified_ms: i64,
}

/// A log's line limit as it keeps it (4 bytes: a listed log is held for every application):
/// a limit past 4 GiB is 4 GiB, past any file a scan admits.
pub fn line_limit(max_line_bytes: usize) -> u32 {
    u32::try_from(max_line_bytes).unwrap_or(u32::MAX)
}

impl LogSource {
    /// Total size of `files` in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }

    /// The name ingest stores the log under, `<appId>[_<attemptId>]`, when `name` is one
    /// Spark writes.
    pub fn log_name(&self) -> Option<String> {
        match names::rolling_dir(&self.name) {
            Some(log) => Some(log.to_string()),
            None => names::single(&self.name).map(|n| n.log),
        }
    }
}

/// Every event-log file directly under `dir` or in its rolling directories (see
/// [`crate::logdir::scan`]: regular files only, no link followed), by relative path.
pub fn scan_dir(dir: &Path) -> io::Result<Vec<Found>> {
    scan::scan(&Root::open(dir)?)
}

/// The logs `files` of a local directory make up (see [`sources_from`]).
pub fn dir_sources(dir: &Path, files: Vec<Found>, max_line_bytes: usize) -> Vec<LogSource> {
    sources_from(
        Origin::Dir(dir.to_path_buf()),
        files
            .into_iter()
            .map(|f| {
                (
                    SourceFile {
                        rel: f.name.rel.into(),
                        len: f.meta.size,
                        modified_ms: f.meta.modified_ms,
                    },
                    f.complete,
                )
            })
            .collect(),
        max_line_bytes,
    )
}

/// The logs `files` (relative paths with their size and time, and whether each is
/// complete) make up, in name order: every file Spark names as a single-file log is one, and
/// every `eventlog_v2_*` directory with a status marker and event files is a rolling log.
/// Names are classified by [`crate::logdir::names`], as ingest classifies them.
pub fn sources_from(
    origin: Origin,
    files: Vec<(SourceFile, bool)>,
    max_line_bytes: usize,
) -> Vec<LogSource> {
    use std::collections::BTreeMap;
    let mut out = Vec::new();
    let mut rolling: BTreeMap<String, Vec<(SourceFile, bool)>> = BTreeMap::new();
    for (f, complete) in files {
        match f.rel.split_once('/') {
            None if names::single(&f.rel).is_some() => out.push(LogSource {
                origin: origin.clone(),
                name: f.rel.clone(),
                in_progress: f.rel.ends_with(".inprogress") || !complete,
                max_line_bytes: line_limit(max_line_bytes),
                modified_ms: f.modified_ms,
                files: vec![f],
            }),
            Some((dir, name)) if names::rolling_file(dir, name).is_some() => {
                rolling
                    .entry(dir.to_string())
                    .or_default()
                    .push((f, complete));
            }
            _ => {}
        }
    }
    for (dir, files) in rolling {
        if let Some(src) = rolling_source(&origin, &dir, files, max_line_bytes) {
            out.push(src);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The events of a stored log, as [`sources_from`] reads them: see
/// [`LogStore::list_all_eventlogs`].
pub fn stored_sources(
    at: &Arc<StoreAt>,
    log: &str,
    files: Vec<LogFile>,
    max_line_bytes: usize,
) -> Vec<LogSource> {
    let origin = Origin::Store {
        at: at.clone(),
        log: log.into(),
    };
    sources_from(
        origin,
        files
            .into_iter()
            .map(|f| {
                (
                    SourceFile {
                        rel: f.rel.into(),
                        len: f.len,
                        modified_ms: f.modified_ms,
                    },
                    f.complete,
                )
            })
            .collect(),
        max_line_bytes,
    )
}

fn rolling_source(
    origin: &Origin,
    dir: &str,
    files: Vec<(SourceFile, bool)>,
    max_line_bytes: usize,
) -> Option<LogSource> {
    let mut events = Vec::new();
    let mut in_progress = None;
    for (f, complete) in files {
        let fname = f.rel.rsplit('/').next().unwrap_or_default();
        match names::rolling_file(dir, fname).map(|n| n.kind) {
            Some(Kind::AppStatus { in_progress: p }) => in_progress = Some(p),
            Some(Kind::Events { index }) => events.push((index, f, complete)),
            _ => {}
        }
    }
    // Spark skips a rolling directory without its status marker or event files
    let in_progress = in_progress?;
    if events.is_empty() {
        return None;
    }
    events.sort_by_key(|(idx, _, _)| *idx);
    // a compacted file replaces everything before it
    if let Some(last_compact) = events
        .iter()
        .rposition(|(_, f, _)| f.rel.ends_with(".compact"))
    {
        events.drain(..last_compact);
    }
    let modified_ms = events.last().map(|(_, f, _)| f.modified_ms).unwrap_or(0);
    let all_stored = events.iter().all(|(_, _, complete)| *complete);
    Some(LogSource {
        origin: origin.clone(),
        name: dir.into(),
        files: events.into_iter().map(|(_, f, _)| f).collect(),
        in_progress: in_progress || !all_stored,
        max_line_bytes: line_limit(max_line_bytes),
        modified_ms,
    })
}

/// What a replay saw, beyond the events themselves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub lines: u64,
    /// Lines that were not valid JSON objects (truncated or corrupt) and were skipped.
    pub skipped: u64,
    /// Files that ended in an undecodable or truncated block, or could not be read.
    pub damaged_files: u64,
    /// Of those, files whose source failed (could not be opened, or a read from the store
    /// failed): not the log's fault, so a later scan replays the log again.
    pub unreadable: u64,
    /// Lines longer than the log's `max_line_bytes`, skipped without being read whole
    /// (also counted in `skipped`).
    pub long_lines: u64,
}

/// Notes whether the reader under a decoder failed, so a failed read of the source is told
/// apart from data the decoder refused.
struct Watched<R> {
    inner: R,
    failed: Arc<AtomicBool>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        if r.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        r
    }
}

/// Decodes each file of `src` in turn and hands its text to `f` in [`Block`]s of whole
/// lines; `f` hands back a block to fill next (its own, or a recycled one: it is emptied
/// here, so `f` need not clear it). Lines
/// are neither counted nor checked here: the returned stats count only files (and the
/// partial line a damaged file ends in as skipped). Blocking: call it off the async worker
/// threads.
pub fn replay_blocks(src: &LogSource, f: &mut impl FnMut(Block) -> Block) -> ReadStats {
    replay_blocks_reusing(src, Block::default(), f).0
}

/// [`replay_blocks`] filling `spare` first (a buffer left from an earlier read, so reading
/// many small logs does not allocate and clear one each); returns the buffer left over.
pub fn replay_blocks_reusing(
    src: &LogSource,
    mut spare: Block,
    f: &mut impl FnMut(Block) -> Block,
) -> (ReadStats, Block) {
    let mut stats = ReadStats::default();
    spare.clear();
    for file in &src.files {
        let what = format!("{}/{}", src.origin.uri(), file.rel);
        let input = match src.origin.open(&file.rel) {
            Ok(input) => input,
            Err(e) => {
                tracing::warn!(file = %what, error = %e, "cannot open event log file");
                stats.damaged_files += 1;
                stats.unreadable += 1;
                continue;
            }
        };
        let failed = Arc::new(AtomicBool::new(false));
        let input = Watched {
            inner: input,
            failed: failed.clone(),
        };
        let codec = Codec::of_file_name(&file.rel);
        spare = read_blocks(
            codec,
            BufReader::with_capacity(READ_BYTES, input),
            &what,
            src.max_line_bytes as usize,
            &mut stats,
            spare,
            f,
        );
        if failed.load(Ordering::Relaxed) {
            stats.unreadable += 1;
        }
    }
    (stats, spare)
}

/// Bytes of decoded log per [`Block`] handed over.
pub const BLOCK_BYTES: usize = 1 << 20;
/// Bytes asked of the decoder per read: small enough for the copy to stay in cache.
const READ_BYTES: usize = 256 << 10;

/// Whole lines of a log, each ending in `\n`, read straight into a reusable buffer.
#[derive(Default)]
pub struct Block {
    /// Always fully initialised; `len` bytes of it are the lines.
    buf: Vec<u8>,
    len: usize,
}

impl Block {
    /// The block's text (whole lines).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Each non-empty line, without its line ending.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let text = self.bytes();
        memchr::memchr_iter(b'\n', text)
            .chain(std::iter::once(text.len()))
            .scan(0, move |start, end| {
                let line = text.get(*start..end).unwrap_or_default();
                *start = end + 1;
                Some(line)
            })
            .map(trim_line)
            .filter(|l| !l.is_empty())
    }

    /// Where each non-empty line is, without its line ending.
    pub fn line_ranges(&self, out: &mut Vec<(usize, usize)>) {
        let text = self.bytes();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', text) {
            let line = trim_line(&text[start..nl]);
            if !line.is_empty() {
                out.push((start, start + line.len()));
            }
            start = nl + 1;
        }
    }

    /// Appends one line (for callers that have lines, not a stream).
    pub fn push_line(&mut self, line: &[u8]) {
        self.buf.truncate(self.len);
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.len = self.buf.len();
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Room to read `n` more bytes.
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.buf.len() < self.len + n {
            // grown rarely: a buffer is reused for the whole replay
            self.buf
                .resize((self.len + n).max(BLOCK_BYTES + READ_BYTES), 0);
        }
        &mut self.buf[self.len..self.len + n]
    }
}

/// Decodes one stream into blocks handed to `f`; returns the block to fill next. A line
/// longer than `max_line` is dropped as it is read (the buffer never holds more of it).
fn read_blocks(
    codec: Option<Codec>,
    input: impl Read,
    what: &str,
    max_line: usize,
    stats: &mut ReadStats,
    mut block: Block,
    f: &mut impl FnMut(Block) -> Block,
) -> Block {
    let mut decoded = match decoder(codec, input) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(file = %what, error = %e, "cannot decode event log");
            stats.damaged_files += 1;
            return block;
        }
    };
    // where the last whole line of `block` ends (which comes empty: fresh, or from `hand_over`)
    let mut whole = 0;
    // inside a line too long to keep: drop bytes up to its newline
    let mut skipping = false;
    loop {
        let room = block.room(READ_BYTES);
        let n = match decoded.read(room) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(file = %what, error = %e, "event log ends in a damaged block");
                stats.damaged_files += 1;
                // whatever was decoded after the last newline is a (possibly partial) line
                if block.len > whole {
                    stats.skipped += 1;
                }
                block.len = whole;
                return hand_over(block, f);
            }
        };
        if n == 0 {
            // the last line may lack its newline
            if block.len > whole {
                block.room(1)[0] = b'\n';
                block.len += 1;
            }
            return hand_over(block, f);
        }
        let start = block.len;
        block.len += n;
        if skipping {
            match memchr::memchr(b'\n', &block.buf[start..block.len]) {
                Some(i) => {
                    let rest = start + i + 1;
                    block.buf.copy_within(rest..block.len, start);
                    block.len -= rest - start;
                    skipping = false;
                }
                None => {
                    block.len = start;
                    continue;
                }
            }
        }
        if let Some(nl) = memchr::memrchr(b'\n', &block.buf[start..block.len]) {
            whole = start + nl + 1;
        }
        if block.len - whole > max_line {
            if stats.long_lines == 0 {
                tracing::warn!(file = %what, max_line_bytes = max_line, "skipping an event line longer than the longest kept (--max-event-line-size)");
            }
            stats.long_lines += 1;
            stats.skipped += 1;
            block.len = whole;
            skipping = true;
        }
        if whole >= BLOCK_BYTES {
            // hand over the whole lines; the start of the next line moves to the next block
            let tail = block.buf[whole..block.len].to_vec();
            block.len = whole;
            block = hand_over(block, f);
            block.room(tail.len()).copy_from_slice(&tail);
            block.len = tail.len();
            whole = 0;
        }
    }
}

/// Gives a non-empty `block` to `f` and returns the block `f` gives back, emptied: every
/// block `read_blocks` fills comes from here (or is a fresh one).
fn hand_over(block: Block, f: &mut impl FnMut(Block) -> Block) -> Block {
    if block.is_empty() {
        return block;
    }
    let mut next = f(block);
    next.clear();
    next
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

    /// Decodes one stream and hands every non-empty line to `f`, which says whether it was a
    /// valid event.
    fn replay_reader(
        codec: Option<Codec>,
        input: impl Read,
        what: &str,
        stats: &mut ReadStats,
        f: &mut impl FnMut(&[u8]) -> bool,
    ) {
        let mut counts = (0, 0);
        read_blocks(
            codec,
            input,
            what,
            usize::MAX,
            stats,
            Block::default(),
            &mut each_line(f, &mut counts),
        );
        stats.lines += counts.0;
        stats.skipped += counts.1;
    }

    /// A block consumer that hands each line to `f`, counting lines and refused lines.
    fn each_line<'a>(
        f: &'a mut impl FnMut(&[u8]) -> bool,
        counts: &'a mut (u64, u64),
    ) -> impl FnMut(Block) -> Block + 'a {
        move |block| {
            for line in block.lines() {
                counts.0 += 1;
                if !f(line) {
                    counts.1 += 1;
                }
            }
            block
        }
    }

    #[test]
    fn truncated_and_corrupt_lines_are_skipped() {
        let data = b"{\"Event\":\"A\"}\nnot json\n\n{\"Event\":\"B\"}\n{\"Event\":\"C\",\"x\":";
        let mut got = Vec::new();
        let mut stats = ReadStats::default();
        replay_reader(
            None,
            &data[..],
            "t",
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

    /// Lines that straddle reads, lines bigger than the read buffer, CRLF endings and a last
    /// line without its newline all come out whole and in order.
    #[test]
    fn lines_across_read_boundaries_come_out_whole() {
        struct Dribble<'a>(&'a [u8], usize);
        impl Read for Dribble<'_> {
            // odd-sized reads, so line ends fall anywhere in a buffer
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                self.1 += 1;
                let n = self
                    .0
                    .len()
                    .min(out.len())
                    .min(1 + (self.1 * 7919) % 300_000);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut want: Vec<Vec<u8>> = Vec::new();
        for i in 0..20_000 {
            want.push(
                format!("{{\"Event\":\"E{i}\",\"pad\":\"{}\"}}", "x".repeat(i % 97)).into_bytes(),
            );
        }
        want.insert(7_000, vec![b'y'; 3 << 20]);
        want.push(b"last-without-newline".to_vec());
        let mut data = Vec::new();
        for (i, l) in want.iter().enumerate() {
            data.extend_from_slice(l);
            if i + 1 < want.len() {
                data.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
            }
            if i % 1000 == 0 {
                data.push(b'\n'); // empty lines are not lines
            }
        }
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut stats = ReadStats::default();
        replay_reader(None, Dribble(&data, 0), "t", &mut stats, &mut |line| {
            got.push(line.to_vec());
            true
        });
        assert_eq!(got.len(), want.len());
        assert!(got == want, "lines differ");
        assert_eq!(stats.lines as usize, want.len());
        assert_eq!(stats.skipped, 0);
    }

    /// A line longer than the limit is dropped as it streams by: the lines around it come
    /// out whole, and the buffer never holds the long one.
    #[test]
    fn long_lines_are_skipped_without_being_held() {
        let mut data = Vec::new();
        data.extend_from_slice(b"{\"Event\":\"A\"}\n");
        data.extend(std::iter::repeat_n(b'x', 5 << 20));
        data.extend_from_slice(b"\n{\"Event\":\"B\"}\n");
        data.extend(std::iter::repeat_n(b'y', 3 << 20));
        let mut got = Vec::new();
        let mut stats = ReadStats::default();
        let mut biggest = 0;
        read_blocks(
            None,
            &data[..],
            "t",
            1 << 20,
            &mut stats,
            Block::default(),
            &mut |b: Block| {
                biggest = biggest.max(b.buf.len());
                for l in b.lines() {
                    got.push(String::from_utf8_lossy(l).into_owned());
                }
                b
            },
        );
        assert_eq!(got, ["{\"Event\":\"A\"}", "{\"Event\":\"B\"}"]);
        assert_eq!((stats.long_lines, stats.skipped), (2, 2));
        assert!(biggest < 3 << 20, "buffer grew to {biggest}");
    }

    fn file(rel: &str, len: u64) -> SourceFile {
        SourceFile {
            rel: rel.into(),
            len,
            modified_ms: len as i64,
        }
    }

    #[test]
    fn stored_files_make_the_same_logs() {
        let origin = Origin::Dir(PathBuf::from("/nowhere"));
        let found = sources_from(
            origin,
            vec![
                // a finished file still being stored (as parts) is not finished yet
                (file("local-1", 10), false),
                (file("local-2.zstd", 20), true),
                (file("eventlog_v2_a/appstatus_a", 0), true),
                (file("eventlog_v2_a/events_1_a", 5), true),
                (file("eventlog_v2_a/events_2_a.compact", 6), true),
                (file("eventlog_v2_a/events_3_a", 7), false),
                (file("eventlog_v2_a/.events_3_a.crc", 1), true),
                // no status marker: not a log yet
                (file("eventlog_v2_b/events_1_b", 5), true),
                (file("eventlog_v2_a/deeper/x", 1), true),
            ],
            1 << 20,
        );
        let names: Vec<_> = found.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["eventlog_v2_a", "local-1", "local-2.zstd"]);
        let a = &found[0];
        let rels: Vec<_> = a.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(
            rels,
            [
                "eventlog_v2_a/events_2_a.compact",
                "eventlog_v2_a/events_3_a"
            ]
        );
        assert_eq!((a.size(), a.modified_ms, a.in_progress), (13, 7, true));
        assert!(found[1].in_progress && !found[2].in_progress);
        assert_eq!(found[2].log_name().as_deref(), Some("local-2"));
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
        let found = dir_sources(d, scan_dir(d).unwrap(), 1 << 20);
        let names: Vec<_> = found.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["eventlog_v2_spark-3", "local-1", "local-2.lz4.inprogress"]
        );
        assert!(found[0].in_progress && !found[1].in_progress && found[2].in_progress);
        let files: Vec<_> = found[0].files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(
            files,
            [
                "eventlog_v2_spark-3/events_2_spark-3.zstd",
                "eventlog_v2_spark-3/events_10_spark-3.zstd"
            ]
        );
        assert_eq!(found[0].log_name().as_deref(), Some("spark-3"));
        assert_eq!(found[2].log_name().as_deref(), Some("local-2"));
    }
}
