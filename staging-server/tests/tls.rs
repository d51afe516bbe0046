//! HTTPS: the server with `--tls-cert`/`--tls-key` (a self-signed certificate made here),
//! `spark-stage upload` and `fetch` trusting it through `--ca-cert` (and refusing the server
//! without it), downloads of the bundle and of per-file URLs over https, and the flag checks.

mod util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use util::*;

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files in `dir`.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("generate a certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn client_trusting(cert: &Path) -> reqwest::Client {
    let pem = std::fs::read(cert).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

fn spark_stage(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spark-stage"))
        .args(args)
        .output()
        .expect("run spark-stage")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upload_and_download_with_a_trusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let srv = start_with(
        &dir.path().join("data"),
        &["--tls-cert", cert_s, "--tls-key", key_s],
        &[],
        false,
    );
    let base = format!("https://127.0.0.1:{}", srv.port);
    let client = client_trusting(&cert);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.get(format!("{base}/api/v0/ping")).send().await {
            Ok(r) => {
                assert_eq!(r.status(), 200);
                assert_eq!(r.text().await.unwrap(), "pong");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no https answer: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Plain http on the https port gets nothing useful.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/api/v0/ping", srv.port))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status() != 200).unwrap_or(true),
        "plain http was served on the https port"
    );

    let jar = noise(300_000);
    let conf = b"a=1\n".to_vec();
    std::fs::write(dir.path().join("app.jar"), &jar).unwrap();
    std::fs::write(dir.path().join("app.conf"), &conf).unwrap();
    let (jar_p, conf_p) = (dir.path().join("app.jar"), dir.path().join("app.conf"));
    let files = [jar_p.to_str().unwrap(), conf_p.to_str().unwrap()];

    // Without --ca-cert the self-signed server is not trusted, and the error says why.
    let out = spark_stage(&[&["upload", "--quiet", "--server", &base][..], &files].concat());
    assert!(
        !out.status.success(),
        "upload trusted an unknown certificate"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&base) && err.to_lowercase().contains("certificate"),
        "unclear error: {err}"
    );

    let out = spark_stage(
        &[
            &["upload", "--quiet", "--server", &base, "--ca-cert", cert_s][..],
            &files,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "upload over https failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = up["resourceId"].as_str().unwrap().to_string();
    let secret = up["resourceSecret"].as_str().unwrap().to_string();
    for (name, data) in [("jars/app.jar", &jar), ("files/app.conf", &conf)] {
        let f = up["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {up}"));
        let url = f["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{base}/")), "{url}");
        assert_eq!(f["sha256"], sha256_hex(data));
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
        let r = client
            .get(url)
            .header("Range", "bytes=1-3")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[1..4]);
    }
    let r = client
        .get(format!("{base}/api/v0/resources/{id}"))
        .header("Authorization", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        sha256_hex(&r.bytes().await.unwrap()),
        up["bundleSha256"].as_str().unwrap()
    );

    // The init container over https, trusting the certificate.
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let (jars, fdir) = (dir.path().join("out/jars"), dir.path().join("out/files"));
    let out = spark_stage(&[
        "fetch",
        "--server",
        &base,
        "--ca-cert",
        cert_s,
        "--resource-id",
        &id,
        "--secret-file",
        secret_file.to_str().unwrap(),
        "--jars-dir",
        jars.to_str().unwrap(),
        "--files-dir",
        fdir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "fetch over https failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(jars.join("app.jar")).unwrap(), jar);
    assert_eq!(std::fs::read(fdir.join("app.conf")).unwrap(), conf);
}

#[test]
fn tls_flags_must_come_in_pairs_and_match() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_, other_key) = self_signed(other.path());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_staging-server"))
            .args(["--bind", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .expect("run staging-server")
    };
    let (c, k, ok) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        other_key.to_str().unwrap(),
    );
    for (args, says) in [
        (vec!["--tls-cert", c], "--tls-key"),
        (vec!["--tls-key", k], "--tls-cert"),
        (vec!["--tls-cert", k, "--tls-key", k], "--tls-cert"),
        (vec!["--tls-cert", c, "--tls-key", c], "--tls-key"),
        (vec!["--tls-cert", c, "--tls-key", ok], "does not fit"),
        (
            vec!["--tls-cert", "/nonexistent.pem", "--tls-key", k],
            "/nonexistent.pem",
        ),
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(says),
            "{args:?}: error does not say `{says}`: {err}"
        );
    }
}
