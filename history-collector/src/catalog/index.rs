//! The listing index: every listed log's listing fields and the files they were read from,
//! kept as one object in the store (`index/listing-v1.jsonl.zst`, zstd-compressed JSON
//! lines), so a restarted collector lists every application at once without reading any
//! log. The scan that follows compares each row's files (paths, sizes, modification times,
//! place, in-progress state) with the log's: a log that changed, or that no row names, is
//! read again; a row whose log is gone is dropped.
//!
//! The object is written whole (put-then-visible in every store; temp + rename on local
//! disk), after a scan that changed the listing, at most every [`WRITE_EVERY`] and once
//! more at shutdown. A missing, unreadable or foreign object is an empty index: the logs
//! are read again, nothing is lost.

use std::collections::HashMap;
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

/// One log's row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The log's name in the catalog (`<appId>[_<attemptId>]`).
    pub key: String,
    /// Where the log was read (its origin's URI).
    pub origin: String,
    /// The file or rolling directory name.
    pub name: String,
    /// (path, bytes, modified ms) of each file read, in order.
    pub files: Vec<(String, u64, i64)>,
    pub in_progress: bool,
    /// When the listing was read (ms since the epoch).
    pub loaded_ms: i64,
    pub listing: Listing,
}

fn files_of(src: &LogSource) -> Vec<(String, u64, i64)> {
    src.files
        .iter()
        .map(
            |SourceFile {
                 rel,
                 len,
                 modified_ms,
             }| (rel.clone(), *len, *modified_ms),
        )
        .collect()
}

impl Row {
    pub fn new(key: &str, src: &LogSource, loaded_ms: i64, listing: Listing) -> Row {
        Row {
            key: key.to_string(),
            origin: src.origin.uri(),
            name: src.name.clone(),
            files: files_of(src),
            in_progress: src.in_progress,
            loaded_ms,
            listing,
        }
    }
}

/// Encodes rows as the stored object.
pub fn encode<'a>(rows: impl Iterator<Item = &'a Row>) -> std::io::Result<Vec<u8>> {
    let mut z = zstd::Encoder::new(Vec::new(), 3)?;
    for row in rows {
        serde_json::to_writer(&mut z, row)?;
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

/// Decodes the stored object; rows that do not parse or are too long are left out (and
/// counted). Memory is bounded whatever the object holds: one row at a time, and the decoded
/// whole by [`MAX_INDEX_BYTES`].
pub fn decode(data: &[u8]) -> std::io::Result<(HashMap<String, Row>, usize)> {
    let mut z = std::io::BufReader::new(zstd::Decoder::new(data)?.take(MAX_INDEX_BYTES + 1));
    let mut rows = HashMap::new();
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
        match serde_json::from_slice::<Row>(line.strip_suffix(b"\n").unwrap_or(&line)) {
            Ok(row) => {
                rows.insert(row.key.clone(), row);
            }
            Err(_) => bad += 1,
        }
    }
    Ok((rows, bad))
}

/// Reads the index from `store`; empty when there is none or it cannot be read.
pub async fn read(store: &dyn ObjectStore) -> HashMap<String, Row> {
    let data = match objstore::get_bytes(store, INDEX_KEY).await {
        Ok(d) => d,
        Err(objstore::StoreError::NotFound { .. }) => return HashMap::new(),
        Err(e) => {
            tracing::warn!(index = %store.object_url(INDEX_KEY), error = %e, "cannot read the listing index; every log is read again");
            return HashMap::new();
        }
    };
    match decode(&data) {
        Ok((rows, bad)) => {
            if bad > 0 {
                tracing::warn!(index = %store.object_url(INDEX_KEY), bad, "listing index rows that do not parse were left out; their logs are read again");
            }
            rows
        }
        Err(e) => {
            tracing::warn!(index = %store.object_url(INDEX_KEY), error = %e, "the listing index is damaged; every log is read again");
            HashMap::new()
        }
    }
}

/// Writes the index to `store`.
pub async fn write(store: &dyn ObjectStore, data: Vec<u8>) -> anyhow::Result<()> {
    objstore::put_bytes(store, INDEX_KEY, Bytes::from(data)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_over_long_row_is_left_out_and_the_rest_kept() {
        let good = Row {
            key: "app-2".into(),
            origin: "file:/logs".into(),
            name: "app-2".into(),
            files: vec![("app-2".into(), 1, 1)],
            in_progress: false,
            loaded_ms: 1,
            listing: Listing::default(),
        };
        let mut text = vec![b'x'; 3 * MAX_ROW_BYTES as usize];
        text.push(b'\n');
        serde_json::to_writer(&mut text, &good).unwrap();
        text.push(b'\n');
        let data = zstd::encode_all(&text[..], 3).unwrap();
        let (rows, bad) = decode(&data).unwrap();
        assert_eq!((rows.get("app-2"), bad), (Some(&good), 1));
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
            listing: Listing {
                id: Some("app-1".into()),
                name: "n \"quoted\"\n".into(),
                ..Listing::default()
            },
        };
        let data = encode([row.clone()].iter()).unwrap();
        let (rows, bad) = decode(&data).unwrap();
        assert_eq!((rows.get("app-1"), bad), (Some(&row), 0));
        assert!(decode(&data[..data.len() / 2]).is_err());
        assert!(decode(b"not zstd").is_err());
    }
}
