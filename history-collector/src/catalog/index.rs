//! The listing index: every listed log's listing fields and the files they were read from,
//! kept as one object in the store (`index/listing-v1.jsonl.zst`, zstd-compressed JSON
//! lines), so a restarted collector lists every application without reading any log. A row
//! is used only while its log's files are exactly the ones it names (same paths, sizes and
//! modification times, same place, same in-progress state); a log that changed, or that
//! no row names, is read again.
//!
//! The object is written whole (put-then-visible in every store; temp + rename on local
//! disk), after a scan that changed the listing, at most every [`WRITE_EVERY`] and once
//! more at shutdown. A missing, unreadable or foreign object is an empty index: the logs
//! are read again, nothing is lost.

use std::collections::HashMap;
use std::io::{BufRead, Write};
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

    /// Whether this row was read from exactly the files of `src`.
    pub fn matches(&self, src: &LogSource) -> bool {
        self.in_progress == src.in_progress
            && self.name == src.name
            && self.files == files_of(src)
            && self.origin == src.origin.uri()
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

/// Decodes the stored object; rows that do not parse are left out (and counted).
pub fn decode(data: &[u8]) -> std::io::Result<(HashMap<String, Row>, usize)> {
    let z = zstd::Decoder::new(data)?;
    let mut rows = HashMap::new();
    let mut bad = 0;
    for line in std::io::BufReader::new(z).split(b'\n') {
        let line = line?;
        match serde_json::from_slice::<Row>(&line) {
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
