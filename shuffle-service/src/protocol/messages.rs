//! BlockTransferMessages: the RPC payloads of the shuffle service (`u8 type` ‖ fields), as
//! in network-shuffle's `protocol` package. Pure encode/decode.
//!
//! Push-based shuffle messages are decoded only far enough to name them: the service refuses
//! them (push is YARN-only in Spark), so their fields are never needed.

use bytes::{BufMut, BytesMut};

use super::wire::{DecodeError, Reader, WireWrite};

/// What an executor tells the service about its disk layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorShuffleInfo {
    pub local_dirs: Vec<String>,
    pub sub_dirs_per_local_dir: i32,
    pub shuffle_manager: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockTransferMessage {
    OpenBlocks {
        app_id: String,
        exec_id: String,
        block_ids: Vec<String>,
    },
    UploadBlock {
        app_id: String,
        exec_id: String,
        block_id: String,
    },
    RegisterExecutor {
        app_id: String,
        exec_id: String,
        info: ExecutorShuffleInfo,
    },
    StreamHandle {
        stream_id: i64,
        num_chunks: i32,
    },
    RegisterDriver {
        app_id: String,
        heartbeat_timeout_ms: i64,
    },
    ShuffleServiceHeartbeat {
        app_id: String,
    },
    UploadBlockStream {
        block_id: String,
    },
    RemoveBlocks {
        app_id: String,
        exec_id: String,
        block_ids: Vec<String>,
    },
    BlocksRemoved {
        num_removed_blocks: i32,
    },
    FetchShuffleBlocks {
        app_id: String,
        exec_id: String,
        shuffle_id: i32,
        map_ids: Vec<i64>,
        reduce_ids: Vec<Vec<i32>>,
        batch_fetch_enabled: bool,
    },
    GetLocalDirsForExecutors {
        app_id: String,
        exec_ids: Vec<String>,
    },
    /// (execId, localDirs) pairs, in order.
    LocalDirsForExecutors {
        dirs: Vec<(String, Vec<String>)>,
    },
    DiagnoseCorruption {
        app_id: String,
        exec_id: String,
        shuffle_id: i32,
        map_id: i64,
        reduce_id: i32,
        checksum: i64,
        algorithm: String,
    },
    CorruptionCause {
        cause: Cause,
    },
    /// Push-based shuffle messages (ids 12-15, 18, 19): recognised, not parsed.
    PushBased {
        type_id: u8,
    },
}

/// Verdict of DiagnoseCorruption; the ordinal is the wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    DiskIssue = 0,
    NetworkIssue = 1,
    UnknownIssue = 2,
    ChecksumVerifyPass = 3,
    UnsupportedChecksumAlgorithm = 4,
}

impl Cause {
    fn from_ordinal(v: u8) -> Result<Cause, DecodeError> {
        Ok(match v {
            0 => Cause::DiskIssue,
            1 => Cause::NetworkIssue,
            2 => Cause::UnknownIssue,
            3 => Cause::ChecksumVerifyPass,
            4 => Cause::UnsupportedChecksumAlgorithm,
            other => {
                return Err(DecodeError::Invalid {
                    what: "corruption cause",
                    detail: format!("ordinal {other}"),
                })
            }
        })
    }
}

/// How many block ids a fetch RPC (OpenBlocks, FetchShuffleBlocks) carries, read from the
/// wire without decoding it, so an oversized request is refused before anything is allocated
/// for its ids. `None` for other messages and for bytes that do not parse that far.
pub fn requested_ids(body: &[u8]) -> Option<u64> {
    let mut r = Reader::new(body);
    match r.u8("type").ok()? {
        0 => {
            r.bytes("appId").ok()?;
            r.bytes("execId").ok()?;
            let n = r.i32("blockIds").ok()?;
            Some(u64::try_from(n).unwrap_or(0))
        }
        9 => {
            r.bytes("appId").ok()?;
            r.bytes("execId").ok()?;
            r.i32("shuffleId").ok()?;
            let maps = usize::try_from(r.i32("mapIds").ok()?).ok()?;
            r.take(maps.checked_mul(8)?, "mapIds").ok()?;
            let outer = usize::try_from(r.i32("reduceIds").ok()?).ok()?;
            // ids = reduce ids; maps with empty id lists still cost an allocation each
            let mut ids = 0u64;
            for _ in 0..outer {
                let n = usize::try_from(r.i32("reduceIds").ok()?).ok()?;
                r.take(n.checked_mul(4)?, "reduceIds").ok()?;
                ids += n as u64;
            }
            Some(ids.max(maps as u64).max(outer as u64))
        }
        _ => None,
    }
}

pub fn type_name(type_id: u8) -> &'static str {
    match type_id {
        0 => "OpenBlocks",
        1 => "UploadBlock",
        2 => "RegisterExecutor",
        3 => "StreamHandle",
        4 => "RegisterDriver",
        5 => "ShuffleServiceHeartbeat",
        6 => "UploadBlockStream",
        7 => "RemoveBlocks",
        8 => "BlocksRemoved",
        9 => "FetchShuffleBlocks",
        10 => "GetLocalDirsForExecutors",
        11 => "LocalDirsForExecutors",
        12 => "PushBlockStream",
        13 => "FinalizeShuffleMerge",
        14 => "MergeStatuses",
        15 => "FetchShuffleBlockChunks",
        16 => "DiagnoseCorruption",
        17 => "CorruptionCause",
        18 => "BlockPushReturnCode",
        19 => "RemoveShuffleMerge",
        _ => "unknown",
    }
}

impl BlockTransferMessage {
    pub fn type_id(&self) -> u8 {
        match self {
            BlockTransferMessage::OpenBlocks { .. } => 0,
            BlockTransferMessage::UploadBlock { .. } => 1,
            BlockTransferMessage::RegisterExecutor { .. } => 2,
            BlockTransferMessage::StreamHandle { .. } => 3,
            BlockTransferMessage::RegisterDriver { .. } => 4,
            BlockTransferMessage::ShuffleServiceHeartbeat { .. } => 5,
            BlockTransferMessage::UploadBlockStream { .. } => 6,
            BlockTransferMessage::RemoveBlocks { .. } => 7,
            BlockTransferMessage::BlocksRemoved { .. } => 8,
            BlockTransferMessage::FetchShuffleBlocks { .. } => 9,
            BlockTransferMessage::GetLocalDirsForExecutors { .. } => 10,
            BlockTransferMessage::LocalDirsForExecutors { .. } => 11,
            BlockTransferMessage::DiagnoseCorruption { .. } => 16,
            BlockTransferMessage::CorruptionCause { .. } => 17,
            BlockTransferMessage::PushBased { type_id } => *type_id,
        }
    }

    pub fn name(&self) -> &'static str {
        type_name(self.type_id())
    }

    pub fn decode(buf: &[u8]) -> Result<BlockTransferMessage, DecodeError> {
        let mut r = Reader::new(buf);
        let type_id = r
            .u8("block transfer message type")
            .map_err(|_| DecodeError::Empty)?;
        let msg = match type_id {
            0 => BlockTransferMessage::OpenBlocks {
                app_id: r.string("appId")?,
                exec_id: r.string("execId")?,
                block_ids: r.string_array("blockIds")?,
            },
            1 => {
                let app_id = r.string("appId")?;
                let exec_id = r.string("execId")?;
                let block_id = r.string("blockId")?;
                r.bytes("metadata")?;
                r.bytes("blockData")?;
                BlockTransferMessage::UploadBlock {
                    app_id,
                    exec_id,
                    block_id,
                }
            }
            2 => BlockTransferMessage::RegisterExecutor {
                app_id: r.string("appId")?,
                exec_id: r.string("execId")?,
                info: ExecutorShuffleInfo {
                    local_dirs: r.string_array("localDirs")?,
                    sub_dirs_per_local_dir: r.i32("subDirsPerLocalDir")?,
                    shuffle_manager: r.string("shuffleManager")?,
                },
            },
            3 => BlockTransferMessage::StreamHandle {
                stream_id: r.i64("streamId")?,
                num_chunks: r.i32("numChunks")?,
            },
            4 => BlockTransferMessage::RegisterDriver {
                app_id: r.string("appId")?,
                heartbeat_timeout_ms: r.i64("heartbeatTimeoutMs")?,
            },
            5 => BlockTransferMessage::ShuffleServiceHeartbeat {
                app_id: r.string("appId")?,
            },
            6 => {
                let block_id = r.string("blockId")?;
                r.bytes("metadata")?;
                BlockTransferMessage::UploadBlockStream { block_id }
            }
            7 => BlockTransferMessage::RemoveBlocks {
                app_id: r.string("appId")?,
                exec_id: r.string("execId")?,
                block_ids: r.string_array("blockIds")?,
            },
            8 => BlockTransferMessage::BlocksRemoved {
                num_removed_blocks: r.i32("numRemovedBlocks")?,
            },
            9 => {
                let app_id = r.string("appId")?;
                let exec_id = r.string("execId")?;
                let shuffle_id = r.i32("shuffleId")?;
                let map_ids = r.long_array("mapIds")?;
                let reduce_ids = r.int_matrix("reduceIds")?;
                let batch_fetch_enabled = r.bool("batchFetchEnabled")?;
                if map_ids.len() != reduce_ids.len() {
                    return Err(DecodeError::Invalid {
                        what: "FetchShuffleBlocks",
                        detail: format!(
                            "{} mapIds but {} reduceId arrays",
                            map_ids.len(),
                            reduce_ids.len()
                        ),
                    });
                }
                BlockTransferMessage::FetchShuffleBlocks {
                    app_id,
                    exec_id,
                    shuffle_id,
                    map_ids,
                    reduce_ids,
                    batch_fetch_enabled,
                }
            }
            10 => BlockTransferMessage::GetLocalDirsForExecutors {
                app_id: r.string("appId")?,
                exec_ids: r.string_array("execIds")?,
            },
            11 => {
                let exec_ids = r.string_array("execIds")?;
                let counts = r.int_array("numLocalDirsByExec")?;
                let all = r.string_array("allLocalDirs")?;
                if exec_ids.len() != counts.len() {
                    return Err(DecodeError::Invalid {
                        what: "LocalDirsForExecutors",
                        detail: format!("{} execIds but {} counts", exec_ids.len(), counts.len()),
                    });
                }
                let mut rest = all.into_iter();
                let mut dirs = Vec::with_capacity(exec_ids.len());
                for (exec, n) in exec_ids.into_iter().zip(counts) {
                    let n = usize::try_from(n).map_err(|_| DecodeError::NegativeLength {
                        what: "numLocalDirsByExec",
                        len: n.into(),
                    })?;
                    let d: Vec<String> = rest.by_ref().take(n).collect();
                    if d.len() != n {
                        return Err(DecodeError::Invalid {
                            what: "LocalDirsForExecutors",
                            detail: "fewer dirs than the counts say".into(),
                        });
                    }
                    dirs.push((exec, d));
                }
                BlockTransferMessage::LocalDirsForExecutors { dirs }
            }
            16 => BlockTransferMessage::DiagnoseCorruption {
                app_id: r.string("appId")?,
                exec_id: r.string("execId")?,
                shuffle_id: r.i32("shuffleId")?,
                map_id: r.i64("mapId")?,
                reduce_id: r.i32("reduceId")?,
                checksum: r.i64("checksum")?,
                algorithm: r.string("algorithm")?,
            },
            17 => BlockTransferMessage::CorruptionCause {
                cause: Cause::from_ordinal(r.u8("cause")?)?,
            },
            12..=15 | 18 | 19 => BlockTransferMessage::PushBased { type_id },
            other => return Err(DecodeError::UnknownBlockTransferType(other)),
        };
        Ok(msg)
    }

    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(self.type_id());
        match self {
            BlockTransferMessage::OpenBlocks {
                app_id,
                exec_id,
                block_ids,
            }
            | BlockTransferMessage::RemoveBlocks {
                app_id,
                exec_id,
                block_ids,
            } => {
                out.put_string(app_id);
                out.put_string(exec_id);
                out.put_string_array(block_ids);
            }
            BlockTransferMessage::UploadBlock {
                app_id,
                exec_id,
                block_id,
            } => {
                out.put_string(app_id);
                out.put_string(exec_id);
                out.put_string(block_id);
                out.put_bytes_prefixed(&[]);
                out.put_bytes_prefixed(&[]);
            }
            BlockTransferMessage::RegisterExecutor {
                app_id,
                exec_id,
                info,
            } => {
                out.put_string(app_id);
                out.put_string(exec_id);
                out.put_string_array(&info.local_dirs);
                out.put_i32(info.sub_dirs_per_local_dir);
                out.put_string(&info.shuffle_manager);
            }
            BlockTransferMessage::StreamHandle {
                stream_id,
                num_chunks,
            } => {
                out.put_i64(*stream_id);
                out.put_i32(*num_chunks);
            }
            BlockTransferMessage::RegisterDriver {
                app_id,
                heartbeat_timeout_ms,
            } => {
                out.put_string(app_id);
                out.put_i64(*heartbeat_timeout_ms);
            }
            BlockTransferMessage::ShuffleServiceHeartbeat { app_id } => out.put_string(app_id),
            BlockTransferMessage::UploadBlockStream { block_id } => {
                out.put_string(block_id);
                out.put_bytes_prefixed(&[]);
            }
            BlockTransferMessage::BlocksRemoved { num_removed_blocks } => {
                out.put_i32(*num_removed_blocks)
            }
            BlockTransferMessage::FetchShuffleBlocks {
                app_id,
                exec_id,
                shuffle_id,
                map_ids,
                reduce_ids,
                batch_fetch_enabled,
            } => {
                out.put_string(app_id);
                out.put_string(exec_id);
                out.put_i32(*shuffle_id);
                out.put_long_array(map_ids);
                out.put_int_matrix(reduce_ids);
                out.put_u8(u8::from(*batch_fetch_enabled));
            }
            BlockTransferMessage::GetLocalDirsForExecutors { app_id, exec_ids } => {
                out.put_string(app_id);
                out.put_string_array(exec_ids);
            }
            BlockTransferMessage::LocalDirsForExecutors { dirs } => {
                let ids: Vec<String> = dirs.iter().map(|(e, _)| e.clone()).collect();
                let counts: Vec<i32> = dirs
                    .iter()
                    .map(|(_, d)| i32::try_from(d.len()).unwrap_or(i32::MAX))
                    .collect();
                let all: Vec<String> = dirs.iter().flat_map(|(_, d)| d.iter().cloned()).collect();
                out.put_string_array(&ids);
                out.put_int_array(&counts);
                out.put_string_array(&all);
            }
            BlockTransferMessage::DiagnoseCorruption {
                app_id,
                exec_id,
                shuffle_id,
                map_id,
                reduce_id,
                checksum,
                algorithm,
            } => {
                out.put_string(app_id);
                out.put_string(exec_id);
                out.put_i32(*shuffle_id);
                out.put_i64(*map_id);
                out.put_i32(*reduce_id);
                out.put_i64(*checksum);
                out.put_string(algorithm);
            }
            BlockTransferMessage::CorruptionCause { cause } => out.put_u8(*cause as u8),
            BlockTransferMessage::PushBased { .. } => {}
        }
        out
    }
}
