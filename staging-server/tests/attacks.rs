//! The attacks issue 17 found, each replayed against the real binary (each of these passed, or
//! crashed the server, before the fixes), plus the quotas a hostile client meets:
//! - a 1 MB bundle that expands to 1000 MiB of zeros;
//! - a 1 GiB GNU long name in a 1 MB bundle (4.8 GB of memory, a 67 MB answer, a 1 GB log
//!   line), and a 1 GiB PAX header (33 s of CPU);
//! - a second server on the same `--data-dir`, wiping the first one's uploads in flight;
//! - an empty `resources` part (a 500 naming a server path);
//! - a killed extraction's temp file left behind;
//! - a suffix range on an empty file (a panic, or a bogus Content-Range);
//! - file names with spaces, `#`, `?` and `%` (per-file URLs that did not reach them);
//! - quotas: bytes per namespace, uploads per minute, one file's size, entry sizes.
//!
//! Every refusal is a 4xx naming the limit, short, and never a copy of the input; the server
//! keeps serving legitimate clients afterwards with nothing lost.

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use util::*;

const LIMIT_TEXT: usize = 600;

fn assert_short_and_clean(r: &Reply, forbidden: &[u8]) {
    assert!(
        r.body.len() < LIMIT_TEXT,
        "answer of {} bytes",
        r.body.len()
    );
    if !forbidden.is_empty() {
        assert!(
            !r.body.windows(forbidden.len()).any(|w| w == forbidden),
            "the answer echoes the input: {}",
            r.text()
        );
    }
}

fn legit_upload_still_works(port: u16) {
    let r = upload(port, &targz(&[("jars/ok.jar", b"fine")]));
    assert_eq!(
        r.status,
        200,
        "a legitimate upload failed afterwards: {}",
        r.text()
    );
}

fn no_bundles(dir: &std::path::Path) {
    let bundles = dir.join("staging/bundles");
    assert!(
        !bundles.exists() || std::fs::read_dir(&bundles).unwrap().count() == 0,
        "something of a refused upload was stored"
    );
}

#[test]
fn gzip_bomb_is_refused_by_the_expansion_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &["--max-extracted-size", "8GiB"]);
    // 1000 MiB of zeros in one entry: about 1 MB once gzipped
    let bomb = gzip_header_and_fill(&raw_header(b"zeros.bin", b'0', 1000 << 20), 1000 << 20, 0);
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    let t = Instant::now();
    let r = upload(srv.port, &bomb);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("--max-expansion-ratio"), "{}", r.text());
    assert_short_and_clean(&r, b"");
    assert!(t.elapsed() < Duration::from_secs(20));
    no_bundles(dir.path());
    // an ordinary bundle with compressible text and an incompressible jar passes
    let text: Vec<u8> = (0..200_000)
        .flat_map(|i: u32| format!("line {i}\n").into_bytes())
        .collect();
    let r = upload(
        srv.port,
        &targz(&[("files/log.txt", &text), ("jars/a.jar", &noise(500_000))]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn huge_gnu_long_name_and_pax_header_cost_neither_memory_nor_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let srv = start_logging(&dir.path().join("data"), &[], &log);
    let pid = srv.child.id();
    // a 1 GiB GNU long name ('L' entry), in about 1 MB
    let long = gzip_header_and_fill(&raw_header(b"././@LongLink", b'L', 1 << 30), 1 << 30, b'a');
    assert!(long.len() < 2 << 20);
    let cpu0 = cpu_seconds(pid);
    let t = Instant::now();
    let r = upload(srv.port, &long);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("GNU long name") && r.text().contains("limit"),
        "{}",
        r.text()
    );
    assert_short_and_clean(&r, b"aaaaaaaaaaaaaaaa");
    // a 1 GiB PAX extended header
    let pax = gzip_header_and_fill(&raw_header(b"PaxHeader", b'x', 1 << 30), 1 << 30, b'7');
    let r = upload(srv.port, &pax);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("PAX header"), "{}", r.text());
    assert_short_and_clean(&r, b"7777777777777777");
    // refused at the header: the gigabyte was never inflated
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    let cpu = cpu_seconds(pid) - cpu0;
    assert!(cpu < 3.0, "the server spent {cpu} s of CPU");
    let rss = peak_rss_kib(pid);
    assert!(rss < 100 << 10, "peak RSS {rss} KiB");
    // long names within the header bound are refused too, named but cut short
    let name = format!("{}/x.jar\0", "n".repeat(3000));
    let r = upload(
        srv.port,
        &raw_targz(&[
            RawEntry {
                name: b"././@LongLink",
                kind: b'L',
                data: name.as_bytes(),
                link: b"",
            },
            RawEntry {
                name: b"short",
                kind: b'0',
                data: b"1",
                link: b"",
            },
        ]),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_short_and_clean(&r, &b"n".repeat(200));
    legit_upload_still_works(srv.port);
    drop(srv);
    let text = std::fs::read_to_string(&log).unwrap();
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2048, "a log line of {longest} bytes");
}

#[test]
fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &[]);
    // an upload in flight on the first server
    let data = noise(3_000_000);
    let body = original_multipart(&targz(&[("big.bin", &data)]), OWNER);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    write!(
        s,
        "POST /api/v0/resources/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut second = std::process::Command::new(server_bin())
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &free_port().to_string(),
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while second.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server started on the same --data-dir");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another staging-server"), "{err}");
    // the first server's upload finishes unharmed
    s.write_all(&body[body.len() / 2..]).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[test]
fn empty_resources_part_is_a_400_without_server_paths() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &[]);
    let r = upload(srv.port, b"");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("empty"), "{}", r.text());
    assert!(
        !r.text().contains(&dir.path().display().to_string()),
        "{}",
        r.text()
    );
    legit_upload_still_works(srv.port);
}

#[test]
fn temp_files_of_a_killed_process_are_swept_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &[]);
    drop(srv);
    // what an extraction killed half-way leaves: a fresh, large temp file in the store
    let tmp = dir
        .path()
        .join("staging/.sidecars/tmp/materialise-left-behind");
    std::fs::write(&tmp, vec![1u8; 8 << 20]).unwrap();
    let srv = start(dir.path(), &[]);
    assert!(!tmp.exists(), "the temp file survived the restart");
    legit_upload_still_works(srv.port);
}

fn ids(r: &Reply) -> (String, String) {
    assert_eq!(r.status, 200, "upload failed: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    (
        v["resourceId"].as_str().unwrap().to_string(),
        v["resourceSecret"].as_str().unwrap().to_string(),
    )
}

fn manifest(port: u16, id: &str, secret: &str) -> serde_json::Value {
    let r = request(
        port,
        "GET",
        &format!("/api/v0/resources/{id}/manifest"),
        &[("Authorization", secret)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn ranges_on_empty_files_and_names_that_need_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &[]);
    let names = [
        "files/empty.txt",
        "files/a b.txt",
        "files/c#d.txt",
        "files/e?f.txt",
        "files/g%h.txt",
        "files/ü.txt",
    ];
    let entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| {
            (
                *n,
                if n.ends_with("empty.txt") {
                    &b""[..]
                } else {
                    n.as_bytes()
                },
            )
        })
        .collect();
    let (id, secret) = ids(&upload(srv.port, &targz(&entries)));
    let m = manifest(srv.port, &id, &secret);
    for f in m["files"].as_array().unwrap() {
        let (name, path) = (f["name"].as_str().unwrap(), f["path"].as_str().unwrap());
        assert!(
            path.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-._~%".contains(&b)),
            "unencoded URL path {path}"
        );
        let r = request(srv.port, "GET", path, &[], &[]).unwrap();
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let want: &[u8] = if name.ends_with("empty.txt") {
            b""
        } else {
            name.as_bytes()
        };
        assert_eq!(r.body, want, "{name}");
        // the last segment, decoded, is the file's name (what Spark names the download)
        let last = path.rsplit('/').next().unwrap();
        let decoded = percent_decode(last);
        assert_eq!(decoded, name.rsplit('/').next().unwrap());
        if name.ends_with("empty.txt") {
            for range in ["bytes=-5", "bytes=0-", "bytes=0-0"] {
                let r = request(srv.port, "GET", path, &[("Range", range)], &[]).unwrap();
                assert_eq!(r.status, 416, "{range}");
                assert_eq!(r.header("content-range"), Some("bytes */0"), "{range}");
            }
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn quotas_per_namespace_rate_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start_admin(
        &dir.path().join("data"),
        &[
            "--namespace-quota",
            "1MiB",
            "--uploads-per-minute",
            "5",
            "--max-file-size",
            "600KiB",
            "--max-entry-size",
            "300KiB",
        ],
    );
    // v0: the bundle would take the namespace over its quota
    let big = noise(700_000);
    let r = upload(
        srv.port,
        &targz(&[
            ("jars/big.jar", &big[..400_000]),
            ("jars/b2.jar", &big[400_000..]),
        ]),
    );
    assert_eq!(r.status, 400, "entry size: {}", r.text());
    assert!(r.text().contains("--max-entry-size"), "{}", r.text());
    let r = upload(
        srv.port,
        &targz(&[
            ("jars/a.jar", &big[..290_000]),
            ("jars/b.jar", &big[290_000..580_000]),
        ]),
    );
    assert_eq!(r.status, 413, "quota: {}", r.text());
    assert!(
        r.text().contains("--namespace-quota") && r.text().contains("`spark`"),
        "{}",
        r.text()
    );
    // uploads per minute, per client address on the v0 API
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(upload(srv.port, &targz(&[("x", b"1")])).status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let r = upload(srv.port, &targz(&[("x", b"1")]));
    assert_eq!(r.status, 429);
    assert!(
        r.text().contains("--uploads-per-minute") && r.header("retry-after").is_some(),
        "{}",
        r.text()
    );
    // WebHDFS: a file over --max-file-size, then the namespace quota (another credential)
    let cred = credential(srv.port, &admin, "team-q");
    let create = |path: &str, body: &[u8]| {
        request(
            srv.port,
            "PUT",
            &format!("/webhdfs/v1/{cred}{path}?op=CREATE&staging.data=true"),
            &[],
            body,
        )
        .unwrap()
    };
    let r = create("/f1", &noise(700_000));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text().contains("--max-file-size") && r.text().contains("RemoteException"),
        "{}",
        r.text()
    );
    assert!(
        r.header("content-type").is_none(),
        "WebHDFS JSON must not carry a Content-Type"
    );
    let r = create("/f2", &noise(500_000));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = create("/f3", &big[..550_000]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("DSQuotaExceededException") && r.text().contains("--namespace-quota"),
        "{}",
        r.text()
    );
    // the refused file left nothing behind, and the stored one is intact
    let r = request(
        srv.port,
        "GET",
        &format!("/webhdfs/v1/{cred}/f3?op=GETFILESTATUS"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 404);
    let r = request(
        srv.port,
        "GET",
        &format!("/webhdfs/v1/{cred}/f2?op=OPEN&staging.data=true&offset=10&length=5"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!((r.status, r.body.len()), (200, 5));
}

#[test]
fn webhdfs_refusals_do_not_echo_credentials_or_paths_beyond_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start_admin(
        &dir.path().join("data"),
        &["--auth-failures-per-minute", "5"],
    );
    let cred = credential(srv.port, &admin, "team-a");
    let long = "p".repeat(250);
    let path = format!("/webhdfs/v1/{cred}/{long}/{long}/missing?op=GETFILESTATUS");
    let r = request(srv.port, "GET", &path, &[], &[]).unwrap();
    assert_eq!(r.status, 404);
    assert!(!r.text().contains(&cred), "{}", r.text());
    assert_short_and_clean(&r, &[b'p'; 200]);
    // a component over 255 bytes: refused naming the rule
    let r = request(
        srv.port,
        "GET",
        &format!("/webhdfs/v1/{cred}/{}?op=GETFILESTATUS", "q".repeat(300)),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_short_and_clean(&r, &[b'q'; 100]);
    // guessing credentials: 401 until the address is slowed down
    let mut statuses = Vec::new();
    for i in 0..8 {
        let forged = format!("stagetoken.{:032x}.guess{i}", i);
        statuses.push(
            request(
                srv.port,
                "GET",
                &format!("/webhdfs/v1/{forged}/x?op=GETFILESTATUS"),
                &[],
                &[],
            )
            .unwrap()
            .status,
        );
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    // a token request with a wrong secret is an OAuth2 error, not the input
    let r = request(
        srv.port,
        "POST",
        "/oauth2/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"grant_type=password&client_secret=zzz",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("unsupported_grant_type") && !r.text().contains("zzz"),
        "{}",
        r.text()
    );
}
