//! Strict parsing of the block ids the service serves (`shuffle_<s>_<m>_<r>`, the batch form
//! `shuffle_<s>_<m>_<start>_<end>`, `rdd_<rdd>_<split>`) and of the file names the driver asks
//! it to delete. Only decimal digits are accepted, so a parsed id can never name a path outside
//! its directory.

use std::fmt;

/// A block the service can hand out as a file segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockRef {
    /// Reduce partitions `[start_reduce, end_reduce)` of one map output.
    Shuffle {
        shuffle_id: i32,
        map_id: i64,
        start_reduce: i32,
        end_reduce: i32,
    },
    Rdd {
        rdd_id: i32,
        split_index: i32,
    },
}

impl fmt::Display for BlockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BlockRef::Shuffle {
                shuffle_id,
                map_id,
                start_reduce,
                end_reduce,
            } if end_reduce == start_reduce.wrapping_add(1) => {
                write!(f, "shuffle_{shuffle_id}_{map_id}_{start_reduce}")
            }
            BlockRef::Shuffle {
                shuffle_id,
                map_id,
                start_reduce,
                end_reduce,
            } => write!(
                f,
                "shuffle_{shuffle_id}_{map_id}_{start_reduce}_{end_reduce}"
            ),
            BlockRef::Rdd {
                rdd_id,
                split_index,
            } => write!(f, "rdd_{rdd_id}_{split_index}"),
        }
    }
}

/// Parses a non-negative decimal number with no sign, spaces or leading `+`.
fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// What an OpenBlocks request names. Java parses mapId and reduceId as 32-bit ints here.
pub fn parse_open_block(id: &str) -> Result<BlockRef, String> {
    let parts: Vec<&str> = id.split('_').collect();
    match parts.as_slice() {
        ["shuffle", s, m, r] => {
            let (Some(shuffle_id), Some(map_id), Some(reduce)) =
                (num::<i32>(s), num::<i32>(m), num::<i32>(r))
            else {
                return Err(format!("Unexpected shuffle block id format: {id}"));
            };
            let end_reduce = reduce
                .checked_add(1)
                .ok_or_else(|| format!("Unexpected shuffle block id format: {id}"))?;
            Ok(BlockRef::Shuffle {
                shuffle_id,
                map_id: map_id.into(),
                start_reduce: reduce,
                end_reduce,
            })
        }
        ["rdd", r, s] => match (num::<i32>(r), num::<i32>(s)) {
            (Some(rdd_id), Some(split_index)) => Ok(BlockRef::Rdd {
                rdd_id,
                split_index,
            }),
            _ => Err(format!("Unexpected block id format: {id}")),
        },
        _ => Err(format!("Unexpected block id format: {id}")),
    }
}

/// A file the driver may ask the service to delete with RemoveBlocks: a disk-cached RDD block
/// or a map output's data/index/checksum file. Returns the file name, unchanged.
pub fn parse_removable_file(name: &str) -> Option<&str> {
    let parts: Vec<&str> = name.split('_').collect();
    let ok = match parts.as_slice() {
        ["rdd", r, s] => num::<i32>(r).is_some() && num::<i32>(s).is_some(),
        ["shuffle", s, m, last] => {
            let mut pieces = last.splitn(2, '.');
            let reduce = pieces.next().unwrap_or("");
            let ext = pieces.next().unwrap_or("");
            let ext_ok = matches!(ext, "data" | "index")
                || ext
                    .strip_prefix("checksum.")
                    .is_some_and(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric()));
            num::<i32>(s).is_some() && num::<i64>(m).is_some() && reduce == "0" && ext_ok
        }
        _ => false,
    };
    ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_open_blocks_ids() {
        assert_eq!(
            parse_open_block("shuffle_0_5_3"),
            Ok(BlockRef::Shuffle {
                shuffle_id: 0,
                map_id: 5,
                start_reduce: 3,
                end_reduce: 4
            })
        );
        assert_eq!(
            parse_open_block("rdd_2_3"),
            Ok(BlockRef::Rdd {
                rdd_id: 2,
                split_index: 3
            })
        );
        for bad in [
            "shuffle_0_5",
            "shuffle_0_5_1_2",
            "shuffle_-1_5_0",
            "shuffle_0_+5_0",
            "shuffle_0_99999999999_0",
            "rdd_1_../x",
            "rdd_1_2_3",
            "broadcast_1",
            "",
            "rdd__1",
            "shuffle_0_5_2147483647",
        ] {
            assert!(parse_open_block(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            parse_open_block("rdd_2_3").map(|b| b.to_string()),
            Ok("rdd_2_3".into())
        );
        assert_eq!(
            parse_open_block("shuffle_1_2_3").map(|b| b.to_string()),
            Ok("shuffle_1_2_3".into())
        );
    }

    #[test]
    fn removable_files() {
        for ok in [
            "rdd_1_2",
            "shuffle_0_12345678901_0.data",
            "shuffle_0_1_0.index",
            "shuffle_0_1_0.checksum.ADLER32",
        ] {
            assert_eq!(parse_removable_file(ok), Some(ok));
        }
        for bad in [
            "..",
            "rdd_1_2/../../x",
            "shuffle_0_1_1.data",
            "shuffle_0_1_0.data/x",
            "shuffle_0_1_0.checksum.",
            "shuffle_0_1_0.checksum./x",
            "x",
            "rdd_1_2\0",
        ] {
            assert_eq!(parse_removable_file(bad), None, "{bad:?} should be refused");
        }
    }
}
