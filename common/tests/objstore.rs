//! The object store suite: every case runs on the file backend and on a real Garage S3
//! server, through the `ObjectStore` interface; then the error kinds each backend can
//! produce (missing bucket, bad credentials, unreachable endpoint, missing object).

mod objstore_support;

use std::time::{Duration, Instant};

use chrono::Utc;
use objstore_support::{hash_body, sha256, Backend, Generated, PART};
use sidecars_common::objstore::{
    self, get_bytes, put_bytes, ObjectStore, S3Options, StaticCredentials, StoreError,
};

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => { $(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn file() {
                super::$case(super::Backend::file()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn garage() {
                super::$case(super::Backend::garage()).await
            }
        }
    )* };
}

on_both_backends!(
    roundtrip_and_ranges,
    overwrite,
    list_by_prefix,
    paged_listing,
    delete,
    missing_object,
    invalid_keys,
    unusual_key_characters,
    failed_put_leaves_nothing,
);

fn reader(data: Vec<u8>) -> objstore::Reader {
    Box::pin(std::io::Cursor::new(data))
}

async fn read_all(
    store: &dyn ObjectStore,
    key: &str,
    range: Option<std::ops::Range<u64>>,
) -> (objstore::ObjectMeta, std::ops::Range<u64>, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut got = store
        .get(key, range.clone())
        .await
        .unwrap_or_else(|e| panic!("get {key} {range:?}: {e}"));
    let mut buf = Vec::new();
    got.body.read_to_end(&mut buf).await.expect("read body");
    (got.meta, got.range, buf)
}

async fn roundtrip_and_ranges(b: Backend) {
    let s = b.store("rt").await;
    s.check().await.expect("check");
    let before = Utc::now() - chrono::Duration::seconds(5);

    // a body smaller than one part
    let small = b"hello, object store".to_vec();
    let m = put_bytes(&*s, "a/small.txt", small.clone().into())
        .await
        .expect("put small");
    assert_eq!(
        (m.key.as_str(), m.size, m.sha256.as_str()),
        ("a/small.txt", small.len() as u64, sha256(&small).as_str())
    );
    let h = s.head("a/small.txt").await.expect("head small");
    assert_eq!((h.size, &h.sha256), (m.size, &m.sha256));
    let after = Utc::now() + chrono::Duration::seconds(5);
    assert!(
        h.last_modified > before && h.last_modified < after,
        "last_modified {} not near now",
        h.last_modified
    );
    assert_eq!(
        &get_bytes(&*s, "a/small.txt").await.expect("get small")[..],
        &small[..]
    );

    // an empty object
    let m = put_bytes(&*s, "a/empty", Vec::new().into())
        .await
        .expect("put empty");
    assert_eq!((m.size, m.sha256.as_str()), (0, sha256(b"").as_str()));
    assert_eq!(read_all(&*s, "a/empty", None).await.2, b"");
    assert_eq!(read_all(&*s, "a/empty", Some(0..0)).await.2, b"");

    // several parts (multipart on S3), streamed from a generator
    let len = 3 * PART + 12345;
    let data = Generated::bytes(7, len as usize);
    let m = s
        .put("a/big.bin", Box::pin(Generated::new(7, len)))
        .await
        .expect("put big");
    let sha = sha256(&data);
    assert_eq!((m.size, &m.sha256), (len, &sha));
    let h = s.head("a/big.bin").await.expect("head big");
    assert_eq!(
        (h.size, &h.sha256),
        (len, &sha),
        "multipart object must carry its sha256"
    );
    let (meta, range, body) = read_all(&*s, "a/big.bin", None).await;
    assert_eq!((meta.size, &meta.sha256, range), (len, &sha, 0..len));
    assert!(body == data, "whole-object get differs");

    for r in [
        0..1,
        0..PART,
        PART - 3..PART + 3,
        len - 10..len,
        17..2 * PART + 5,
        0..len,
        len..len,
        5..5,
    ] {
        let (meta, got_range, body) = read_all(&*s, "a/big.bin", Some(r.clone())).await;
        assert_eq!(got_range, r);
        assert_eq!((meta.size, &meta.sha256), (len, &sha), "range {r:?} meta");
        assert!(
            body == data[r.start as usize..r.end as usize],
            "range {r:?} bytes differ"
        );
    }
    // start after end, spelled out so it reads as deliberate
    let backwards = std::ops::Range { start: 10, end: 5 };
    for r in [len - 1..len + 1, len + 5..len + 10, backwards] {
        match s.get("a/big.bin", Some(r.clone())).await {
            Err(e @ StoreError::InvalidRange { .. }) => {
                assert!(e.to_string().contains(&s.object_url("a/big.bin")), "{e}")
            }
            Err(e) => panic!("range {r:?}: wrong error {e}"),
            Ok(_) => panic!("range {r:?} accepted"),
        }
    }
}

async fn overwrite(b: Backend) {
    let s = b.store("ow").await;
    put_bytes(&*s, "k", b"first version".to_vec().into())
        .await
        .expect("put 1");
    // small -> multipart
    let len = PART + 99;
    let second = Generated::bytes(2, len as usize);
    s.put("k", reader(second.clone())).await.expect("put 2");
    let h = s.head("k").await.expect("head 2");
    assert_eq!((h.size, h.sha256), (len, sha256(&second)));
    assert!(get_bytes(&*s, "k").await.expect("get 2")[..] == second[..]);
    // multipart -> small
    put_bytes(&*s, "k", b"third".to_vec().into())
        .await
        .expect("put 3");
    let h = s.head("k").await.expect("head 3");
    assert_eq!((h.size, h.sha256.as_str()), (5, sha256(b"third").as_str()));
    assert_eq!(&get_bytes(&*s, "k").await.expect("get 3")[..], b"third");
    let listed = s.list("").await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].key.as_str(), listed[0].size), ("k", 5));
}

async fn list_by_prefix(b: Backend) {
    let s = b.store("team-a").await;
    let other = b.store("team-ab").await;
    put_bytes(&*other, "apps/a/1", "other store".into())
        .await
        .expect("put other");
    let keys = ["apps/a/1", "apps/a/2", "apps/b/1", "apps2/x", "other"];
    for (i, k) in keys.iter().enumerate() {
        put_bytes(&*s, k, vec![b'x'; i + 1].into())
            .await
            .expect("put");
    }
    let names = |v: Vec<objstore::ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
    assert_eq!(names(s.list("").await.expect("list all")), keys);
    assert_eq!(
        names(s.list("apps/").await.expect("list apps/")),
        ["apps/a/1", "apps/a/2", "apps/b/1"]
    );
    assert_eq!(
        names(s.list("apps").await.expect("list apps")),
        ["apps/a/1", "apps/a/2", "apps/b/1", "apps2/x"]
    );
    assert_eq!(
        names(s.list("apps/a/").await.expect("list apps/a/")),
        ["apps/a/1", "apps/a/2"]
    );
    assert_eq!(
        names(s.list("apps/a/2").await.expect("list one")),
        ["apps/a/2"]
    );
    assert!(s.list("nothing/").await.expect("list none").is_empty());
    assert_eq!(
        names(other.list("").await.expect("list other")),
        ["apps/a/1"]
    );
    for m in s.list("").await.expect("list") {
        let h = s.head(&m.key).await.expect("head");
        assert_eq!(m, h, "list and head disagree on {}", m.key);
        let i = keys.iter().position(|k| *k == m.key).expect("listed key") + 1;
        assert_eq!((m.size, m.sha256), (i as u64, sha256(&vec![b'x'; i])));
    }
    // a multipart put leaves nothing else behind, not even in the raw bucket
    s.put("apps/c/big", Box::pin(Generated::new(3, PART + 1)))
        .await
        .expect("put big");
    assert_eq!(s.list("apps/c/").await.expect("list c").len(), 1);
    if let Some(g) = b.garage_ref() {
        let raw = g
            .client()
            .list_objects_v2()
            .bucket(&g.bucket)
            .send()
            .await
            .expect("raw list");
        let raw: Vec<_> = raw.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(raw.len(), 7, "unexpected objects in the bucket: {raw:?}");
        assert!(raw.iter().all(|k| !k.contains(".sidecars")), "{raw:?}");
    }
}

/// The paged listing hands out the same objects as the whole one, in key order, a page at a
/// time: more than one page of them, with names that sort differently by path component
/// than by whole key (`a-1` before `a/…`, `a.b` between them).
async fn paged_listing(b: Backend) {
    use futures::{StreamExt, TryStreamExt};
    let s = b.store("paged").await;
    let mut keys: Vec<String> = (0..1050).map(|i| format!("logs/n{i:04}/f")).collect();
    keys.extend(
        [
            "logs/a/1",
            "logs/a/b/c",
            "logs/a-1/x",
            "logs/a.b",
            "logs/a0",
            "logs2/x",
            "log",
        ]
        .map(String::from),
    );
    futures::stream::iter(&keys)
        .map(|k| put_bytes(&*s, k, k.clone().into_bytes().into()))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("put");
    let whole: Vec<String> = s
        .list_shallow("logs/")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    let mut want: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with("logs/"))
        .cloned()
        .collect();
    want.sort();
    assert_eq!(whole, want);
    let pages: Vec<Vec<objstore::ObjectMeta>> = s
        .list_shallow_pages("logs/")
        .try_collect()
        .await
        .expect("paged list");
    assert!(pages.len() >= 2, "{} pages", pages.len());
    assert!(pages.iter().all(|p| !p.is_empty()));
    let paged: Vec<objstore::ObjectMeta> = pages.into_iter().flatten().collect();
    assert_eq!(
        paged.iter().map(|m| m.key.clone()).collect::<Vec<_>>(),
        want
    );
    for m in &paged {
        assert_eq!(m.size, m.key.len() as u64, "{}", m.key);
    }
    // a prefix that is not a directory, and one with nothing under it
    let some: Vec<_> = s
        .list_shallow_pages("logs/a")
        .try_collect::<Vec<_>>()
        .await
        .expect("list logs/a")
        .into_iter()
        .flatten()
        .map(|m| m.key)
        .collect();
    assert_eq!(
        some,
        [
            "logs/a-1/x",
            "logs/a.b",
            "logs/a/1",
            "logs/a/b/c",
            "logs/a0"
        ]
    );
    let none: Vec<_> = s
        .list_shallow_pages("nothing/")
        .try_collect::<Vec<_>>()
        .await
        .expect("list none");
    assert!(none.iter().all(|p| p.is_empty()));
}

async fn delete(b: Backend) {
    let s = b.store("del").await;
    put_bytes(&*s, "x/y/z", "bye".into()).await.expect("put");
    put_bytes(&*s, "x/keep", "stay".into()).await.expect("put");
    s.delete("x/y/z").await.expect("delete");
    assert!(matches!(
        s.head("x/y/z").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.get("x/y/z", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list("x/").await.expect("list").len(), 1);
    s.delete("x/y/z")
        .await
        .expect("deleting a missing object is not an error");
    if let Some(root) = b.file_root() {
        assert!(
            !root.join("del/x/y").exists(),
            "emptied directory left behind"
        );
        assert!(root.join("del/x").exists());
    }
}

async fn missing_object(b: Backend) {
    let s = b.store("missing").await;
    let url = s.object_url("no/such/object");
    for r in [
        s.head("no/such/object").await.map(|_| ()),
        s.get("no/such/object", None).await.map(|_| ()),
        s.get("no/such/object", Some(1..5)).await.map(|_| ()),
        s.get("no/such/object", Some(0..0)).await.map(|_| ()),
    ] {
        match r {
            Err(StoreError::NotFound { url: u }) => assert_eq!(u, url),
            other => panic!("expected NotFound for {url}, got {:?}", other.err()),
        }
    }
    let e = s.head("no/such/object").await.expect_err("missing");
    assert!(e.to_string().contains(&url), "{e}");
}

async fn invalid_keys(b: Backend) {
    let s = b.store("keys").await;
    for k in [
        "",
        "/abs",
        "a//b",
        "a/../b",
        "..",
        "./x",
        "a/.",
        ".sidecars/tmp/x",
        "a\0b",
        &"k".repeat(1025),
    ] {
        let refused = |r: Result<(), StoreError>, op: &str| match r {
            Err(StoreError::InvalidKey { .. }) => {}
            other => panic!("{op} {k:?}: expected InvalidKey, got {other:?}"),
        };
        refused(put_bytes(&*s, k, "x".into()).await.map(|_| ()), "put");
        refused(s.get(k, None).await.map(|_| ()), "get");
        refused(s.head(k).await.map(|_| ()), "head");
        refused(s.delete(k).await, "delete");
    }
    for p in ["../", "/x", "a//"] {
        assert!(
            matches!(s.list(p).await, Err(StoreError::InvalidKey { .. })),
            "list {p:?} accepted"
        );
    }
    assert!(
        s.list("").await.expect("list").is_empty(),
        "a refused put stored something"
    );
}

async fn unusual_key_characters(b: Backend) {
    let s = b.store("chars").await;
    let keys = ["d/a b+c=ü%25&?.txt", "d/hash#tag;semi", "d/ünï çødé"];
    for (i, k) in keys.iter().enumerate() {
        put_bytes(&*s, k, format!("v{i}").into_bytes().into())
            .await
            .unwrap_or_else(|e| panic!("put {k}: {e}"));
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            get_bytes(&*s, k).await.expect("get")[..],
            *format!("v{i}").as_bytes(),
            "{k}"
        );
    }
    let mut want: Vec<_> = keys.to_vec();
    want.sort();
    let got: Vec<_> = s
        .list("d/")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(got, want);
}

/// A body that yields `ok` bytes and then fails.
struct Failing {
    inner: Generated,
    left: u64,
}

impl tokio::io::AsyncRead for Failing {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("client went away")));
        }
        let max = (buf.remaining() as u64).min(self.left) as usize;
        let mut sub = tokio::io::ReadBuf::new(buf.initialize_unfilled_to(max));
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut sub);
        let n = sub.filled().len();
        buf.advance(n);
        self.left -= n as u64;
        r
    }
}

async fn failed_put_leaves_nothing(b: Backend) {
    let s = b.store("fail").await;
    for ok in [1000, 2 * PART + 7] {
        let body = Failing {
            inner: Generated::new(5, 10 * PART),
            left: ok,
        };
        match s.put("half", Box::pin(body)).await {
            Err(e @ StoreError::Io { .. }) => {
                assert!(e.to_string().contains(&s.object_url("half")), "{e}")
            }
            other => panic!("expected an Io error, got {:?}", other.map(|m| m.size)),
        }
        assert!(matches!(
            s.head("half").await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(s.list("").await.expect("list").is_empty());
    }
    if let Some(g) = b.garage_ref() {
        let c = g.client();
        let uploads = c
            .list_multipart_uploads()
            .bucket(&g.bucket)
            .send()
            .await
            .expect("list uploads");
        assert!(
            uploads.uploads().is_empty(),
            "failed put left an upload: {:?}",
            uploads.uploads()
        );
        let raw = c
            .list_objects_v2()
            .bucket(&g.bucket)
            .send()
            .await
            .expect("raw list");
        assert!(raw.contents().is_empty(), "{:?}", raw.contents());
    }
    if let Some(root) = b.file_root() {
        let tmp = root.join("fail/.sidecars/tmp");
        assert_eq!(
            std::fs::read_dir(&tmp).expect("tmp dir").count(),
            0,
            "temp file left in {}",
            tmp.display()
        );
    }
}

// ---- errors that only the S3 backend can produce ----

async fn expect_kind(store: &dyn ObjectStore, want: &str, url_part: &str) {
    let big = Generated::new(1, PART + 1);
    let results: Vec<(&str, Result<(), StoreError>)> = vec![
        ("head", store.head("k").await.map(|_| ())),
        ("get", store.get("k", None).await.map(|_| ())),
        ("get range", store.get("k", Some(0..10)).await.map(|_| ())),
        ("put", put_bytes(store, "k", "x".into()).await.map(|_| ())),
        (
            "multipart put",
            store.put("k", Box::pin(big)).await.map(|_| ()),
        ),
        ("list", store.list("").await.map(|_| ())),
        ("delete", store.delete("k").await),
        ("check", store.check().await),
    ];
    for (op, r) in results {
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{op} on {} succeeded", store.url()));
        let kind = match &e {
            StoreError::NoSuchBucket { .. } => "NoSuchBucket",
            StoreError::AccessDenied { .. } => "AccessDenied",
            StoreError::Unreachable { .. } => "Unreachable",
            _ => "other",
        };
        assert_eq!(kind, want, "{op}: {e}");
        assert!(
            e.to_string().contains(url_part),
            "{op}: message does not name {url_part}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_missing_bucket() {
    let g = Backend::garage();
    let g = g.garage_ref().expect("garage");
    let store = objstore::open("s3://no-such-bucket/p", &g.s3_options())
        .await
        .expect("open");
    expect_kind(&*store, "NoSuchBucket", "s3://no-such-bucket").await;
    // the same key in an existing bucket is merely missing
    let ok = g.open("p").await.expect("open");
    assert!(matches!(
        ok.head("k").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_bad_credentials() {
    let g = Backend::garage();
    let g = g.garage_ref().expect("garage");
    let good = g.s3_options();
    let wrong_secret = S3Options {
        credentials: Some(StaticCredentials {
            access_key_id: g.access_key_id.clone(),
            secret_access_key: "0".repeat(64),
        }),
        ..good.clone()
    };
    let unknown_key = S3Options {
        credentials: Some(StaticCredentials {
            access_key_id: "GK000000000000000000000000".into(),
            secret_access_key: "0".repeat(64),
        }),
        ..good
    };
    for opts in [wrong_secret, unknown_key] {
        let store = objstore::open(&g.url("p"), &opts).await.expect("open");
        expect_kind(&*store, "AccessDenied", &g.url("p")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_endpoint_unreachable() {
    // a port that was just free and is closed again: connections are refused
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let opts = S3Options {
        s3_endpoint: Some(format!("http://127.0.0.1:{port}")),
        s3_region: Some("garage".into()),
        s3_path_style: true,
        credentials: Some(StaticCredentials {
            access_key_id: "GK000000000000000000000000".into(),
            secret_access_key: "0".repeat(64),
        }),
        ..S3Options::default()
    };
    let store = objstore::open("s3://bucket/p", &opts).await.expect("open");
    let started = Instant::now();
    expect_kind(&*store, "Unreachable", "s3://bucket/p").await;
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "errors took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn file_store_that_cannot_exist() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").expect("write");
    let url = format!("file://{}/store", file.display());
    match objstore::open(&url, &S3Options::default()).await {
        Err(e @ StoreError::Io { .. }) => assert!(e.to_string().contains(&url), "{e}"),
        other => panic!("expected an Io error naming {url}, got {other:?}"),
    }
    for bad in ["relative/path", "file://relative", "s3://", "http://x/y"] {
        assert!(
            matches!(
                objstore::open(bad, &S3Options::default()).await,
                Err(StoreError::InvalidUrl { .. })
            ),
            "{bad} accepted"
        );
    }
}

#[tokio::test]
async fn get_body_is_a_stable_version() {
    // a reader that started before an overwrite keeps reading the version it opened
    let b = Backend::file();
    let s = b.store("v").await;
    let first = Generated::bytes(1, 1 << 20);
    s.put("k", reader(first.clone())).await.expect("put 1");
    let got = s.get("k", None).await.expect("get");
    s.put("k", reader(Generated::bytes(2, 1 << 19)))
        .await
        .expect("put 2");
    let (n, sha) = hash_body(got.body).await.expect("read");
    assert_eq!(
        (n, sha.as_str(), got.meta.sha256.as_str()),
        (
            first.len() as u64,
            sha256(&first).as_str(),
            sha256(&first).as_str()
        )
    );
}
