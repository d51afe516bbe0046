//! Test harness: runs the real staging-server binary on a free loopback port, speaks raw
//! HTTP/1.1 to it, and builds (possibly hostile) tar.gz bundles byte by byte.
#![allow(dead_code)]

pub mod sparkapp;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
}

impl Server {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts the server with `extra` flags over `data_dir`, and waits for `/api/v0/ping`.
pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
    start_with(data_dir, extra, &[], true)
}

/// Like [`start`], with extra environment variables; with `plain_http` false (an https
/// server) it only waits for the port to accept connections.
pub fn start_with(
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, String)],
    plain_http: bool,
) -> Server {
    start_full(data_dir, extra, env, plain_http, None)
}

/// Like [`start`], with the server's log (stderr) going to `log`.
pub fn start_logging(data_dir: &Path, extra: &[&str], log: &Path) -> Server {
    start_full(data_dir, extra, &[], true, Some(log))
}

/// The staging-server binary the tests run: this build's, or the one `STAGING_SERVER_BIN`
/// names (to replay the attack suite against another build, such as `main`'s, and see each
/// attack land there).
pub fn server_bin() -> PathBuf {
    std::env::var_os("STAGING_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_staging-server")))
}

pub fn start_full(
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, String)],
    plain_http: bool,
    log: Option<&Path>,
) -> Server {
    let port = free_port();
    let child = Command::new(server_bin())
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(match log {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("server log file")),
            None => Stdio::inherit(),
        })
        .spawn()
        .expect("start staging-server");
    let s = Server {
        child,
        port,
        data_dir: data_dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if !plain_http && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return s;
        }
        if let Ok(r) = request(port, "GET", "/api/v0/ping", &[], &[]) {
            if r.status == 200 {
                assert_eq!(r.body, b"pong");
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "staging-server did not come up on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One raw HTTP/1.1 request with `Connection: close`; the reply is read to EOF.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = || {
        std::io::Error::other(format!(
            "bad reply: {}",
            String::from_utf8_lossy(&raw[..raw.len().min(300)])
        ))
    };
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad())?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
            let n = usize::from_str_radix(
                std::str::from_utf8(&rest[..nl]).map_err(|_| bad())?.trim(),
                16,
            )
            .map_err(|_| bad())?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = out;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub const BOUNDARY: &str = "2d5e7f2a-6f0e-4a8b-9a7b-staging";

/// The multipart body exactly as the original Retrofit/OkHttp client sent it: parts without
/// file names, `resources` typed multipart/form-data, `resourcesOwner` typed application/json,
/// each with Content-Transfer-Encoding and Content-Length.
pub fn original_multipart(bundle: &[u8], owner_json: &str) -> Vec<u8> {
    let mut b = Vec::new();
    let part = |b: &mut Vec<u8>, name: &str, ctype: &str, data: &[u8]| {
        b.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Transfer-Encoding: binary\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                data.len()
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    };
    part(
        &mut b,
        "resources",
        "multipart/form-data; charset=utf-8",
        bundle,
    );
    part(
        &mut b,
        "resourcesOwner",
        "application/json; charset=UTF-8",
        owner_json.as_bytes(),
    );
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

pub const OWNER: &str = r#"{"ownerNamespace":"spark","ownerLabels":{"spark-app-selector":"spark-123","spark-role":"driver"},"ownerType":"Pod"}"#;

/// Posts a bundle the way the original client did; returns the reply.
pub fn upload(port: u16, bundle: &[u8]) -> Reply {
    let body = original_multipart(bundle, OWNER);
    request(
        port,
        "POST",
        "/api/v0/resources/",
        &[(
            "Content-Type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        )],
        &body,
    )
    .expect("upload request")
}

/// One raw tar entry: name bytes, type flag, content, link target.
pub struct RawEntry<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    pub data: &'a [u8],
    pub link: &'a [u8],
}

/// Builds a tar.gz from raw headers, bypassing every check the tar crate would apply, so tests
/// can make the hostile archives real attackers make.
pub fn raw_targz(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut tar = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        h[..e.name.len()].copy_from_slice(e.name);
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", e.data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = e.kind;
        h[157..157 + e.link.len()].copy_from_slice(e.link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        tar.extend_from_slice(&h);
        tar.extend_from_slice(e.data);
        let pad = (512 - e.data.len() % 512) % 512;
        tar.extend(std::iter::repeat_n(0u8, pad));
    }
    tar.extend(std::iter::repeat_n(0u8, 1024));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

pub fn file(name: &str, data: &'static [u8]) -> (Vec<u8>, &'static [u8]) {
    (name.as_bytes().to_vec(), data)
}

/// A normal bundle of plain files.
pub fn targz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<RawEntry<'_>> = files
        .iter()
        .map(|(n, d)| RawEntry {
            name: n.as_bytes(),
            kind: b'0',
            data: d,
            link: b"",
        })
        .collect();
    raw_targz(&entries)
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Env var that a test needs; fails (never skips) when it is missing.
pub fn need_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, or eval \"$(bash scripts/install-test-tools.sh --print-env)\" first")
    })
}

/// Incompressible bytes (xorshift), so gzip cannot shrink test bundles.
pub fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A server with an administrator token (so tests can issue upload credentials without
/// Kubernetes); returns it and that token.
pub fn start_admin(data_dir: &Path, extra: &[&str]) -> (Server, String) {
    start_admin_with(data_dir, extra, &[], true)
}

pub fn start_admin_with(
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, String)],
    plain_http: bool,
) -> (Server, String) {
    std::fs::create_dir_all(data_dir).unwrap();
    let admin = format!(
        "admin-{}",
        sha256_hex(data_dir.display().to_string().as_bytes())
    );
    let file = data_dir
        .parent()
        .unwrap_or(data_dir)
        .join(format!("admin-token-{}", std::process::id()));
    std::fs::write(&file, &admin).unwrap();
    let mut args: Vec<&str> = extra.to_vec();
    let f = file.display().to_string();
    args.extend(["--admin-token-file", &f]);
    (start_with(data_dir, &args, env, plain_http), admin)
}

/// Issues an upload credential for `namespace` with the administrator token.
pub fn credential(port: u16, admin: &str, namespace: &str) -> String {
    let body = format!(r#"{{"namespace":"{namespace}"}}"#);
    let r = request(
        port,
        "POST",
        "/api/v1/credentials",
        &[
            ("Authorization", &format!("Bearer {admin}")),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .expect("credential request");
    assert_eq!(r.status, 200, "credential refused: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["credential"].as_str().unwrap().to_string()
}

/// Exchanges a credential for an access token at `/oauth2/token`, as Hadoop does.
pub fn access_token(port: u16, credential: &str) -> String {
    let body = format!("client_secret={credential}&grant_type=client_credentials&client_id=spark");
    let r = request(
        port,
        "POST",
        "/oauth2/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .expect("token request");
    assert_eq!(r.status, 200, "token refused: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// Hadoop's own WebHDFS client, from a Spark distribution's jars, driven by the small Java
/// program in tests/java (compiled once per Spark into the test's temp dir).
pub struct Hadoop {
    spark_home: String,
    classes: PathBuf,
}

impl Hadoop {
    pub fn new(spark_home: &str) -> Hadoop {
        let src = sidecars_common::crate_dir!().join("tests/java/WebHdfsProbe.java");
        let tag = sha256_hex(
            format!("{spark_home}{}", std::fs::read_to_string(&src).unwrap()).as_bytes(),
        );
        let classes =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("webhdfs-probe-{}", &tag[..16]));
        if !classes.join("WebHdfsProbe.class").exists() {
            let tmp = classes.with_extension(format!("tmp{}", std::process::id()));
            std::fs::create_dir_all(&tmp).unwrap();
            let ok = Command::new("javac")
                .arg("-cp")
                .arg(format!("{spark_home}/jars/*"))
                .arg("-d")
                .arg(&tmp)
                .arg(&src)
                .status()
                .expect("javac (Java 17 JDK) must be installed");
            assert!(ok.success(), "javac WebHdfsProbe failed");
            let _ = std::fs::rename(&tmp, &classes);
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Hadoop {
            spark_home: spark_home.to_string(),
            classes,
        }
    }

    /// Runs `commands` (tab-separated, see WebHdfsProbe.java) through one client for `base`
    /// (`webhdfs://127.0.0.1:port/`), with Hadoop settings `conf` and JVM options `jvm`;
    /// returns one answer line per command.
    pub fn run(
        &self,
        base: &str,
        conf: &[(&str, &str)],
        jvm: &[String],
        commands: &[String],
    ) -> Vec<String> {
        let mut cmd = Command::new("java");
        for (k, v) in conf {
            cmd.arg(format!("-Dhadoop.{k}={v}"));
        }
        cmd.args(jvm)
            .arg("-cp")
            .arg(format!(
                "{}:{}/jars/*",
                self.classes.display(),
                self.spark_home
            ))
            .arg("WebHdfsProbe")
            .arg(base)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("java");
        {
            let mut stdin = child.stdin.take().unwrap();
            for c in commands {
                writeln!(stdin, "{c}").unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("OK") || l.starts_with("ERR"))
            .map(str::to_string)
            .collect();
        assert_eq!(
            lines.len(),
            commands.len(),
            "the Hadoop client died: stdout {}\nstderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lines
    }
}

/// The Hadoop settings of OAuth2 with a credential, as the docs give them.
pub fn oauth_conf(port: u16, scheme: &str, credential: &str) -> Vec<(&'static str, String)> {
    vec![
        ("dfs.webhdfs.oauth2.enabled", "true".into()),
        (
            "dfs.webhdfs.oauth2.access.token.provider",
            "org.apache.hadoop.hdfs.web.oauth2.ConfCredentialBasedAccessTokenProvider".into(),
        ),
        ("dfs.webhdfs.oauth2.client.id", "spark".into()),
        ("dfs.webhdfs.oauth2.credential", credential.into()),
        (
            "dfs.webhdfs.oauth2.refresh.url",
            format!("{scheme}://127.0.0.1:{port}/oauth2/token"),
        ),
    ]
}

/// The server's peak resident memory (VmHWM) in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// CPU seconds the process has used (user + system).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // fields 14 and 15 of stat (utime, stime), counted from the state field (3)
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// gzip of a tar made of `header` (one raw 512-byte header) followed by `n` bytes of `fill`,
/// streamed so the test never holds the expanded data.
pub fn gzip_header_and_fill(header: &[u8; 512], n: u64, fill: u8) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(header).unwrap();
    let block = vec![fill; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        gz.write_all(&block[..k]).unwrap();
        left -= k as u64;
    }
    let pad = (512 - n % 512) % 512;
    gz.write_all(&vec![0u8; pad as usize]).unwrap();
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap()
}

/// One raw tar header (ustar, checksum set).
pub fn raw_header(name: &[u8], kind: u8, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}
