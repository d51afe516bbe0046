//! A put killed halfway (SIGKILL, so no cleanup code runs) leaves no readable object, on both
//! backends. The test re-runs this test binary as a child that streams a put whose body stalls
//! after some parts, checks that the write was really under way, kills the child, and looks
//! for the object through a freshly opened store and behind the store's back.

mod objstore_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use objstore_support::{Backend, Generated, PART};
use sidecars_common::objstore::{self, get_bytes, put_bytes, S3Options, StoreError};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, ReadBuf};

const CHILD_URL: &str = "OBJSTORE_KILL_CHILD_URL";
const KEY: &str = "victim/object";
/// Bytes the child's body yields before stalling: five S3 parts.
const STALL_AT: u64 = 5 * PART;
const STALLED: &str = "CHILD-BODY-STALLED";

#[derive(Parser)]
struct ChildArgs {
    #[command(flatten)]
    s3: S3Options,
}

/// A body that yields `left` bytes, says so on stdout, then never yields again.
struct Stalling {
    inner: Generated,
    left: u64,
    announced: bool,
}

impl AsyncRead for Stalling {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            if !self.announced {
                self.announced = true;
                println!("{STALLED}");
            }
            return std::task::Poll::Pending;
        }
        let max = (buf.remaining() as u64).min(self.left) as usize;
        let mut sub = ReadBuf::new(buf.initialize_unfilled_to(max));
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut sub);
        let n = sub.filled().len();
        buf.advance(n);
        self.left -= n as u64;
        r
    }
}

/// Not a test of its own: the process that the kill tests start and kill. Its S3 settings
/// come from `SIDECARS_S3_*` and its credentials from the standard `AWS_*` variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process for the put-killed-halfway tests"]
async fn child_slow_put() {
    let url = std::env::var(CHILD_URL).expect("this helper is started by the kill tests");
    let args = ChildArgs::parse_from(["child"]);
    let store = objstore::open(&url, &args.s3)
        .await
        .expect("open store in child");
    let body = Stalling {
        inner: Generated::new(9, 1 << 30),
        left: STALL_AT,
        announced: false,
    };
    let r = store.put(KEY, Box::pin(body)).await;
    panic!("the stalled put finished: {:?}", r.map(|m| m.size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_put_killed_halfway() {
    killed_put(Backend::file()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_put_killed_halfway() {
    killed_put(Backend::garage()).await
}

async fn killed_put(b: Backend) {
    let url = match (&b.file_root(), b.garage_ref()) {
        (Some(root), _) => format!("file://{}/kill", root.display()),
        (None, Some(g)) => g.url("kill"),
        (None, None) => unreachable!("a backend is a file or a garage"),
    };
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "child_slow_put",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_URL, &url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .kill_on_drop(true);
    if let Some(g) = b.garage_ref() {
        cmd.envs(g.env())
            .env("SIDECARS_S3_PART_SIZE", PART.to_string());
    }
    let mut child = cmd.spawn().expect("start child");
    let mut lines = BufReader::new(child.stdout.take().expect("child stdout")).lines();
    let waited = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("child stdout") {
            // libtest may have printed "test child_slow_put ... " on the same line
            if line.contains(STALLED) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        waited,
        Ok(true),
        "the child never reported its stalled body"
    );

    // evidence that the write was really under way when the child dies
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (progress, enough) = if let Some(root) = b.file_root() {
            let tmp = root.join("kill/.sidecars/tmp");
            let biggest = std::fs::read_dir(&tmp)
                .expect("temp dir")
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0);
            (
                format!("temp file of {biggest} bytes"),
                biggest >= STALL_AT - (1 << 20),
            )
        } else {
            let g = b.garage_ref().expect("garage");
            let c = g.client();
            let ups = c
                .list_multipart_uploads()
                .bucket(&g.bucket)
                .send()
                .await
                .expect("list uploads");
            let parts = match ups.uploads().first() {
                Some(u) => c
                    .list_parts()
                    .bucket(&g.bucket)
                    .key(u.key().unwrap_or_default())
                    .upload_id(u.upload_id().unwrap_or_default())
                    .send()
                    .await
                    .expect("list parts")
                    .parts()
                    .len(),
                None => 0,
            };
            (
                format!("{} uploads, {parts} parts", ups.uploads().len()),
                parts >= 3,
            )
        };
        if enough {
            println!("killing the child with {progress}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the child's put made no progress: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().expect("SIGKILL the child");
    let status = child.wait().await.expect("reap child");
    assert!(!status.success(), "child exited normally: {status}");

    // what a restarted daemon sees
    let store = match b.garage_ref() {
        Some(g) => objstore::open(&url, &g.s3_options()).await.expect("reopen"),
        None => objstore::open(&url, &S3Options::default())
            .await
            .expect("reopen"),
    };
    assert!(
        matches!(store.head(KEY).await, Err(StoreError::NotFound { .. })),
        "head found the killed put"
    );
    assert!(
        matches!(store.get(KEY, None).await, Err(StoreError::NotFound { .. })),
        "get found the killed put"
    );
    assert!(
        store.list("").await.expect("list").is_empty(),
        "list shows the killed put"
    );

    // and behind the store's back
    if let Some(root) = b.file_root() {
        assert!(
            !root.join("kill").join(KEY).exists(),
            "the object file exists"
        );
        let leftovers = std::fs::read_dir(root.join("kill/.sidecars/tmp"))
            .expect("tmp")
            .count();
        println!("file: {leftovers} invisible temp file(s) left for the sweep");
    }
    if let Some(g) = b.garage_ref() {
        let c = g.client();
        let head = c
            .head_object()
            .bucket(&g.bucket)
            .key(format!("kill/{KEY}"))
            .send()
            .await;
        assert!(head.is_err(), "S3 has the object: {head:?}");
        let raw = c
            .list_objects_v2()
            .bucket(&g.bucket)
            .send()
            .await
            .expect("raw list");
        assert!(
            raw.contents().is_empty(),
            "the bucket holds objects: {:?}",
            raw.contents()
        );
        let ups = c
            .list_multipart_uploads()
            .bucket(&g.bucket)
            .send()
            .await
            .expect("list uploads");
        assert_eq!(
            ups.uploads().len(),
            1,
            "the killed put's incomplete upload (invisible) should remain"
        );
    }

    // the store is still usable under the same key
    put_bytes(&*store, KEY, "after the crash".into())
        .await
        .expect("put after crash");
    assert_eq!(
        &get_bytes(&*store, KEY).await.expect("get")[..],
        b"after the crash"
    );
}
