//! The hex vectors of spec/shuffle-protocol.md §2.4 (produced by Spark 4.3.0's encoders),
//! checked in both directions, and a fuzz property that decoders never panic.

use bytes::Bytes;
use proptest::prelude::*;

use super::frame::{check_frame, chunk_success_header, stream_response_header, FrameCheck};
use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test vector hex"))
        .collect()
}

fn register_executor() -> BlockTransferMessage {
    BlockTransferMessage::RegisterExecutor {
        app_id: "app-1".into(),
        exec_id: "3".into(),
        info: ExecutorShuffleInfo {
            local_dirs: vec!["/d/blockmgr-1".into()],
            sub_dirs_per_local_dir: 64,
            shuffle_manager: "org.apache.spark.shuffle.sort.SortShuffleManager".into(),
        },
    }
}

/// Encodes to exactly `vector` and decodes back to `msg`.
fn frame_roundtrip(msg: Message, vector: &str) {
    let bytes = hex(vector);
    assert_eq!(msg.encode().to_vec(), bytes, "encoding of {msg:?}");
    assert_eq!(
        check_frame(&bytes, 1 << 20),
        Ok(FrameCheck::Ready(bytes.len()))
    );
    let decoded = Message::decode(Bytes::copy_from_slice(&bytes[8..])).expect("decodes");
    assert_eq!(decoded, msg);
}

fn btm_roundtrip(msg: BlockTransferMessage, vector: &str) {
    let bytes = hex(vector);
    assert_eq!(msg.encode().to_vec(), bytes, "encoding of {msg:?}");
    assert_eq!(BlockTransferMessage::decode(&bytes).expect("decodes"), msg);
}

#[test]
fn rpc_request_register_executor() {
    let body = register_executor().encode().freeze();
    frame_roundtrip(
        Message::RpcRequest { request_id: 7, body },
        "0000000000000071 03 0000000000000007 0000005c
         02 00000005 6170702d31 00000001 33 00000001 0000000d 2f642f626c6f636b6d67722d31 00000040
         00000030 6f72672e6170616368652e737061726b2e73687566666c652e736f72742e536f727453687566666c654d616e61676572",
    );
}

#[test]
fn transport_vectors() {
    frame_roundtrip(
        Message::RpcResponse {
            request_id: 7,
            body: Bytes::new(),
        },
        "0000000000000015 04 0000000000000007 00000000",
    );
    let handle = BlockTransferMessage::StreamHandle {
        stream_id: 42,
        num_chunks: 2,
    };
    frame_roundtrip(
        Message::RpcResponse {
            request_id: 8,
            body: handle.encode().freeze(),
        },
        "0000000000000022 04 0000000000000008 0000000d 03 000000000000002a 00000002",
    );
    frame_roundtrip(
        Message::ChunkFetchRequest {
            stream_id: 42,
            chunk_index: 0,
        },
        "0000000000000015 00 000000000000002a 00000000",
    );
    frame_roundtrip(
        Message::ChunkFetchSuccess {
            stream_id: 42,
            chunk_index: 0,
            body: Bytes::from_static(b"hello"),
        },
        "000000000000001a 01 000000000000002a 00000000 68656c6c6f",
    );
    frame_roundtrip(
        Message::ChunkFetchFailure {
            stream_id: 42,
            chunk_index: 1,
            error: "err".into(),
        },
        "000000000000001c 02 000000000000002a 00000001 00000003 657272",
    );
    frame_roundtrip(
        Message::RpcFailure {
            request_id: 7,
            error: "err".into(),
        },
        "0000000000000018 05 0000000000000007 00000003 657272",
    );
    frame_roundtrip(
        Message::StreamRequest {
            stream_id: "42_0".into(),
        },
        "0000000000000011 06 00000004 34325f30",
    );
    frame_roundtrip(
        Message::StreamResponse {
            stream_id: "42_0".into(),
            byte_count: 5,
        },
        "0000000000000019 07 00000004 34325f30 0000000000000005",
    );
    frame_roundtrip(
        Message::StreamFailure {
            stream_id: "42_0".into(),
            error: "err".into(),
        },
        "0000000000000018 08 00000004 34325f30 00000003 657272",
    );
    frame_roundtrip(
        Message::OneWayMessage {
            body: Bytes::from_static(b"hi"),
        },
        "000000000000000f 09 00000002 6869",
    );
    frame_roundtrip(
        Message::UploadStream {
            request_id: 9,
            meta: Bytes::from_static(b"m"),
            body_byte_count: 3,
        },
        "000000000000001e 0a 0000000000000009 00000001 6d 0000000000000003",
    );
    frame_roundtrip(
        Message::MergedBlockMetaRequest {
            request_id: 10,
            app_id: "app-1".into(),
            shuffle_id: 0,
            shuffle_merge_id: 0,
            reduce_id: 1,
        },
        "0000000000000026 0b 000000000000000a 00000005 6170702d31 00000000 00000000 00000001",
    );
}

#[test]
fn file_body_headers_match_in_memory_encoding() {
    let whole = Message::ChunkFetchSuccess {
        stream_id: 42,
        chunk_index: 0,
        body: Bytes::from_static(b"hello"),
    }
    .encode();
    let mut split = chunk_success_header(42, 0, 5);
    split.extend_from_slice(b"hello");
    assert_eq!(whole, split);
    assert_eq!(
        stream_response_header("42_0", 5).to_vec(),
        hex("0000000000000019 07 00000004 34325f30 0000000000000005")
    );
}

#[test]
fn block_transfer_vectors() {
    let fetch = |batch| BlockTransferMessage::FetchShuffleBlocks {
        app_id: "app-1".into(),
        exec_id: "3".into(),
        shuffle_id: 0,
        map_ids: vec![5],
        reduce_ids: vec![vec![0, 2]],
        batch_fetch_enabled: batch,
    };
    btm_roundtrip(
        fetch(false),
        "09 00000005 6170702d31 00000001 33 00000000 00000001 0000000000000005 00000001 00000002 00000000 00000002 00",
    );
    btm_roundtrip(
        fetch(true),
        "09 00000005 6170702d31 00000001 33 00000000 00000001 0000000000000005 00000001 00000002 00000000 00000002 01",
    );
    btm_roundtrip(
        BlockTransferMessage::OpenBlocks {
            app_id: "app-1".into(),
            exec_id: "3".into(),
            block_ids: vec!["shuffle_0_5_0".into()],
        },
        "00 00000005 6170702d31 00000001 33 00000001 0000000d 73687566666c655f305f355f30",
    );
    btm_roundtrip(
        BlockTransferMessage::StreamHandle {
            stream_id: 42,
            num_chunks: 2,
        },
        "03 000000000000002a 00000002",
    );
    btm_roundtrip(
        BlockTransferMessage::BlocksRemoved {
            num_removed_blocks: 2,
        },
        "08 00000002",
    );
    btm_roundtrip(
        BlockTransferMessage::GetLocalDirsForExecutors {
            app_id: "app-1".into(),
            exec_ids: vec!["3".into()],
        },
        "0a 00000005 6170702d31 00000001 00000001 33",
    );
    btm_roundtrip(
        BlockTransferMessage::LocalDirsForExecutors {
            dirs: vec![("3".into(), vec!["/d/blockmgr-1".into()])],
        },
        "0b 00000001 00000001 33 00000001 00000001 00000001 0000000d 2f642f626c6f636b6d67722d31",
    );
    btm_roundtrip(
        BlockTransferMessage::RemoveBlocks {
            app_id: "app-1".into(),
            exec_id: "3".into(),
            block_ids: vec!["rdd_1_2".into()],
        },
        "07 00000005 6170702d31 00000001 33 00000001 00000007 7264645f315f32",
    );
}

#[test]
fn other_messages_roundtrip() {
    for m in [
        register_executor(),
        BlockTransferMessage::RegisterDriver {
            app_id: "a".into(),
            heartbeat_timeout_ms: 120_000,
        },
        BlockTransferMessage::ShuffleServiceHeartbeat { app_id: "a".into() },
        BlockTransferMessage::DiagnoseCorruption {
            app_id: "a".into(),
            exec_id: "1".into(),
            shuffle_id: 2,
            map_id: 3,
            reduce_id: 4,
            checksum: 5,
            algorithm: "ADLER32".into(),
        },
        BlockTransferMessage::CorruptionCause {
            cause: Cause::NetworkIssue,
        },
    ] {
        assert_eq!(
            BlockTransferMessage::decode(&m.encode()).expect("decodes"),
            m
        );
    }
}

#[test]
fn bad_inputs_are_errors() {
    assert!(matches!(
        BlockTransferMessage::decode(&[]),
        Err(DecodeError::Empty)
    ));
    assert!(matches!(
        BlockTransferMessage::decode(&[99]),
        Err(DecodeError::UnknownBlockTransferType(99))
    ));
    // A count of 2^31-1 strings with nothing behind it must fail before allocating.
    let huge = hex("00 00000001 61 00000001 62 7fffffff");
    assert!(matches!(
        BlockTransferMessage::decode(&huge),
        Err(DecodeError::Truncated { .. })
    ));
    let negative = hex("00 ffffffff");
    assert!(matches!(
        BlockTransferMessage::decode(&negative),
        Err(DecodeError::NegativeLength { .. })
    ));
    assert!(Message::decode(Bytes::from_static(&[13])).is_err());
    assert!(check_frame(&hex("0000000000000008"), 1 << 20).is_err());
    assert!(check_frame(&hex("ffffffffffffffff"), 1 << 20).is_err());
    assert!(check_frame(&hex("0000000000100000"), 1024).is_err());
    assert_eq!(
        check_frame(&hex("0000000000000015 00"), 1024),
        Ok(FrameCheck::Incomplete)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = BlockTransferMessage::decode(&data);
        let _ = Message::decode(Bytes::from(data.clone()));
        let _ = check_frame(&data, 1 << 20);
    }

    #[test]
    fn decoders_never_panic_on_mutated_messages(
        pos in 0usize..200, byte in any::<u8>(), cut in 0usize..200, which in 0usize..4
    ) {
        let base = match which {
            0 => register_executor().encode().to_vec(),
            1 => BlockTransferMessage::FetchShuffleBlocks {
                app_id: "app".into(), exec_id: "1".into(), shuffle_id: 1,
                map_ids: vec![1, 2], reduce_ids: vec![vec![0, 1], vec![2]], batch_fetch_enabled: false,
            }.encode().to_vec(),
            2 => BlockTransferMessage::LocalDirsForExecutors {
                dirs: vec![("1".into(), vec!["/a".into(), "/b".into()])],
            }.encode().to_vec(),
            _ => Message::ChunkFetchFailure { stream_id: 1, chunk_index: 2, error: "x".into() }.encode()[8..].to_vec(),
        };
        let mut data = base;
        if !data.is_empty() {
            let p = pos % data.len();
            data[p] = byte;
            data.truncate(cut.max(1).min(data.len()));
        }
        let _ = BlockTransferMessage::decode(&data);
        let _ = Message::decode(Bytes::from(data));
    }
}
