//! A fast path for the two events that make up nearly all of a big event log.
//!
//! `SparkListenerTaskStart` and `SparkListenerTaskEnd` are nearly every line of a large log,
//! and Spark writes them the same way every time: compact JSON, plain ASCII strings, the keys
//! of each object in one order. This parser reads that shape straight into the types serde
//! builds ([`TaskStartEvent`], [`TaskEndEvent`]), trying the key Spark writes next before any
//! other, and skipping keys it does not use.
//!
//! It gives up (`None`) on anything it cannot read exactly as serde would: a string with an
//! escape, a control character or a non-ASCII byte; a number that is not a plain integer
//! (`1.0`, `1e3`, `-0`, out of range); `null` where serde wants a value; a repeated field
//! (serde rejects those); a task end reason other than a bare success (those carry more
//! fields and are rare); nesting deeper than Spark writes. The caller then parses the line
//! with serde, so a log replays to the same state either way. The tests below check that on
//! every truncation and on single-byte corruptions at every position of real-shaped lines.

use compact_str::CompactString;

use super::accumulables::{self, AccumulableInfo};
use super::tasks::{
    InputIn, OutputIn, PeakMetrics, PushIn, ReadIn, Reason, TaskEndEvent, TaskInfo, TaskMetricsIn,
    TaskStartEvent, WriteIn,
};
use super::EXECUTOR_METRICS;

/// `None` means "not handled here": parse the line with serde instead.
type P<T> = Option<T>;

/// Deepest nesting skipped here (Spark's task events nest three or four levels).
const MAX_DEPTH: u32 = 16;

/// A `SparkListenerTaskStart` line, if it has the common shape.
pub fn task_start(line: &[u8]) -> P<TaskStartEvent> {
    let mut c = Cur { b: line, i: 0 };
    let mut ev = TaskStartEvent {
        stage_id: -1,
        stage_attempt: 0,
        info: TaskInfo {
            partition_id: -1,
            ..TaskInfo::default()
        },
    };
    const KEYS: &[&[u8]] = &[b"Stage ID", b"Stage Attempt ID", b"Task Info"];
    let seen = c.fields(KEYS, |c, k| {
        match k {
            0 => ev.stage_id = c.int()?,
            1 => ev.stage_attempt = c.int()?,
            _ => task_info(c, &mut ev.info)?,
        }
        Some(())
    })?;
    c.end()?;
    // serde requires the task's info
    (seen & 0b100 != 0).then_some(ev)
}

/// A `SparkListenerTaskEnd` line, if it has the common shape. Built in place: the event
/// is over a kilobyte, and it goes to another thread boxed anyway.
pub fn task_end(line: &[u8]) -> P<Box<TaskEndEvent>> {
    const KEYS: &[&[u8]] = &[
        b"Stage ID",
        b"Stage Attempt ID",
        b"Task Type",
        b"Task End Reason",
        b"Task Info",
        b"Task Executor Metrics",
        b"Task Metrics",
    ];
    let mut c = Cur { b: line, i: 0 };
    let mut ev = Box::new(TaskEndEvent {
        stage_id: -1,
        ..TaskEndEvent::default()
    });
    ev.info.partition_id = -1;
    let seen = c.fields(KEYS, |c, k| {
        match k {
            0 => ev.stage_id = c.int()?,
            1 => ev.stage_attempt = c.int()?,
            // not kept; named so that it is passed over without a search
            2 => c.skip(1)?,
            3 => {
                if !c.null() {
                    success(c, ev.reason.insert(Reason::default()))?;
                }
            }
            4 => task_info(c, &mut ev.info)?,
            5 => {
                if !c.null() {
                    peak_metrics(c, ev.executor_metrics.insert(PeakMetrics::default()))?;
                }
            }
            _ => {
                if !c.null() {
                    task_metrics(c, ev.metrics.insert(TaskMetricsIn::default()))?;
                }
            }
        }
        Some(())
    })?;
    c.end()?;
    // serde requires the task's info
    (seen & 0b10000 != 0).then_some(ev)
}

/// Reads a `Task Info` object into `t` (which holds serde's defaults).
fn task_info(c: &mut Cur, t: &mut TaskInfo) -> P<()> {
    const KEYS: &[&[u8]] = &[
        b"Task ID",
        b"Index",
        b"Attempt",
        b"Partition ID",
        b"Launch Time",
        b"Executor ID",
        b"Host",
        b"Locality",
        b"Speculative",
        b"Getting Result Time",
        b"Finish Time",
        b"Failed",
        b"Killed",
        b"Accumulables",
    ];
    c.fields(KEYS, |c, k| {
        match k {
            0 => t.task_id = c.int()?,
            1 => t.index = c.int()?,
            2 => t.attempt = c.int()?,
            3 => t.partition_id = c.int()?,
            4 => t.launch_time = c.int()?,
            5 => t.executor_id = c.text()?,
            6 => t.host = c.text()?,
            7 => t.locality = c.text()?,
            8 => t.speculative = c.boolean()?,
            9 => t.getting_result_time = c.int()?,
            10 => t.finish_time = c.int()?,
            11 => t.failed = c.boolean()?,
            12 => t.killed = c.boolean()?,
            _ => {
                if !c.null() {
                    accumulables(c, &mut t.accumulables)?;
                }
            }
        }
        Some(())
    })
    .map(drop)
}

/// A JSON value read for its text (see `model::accumulables`): what the fast path can
/// render as serde would, or `Other` (read over) when it cannot.
enum Text<'a> {
    Str(&'a [u8]),
    Int(i64),
    Float(f64),
    Null,
    Other,
}

impl Text<'_> {
    /// The text serde would give, `None` for `Other`.
    fn render(&self) -> P<Option<String>> {
        match self {
            Text::Str(s) => Some(Some(std::str::from_utf8(s).ok()?.to_string())),
            Text::Int(v) => Some(Some(v.to_string())),
            Text::Float(v) => Some(Some(accumulables::java_double(*v))),
            Text::Null => Some(None),
            Text::Other => None,
        }
    }
}

fn text<'a>(c: &mut Cur<'a>) -> P<Text<'a>> {
    Some(match c.peek()? {
        b'"' => Text::Str(c.str()?),
        b'n' => {
            if !c.null() {
                return None;
            }
            Text::Null
        }
        b'-' | b'0'..=b'9' => match c.int() {
            Some(v) => Text::Int(v),
            None => {
                let start = c.i;
                c.number()?;
                let t = std::str::from_utf8(&c.b[start..c.i]).ok()?;
                // what serde reads as a float; `-0` and integers out of range it reads
                // otherwise
                if !t.contains(['.', 'e', 'E']) {
                    return Some(Text::Other);
                }
                Text::Float(t.parse().ok()?)
            }
        },
        _ => {
            c.skip(1)?;
            Text::Other
        }
    })
}

/// A task's `Accumulables`: the ones the API shows, appended to `out` in log order. Most
/// are Spark's own task metrics (hidden); a shown one whose text the fast path cannot
/// render leaves the line to serde.
fn accumulables(c: &mut Cur, out: &mut Vec<AccumulableInfo>) -> P<()> {
    c.eat(b'[')?;
    if c.peek()? == b']' {
        c.i += 1;
        return Some(());
    }
    loop {
        accumulable(c, out)?;
        match c.peek()? {
            b',' => c.i += 1,
            b']' => {
                c.i += 1;
                return Some(());
            }
            _ => return None,
        }
    }
}

fn accumulable(c: &mut Cur, out: &mut Vec<AccumulableInfo>) -> P<()> {
    const KEYS: &[&[u8]] = &[
        b"ID",
        b"Name",
        b"Update",
        b"Value",
        b"Internal",
        b"Count Failed Values",
        b"Metadata",
    ];
    let mut id = 0;
    let (mut name, mut update, mut value, mut metadata) =
        (Text::Null, Text::Null, Text::Null, Text::Null);
    let mut internal = false;
    let seen = c.fields(KEYS, |c, k| {
        match k {
            0 => id = c.int()?,
            1 => name = text(c)?,
            2 => update = text(c)?,
            3 => value = text(c)?,
            4 => internal = !c.null() && c.boolean()?,
            5 => c.skip(1)?,
            _ => metadata = text(c)?,
        }
        Some(())
    })?;
    // serde requires the id
    if seen & 1 == 0 {
        return None;
    }
    let is_sql = matches!(metadata, Text::Str(m) if m == b"sql");
    if internal || is_sql {
        return Some(());
    }
    out.push(AccumulableInfo {
        id,
        name: name.render()?,
        update: update.render()?,
        value: value.render()?,
    });
    Some(())
}

/// `{"Reason":"Success"}` into `r` (a default reason); any other reason is left to serde.
fn success(c: &mut Cur, r: &mut Reason) -> P<()> {
    let mut seen = false;
    c.object(|c, k| {
        if k != b"Reason" || seen || c.str()? != &b"Success"[..] {
            return None;
        }
        seen = true;
        r.reason = CompactString::const_new("Success");
        Some(())
    })?;
    seen.then_some(())
}

fn peak_metrics(c: &mut Cur, out: &mut PeakMetrics) -> P<()> {
    let mut next = 0;
    c.object(|c, k| {
        match find(&EXECUTOR_METRICS, k, &mut next) {
            // a repeated metric overwrites, as in PeakMetrics' own visitor
            Some(i) => out.0[i] = Some(c.int()?),
            None => c.skip(1)?,
        }
        Some(())
    })
}

/// The index of `k` in `names`, trying `*next` (where the last match was followed) first.
fn find(names: &[&str], k: &[u8], next: &mut usize) -> Option<usize> {
    let i = match names.get(*next) {
        Some(n) if n.as_bytes() == k => *next,
        _ => names.iter().position(|n| n.as_bytes() == k)?,
    };
    *next = i + 1;
    Some(i)
}

/// Reads `Task Metrics` into `t` (serde's defaults).
fn task_metrics(c: &mut Cur, t: &mut TaskMetricsIn) -> P<()> {
    const KEYS: &[&[u8]] = &[
        b"Executor Deserialize Time",
        b"Executor Deserialize CPU Time",
        b"Executor Run Time",
        b"Executor CPU Time",
        b"Peak Execution Memory",
        b"Result Size",
        b"JVM GC Time",
        b"Result Serialization Time",
        b"Memory Bytes Spilled",
        b"Disk Bytes Spilled",
        b"Shuffle Read Metrics",
        b"Shuffle Write Metrics",
        b"Input Metrics",
        b"Output Metrics",
    ];
    c.fields(KEYS, |c, k| {
        match k {
            0 => t.deser_time = c.int()?,
            1 => t.deser_cpu = c.int()?,
            2 => t.run_time = c.int()?,
            3 => t.cpu_time = c.int()?,
            4 => t.peak_mem = c.int()?,
            5 => t.result_size = c.int()?,
            6 => t.gc_time = c.int()?,
            7 => t.result_ser = c.int()?,
            8 => t.mem_spill = c.int()?,
            9 => t.disk_spill = c.int()?,
            10 => t.read = c.nullable(shuffle_read)?,
            11 => {
                t.write = c.nullable(|c| {
                    let [bytes, time, records] = c.ints(&[
                        b"Shuffle Bytes Written",
                        b"Shuffle Write Time",
                        b"Shuffle Records Written",
                    ])?;
                    Some(WriteIn {
                        bytes,
                        time,
                        records,
                    })
                })?
            }
            12 => {
                t.input = c.nullable(|c| {
                    let [bytes, records] = c.ints(&[b"Bytes Read", b"Records Read"])?;
                    Some(InputIn { bytes, records })
                })?
            }
            _ => {
                t.output = c.nullable(|c| {
                    let [bytes, records] = c.ints(&[b"Bytes Written", b"Records Written"])?;
                    Some(OutputIn { bytes, records })
                })?
            }
        }
        Some(())
    })
    .map(drop)
}

fn shuffle_read(c: &mut Cur) -> P<ReadIn> {
    const KEYS: &[&[u8]] = &[
        b"Remote Blocks Fetched",
        b"Local Blocks Fetched",
        b"Fetch Wait Time",
        b"Remote Bytes Read",
        b"Remote Bytes Read To Disk",
        b"Local Bytes Read",
        b"Total Records Read",
        b"Remote Requests Duration",
        b"Push Based Shuffle",
    ];
    let mut r = ReadIn::default();
    c.fields(KEYS, |c, k| {
        match k {
            0 => r.remote_blocks = c.int()?,
            1 => r.local_blocks = c.int()?,
            2 => r.fetch_wait = c.int()?,
            3 => r.remote_bytes = c.int()?,
            4 => r.remote_to_disk = c.int()?,
            5 => r.local_bytes = c.int()?,
            6 => r.records = c.int()?,
            7 => r.remote_reqs = c.int()?,
            _ => r.push = c.nullable(push_read)?,
        }
        Some(())
    })?;
    Some(r)
}

fn push_read(c: &mut Cur) -> P<PushIn> {
    let [corrupt, fallback, remote_blocks, local_blocks, remote_chunks, local_chunks, remote_bytes, local_bytes, remote_reqs] =
        c.ints(&[
            b"Corrupt Merged Block Chunks",
            b"Merged Fetch Fallback Count",
            b"Merged Remote Blocks Fetched",
            b"Merged Local Blocks Fetched",
            b"Merged Remote Chunks Fetched",
            b"Merged Local Chunks Fetched",
            b"Merged Remote Bytes Read",
            b"Merged Local Bytes Read",
            b"Merged Remote Requests Duration",
        ])?;
    Some(PushIn {
        corrupt,
        fallback,
        remote_blocks,
        local_blocks,
        remote_chunks,
        local_chunks,
        remote_bytes,
        local_bytes,
        remote_reqs,
    })
}

/// A position in one line of JSON.
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    /// The next byte that is not JSON whitespace (not consumed).
    #[inline]
    fn peek(&mut self) -> P<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(c);
            }
            self.i += 1;
        }
        None
    }

    #[inline]
    fn eat(&mut self, want: u8) -> P<()> {
        if self.peek()? != want {
            return None;
        }
        self.i += 1;
        Some(())
    }

    /// Only whitespace may follow the event's object.
    fn end(&mut self) -> P<()> {
        match self.peek() {
            None => Some(()),
            Some(_) => None,
        }
    }

    /// A string of printable ASCII without escapes, without its quotes.
    #[inline]
    fn str(&mut self) -> P<&'a [u8]> {
        self.eat(b'"')?;
        let rest = &self.b[self.i..];
        let n = memchr::memchr(b'"', rest)?;
        let text = &rest[..n];
        // no escapes, control characters or non-ASCII (checked without branching per byte)
        let odd = text.iter().fold(false, |odd, &c| {
            odd | (c == b'\\') | (c.wrapping_sub(0x20) >= 0x60)
        });
        if odd {
            return None;
        }
        self.i += n + 1;
        Some(text)
    }

    fn text(&mut self) -> P<CompactString> {
        let s = self.str()?;
        std::str::from_utf8(s).ok().map(CompactString::new)
    }

    /// An integer as serde reads an `i64`: no fraction, no exponent, no `-0`, in range.
    #[inline]
    fn int(&mut self) -> P<i64> {
        self.peek()?;
        let b = self.b;
        let mut i = self.i;
        let neg = b[i] == b'-';
        if neg {
            i += 1;
        }
        let start = i;
        let mut v: u64 = 0;
        while let Some(&d) = b.get(i) {
            if !d.is_ascii_digit() {
                break;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        if matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let v = if neg {
            if v == 0 || v > 1 << 63 {
                return None;
            }
            (v as i64).wrapping_neg()
        } else {
            i64::try_from(v).ok()?
        };
        self.i = i;
        Some(v)
    }

    fn boolean(&mut self) -> P<bool> {
        self.peek()?;
        let rest = &self.b[self.i..];
        if rest.starts_with(b"true") {
            self.i += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.i += 5;
            Some(false)
        } else {
            None
        }
    }

    /// `null` (consumed), or not.
    fn null(&mut self) -> bool {
        if self.peek() == Some(b'n') && self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            return true;
        }
        false
    }

    /// An optional value: `null` is `None`, as serde reads an `Option`.
    fn nullable<T>(&mut self, f: impl FnOnce(&mut Self) -> P<T>) -> P<Option<T>> {
        if self.null() {
            return Some(None);
        }
        f(self).map(Some)
    }

    /// Calls `f` with each key of an object, the cursor on the key's value.
    #[inline]
    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> P<()>) -> P<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.str()?;
            self.eat(b':')?;
            f(self, key)?;
            if self.next_member()? {
                return Some(());
            }
        }
    }

    /// After a member of an object: true at its end, false before the next member.
    #[inline]
    fn next_member(&mut self) -> P<bool> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Some(false)
            }
            b'}' => {
                self.i += 1;
                Some(true)
            }
            _ => None,
        }
    }

    /// An object of integers named by `keys` (others skipped), each defaulting to 0.
    fn ints<const N: usize>(&mut self, keys: &[&[u8]; N]) -> P<[i64; N]> {
        let mut out = [0; N];
        self.fields(keys, |c, i| {
            out[i] = c.int()?;
            Some(())
        })?;
        Some(out)
    }

    /// Calls `f` with the index in `keys` of each key of an object that is one of them, the
    /// cursor on its value; other keys are skipped. The key after the last one found is
    /// tried first (Spark writes them in order), before searching. A repeated key gives up,
    /// as serde does for a struct's field. Returns which keys were seen, a bit each.
    #[inline]
    fn fields(&mut self, keys: &[&[u8]], mut f: impl FnMut(&mut Self, usize) -> P<()>) -> P<u64> {
        debug_assert!(keys.len() <= 64);
        let mut seen = 0u64;
        let mut next = 0;
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(seen);
        }
        loop {
            self.peek()?;
            let found = match keys.get(next) {
                Some(k) if self.at_key(k) => Some(next),
                _ => {
                    let k = self.str()?;
                    keys.iter().position(|x| *x == k)
                }
            };
            self.eat(b':')?;
            match found {
                Some(i) => {
                    let bit = 1u64 << i;
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                    next = i + 1;
                    f(self, i)?;
                }
                None => self.skip(1)?,
            }
            if self.next_member()? {
                return Some(seen);
            }
        }
    }

    /// Whether the next thing is the string `key` exactly (consumed if so).
    #[inline]
    fn at_key(&mut self, key: &[u8]) -> bool {
        let rest = &self.b[self.i..];
        let n = key.len();
        if rest.len() > n + 1 && rest[0] == b'"' && rest[n + 1] == b'"' && &rest[1..=n] == key {
            self.i += n + 2;
            return true;
        }
        false
    }

    /// Checks and passes over any JSON value (within the limits above).
    fn skip(&mut self, depth: u32) -> P<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => {
                self.str()?;
            }
            b'{' => self.object(|c, _| c.skip(depth + 1))?,
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            b't' | b'f' => {
                self.boolean()?;
            }
            b'n' => {
                if !self.null() {
                    return None;
                }
            }
            _ => self.number()?,
        }
        Some(())
    }

    /// Any JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> P<()> {
        let b = self.b;
        let mut i = self.i;
        let digits = |i: &mut usize| {
            let s = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - s
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let s = i;
        match digits(&mut i) {
            0 => return None,
            n if n > 1 && b[s] == b'0' => return None,
            _ => {}
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return None;
            }
        }
        self.i = i;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"Event":"SparkListenerTaskStart","Stage ID":3,"Stage Attempt ID":1,"Task Info":{"Task ID":17,"Index":4,"Attempt":0,"Partition ID":4,"Launch Time":1795639810271,"Executor ID":"driver","Host":"localhost","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Finish Time":0,"Failed":false,"Killed":false,"Accumulables":[]}}"#;

    /// A Spark 3.5 task end with accumulables, executor metrics, push-based shuffle metrics and
    /// updated blocks.
    const END: &str = r#"{"Event":"SparkListenerTaskEnd","Stage ID":0,"Stage Attempt ID":0,"Task Type":"ShuffleMapTask","Task End Reason":{"Reason":"Success"},"Task Info":{"Task ID":1,"Index":1,"Attempt":0,"Partition ID":1,"Launch Time":1795639979301,"Executor ID":"driver","Host":"localhost","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Finish Time":1795639979629,"Failed":false,"Killed":false,"Accumulables":[{"ID":0,"Name":"parity.records","Update":"100","Value":"100","Internal":false,"Count Failed Values":false},{"ID":3,"Name":"tags","Update":"[p1]","Value":"[p1, p0]","Internal":false,"Count Failed Values":false},{"ID":1534,"Name":"data size","Update":"168","Value":"168","Internal":true,"Count Failed Values":true,"Metadata":"sql"},{"ID":1564,"Name":"internal.metrics.executorDeserializeTime","Update":13,"Value":13,"Internal":true,"Count Failed Values":true},{"ID":9,"Name":"x","Update":-1.5e-3,"Value":null,"Internal":false,"Count Failed Values":false}]},"Task Executor Metrics":{"JVMHeapMemory":12,"JVMOffHeapMemory":0,"OnHeapExecutionMemory":0,"OffHeapExecutionMemory":0,"OnHeapStorageMemory":0,"OffHeapStorageMemory":0,"OnHeapUnifiedMemory":0,"OffHeapUnifiedMemory":0,"DirectPoolMemory":0,"MappedPoolMemory":0,"ProcessTreeJVMVMemory":0,"ProcessTreeJVMRSSMemory":0,"ProcessTreePythonVMemory":0,"ProcessTreePythonRSSMemory":0,"ProcessTreeOtherVMemory":0,"ProcessTreeOtherRSSMemory":0,"MinorGCCount":3,"MinorGCTime":0,"MajorGCCount":0,"MajorGCTime":0,"TotalGCTime":0},"Task Metrics":{"Executor Deserialize Time":301,"Executor Deserialize CPU Time":48436302,"Executor Run Time":3855,"Executor CPU Time":102590864,"Peak Execution Memory":0,"Result Size":2233,"JVM GC Time":0,"Result Serialization Time":19,"Memory Bytes Spilled":0,"Disk Bytes Spilled":0,"Shuffle Read Metrics":{"Remote Blocks Fetched":0,"Local Blocks Fetched":2,"Fetch Wait Time":0,"Remote Bytes Read":0,"Remote Bytes Read To Disk":0,"Local Bytes Read":157,"Total Records Read":3,"Remote Requests Duration":0,"Push Based Shuffle":{"Corrupt Merged Block Chunks":0,"Merged Fetch Fallback Count":0,"Merged Remote Blocks Fetched":0,"Merged Local Blocks Fetched":0,"Merged Remote Chunks Fetched":0,"Merged Local Chunks Fetched":0,"Merged Remote Bytes Read":0,"Merged Local Bytes Read":0,"Merged Remote Requests Duration":7}},"Shuffle Write Metrics":{"Shuffle Bytes Written":140,"Shuffle Write Time":48272450,"Shuffle Records Written":2},"Input Metrics":{"Bytes Read":0,"Records Read":0},"Output Metrics":{"Bytes Written":0,"Records Written":0},"Updated Blocks":[]}}"#;

    /// A failed attempt: its reason is left to serde.
    const FAILED: &str = r#"{"Event":"SparkListenerTaskEnd","Stage ID":2,"Stage Attempt ID":0,"Task Type":"ResultTask","Task End Reason":{"Reason":"ExceptionFailure","Class Name":"E","Description":"boom","Stack Trace":[],"Full Stack Trace":"E: boom","Accumulables":[]},"Task Info":{"Task ID":5,"Index":0,"Attempt":0,"Partition ID":0,"Launch Time":1,"Executor ID":"1","Host":"h","Locality":"ANY","Speculative":true,"Getting Result Time":0,"Finish Time":9,"Failed":true,"Killed":false,"Accumulables":[]},"Task Metrics":null}"#;

    /// Whether the fast path read `line` (as `fast`); if it did, serde must read the same.
    fn agrees<T>(line: &[u8], fast: Option<impl std::fmt::Debug>) -> bool
    where
        T: std::fmt::Debug + serde::de::DeserializeOwned,
    {
        let Some(fast) = fast else {
            return false;
        };
        match sonic_rs::from_slice::<T>(line) {
            Ok(slow) => assert_eq!(fmt(fast), fmt(slow), "{}", String::from_utf8_lossy(line)),
            Err(e) => panic!(
                "fast path accepted what serde rejects ({e}): {}",
                String::from_utf8_lossy(line)
            ),
        }
        true
    }

    fn same_end(line: &[u8]) -> bool {
        agrees::<TaskEndEvent>(line, task_end(line))
    }

    fn same_start(line: &[u8]) -> bool {
        agrees::<TaskStartEvent>(line, task_start(line))
    }

    fn fmt<T: std::fmt::Debug>(x: T) -> String {
        format!("{x:?}")
    }

    #[test]
    fn spark_shaped_lines_take_the_fast_path_and_equal_serde() {
        assert!(same_start(START.as_bytes()));
        assert!(same_end(END.as_bytes()));
        let end = task_end(END.as_bytes()).expect("fast");
        assert_eq!(end.info.finish_time, 1795639979629);
        assert_eq!(
            end.executor_metrics.as_ref().map(|m| m.0[0]),
            Some(Some(12))
        );
        let push = end
            .metrics
            .as_ref()
            .and_then(|m| m.read.as_ref()?.push.as_ref());
        assert_eq!(push.map(|p| p.remote_reqs), Some(7));
        // serde's answer for a failure, not ours
        assert!(task_end(FAILED.as_bytes()).is_none());
        assert!(sonic_rs::from_slice::<TaskEndEvent>(FAILED.as_bytes()).is_ok());
    }

    #[test]
    fn other_layouts_read_the_same() {
        // pretty-printed, keys in another order, missing optional parts
        let v: serde_json::Value = serde_json::from_str(END).expect("json");
        let pretty = serde_json::to_string_pretty(&v).expect("json");
        assert!(same_end(pretty.as_bytes()));
        let mut sorted: Vec<(String, serde_json::Value)> =
            v.as_object().expect("obj").clone().into_iter().collect();
        sorted.reverse();
        let reordered = format!(
            "{{{}}}",
            sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(same_end(reordered.as_bytes()));
        assert_eq!(
            fmt(task_end(reordered.as_bytes())),
            fmt(task_end(END.as_bytes()))
        );
        let sparse = r#"{"Event":"SparkListenerTaskEnd","Task Info":{"Task ID":1},"Task Metrics":{"Shuffle Read Metrics":null},"Task End Reason":null}"#;
        assert!(same_end(sparse.as_bytes()));
        assert_eq!(task_end(sparse.as_bytes()).map(|t| t.stage_id), Some(-1));
        assert_eq!(
            task_end(sparse.as_bytes()).map(|t| t.info.partition_id),
            Some(-1)
        );
    }

    #[test]
    fn what_it_cannot_read_exactly_is_left_to_serde() {
        for (from, to) in [
            (r#""Task ID":1,"#, r#""Task ID":1.0,"#),
            (r#""Task ID":1,"#, r#""Task ID":1e2,"#),
            (r#""Task ID":1,"#, r#""Task ID":-0,"#),
            (r#""Task ID":1,"#, r#""Task ID":01,"#),
            (r#""Task ID":1,"#, r#""Task ID":9223372036854775808,"#),
            (r#""Task ID":1,"#, r#""Task ID":null,"#),
            (r#""Task ID":1,"#, r#""Task ID":1,"Task ID":2,"#),
            (r#""Host":"localhost""#, r#""Host":"local\u0068ost""#),
            (r#""Host":"localhost""#, r#""Host":"lö""#),
            (r#""Stage ID":0,"#, r#""Stage ID":0,"Stage ID":0,"#),
            (r#"{"Reason":"Success"}"#, r#"{"Reason":"Success","x":1}"#),
        ] {
            let line = END.replacen(from, to, 1);
            assert_ne!(line, END, "{from}");
            assert!(!same_end(line.as_bytes()), "{to}");
        }
        let min = END.replacen(r#""Task ID":1,"#, r#""Task ID":-9223372036854775808,"#, 1);
        assert!(same_end(min.as_bytes()));
        assert!(!same_end(format!("{END} x").as_bytes()));
        assert!(same_end(format!("{END} \r\n").as_bytes()));
    }

    #[test]
    fn truncated_and_corrupted_lines_never_differ_from_serde() {
        let replacements: &[u8] = b" \"\\{}[],:0-.enx\x00\x80";
        type Check = fn(&[u8]) -> bool;
        let cases: [(&str, Check); 3] = [(START, same_start), (END, same_end), (FAILED, same_end)];
        for (line, same) in cases {
            let line = line.as_bytes();
            for n in 0..line.len() {
                assert!(!same(&line[..n]), "a truncated line is not an event");
                let mut m = line.to_vec();
                for &r in replacements {
                    m[n] = r;
                    same(&m);
                }
                let mut ins = line.to_vec();
                ins.insert(n, b' ');
                same(&ins);
            }
        }
    }
}
