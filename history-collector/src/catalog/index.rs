//! The listing index: every listed log's listing fields and the files they were read from,
//! kept as one object in the store (`index/listing-v1.jsonl.zst`, zstd-compressed JSON
//! lines), so a restarted collector lists every application at once without reading any
//! log. The scan that follows compares each row's files (paths, sizes, modification times,
//! place, in-progress state) with the log's: a log that changed, or that no row names, is
//! read again; a row whose log is gone is dropped.
//!
//! The object is written whole (put-then-visible in every store; temp + rename on local
//! disk), after a scan that changed the listing, at most every [`WRITE_EVERY`] and once
//! more at shutdown. It is read and written a row at a time, never held whole as rows. A
//! missing or unreadable object is an empty index, and a damaged one ends at the damage:
//! the logs no row lists are read again, nothing is lost.

use std::borrow::Cow;
use std::io::{BufRead, Read, Write};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sidecars_common::objstore::{self, ObjectStore};

use crate::eventlog::{LogSource, SourceFile};
use crate::model::listing::Listing;

/// Where the index is kept in the store.
pub const INDEX_KEY: &str = "index/listing-v1.jsonl.zst";

/// How often, at most, the index is written while logs keep changing.
pub const WRITE_EVERY: Duration = Duration::from_secs(15);

/// One log's row: borrowed from a listed log when written ([`Row::of`]), owned when read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row<'a> {
    /// The log's name in the catalog (`<appId>[_<attemptId>]`).
    pub key: Cow<'a, str>,
    /// Where the log was read (its origin's URI).
    pub origin: Cow<'a, str>,
    /// The file or rolling directory name.
    pub name: Cow<'a, str>,
    /// (path, bytes, modified ms) of each file read, in order.
    pub files: Vec<(Cow<'a, str>, u64, i64)>,
    pub in_progress: bool,
    /// When the listing was read (ms since the epoch).
    pub loaded_ms: i64,
    pub listing: Cow<'a, Listing>,
}

impl<'a> Row<'a> {
    /// The row of a listed log, as written.
    pub fn of(key: &'a str, src: &'a LogSource, loaded_ms: i64, listing: &'a Listing) -> Self {
        Row {
            key: key.into(),
            origin: src.origin.uri().into(),
            name: src.name.as_str().into(),
            files: src
                .files
                .iter()
                .map(
                    |SourceFile {
                         rel,
                         len,
                         modified_ms,
                     }| (rel.as_str().into(), *len, *modified_ms),
                )
                .collect(),
            in_progress: src.in_progress,
            loaded_ms,
            listing: Cow::Borrowed(listing),
        }
    }
}

/// Encodes rows as the stored object into `out`, one at a time, and returns `out`.
fn encode_into<'a, W: Write>(out: W, rows: impl Iterator<Item = Row<'a>>) -> std::io::Result<W> {
    let mut z = zstd::Encoder::new(out, 3)?;
    for row in rows {
        serde_json::to_writer(&mut z, &row)?;
        z.write_all(b"\n")?;
    }
    z.finish()
}

/// Longest row read (a real one is well under a kilobyte); a longer one is left out.
const MAX_ROW_BYTES: u64 = 1 << 20;
/// Most bytes the object may decode to (about two million rows): a bigger one is damaged.
const MAX_INDEX_BYTES: u64 = 1 << 30;

fn too_big() -> std::io::Error {
    std::io::Error::other(format!("decodes to more than {MAX_INDEX_BYTES} bytes"))
}

/// Decodes the stored object, handing each row to `each` as it is read (one row is held at
/// a time); rows that do not parse or are too long are left out, and their count returned.
/// Memory is bounded whatever the object holds: one row at a time, and the decoded whole by
/// [`MAX_INDEX_BYTES`]. On an error (a damaged or truncated object) the rows read before it
/// have been handed out.
pub fn decode(data: &[u8], mut each: impl FnMut(Row<'static>)) -> std::io::Result<usize> {
    let mut z = std::io::BufReader::new(zstd::Decoder::new(data)?.take(MAX_INDEX_BYTES + 1));
    let mut bad = 0;
    let (mut line, mut total) = (Vec::new(), 0u64);
    loop {
        line.clear();
        let n = (&mut z)
            .take(MAX_ROW_BYTES + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_INDEX_BYTES {
            return Err(too_big());
        }
        if line.last() != Some(&b'\n') && n as u64 > MAX_ROW_BYTES {
            // skip the rest of the over-long row
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m = (&mut z).take(MAX_ROW_BYTES).read_until(b'\n', &mut rest)?;
                total += m as u64;
                if total > MAX_INDEX_BYTES {
                    return Err(too_big());
                }
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            bad += 1;
            continue;
        }
        match sonic_rs::from_slice::<Row<'static>>(line.strip_suffix(b"\n").unwrap_or(&line)) {
            Ok(row) => each(row),
            Err(_) => bad += 1,
        }
    }
    Ok(bad)
}

/// Reads the index from `store` (the compressed object; see [`decode`]); `None` when there
/// is none or it cannot be read.
pub async fn fetch(store: &dyn ObjectStore) -> Option<Bytes> {
    match objstore::get_bytes(store, INDEX_KEY).await {
        Ok(d) => Some(d),
        Err(objstore::StoreError::NotFound { .. }) => None,
        Err(e) => {
            tracing::warn!(index = %store.object_url(INDEX_KEY), error = %e, "cannot read the listing index; every log is read again");
            None
        }
    }
}

/// Writes the index to `store` from `file` (the encoded object, read from its start).
pub async fn write(store: &dyn ObjectStore, file: std::fs::File) -> anyhow::Result<()> {
    store
        .put(INDEX_KEY, Box::pin(tokio::fs::File::from_std(file)))
        .await?;
    Ok(())
}

/// Encodes rows as the stored object into an unnamed temp file (so a large index is never
/// held in memory), ready to be [`write`]n.
pub fn encode_to_file<'a>(rows: impl Iterator<Item = Row<'a>>) -> std::io::Result<std::fs::File> {
    use std::io::Seek;
    let mut file = encode_into(std::io::BufWriter::new(tempfile::tempfile()?), rows)?
        .into_inner()
        .map_err(|e| e.into_error())?;
    file.rewind()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8]) -> std::io::Result<(Vec<Row<'static>>, usize)> {
        let mut rows = Vec::new();
        let bad = decode(data, |r| rows.push(r))?;
        Ok((rows, bad))
    }

    #[test]
    fn an_over_long_row_is_left_out_and_the_rest_kept() {
        let good = Row {
            key: "app-2".into(),
            origin: "file:/logs".into(),
            name: "app-2".into(),
            files: vec![("app-2".into(), 1, 1)],
            in_progress: false,
            loaded_ms: 1,
            listing: Cow::Owned(Listing::default()),
        };
        let mut text = vec![b'x'; 3 * MAX_ROW_BYTES as usize];
        text.push(b'\n');
        serde_json::to_writer(&mut text, &good).unwrap();
        text.push(b'\n');
        let data = zstd::encode_all(&text[..], 3).unwrap();
        let (rows, bad) = all(&data).unwrap();
        assert_eq!((rows, bad), (vec![good], 1));
    }

    #[test]
    fn rows_round_trip_and_damage_is_an_empty_index() {
        let row = Row {
            key: "app-1".into(),
            origin: "file:/logs".into(),
            name: "app-1.inprogress".into(),
            files: vec![("app-1.inprogress".into(), 10, 5)],
            in_progress: true,
            loaded_ms: 7,
            listing: Cow::Owned(Listing {
                id: Some("app-1".into()),
                name: "n \"quoted\"\n".into(),
                ..Listing::default()
            }),
        };
        let src = LogSource {
            origin: crate::eventlog::Origin::Dir("/logs".into()),
            name: row.name.as_ref().into(),
            files: vec![SourceFile {
                rel: row.name.as_ref().into(),
                len: 10,
                modified_ms: 5,
            }],
            in_progress: true,
            max_line_bytes: 1 << 20,
            modified_ms: 5,
        };
        let data = encode_into(
            Vec::new(),
            std::iter::once(Row::of("app-1", &src, 7, &row.listing)),
        )
        .unwrap();
        let (rows, bad) = all(&data).unwrap();
        assert_eq!((rows, bad), (vec![row], 0));
        assert!(all(&data[..data.len() / 2]).is_err());
        assert!(all(b"not zstd").is_err());
    }
}
