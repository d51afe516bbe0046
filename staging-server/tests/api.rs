//! API conformance over raw HTTP against the real binary: the v0 routes as the original client
//! used them, per-file URLs with ranges and ETags, hostile bundles, limits, restarts, kill -9
//! mid-upload, and cleanup.

mod util;

use std::io::Write;
use std::time::Duration;

use util::*;

fn ids(r: &Reply) -> (String, String) {
    assert_eq!(r.status, 200, "upload failed: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let obj = v.as_object().expect("object");
    assert_eq!(
        obj.len(),
        2,
        "the v0 answer must hold exactly resourceId and resourceSecret: {v}"
    );
    (
        obj["resourceId"].as_str().expect("id").to_string(),
        obj["resourceSecret"].as_str().expect("secret").to_string(),
    )
}

#[test]
fn v0_round_trip_files_ranges_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = start(dir.path(), &[]);
    let jar: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let bundle = targz(&[("jars/app.jar", &jar), ("./files/conf.txt", b"hello=1\n")]);
    let (id, secret) = ids(&upload(srv.port, &bundle));
    assert!(secret.starts_with(&format!("{id}-")));

    // Raw secret, as the original init container sent it, and Bearer.
    for auth in [secret.clone(), format!("Bearer {secret}")] {
        let r = request(
            srv.port,
            "GET",
            &format!("/api/v0/resources/{id}"),
            &[("Authorization", &auth)],
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(
            r.body == bundle,
            "downloaded bundle differs from the upload"
        );
    }
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{id}"),
        &[("Authorization", "nope")],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let wrong_same_len: String = secret.chars().rev().collect();
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{id}"),
        &[("Authorization", &wrong_same_len)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{id}"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let r = request(
        srv.port,
        "GET",
        "/api/v0/resources/6f1c1a4e-0000-4000-8000-000000000000",
        &[("Authorization", &secret)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 404);
    let r = request(
        srv.port,
        "GET",
        "/api/v0/resources/..%2F..%2Fetc",
        &[("Authorization", &secret)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 404);

    // Manifest: sha256 of bundle and files, and per-file paths.
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{id}/manifest"),
        &[("Authorization", &secret)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let m: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(m["bundleSha256"], sha256_hex(&bundle));
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let jar_entry = files
        .iter()
        .find(|f| f["name"] == "jars/app.jar")
        .expect("jar listed");
    assert_eq!(jar_entry["sha256"], sha256_hex(&jar));
    let path = jar_entry["path"].as_str().unwrap().to_string();
    assert!(path.ends_with("/app.jar"));
    let token = m["downloadToken"].as_str().unwrap();
    assert!(token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)));

    let r = request(srv.port, "GET", &path, &[], &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == jar);
    assert_eq!(r.header("x-sha256"), Some(sha256_hex(&jar).as_str()));
    let etag = r.header("etag").unwrap().to_string();
    let r = request(srv.port, "GET", &path, &[("Range", "bytes=10-19")], &[]).unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &jar[10..20]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 10-19/{}", jar.len()).as_str())
    );
    let r = request(srv.port, "GET", &path, &[("Range", "bytes=-4")], &[]).unwrap();
    assert_eq!(r.body, &jar[jar.len() - 4..]);
    let r = request(
        srv.port,
        "GET",
        &path,
        &[("Range", "bytes=999999999-")],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 416);
    let r = request(srv.port, "GET", &path, &[("If-None-Match", &etag)], &[]).unwrap();
    assert_eq!(r.status, 304);
    let bad = path.replace(token, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(
        request(srv.port, "GET", &bad, &[], &[]).unwrap().status,
        401
    );
    let missing = path.replace("app.jar", "other.jar");
    assert_eq!(
        request(srv.port, "GET", &missing, &[], &[]).unwrap().status,
        404
    );

    // Restart over the same data: nothing was only in memory.
    drop(srv);
    srv = start(dir.path(), &[]);
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{id}"),
        &[("Authorization", &secret)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == bundle);
    let r = request(srv.port, "GET", &path, &[], &[]).unwrap();
    assert!(r.status == 200 && r.body == jar);
    // The store keeps only hashes of the secret and token.
    let meta = std::fs::read_to_string(dir.path().join(format!("staging/bundles/{id}/meta.json")))
        .unwrap();
    assert!(
        !meta.contains(&secret) && !meta.contains(token),
        "plaintext secret stored: {meta}"
    );
    let metrics = request(srv.port, "GET", "/metrics", &[], &[])
        .unwrap()
        .text();
    assert!(
        metrics.contains("staging_downloads_total{kind=\"file\"} 1"),
        "{metrics}"
    );
}

#[test]
fn hostile_bundles_are_refused_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &["--max-entries", "50"]);
    let cases: Vec<(Vec<RawEntry<'_>>, &str)> = vec![
        (
            vec![RawEntry {
                name: b"../../etc/cron.d/x",
                kind: b'0',
                data: b"x",
                link: b"",
            }],
            "../../etc/cron.d/x",
        ),
        (
            vec![RawEntry {
                name: b"/etc/passwd",
                kind: b'0',
                data: b"x",
                link: b"",
            }],
            "/etc/passwd",
        ),
        (
            vec![RawEntry {
                name: b"evil",
                kind: b'2',
                data: b"",
                link: b"/etc/passwd",
            }],
            "evil",
        ),
        (
            vec![RawEntry {
                name: b"hard",
                kind: b'1',
                data: b"",
                link: b"/etc/shadow",
            }],
            "hard",
        ),
        (
            vec![RawEntry {
                name: b"dev",
                kind: b'3',
                data: b"",
                link: b"",
            }],
            "dev",
        ),
        (
            vec![RawEntry {
                name: b"fifo",
                kind: b'6',
                data: b"",
                link: b"",
            }],
            "fifo",
        ),
        (
            vec![
                RawEntry {
                    name: b"a.jar",
                    kind: b'0',
                    data: b"1",
                    link: b"",
                },
                RawEntry {
                    name: b"./a.jar",
                    kind: b'0',
                    data: b"2",
                    link: b"",
                },
            ],
            "a.jar",
        ),
    ];
    for (entries, name) in cases {
        let r = upload(srv.port, &raw_targz(&entries));
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert!(
            r.text().contains(name),
            "error does not name `{name}`: {}",
            r.text()
        );
    }
    let names: Vec<String> = (0..60).map(|i| format!("f{i}")).collect();
    let many: Vec<RawEntry<'_>> = names
        .iter()
        .map(|n| RawEntry {
            name: n.as_bytes(),
            kind: b'0',
            data: b"x",
            link: b"",
        })
        .collect();
    let r = upload(srv.port, &raw_targz(&many));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("more than 50 entries"), "{}", r.text());
    let r = upload(srv.port, b"this is not gzip");
    assert_eq!(r.status, 400, "{}", r.text());
    // Nothing from the refused uploads is left anywhere.
    let bundles = dir.path().join("staging/bundles");
    assert!(!bundles.exists() || std::fs::read_dir(&bundles).unwrap().count() == 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("spool")).unwrap().count(),
        0
    );
    // Missing parts and bad owners.
    let body = original_multipart(
        &targz(&[("a", b"1")]),
        r#"{"ownerNamespace":"x","ownerType":"Deployment"}"#,
    );
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let r = request(
        srv.port,
        "POST",
        "/api/v0/resources",
        &[("Content-Type", &ct)],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Deployment"));
}

#[test]
fn size_limit_gives_413() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &["--max-bundle-size", "64KiB"]);
    let big = noise(200_000);
    let r = upload(srv.port, &targz(&[("big.bin", &big)]));
    assert_eq!(r.status, 413, "{}", r.text());
    let r = upload(srv.port, &targz(&[("small.bin", b"ok")]));
    assert_eq!(r.status, 200);
}

#[test]
fn kill_9_mid_upload_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = start(dir.path(), &[]);
    let data = noise(4_000_000);
    let bundle = targz(&[("big.bin", &data)]);
    let body = original_multipart(&bundle, OWNER);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    write!(
        s,
        "POST /api/v0/resources/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body[..body.len() / 2]).unwrap();
    s.flush().unwrap();
    // Wait until the server has written part of it (on a local store, into the store's own
    // temp directory), then kill it hard.
    let spool = dir.path().join("spool");
    let tmp = dir.path().join("staging/.sidecars/tmp");
    let count = |d: &std::path::Path| std::fs::read_dir(d).map(|d| d.count()).unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&spool) + count(&tmp) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "upload never reached the spool"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc_kill(srv.child.id() as i32, 9) };
    let _ = srv.child.wait();
    drop(s);
    srv = start(dir.path(), &[]);
    assert_eq!(
        count(&spool) + count(&tmp),
        0,
        "spool or temp files not cleared"
    );
    let bundles = dir.path().join("staging/bundles");
    assert!(
        !bundles.exists() || std::fs::read_dir(&bundles).unwrap().count() == 0,
        "half an upload is visible"
    );
    let r = upload(srv.port, &targz(&[("ok", b"ok")]));
    assert_eq!(r.status, 200);
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn unused_bundles_expire_and_used_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(
        dir.path(),
        &["--initial-access-timeout", "2s", "--cleanup-interval", "1s"],
    );
    let (unused, s1) = ids(&upload(srv.port, &targz(&[("a", b"1")])));
    let (used, s2) = ids(&upload(srv.port, &targz(&[("b", b"2")])));
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{used}"),
        &[("Authorization", &s2)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_secs(5));
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{unused}"),
        &[("Authorization", &s1)],
        &[],
    )
    .unwrap();
    assert_eq!(
        r.status, 404,
        "never-downloaded bundle outlived --initial-access-timeout"
    );
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{used}"),
        &[("Authorization", &s2)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "a used bundle was deleted");
    let metrics = request(srv.port, "GET", "/metrics", &[], &[])
        .unwrap()
        .text();
    assert!(
        metrics.contains("staging_cleanups_total{reason=\"never_used\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("staging_bundles 1"), "{metrics}");
}

#[test]
fn max_age_applies_to_used_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &["--max-age", "2s", "--cleanup-interval", "1s"]);
    let (id, secret) = ids(&upload(srv.port, &targz(&[("a", b"1")])));
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{id}"),
        &[("Authorization", &secret)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_secs(5));
    let r = request(
        srv.port,
        "GET",
        &format!("/api/v0/resources/{id}"),
        &[("Authorization", &secret)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 404);
}
