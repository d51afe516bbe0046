//! Our service driven by Spark's own shuffle client (`ExternalBlockStoreClient` from the
//! pyspark 3.5 and 4.x wheels, through tests/AuthClient.java) with every authentication setting
//! Spark has: SASL `auth` and `auth-conf`, and the AuthEngine with AES/CTR and AES/GCM under
//! `authEngineVersion` 1 and 2. Each registers an executor and fetches blocks whose bytes are
//! checked; a wrong secret and a client without authentication are refused.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::client::write_map_output;
use support::{bm, free_port, metric, Daemon};

fn spark_home(var: &str) -> PathBuf {
    PathBuf::from(std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/test.sh, or eval \"$(bash scripts/install-test-tools.sh --print-env)\"")
    }))
}

/// Compiles AuthClient.java against `home`'s jars, once per Spark.
fn classes(home: &Path) -> PathBuf {
    static DIRS: OnceLock<std::sync::Mutex<Vec<(PathBuf, PathBuf)>>> = OnceLock::new();
    let dirs = DIRS.get_or_init(Default::default);
    let mut dirs = dirs.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c)) = dirs.iter().find(|(h, _)| h == home) {
        return c.clone();
    }
    let out = std::env::temp_dir().join(format!(
        "shuffle-authclient-{}-{}",
        std::process::id(),
        dirs.len()
    ));
    std::fs::create_dir_all(&out).expect("mkdir");
    let src = sidecars_common::crate_dir!().join("tests/AuthClient.java");
    let status = Command::new("javac")
        .args(["-nowarn", "-d"])
        .arg(&out)
        .arg("-cp")
        .arg(format!("{}/jars/*", home.display()))
        .arg(&src)
        .status()
        .expect("javac");
    assert!(status.success(), "javac AuthClient.java failed");
    dirs.push((home.to_owned(), out.clone()));
    out
}

struct Run<'a> {
    home: &'a Path,
    port: u16,
}

impl Run<'_> {
    fn client(&self, mode: &str, secret: &str, app: &str, dir: &Path, blocks: &[&str]) -> String {
        let cp = format!(
            "{}:{}/jars/*",
            classes(self.home).display(),
            self.home.display()
        );
        let out = Command::new("java")
            .arg("-cp")
            .arg(cp)
            .arg("AuthClient")
            .arg(self.port.to_string())
            .args([mode, secret, app, "1"])
            .arg(dir)
            .args(blocks)
            .output()
            .expect("java");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn crc(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b);
    h.finalize()
}

/// The shared secret: as long as the ones Spark on Kubernetes generates (64 hex characters),
/// whose SASL password spans two lines (Netty's base64).
const SHARED: &str = "0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e";

fn with_spark(home_var: &str, modes: &[&str]) {
    let home = spark_home(home_var);
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    let state = tmp.path().join("state");
    let secret_path = tmp.path().join("secret");
    std::fs::create_dir_all(&root).expect("mkdir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&secret_path, format!("{SHARED}\n")).expect("secret");
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    let port = free_port();
    let daemon = Daemon::start_with(
        port,
        &root,
        &state,
        &tmp.path().join("svc.log"),
        &[
            "--auth",
            "required",
            "--auth-secret-file",
            secret_path.to_str().expect("utf8"),
        ],
    );
    let run = Run { home: &home, port };
    for (i, mode) in modes.iter().enumerate() {
        let dir = bm(&root, i as u32 + 1);
        std::fs::create_dir_all(&dir).expect("mkdir");
        // a block bigger than one GCM segment and one SASL piece, and a small one
        let parts = write_map_output(std::slice::from_ref(&dir), 0, 1, &[200_000, 7]);
        let app = format!("app-{mode}");
        let out = run.client(
            mode,
            SHARED,
            &app,
            &dir,
            &["shuffle_0_1_0", "shuffle_0_1_1"],
        );
        assert!(
            out.contains("\nOK") || out.starts_with("OK"),
            "Spark's client with {mode} failed:\n{out}\nservice log:\n{}",
            daemon.log()
        );
        for (r, p) in parts.iter().enumerate() {
            let line = format!("BLOCK shuffle_0_1_{r} {} {}", p.len(), crc(p));
            assert!(out.contains(&line), "{mode}: want {line} in\n{out}");
        }
    }
    // a wrong secret, by both protocols, and no authentication at all
    let dir = bm(&root, 0x100);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for mode in ["sasl", "ctr"] {
        let out = run.client(mode, "wrong", "app-wrong", &dir, &[]);
        assert!(out.contains("FAILED"), "{mode} with a wrong secret:\n{out}");
    }
    let out = run.client("none", "", "app-none", &dir, &[]);
    assert!(out.contains("FAILED"), "without authentication:\n{out}");
    assert!(
        out.contains("Expected SaslMessage"),
        "the refusal names the reason:\n{out}"
    );
    assert!(metric(daemon.admin_port, "shuffle_authentication_failures_total") >= 2.0);
    daemon.stop();
}

#[test]
fn spark_35_client_every_auth_mode() {
    // Spark 3.5.7's own GCM decryption handles only the first message of a connection (its
    // DecryptionHandler never resets between messages): with AES/GCM a 3.5.7 client registers
    // with Spark 3.5.7's own ExternalShuffleService, then its first fetch hangs. So GCM is
    // proved with Spark 4.x only.
    with_spark("SPARK35_HOME", &["sasl", "sasl-conf", "ctr", "ctr-v2"]);
}

#[test]
fn spark_4_client_every_auth_mode() {
    with_spark(
        "SPARK4_HOME",
        &["sasl", "sasl-conf", "ctr", "ctr-v2", "gcm", "gcm-v2"],
    );
}
