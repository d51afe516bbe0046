//! WebHDFS through Hadoop's own client (from the pyspark wheels' jars, no mock): it makes
//! directories, uploads as Spark's `uploadFileUri` does (`copyFromLocalFile`), stats, lists,
//! reads whole files and ranges (positioned reads and seeks), refuses replacing a file,
//! deletes; every byte read equals the local copy. For Spark 4.3 with OAuth2 (the token
//! endpoint, as Hadoop's `ConfCredentialBasedAccessTokenProvider` calls it) and with the
//! credential in the path; for Spark 3.5 with the credential in the path (its OAuth2 provider
//! is broken by a dependency clash, which a test here pins down); on local disk, on Garage
//! (S3) with identical files stored once, and over `swebhdfs` (TLS). Without a credential, or
//! with another grant's, the client gets `AccessControlException` / `FileNotFoundException`.

mod util;

use std::path::{Path, PathBuf};

use sidecars_common::objstore::testing::Garage;
use util::*;

struct Files {
    dir: tempfile::TempDir,
    jar: Vec<u8>,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let jar = noise(3_000_000);
        std::fs::write(dir.path().join("app.jar"), &jar).unwrap();
        std::fs::write(dir.path().join("conf.json"), b"{\"k\": 1}\n").unwrap();
        std::fs::write(dir.path().join("empty.txt"), b"").unwrap();
        std::fs::write(
            dir.path().join("with space.py"),
            b"def f():\n    return 1\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        Files { dir, jar }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn cmd(parts: &[&str]) -> String {
    parts.join("\t")
}

/// The scenario every mode runs: upload like Spark, read back every way, refuse a
/// replacement; `root` is where the uploads go (`/up` or `/<credential>/up`); with
/// `may_delete` the deletes succeed, else they are refused.
fn round_trip(
    hadoop: &Hadoop,
    base: &str,
    conf: &[(&str, &str)],
    jvm: &[String],
    root: &str,
    may_delete: bool,
) {
    let f = Files::new();
    let d = format!("{root}/spark-upload-6c3e1f0a-0000-4000-8000-000000000001");
    let out = |n: &str| f.path(&format!("out/{n}"));
    let commands = vec![
        cmd(&["mkdirs", &d]),
        cmd(&["put", &f.path("app.jar"), &format!("{d}/app.jar")]),
        cmd(&["put", &f.path("conf.json"), &format!("{d}/conf.json")]),
        cmd(&["put", &f.path("empty.txt"), &format!("{d}/empty.txt")]),
        cmd(&[
            "put",
            &f.path("with space.py"),
            &format!("{d}/with space.py"),
        ]),
        cmd(&["stat", &format!("{d}/app.jar")]),
        cmd(&["ls", &d]),
        cmd(&["get", &format!("{d}/app.jar"), &out("app.jar")]),
        cmd(&[
            "pread",
            &format!("{d}/app.jar"),
            "1000",
            "5000",
            &out("pread"),
        ]),
        cmd(&[
            "seekread",
            &format!("{d}/app.jar"),
            "2000000",
            "100000",
            &out("seek"),
        ]),
        cmd(&["get", &format!("{d}/empty.txt"), &out("empty")]),
        cmd(&["get", &format!("{d}/with space.py"), &out("space")]),
        cmd(&["put", &f.path("conf.json"), &format!("{d}/app.jar")]),
        cmd(&["stat", &format!("{root}/nope")]),
        cmd(&["stat", &d]),
        cmd(&["rm", &format!("{d}/conf.json")]),
        cmd(&["exists", &format!("{d}/conf.json")]),
        cmd(&["rm", &d]),
        cmd(&["rmr", &d]),
        cmd(&["exists", &d]),
    ];
    let r = hadoop.run(base, conf, jvm, &commands);
    let ok =
        |i: usize, want: &str| assert_eq!(r[i], format!("OK {want}"), "{}: {:?}", commands[i], r);
    ok(0, "true");
    for i in 1..=4 {
        ok(i, "");
    }
    ok(5, &format!("file:{}:rw-r--r--", f.jar.len()));
    ok(
        6,
        &format!(
            "app.jar:file:{},conf.json:file:9,empty.txt:file:0,with space.py:file:22",
            f.jar.len()
        ),
    );
    ok(7, &f.jar.len().to_string());
    assert!(
        std::fs::read(out("app.jar")).unwrap() == f.jar,
        "app.jar differs"
    );
    ok(8, "5000");
    assert!(std::fs::read(out("pread")).unwrap() == f.jar[1000..6000]);
    ok(9, "100000");
    assert!(std::fs::read(out("seek")).unwrap() == f.jar[2_000_000..2_100_000]);
    ok(10, "0");
    ok(11, "22");
    assert_eq!(
        std::fs::read(out("space")).unwrap(),
        b"def f():\n    return 1\n"
    );
    assert!(
        r[12].starts_with("ERR org.apache.hadoop.fs.FileAlreadyExistsException")
            && r[12].contains("write-once"),
        "replacing a file must be refused: {}",
        r[12]
    );
    assert!(
        r[13].starts_with("ERR java.io.FileNotFoundException"),
        "{}",
        r[13]
    );
    assert!(
        !r[13].contains("stagetoken"),
        "the credential leaked into a message: {}",
        r[13]
    );
    assert!(r[14].starts_with("OK dir:0:"), "{}", r[14]);
    if may_delete {
        ok(15, "true");
        ok(16, "false");
        assert!(
            r[17].starts_with("ERR org.apache.hadoop.fs.PathIsNotEmptyDirectoryException"),
            "{}",
            r[17]
        );
        ok(18, "true");
        ok(19, "false");
    } else {
        for i in [15, 17, 18] {
            assert!(
                r[i].starts_with("ERR org.apache.hadoop.security.AccessControlException"),
                "{}: {}",
                commands[i],
                r[i]
            );
        }
        ok(16, "true");
        ok(19, "true");
    }
}

fn with_conf<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn spark4_client_with_oauth2_and_with_the_credential_in_the_path() {
    let hadoop = Hadoop::new(&need_env("SPARK4_HOME"));
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start_admin(&dir.path().join("data"), &[]);
    let cred = credential(srv.port, &admin, "team-a");
    let base = format!("webhdfs://127.0.0.1:{}/", srv.port);
    let oauth = oauth_conf(srv.port, "http", &cred);
    round_trip(&hadoop, &base, &with_conf(&oauth), &[], "/up", true);
    round_trip(&hadoop, &base, &[], &[], &format!("/{cred}/up2"), false);
    // what stock Spark 4's upload reads back: a driver listing its upload dir sees the files
    // the path credential wrote, under the same grant
    let r = hadoop.run(&base, &with_conf(&oauth), &[], &[cmd(&["ls", "/"])]);
    assert_eq!(r, ["OK up2:dir:0,up:dir:0"]);
}

#[test]
fn spark35_client_with_the_credential_in_the_path() {
    let hadoop = Hadoop::new(&need_env("SPARK35_HOME"));
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start_admin(&dir.path().join("data"), &[]);
    let cred = credential(srv.port, &admin, "team-a");
    let base = format!("webhdfs://127.0.0.1:{}/", srv.port);
    round_trip(&hadoop, &base, &[], &[], &format!("/{cred}/up"), false);
    // Why Spark 3.5 needs the path form: its Hadoop 3.3.4 OAuth2 provider calls an OkHttp 4
    // method, and Spark 3.5 ships OkHttp 3.12. If this starts passing, the docs can say
    // OAuth2 for 3.5 too.
    let oauth = oauth_conf(srv.port, "http", &cred);
    let r = hadoop.run(&base, &with_conf(&oauth), &[], &[cmd(&["mkdirs", "/x"])]);
    assert!(
        r[0].contains("NoSuchMethodError") && r[0].contains("okhttp3.RequestBody"),
        "{r:?}"
    );
}

#[test]
fn without_a_valid_credential_nothing_is_readable_or_writable() {
    let hadoop = Hadoop::new(&need_env("SPARK4_HOME"));
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start_admin(&dir.path().join("data"), &[]);
    let a = credential(srv.port, &admin, "team-a");
    let b = credential(srv.port, &admin, "team-b");
    let base = format!("webhdfs://127.0.0.1:{}/", srv.port);
    let f = Files::new();
    let put = |cred_root: &str| {
        vec![
            cmd(&[
                "put",
                &f.path("conf.json"),
                &format!("{cred_root}/secret.json"),
            ]),
            cmd(&["ls", &format!("{cred_root}/")]),
        ]
    };
    // team-a uploads
    let r = hadoop.run(
        &base,
        &with_conf(&oauth_conf(srv.port, "http", &a)),
        &[],
        &put(""),
    );
    assert_eq!(r, ["OK ", "OK secret.json:file:9"]);
    // no credential at all: every operation is an AccessControlException
    let r = hadoop.run(&base, &[], &[], &put(""));
    for line in &r {
        assert!(
            line.starts_with("ERR org.apache.hadoop.security.AccessControlException"),
            "{r:?}"
        );
    }
    // a forged credential, in the path or through OAuth2
    let forged = format!("{}x", &a[..a.len() - 1]);
    let r = hadoop.run(&base, &[], &[], &put(&format!("/{forged}")));
    for line in &r {
        assert!(
            line.starts_with("ERR org.apache.hadoop.security.AccessControlException"),
            "{r:?}"
        );
    }
    let r = hadoop.run(
        &base,
        &with_conf(&oauth_conf(srv.port, "http", &forged)),
        &[],
        &put(""),
    );
    for line in &r {
        assert!(
            line.starts_with("ERR java.io.IOException") && line.contains("access token"),
            "{r:?}"
        );
    }
    // team-b sees its own (empty) tree, not team-a's file
    let r = hadoop.run(
        &base,
        &with_conf(&oauth_conf(srv.port, "http", &b)),
        &[],
        &[
            cmd(&["ls", "/"]),
            cmd(&["stat", "/secret.json"]),
            cmd(&["get", "/secret.json", &f.path("out/x")]),
        ],
    );
    assert_eq!(r[0], "OK ");
    assert!(
        r[1].starts_with("ERR java.io.FileNotFoundException"),
        "{r:?}"
    );
    assert!(
        r[2].starts_with("ERR java.io.FileNotFoundException"),
        "{r:?}"
    );
}

/// Keys under `prefix` in the Garage bucket.
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
fn on_garage_identical_files_are_stored_once() {
    need_env("GARAGE_BIN");
    let hadoop = Hadoop::new(&need_env("SPARK4_HOME"));
    let garage = Garage::start().expect("start Garage");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage = garage.url("staging");
    let dir = tempfile::tempdir().unwrap();
    let (srv, admin) = start_admin_with(
        &dir.path().join("data"),
        &["--storage", &storage],
        &garage.env(),
        true,
    );
    let cred = credential(srv.port, &admin, "team-a");
    let base = format!("webhdfs://127.0.0.1:{}/", srv.port);
    let oauth = oauth_conf(srv.port, "http", &cred);
    round_trip(&hadoop, &base, &with_conf(&oauth), &[], "/up", true);
    // without a token: the credential in the path, as Spark 3.5 submits
    round_trip(&hadoop, &base, &[], &[], &format!("/{cred}/up2"), false);
    // the same jar uploaded by two submissions (two spark-upload dirs) is one object
    let f = Files::new();
    let r = hadoop.run(
        &base,
        &with_conf(&oauth),
        &[],
        &[
            cmd(&["put", &f.path("app.jar"), "/u/spark-upload-1/app.jar"]),
            cmd(&["put", &f.path("app.jar"), "/u/spark-upload-2/app.jar"]),
            cmd(&["get", "/u/spark-upload-2/app.jar", &f.path("out/again")]),
        ],
    );
    assert_eq!(r[..2], ["OK ", "OK "]);
    assert!(std::fs::read(f.path("out/again")).unwrap() == f.jar);
    // every distinct content once: the jar (four uploads of it), conf.json, the empty file
    // and the Python file
    let mut blobs = keys(&garage, &rt, "staging/blobs/");
    blobs.sort();
    let mut want: Vec<String> = [
        &f.jar[..],
        b"{\"k\": 1}\n",
        b"",
        b"def f():\n    return 1\n",
    ]
    .iter()
    .map(|c| format!("staging/blobs/{}", sha256_hex(c)))
    .collect();
    want.sort();
    assert_eq!(blobs, want, "each content must be stored once");
    assert!(
        !dir.path().join("data/staging").exists(),
        "went to local disk, not S3"
    );
}

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("generate a certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swebhdfs_over_the_servers_tls() {
    let hadoop = Hadoop::new(&need_env("SPARK4_HOME"));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (srv, admin) = start_admin_with(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
        false,
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let mut issued = None;
    for _ in 0..100 {
        if let Ok(r) = client
            .post(format!("https://127.0.0.1:{}/api/v1/credentials", srv.port))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"namespace": "team-a"}))
            .send()
            .await
        {
            issued = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let cred = issued.expect("https answer")["credential"]
        .as_str()
        .unwrap()
        .to_string();
    // the JVM trusts the self-signed certificate through a PKCS#12 trust store
    let store = dir.path().join("trust.p12");
    let ok = std::process::Command::new("keytool")
        .args([
            "-importcert",
            "-noprompt",
            "-alias",
            "staging",
            "-storetype",
            "PKCS12",
            "-storepass",
            "changeit",
            "-file",
        ])
        .arg(&cert)
        .arg("-keystore")
        .arg(&store)
        .status()
        .expect("keytool");
    assert!(ok.success());
    let jvm = vec![
        format!("-Djavax.net.ssl.trustStore={}", store.display()),
        "-Djavax.net.ssl.trustStorePassword=changeit".to_string(),
    ];
    let base = format!("swebhdfs://localhost:{}/", srv.port);
    let oauth = oauth_conf(srv.port, "https", &cred);
    tokio::task::spawn_blocking(move || {
        round_trip(&hadoop, &base, &with_conf(&oauth), &jvm, "/up", true);
    })
    .await
    .unwrap();
}
