//! Per-file objects are materialised from the stored archive after the upload is acknowledged:
//! these tests take them away (as a restart before materialisation would) and check that the
//! per-file URLs still serve the right bytes, that many first requests share one extraction,
//! and that a damaged archive gives a 500 naming the bundle and file, never wrong bytes.

mod util;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use util::*;

/// Uploads `bundle`, waits until the background materialisation has written every file
/// object, and returns (id, the per-file URL path of each file by name, the bundle's dir).
fn upload_and_settle(
    srv: &Server,
    bundle: &[u8],
    names: &[&str],
) -> (String, Vec<(String, String)>, PathBuf) {
    let r = upload(srv.port, bundle);
    assert_eq!(r.status, 200, "upload failed: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let (id, secret) = (
        v["resourceId"].as_str().unwrap().to_string(),
        v["resourceSecret"].as_str().unwrap().to_string(),
    );
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
    let paths = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect::<Vec<_>>();
    let dir = srv.data_dir.join("staging/bundles").join(&id);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !names.iter().all(|n| dir.join("files").join(n).exists()) {
        assert!(
            Instant::now() < deadline,
            "the background materialisation of {id} did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (id, paths, dir)
}

fn path_of<'a>(paths: &'a [(String, String)], name: &str) -> &'a str {
    &paths.iter().find(|(n, _)| n == name).expect("listed").1
}

fn materialisations(port: u16) -> u64 {
    let text = request(port, "GET", "/metrics", &[], &[]).unwrap().text();
    text.lines()
        .find_map(|l| l.strip_prefix("staging_materialisations_total "))
        .unwrap_or_else(|| panic!("no materialisation counter in {text}"))
        .trim()
        .parse()
        .unwrap()
}

fn remove_files(dir: &Path) {
    std::fs::remove_dir_all(dir.join("files")).unwrap();
}

#[test]
fn file_is_served_after_a_restart_that_came_before_its_materialisation() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &[]);
    let jar = noise(300_000);
    let bundle = targz(&[("jars/app.jar", &jar), ("conf.txt", b"k=v\n")]);
    let (_, paths, bdir) = upload_and_settle(&srv, &bundle, &["jars/app.jar", "conf.txt"]);
    // As if the server had died between the answer and the extraction.
    drop(srv);
    remove_files(&bdir);
    let srv = start(dir.path(), &[]);
    let r = request(srv.port, "GET", path_of(&paths, "conf.txt"), &[], &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"k=v\n");
    let r = request(
        srv.port,
        "GET",
        path_of(&paths, "jars/app.jar"),
        &[("Range", "bytes=1000-1999")],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 206, "{}", r.text());
    assert_eq!(r.body, &jar[1000..2000]);
    assert_eq!(r.header("x-sha256"), Some(sha256_hex(&jar).as_str()));
    assert!(bdir.join("files/jars/app.jar").exists());
    assert_eq!(materialisations(srv.port), 1);
    // An object cut short (as an unflushed one can be after a crash) is extracted again.
    std::fs::write(bdir.join("files/conf.txt"), b"k").unwrap();
    let r = request(srv.port, "GET", path_of(&paths, "conf.txt"), &[], &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"k=v\n");
    assert_eq!(materialisations(srv.port), 2);
}

#[test]
fn fifty_concurrent_first_requests_share_one_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &[]);
    let big = noise(24 << 20);
    let bundle = targz(&[("small.txt", b"first\n"), ("jars/big.jar", &big)]);
    let (_, paths, bdir) = upload_and_settle(&srv, &bundle, &["small.txt", "jars/big.jar"]);
    drop(srv);
    remove_files(&bdir);
    let srv = start(dir.path(), &[]);
    let port = srv.port;
    let expected = sha256_hex(&big);
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let path = path_of(
                &paths,
                if i % 5 == 0 {
                    "small.txt"
                } else {
                    "jars/big.jar"
                },
            )
            .to_string();
            std::thread::spawn(move || request(port, "GET", &path, &[], &[]).unwrap())
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        if i % 5 == 0 {
            assert_eq!(r.body, b"first\n");
        } else {
            assert_eq!(sha256_hex(&r.body), expected, "request {i} got wrong bytes");
        }
    }
    assert_eq!(
        materialisations(port),
        1,
        "50 first requests must trigger a single extraction"
    );
}

#[test]
fn damaged_archive_gives_a_500_naming_bundle_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &[]);
    let big = noise(4 << 20);
    let bundle = targz(&[("a.txt", b"alpha\n"), ("jars/big.jar", &big)]);
    let (id, paths, bdir) = upload_and_settle(&srv, &bundle, &["a.txt", "jars/big.jar"]);
    drop(srv);
    remove_files(&bdir);
    // Flip bytes inside the big file's data (the noise is stored, not compressed, so the
    // archive still inflates: only the recorded sha256 can tell).
    let archive = bdir.join("bundle.tar.gz");
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&archive, &bytes).unwrap();
    let srv = start(dir.path(), &[]);
    let r = request(srv.port, "GET", path_of(&paths, "jars/big.jar"), &[], &[]).unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains(&id) && text.contains("jars/big.jar") && text.contains("sha256"),
        "the error must name the bundle, the file and what is wrong: {text}"
    );
    assert!(
        !bdir.join("files/jars/big.jar").exists(),
        "a file that failed its check must not be stored"
    );
    // The file before the damage is fine, and is served.
    let r = request(srv.port, "GET", path_of(&paths, "a.txt"), &[], &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"alpha\n");
}
