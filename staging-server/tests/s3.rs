//! The S3 backend on a real Garage server (needs `$GARAGE_BIN`; fails, never skips, without
//! it): upload, the v0 download and the per-file URL with a range and an ETag, sha256s checked,
//! a restart over an empty local directory (so everything came from S3), and cleanup deleting
//! the objects.

mod util;

use std::time::{Duration, Instant};

use sidecars_common::objstore::testing::Garage;
use util::*;

/// Keys under `prefix` in the Garage bucket, read behind the server's back with a plain S3
/// client.
fn keys(garage: &Garage, rt: &tokio::runtime::Runtime, prefix: &str) -> Vec<String> {
    rt.block_on(async {
        let out = garage
            .client()
            .list_objects_v2()
            .bucket(&garage.bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list the bucket");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    })
}

#[test]
fn bundles_on_garage_survive_restarts_and_are_cleaned_up() {
    need_env("GARAGE_BIN");
    let garage = Garage::start().expect("start Garage");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage = garage.url("staging");
    let env = garage.env();
    let dir = tempfile::tempdir().unwrap();
    let mut srv = start_with(&dir.path().join("a"), &["--storage", &storage], &env, true);

    let jar = noise(3_000_000);
    let bundle = targz(&[("jars/app.jar", &jar), ("files/x.txt", b"x=1\n")]);
    let r = upload(srv.port, &bundle);
    assert_eq!(r.status, 200, "upload to S3 failed: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let id = v["resourceId"].as_str().unwrap().to_string();
    let secret = v["resourceSecret"].as_str().unwrap().to_string();
    let prefix = format!("staging/bundles/{id}/");
    let stored = keys(&garage, &rt, &prefix);
    for k in ["bundle.tar.gz", "meta.json"] {
        assert!(
            stored.contains(&format!("{prefix}{k}")),
            "{k} not stored at the answer: {stored:?}"
        );
    }
    // the files are materialised in the background, from the archive in S3
    let deadline = Instant::now() + Duration::from_secs(30);
    while keys(&garage, &rt, &prefix).len() != 4 {
        assert!(
            Instant::now() < deadline,
            "expected bundle, two files and meta.json: {:?}",
            keys(&garage, &rt, &prefix)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !dir.path().join("a/staging").exists(),
        "bundle went to local disk, not S3"
    );

    let check = |port: u16| {
        let r = request(
            port,
            "GET",
            &format!("/api/v0/resources/{id}"),
            &[("Authorization", &secret)],
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(sha256_hex(&r.body), sha256_hex(&bundle));
        assert_eq!(r.header("x-sha256"), Some(sha256_hex(&bundle).as_str()));
        let r = request(
            port,
            "GET",
            &format!("/api/v0/resources/{id}/manifest"),
            &[("Authorization", &secret)],
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let m: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(m["bundleSha256"], sha256_hex(&bundle));
        let f = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "jars/app.jar")
            .expect("jar in manifest")
            .clone();
        assert_eq!(f["sha256"], sha256_hex(&jar));
        let path = f["path"].as_str().unwrap();
        let r = request(port, "GET", path, &[], &[]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(sha256_hex(&r.body), sha256_hex(&jar));
        let etag = r.header("etag").expect("etag").to_string();
        assert_eq!(etag, format!("\"{}\"", sha256_hex(&jar)));
        let r = request(
            port,
            "GET",
            path,
            &[("Range", "bytes=1000000-1000099")],
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &jar[1_000_000..1_000_100]);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes 1000000-1000099/{}", jar.len()).as_str())
        );
        let r = request(port, "GET", path, &[("If-None-Match", &etag)], &[]).unwrap();
        assert_eq!(r.status, 304);
    };
    check(srv.port);

    // A new server over an empty local directory: only S3 holds the bundle, and its file
    // objects are gone (as if the first server had died before materialising them), so they
    // are extracted again from the archive in S3 on demand. It also expires used bundles
    // quickly, to see cleanup delete the objects.
    drop(srv);
    let file_keys = keys(&garage, &rt, &format!("{prefix}files/"));
    rt.block_on(async {
        for k in file_keys {
            garage
                .client()
                .delete_object()
                .bucket(&garage.bucket)
                .key(&k)
                .send()
                .await
                .expect("delete a file object");
        }
    });
    assert_eq!(keys(&garage, &rt, &prefix).len(), 2);
    srv = start_with(
        &dir.path().join("b"),
        &[
            "--storage",
            &storage,
            "--max-age",
            "6s",
            "--cleanup-interval",
            "1s",
        ],
        &env,
        true,
    );
    check(srv.port);
    assert!(keys(&garage, &rt, &format!("{prefix}files/"))
        .contains(&format!("{prefix}files/jars/app.jar")));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !keys(&garage, &rt, &format!("staging/bundles/{id}/")).is_empty() {
        assert!(
            Instant::now() < deadline,
            "cleanup left objects: {:?}",
            keys(&garage, &rt, "staging/")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{id}"),
        &[("Authorization", &secret)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 404);
    let metrics = request(srv.port, "GET", "/metrics", &[], &[])
        .unwrap()
        .text();
    assert!(
        metrics.contains("staging_cleanups_total{reason=\"max_age\"} 1"),
        "{metrics}"
    );
}
