//! The real binary on a real socket, driven by a small client written with the crate's own
//! codecs: registration (and its refusals), fetches by chunk and by stream, out-of-order and
//! unknown chunks, RemoveBlocks, GetLocalDirsForExecutors, refusals of unsupported messages,
//! a malformed frame closing only its own connection, persistence over SIGKILL, and a clean
//! exit on SIGTERM.

mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use shuffle_service::protocol::{BlockTransferMessage, Message};
use support::client::{register, write_map_output, write_placed, Client};
use support::{free_port, metric, Daemon};

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, Vec<PathBuf>) {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    let state = tmp.path().join("state");
    let dirs = vec![support::bm(&root, 0xa), support::bm(&root, 0xb)];
    for d in &dirs {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    (tmp, root, state, dirs)
}

#[test]
fn fetches_registration_and_errors_over_a_real_socket() {
    let (tmp, root, state, dirs) = setup();
    let port = free_port();
    let mut daemon = Daemon::start(port, &root, &state, &tmp.path().join("svc.log"));
    let mut c = Client::connect(port);

    // Registration, and its refusals.
    assert_eq!(c.rpc(&register("app-1", "1", &dirs)), Ok(Bytes::new()));
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let err = c
        .rpc(&register("app-1", "2", &[outside]))
        .expect_err("outside root");
    assert!(
        err.contains("not under any of the service's local directories"),
        "{err}"
    );
    let err = c
        .rpc(&register(
            "app-1",
            "2",
            &[support::bm(&root, 0xa).join("../../outside")],
        ))
        .expect_err("dot-dot");
    assert!(err.contains("not under"), "{err}");

    // A big block (larger than socket buffers) and small ones, by FetchShuffleBlocks.
    let parts = write_map_output(&dirs, 0, 5, &[3, 0, 2_000_000, 7]);
    let (sid, n) = c.open(&BlockTransferMessage::FetchShuffleBlocks {
        app_id: "app-1".into(),
        exec_id: "1".into(),
        shuffle_id: 0,
        map_ids: vec![5],
        reduce_ids: vec![vec![0, 1, 2, 3]],
        batch_fetch_enabled: false,
    });
    assert_eq!(n, 4);
    // Pipelined, as Spark's client does.
    for i in 0..4 {
        c.send(&Message::ChunkFetchRequest {
            stream_id: sid,
            chunk_index: i,
        });
    }
    for (i, part) in parts.iter().enumerate() {
        match c.recv().expect("chunk") {
            Message::ChunkFetchSuccess {
                chunk_index, body, ..
            } => {
                assert_eq!(chunk_index, i as i32);
                assert_eq!(&body[..], &part[..], "chunk {i}");
            }
            other => panic!("chunk {i}: {other:?}"),
        }
    }
    // The stream is finished and gone.
    let err = c.chunk(sid, 4).expect_err("closed stream");
    assert!(err.contains("is closed"), "{err}");

    // Batch fetch of reduce ids [1, 4) as one chunk.
    let (sid, n) = c.open(&BlockTransferMessage::FetchShuffleBlocks {
        app_id: "app-1".into(),
        exec_id: "1".into(),
        shuffle_id: 0,
        map_ids: vec![5],
        reduce_ids: vec![vec![1, 4]],
        batch_fetch_enabled: true,
    });
    assert_eq!(n, 1);
    assert_eq!(
        c.chunk(sid, 0).expect("batch").to_vec(),
        parts[1..].concat()
    );

    // Chunks out of order fail that chunk only.
    let (sid, _) = c.open(&BlockTransferMessage::OpenBlocks {
        app_id: "app-1".into(),
        exec_id: "1".into(),
        block_ids: vec!["shuffle_0_5_0".into(), "shuffle_0_5_3".into()],
    });
    let err = c.chunk(sid, 1).expect_err("out of order");
    assert!(err.contains("out-of-order"), "{err}");
    assert_eq!(c.chunk(sid, 0).expect("chunk 0").to_vec(), parts[0]);
    assert_eq!(c.chunk(sid, 1).expect("chunk 1").to_vec(), parts[3]);

    // Stream requests: StreamResponse then raw bytes.
    let (sid, _) = c.open(&BlockTransferMessage::OpenBlocks {
        app_id: "app-1".into(),
        exec_id: "1".into(),
        block_ids: vec!["shuffle_0_5_2".into()],
    });
    c.send(&Message::StreamRequest {
        stream_id: format!("{sid}_0"),
    });
    match c.recv().expect("stream response") {
        Message::StreamResponse { byte_count, .. } => {
            assert_eq!(byte_count, parts[2].len() as i64);
            assert_eq!(c.read_exact(parts[2].len()).expect("raw"), parts[2]);
        }
        other => panic!("{other:?}"),
    }

    // RDD blocks by OpenBlocks; a missing one fails its chunk.
    write_placed(&dirs, "rdd_3_1", b"cached partition");
    let (sid, n) = c.open(&BlockTransferMessage::OpenBlocks {
        app_id: "app-1".into(),
        exec_id: "1".into(),
        block_ids: vec!["rdd_3_1".into(), "rdd_3_2".into()],
    });
    assert_eq!(n, 2);
    assert_eq!(&c.chunk(sid, 0).expect("rdd")[..], b"cached partition");
    assert!(c
        .chunk(sid, 1)
        .expect_err("missing rdd")
        .contains("not found"));

    // Bad ids are RPC failures; unregistered executors fail at chunk time.
    for bad in ["shuffle_0_5", "../../etc/passwd", "rdd_1_x"] {
        let err = c
            .rpc(&BlockTransferMessage::OpenBlocks {
                app_id: "app-1".into(),
                exec_id: "1".into(),
                block_ids: vec![bad.into()],
            })
            .expect_err(bad);
        assert!(err.contains("Unexpected"), "{bad}: {err}");
    }
    let (sid, _) = c.open(&BlockTransferMessage::OpenBlocks {
        app_id: "app-1".into(),
        exec_id: "9".into(),
        block_ids: vec!["shuffle_0_5_0".into()],
    });
    let err = c.chunk(sid, 0).expect_err("unregistered");
    assert!(
        err.contains("Executor is not registered (appId=app-1, execId=9)"),
        "{err}"
    );

    // Local dirs, as registered.
    let body = c
        .rpc(&BlockTransferMessage::GetLocalDirsForExecutors {
            app_id: "app-1".into(),
            exec_ids: vec!["1".into()],
        })
        .expect("local dirs");
    assert_eq!(
        BlockTransferMessage::decode(&body).expect("decode"),
        BlockTransferMessage::LocalDirsForExecutors {
            dirs: vec![(
                "1".into(),
                dirs.iter().map(|d| d.display().to_string()).collect()
            )]
        }
    );

    // Unsupported messages get a failure naming them.
    let err = c
        .rpc(&BlockTransferMessage::UploadBlock {
            app_id: "app-1".into(),
            exec_id: "1".into(),
            block_id: "rdd_1_1".into(),
        })
        .expect_err("upload");
    assert!(err.contains("UploadBlock"), "{err}");
    let err = c
        .rpc(&BlockTransferMessage::PushBased { type_id: 13 })
        .expect_err("finalize");
    assert!(err.contains("FinalizeShuffleMerge"), "{err}");
    c.send(&Message::RpcRequest {
        request_id: 99,
        body: Bytes::from_static(&[200]),
    });
    assert!(matches!(
        c.recv(),
        Ok(Message::RpcFailure { request_id: 99, .. })
    ));

    // A malformed frame closes that connection only.
    let mut bad = Client::connect(port);
    bad.s
        .write_all(&[0, 0, 0, 0, 0, 0, 0, 9, 77])
        .expect("send junk");
    assert!(bad.recv().is_err(), "connection should be closed");
    let mut huge = Client::connect(port);
    huge.s
        .write_all(&u64::MAX.to_be_bytes())
        .expect("send huge");
    assert!(huge.recv().is_err(), "connection should be closed");
    assert_eq!(
        c.chunk(sid + 1000, 0)
            .map(|_| ())
            .map_err(|e| e.contains("closed")),
        Err(true)
    );

    // RemoveBlocks deletes files by name, refusing anything that is not a block file.
    let body = c
        .rpc(&BlockTransferMessage::RemoveBlocks {
            app_id: "app-1".into(),
            exec_id: "1".into(),
            block_ids: vec!["rdd_3_1".into(), "rdd_3_2".into(), "../root".into()],
        })
        .expect("remove");
    assert_eq!(
        BlockTransferMessage::decode(&body).expect("decode"),
        BlockTransferMessage::BlocksRemoved {
            num_removed_blocks: 1
        }
    );

    assert!(metric(daemon.admin_port, "shuffle_blocks_sent_total") >= 9.0);
    assert_eq!(
        metric(daemon.admin_port, "shuffle_registered_executors"),
        1.0
    );

    // Registrations survive SIGKILL.
    daemon.kill9();
    let daemon = Daemon::start(port, &root, &state, &tmp.path().join("svc2.log"));
    let mut c = Client::connect(port);
    let (sid, _) = c.open(&BlockTransferMessage::OpenBlocks {
        app_id: "app-1".into(),
        exec_id: "1".into(),
        block_ids: vec!["shuffle_0_5_3".into()],
    });
    assert_eq!(c.chunk(sid, 0).expect("after restart").to_vec(), parts[3]);
    drop(c);
    daemon.stop();
}

#[test]
fn idle_applications_are_removed_with_their_files() {
    let (tmp, root, state, dirs) = setup();
    let port = free_port();
    let daemon = Daemon::start_with(
        port,
        &root,
        &state,
        &tmp.path().join("svc.log"),
        &["--app-ttl", "1s", "--cleanup-interval", "200ms"],
    );
    let mut c = Client::connect(port);
    assert_eq!(c.rpc(&register("app-ttl", "1", &dirs)), Ok(Bytes::new()));
    write_placed(&dirs, "rdd_1_1", b"x");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while dirs.iter().any(|d| d.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "app dirs not removed; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metric(daemon.admin_port, "shuffle_registered_executors"),
        0.0
    );
    assert!(root.exists(), "only the executor dirs go, never the root");
    daemon.stop();
}

#[test]
fn idle_connections_are_closed_and_busy_ones_kept() {
    let (tmp, root, state, dirs) = setup();
    let port = free_port();
    let daemon = Daemon::start_with(
        port,
        &root,
        &state,
        &tmp.path().join("svc.log"),
        &["--idle-timeout", "1s"],
    );
    let mut idle = Client::connect(port);
    let mut busy = Client::connect(port);
    assert_eq!(
        idle.rpc(&register("app-idle", "1", &dirs)),
        Ok(Bytes::new())
    );
    // The busy connection asks something every 300 ms for 2.4 s: never idle for 1 s.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300));
        let heartbeat = BlockTransferMessage::ShuffleServiceHeartbeat {
            app_id: "app-idle".into(),
        };
        assert_eq!(busy.rpc(&heartbeat), Ok(Bytes::new()), "busy connection");
    }
    // By now the quiet one has been closed by the server: reading gives end of stream.
    let mut b = [0u8; 1];
    match idle.s.read(&mut b) {
        Ok(0) => {}
        other => panic!(
            "idle connection still open: {other:?}; log:\n{}",
            daemon.log()
        ),
    }
    assert_eq!(
        metric(daemon.admin_port, "shuffle_idle_connections_closed_total"),
        1.0
    );
    daemon.stop();
}
