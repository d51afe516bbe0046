//! The spill file's record encoding: zigzag varints, and short names (executor ids, hosts,
//! localities) interned to numbers. Records are written once and read back by the same
//! process, so the format needs no version; a record that does not decode ends the read.

use compact_str::CompactString;
use foldhash::HashMap;

use super::record::{TaskRec, TaskState};
use crate::model::accumulables::AccumulableInfo;
use crate::model::{Metrics, METRIC_COUNT};

/// Short names, interned: records hold their number.
#[derive(Debug, Default)]
pub(super) struct Names {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Names {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(i) = self.ids.get(s) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), i);
        i
    }

    fn get(&self, i: i64) -> CompactString {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.names.get(i))
            .map(|n| CompactString::from(n.as_str()))
            .unwrap_or_default()
    }
}

fn put(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            buf.push(b);
            return;
        }
        buf.push(b | 0x80);
    }
}

/// An optional string: its length (-1 for none), then its bytes.
fn put_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => put(buf, -1),
        Some(s) => {
            put(buf, s.len() as i64);
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

/// A read position in encoded records.
pub(super) struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Cursor { b, at: 0 }
    }

    fn get(&mut self) -> Option<i64> {
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *self.b.get(self.at)?;
            self.at += 1;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        Some(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    /// `Some(None)` for an absent string, `None` when the record ends early.
    fn str(&mut self) -> Option<Option<String>> {
        let len = self.get()?;
        if len < 0 {
            return Some(None);
        }
        let b = self.bytes(usize::try_from(len).ok()?)?;
        Some(Some(String::from_utf8_lossy(b).into_owned()))
    }
}

/// Appends one record to `buf`.
pub(super) fn encode(rec: &TaskRec, names: &mut Names, buf: &mut Vec<u8>) {
    let ex = names.id(&rec.executor_id);
    let host = names.id(&rec.host);
    let loc = names.id(&rec.locality);
    for v in [
        rec.task_id,
        rec.index,
        rec.attempt,
        rec.partition_id,
        rec.launch_time,
        rec.result_fetch_start,
        rec.duration,
        i64::from(ex),
        i64::from(host),
        rec.status.code() as i64,
        i64::from(loc),
        i64::from(rec.speculative),
    ] {
        put(buf, v);
    }
    put_str(buf, rec.error.as_deref());
    match &rec.metrics {
        None => put(buf, 0),
        Some(mt) => {
            put(buf, 1);
            for v in mt.v {
                put(buf, v);
            }
        }
    }
    put(buf, rec.accumulables.len() as i64);
    for a in &rec.accumulables {
        put(buf, a.id);
        put_str(buf, a.name.as_deref());
        put_str(buf, a.update.as_deref());
        put_str(buf, a.value.as_deref());
    }
}

/// Reads the record at the cursor; `None` if it ends early.
pub(super) fn decode(c: &mut Cursor, names: &Names) -> Option<TaskRec> {
    let mut h = [0i64; 12];
    for slot in h.iter_mut() {
        *slot = c.get()?;
    }
    let error = c.str()?;
    let metrics = if c.get()? == 1 {
        let mut v = [0; METRIC_COUNT];
        for slot in v.iter_mut() {
            *slot = c.get()?;
        }
        Some(Metrics { v })
    } else {
        None
    };
    let n = usize::try_from(c.get()?).ok()?;
    let mut accumulables = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        accumulables.push(AccumulableInfo {
            id: c.get()?,
            name: c.str()?,
            update: c.str()?,
            value: c.str()?,
        });
    }
    Some(TaskRec {
        task_id: h[0],
        index: h[1],
        attempt: h[2],
        partition_id: h[3],
        launch_time: h[4],
        result_fetch_start: h[5],
        duration: h[6],
        executor_id: names.get(h[7]),
        host: names.get(h[8]),
        status: TaskState::from_code(h[9] as u64),
        locality: names.get(h[10]),
        speculative: h[11] != 0,
        error,
        metrics,
        accumulables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let rec = TaskRec {
            task_id: 1 << 40,
            index: 3,
            attempt: 1,
            partition_id: -1,
            launch_time: 1_700_000_000_000,
            result_fetch_start: 0,
            duration: -5,
            executor_id: "7".into(),
            host: "10.0.0.1".into(),
            status: TaskState::Killed,
            locality: "PROCESS_LOCAL".into(),
            speculative: true,
            error: Some("boom ✗".into()),
            metrics: Some(Metrics {
                v: [i64::MIN; METRIC_COUNT],
            }),
            accumulables: vec![AccumulableInfo {
                id: 9,
                name: Some("n".into()),
                update: None,
                value: Some(String::new()),
            }],
        };
        let mut names = Names::default();
        let mut buf = Vec::new();
        encode(&rec, &mut names, &mut buf);
        encode(&rec, &mut names, &mut buf);
        let mut c = Cursor::new(&buf);
        for _ in 0..2 {
            let back = decode(&mut c, &names).expect("decodes");
            assert_eq!(format!("{back:?}"), format!("{rec:?}"));
        }
        // a record cut anywhere does not decode
        for cut in 0..buf.len() / 2 {
            assert!(decode(&mut Cursor::new(&buf[..cut]), &names).is_none());
        }
    }
}
