//! The service attacked the way a hostile pod on the node would, with a client speaking Spark's
//! protocol on the service port. Each test is one attack of issue 15's list (or one found
//! since): it fails against the service before that issue and passes now, and each checks
//! that legitimate clients are still served with nothing lost or leaked.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use shuffle_service::protocol::{BlockTransferMessage, Message};
use sidecars_common::fake_kube::FakeApiServer;
use support::client::{register, write_map_output, Cipher, Client};
use support::{bm, free_port, http_get, metric, service_bin, Daemon};

fn tmpdirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&root).expect("mkdir");
    (tmp, root, state)
}

fn mkdirs(dirs: &[&PathBuf]) {
    for d in dirs {
        std::fs::create_dir_all(d).expect("mkdir");
    }
}

fn secret_file(dir: &Path, secret: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let f = dir.join("secret");
    std::fs::write(&f, format!("{secret}\n")).expect("write secret");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    f
}

fn fetch(app: &str, exec: &str, map: i64, reduce: i32) -> BlockTransferMessage {
    BlockTransferMessage::FetchShuffleBlocks {
        app_id: app.into(),
        exec_id: exec.into(),
        shuffle_id: 0,
        map_ids: vec![map],
        reduce_ids: vec![vec![reduce]],
        batch_fetch_enabled: false,
    }
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A connection from a chosen loopback address, so tests can be several peers.
fn connect_from(ip: &str, port: u16) -> TcpStream {
    let sock = socket2_connect(ip, port);
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    sock
}

fn socket2_connect(ip: &str, port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let local: SocketAddr = format!("{ip}:0").parse().expect("addr");
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.bind(&local.into())
        .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    // a service that stopped accepting fails the test instead of hanging it
    s.connect_timeout(&server.into(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect from {ip}: {e}"));
    s.into()
}

/// A legitimate round trip from `ip`: register (idempotent) and read one block, timed.
fn legit_fetch(ip: &str, port: u16, dirs: &[PathBuf], expect: &[u8]) -> Duration {
    let t = Instant::now();
    let mut c = Client::from_stream(connect_from(ip, port));
    c.rpc(&register("app-legit", "1", dirs))
        .expect("legit registration");
    let (sid, n) = c.open(&fetch("app-legit", "1", 1, 0));
    assert_eq!(n, 1);
    assert_eq!(&c.chunk(sid, 0).expect("legit chunk")[..], expect);
    t.elapsed()
}

#[test]
fn the_allowed_root_itself_cannot_be_registered_so_removal_never_deletes_it() {
    let (tmp, root, state) = tmpdirs();
    let other = bm(&root, 1);
    mkdirs(&[&other]);
    std::fs::write(other.join("precious"), b"another app's file").expect("write");
    let port = free_port();
    let d = Daemon::start_with(
        port,
        &root,
        &state,
        &tmp.path().join("svc.log"),
        &["--app-ttl", "1s", "--cleanup-interval", "1s"],
    );
    let mut c = Client::connect(port);
    for dir in [
        root.clone(),
        root.join("."),
        root.join("x/.."),
        root.join("notablockmgr"),
    ] {
        std::fs::create_dir_all(root.join("x")).expect("mkdir");
        if dir.ends_with("notablockmgr") {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        let err = c
            .rpc(&register("app-evil", "1", std::slice::from_ref(&dir)))
            .expect_err("the root must be refused");
        assert!(err.contains("refused"), "{err}");
    }
    // the TTL passes; nothing was registered, so nothing is removed
    std::thread::sleep(Duration::from_millis(2500));
    assert!(other.join("precious").exists(), "{}", d.log());
    assert!(root.exists());
    d.stop();
}

fn executor_pod(name: &str, app: &str, secret: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"spark-role": "executor", "spark-app-selector": app}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "spark-kubernetes-executor", "env": [
            {"name": "SPARK_EXECUTOR_ID", "value": "1"},
            {"name": "_SPARK_AUTH_SECRET", "value": secret}
        ]}]},
        "status": {"phase": "Running"}
    }))
    .expect("pod")
}

/// Per-application secrets learned from executor pods (fake API server): each application
/// reads only its own blocks; nobody else can list, register over, read or delete them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_learned_secrets_an_application_cannot_touch_another() {
    let api = FakeApiServer::start().await;
    let (tmp, root, state) = tmpdirs();
    let (d1, d2, d3) = (bm(&root, 1), bm(&root, 2), bm(&root, 3));
    mkdirs(&[&d1, &d2, &d3]);
    api.apply_pod(executor_pod("a-exec-1", "spark-a", "secret-a"));
    api.apply_pod(executor_pod("b-exec-1", "spark-b", "secret-b"));
    // a pod on another node: its secret must not be learned
    let mut other = executor_pod("c-exec-1", "spark-c", "secret-c");
    other.spec.as_mut().expect("spec").node_name = Some("node-b".into());
    api.apply_pod(other);
    let kubeconfig = api.kubeconfig_path().display().to_string();
    let port = free_port();
    let daemon = tokio::task::block_in_place(|| {
        Daemon::start_with(
            port,
            &root,
            &state,
            &tmp.path().join("svc.log"),
            &[
                "--kubeconfig",
                &kubeconfig,
                "--auth",
                "required",
                "--node-name",
                "node-a",
                "--auth-secret-wait",
                "2s",
            ],
        )
    });
    tokio::task::block_in_place(|| {
        let parts = write_map_output(std::slice::from_ref(&d1), 0, 1, &[100, 200]);
        // the victim, spark-a, registers and can read its block
        let mut a = Client::connect(port);
        a.auth_engine("spark-a", "secret-a", Cipher::Ctr, 1)
            .expect("spark-a authenticates");
        assert_eq!(
            a.rpc(&register("spark-a", "1", std::slice::from_ref(&d1))),
            Ok(Bytes::new())
        );
        let (sid, _) = a.open(&fetch("spark-a", "1", 1, 1));
        assert_eq!(a.chunk(sid, 0).expect("own block"), parts[1]);

        // a pod of the attacker's claims spark-a's app id with a secret of its own: the secret
        // learned first stays, so the attacker cannot authenticate as spark-a
        api.apply_pod(executor_pod("impostor-exec-1", "spark-a", "impostor"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while support::metric_labelled(
            daemon.admin_port,
            "shuffle_refused_total",
            "reason=\"secret_conflict\"",
        ) < 1.0
        {
            assert!(Instant::now() < deadline, "{}", daemon.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut c = Client::connect(port);
        assert!(c
            .auth_engine("spark-a", "impostor", Cipher::Ctr, 1)
            .is_err());
        let mut c = Client::connect(port);
        c.auth_engine("spark-a", "secret-a", Cipher::Gcm, 1)
            .expect("spark-a keeps its secret");

        // no authentication at all: refused outright, connection closed
        let mut anon = Client::connect(port);
        for m in [
            BlockTransferMessage::GetLocalDirsForExecutors {
                app_id: "spark-a".into(),
                exec_ids: vec!["1".into()],
            },
            register("spark-a", "1", std::slice::from_ref(&d2)),
        ] {
            let err = anon.rpc(&m).expect_err("unauthenticated");
            assert!(err.contains("Expected SaslMessage"), "{err}");
            anon = Client::connect(port);
        }
        // the other node's application is unknown: its handshake fails
        let mut c = Client::connect(port);
        let err = c
            .auth_engine("spark-c", "secret-c", Cipher::Ctr, 1)
            .expect_err("not learned");
        assert!(err.contains("non-registered app spark-c"), "{err}");
        // wrong secret for the victim's app id, by both protocols
        let mut c = Client::connect(port);
        assert!(c
            .auth_engine("spark-a", "secret-b", Cipher::Ctr, 1)
            .is_err());
        let mut c = Client::connect(port);
        assert!(c.auth_sasl("spark-a", "secret-b", false).is_err());

        // spark-b, authenticated as itself, goes after spark-a
        let mut b = Client::connect(port);
        b.auth_sasl("spark-b", "secret-b", false)
            .expect("spark-b authenticates");
        let attacks = [
            BlockTransferMessage::GetLocalDirsForExecutors {
                app_id: "spark-a".into(),
                exec_ids: vec!["1".into()],
            },
            register("spark-a", "1", std::slice::from_ref(&d2)),
            fetch("spark-a", "1", 1, 1),
            BlockTransferMessage::OpenBlocks {
                app_id: "spark-a".into(),
                exec_id: "1".into(),
                block_ids: vec!["shuffle_0_1_1".into()],
            },
            BlockTransferMessage::RemoveBlocks {
                app_id: "spark-a".into(),
                exec_id: "1".into(),
                block_ids: vec!["shuffle_0_1_0".into()],
            },
        ];
        for m in &attacks {
            let err = b.rpc(m).expect_err("another application's request");
            assert!(
                err.contains("Client for spark-b not authorized for application spark-a"),
                "{err}"
            );
        }
        // its own app over spark-a's dir
        let err = b
            .rpc(&register("spark-b", "1", std::slice::from_ref(&d1)))
            .expect_err("someone else's dir");
        assert!(err.contains("belongs to another application"), "{err}");
        // and a legitimate registration of its own works
        assert_eq!(
            b.rpc(&register("spark-b", "1", std::slice::from_ref(&d3))),
            Ok(Bytes::new())
        );

        // nothing of spark-a's changed
        let mut a = Client::connect(port);
        a.auth_sasl("spark-a", "secret-a", true)
            .expect("spark-a with auth-conf");
        let dirs = a
            .rpc(&BlockTransferMessage::GetLocalDirsForExecutors {
                app_id: "spark-a".into(),
                exec_ids: vec!["1".into()],
            })
            .expect("own dirs");
        assert_eq!(
            BlockTransferMessage::decode(&dirs).expect("decode"),
            BlockTransferMessage::LocalDirsForExecutors {
                dirs: vec![("1".into(), vec![d1.display().to_string()])]
            }
        );
        let (sid, _) = a.open(&fetch("spark-a", "1", 1, 0));
        assert_eq!(a.chunk(sid, 0).expect("block intact"), parts[0]);
        assert!(
            support::metric_labelled(daemon.admin_port, "shuffle_refused_total", "reason") >= 5.0
        );
        assert!(metric(daemon.admin_port, "shuffle_secrets_learned") == 2.0);
        // a Secret-backed variable without --auth-secrets-from-k8s-secrets is not read, and the
        // service asked the API for pods only
        assert!(api.calls().iter().all(|c| c.resource == "pods"));
        daemon.stop();
    });
}

/// `--auth known`: an application without a secret may go unauthenticated, but cannot take
/// over another's registered executor, and once its secret is known, registrations made
/// without it are dropped.
#[test]
fn an_executor_cannot_be_re_registered_with_other_dirs() {
    let (tmp, root, state) = tmpdirs();
    let (d1, d2) = (bm(&root, 1), bm(&root, 2));
    mkdirs(&[&d1, &d2]);
    let port = free_port();
    let d = Daemon::start_with(
        port,
        &root,
        &state,
        &tmp.path().join("svc.log"),
        &["--auth", "known"],
    );
    let parts = write_map_output(std::slice::from_ref(&d1), 0, 1, &[10]);
    let mut victim = Client::connect(port);
    assert_eq!(
        victim.rpc(&register("app-v", "1", std::slice::from_ref(&d1))),
        Ok(Bytes::new())
    );
    let mut evil = Client::connect(port);
    let err = evil
        .rpc(&register("app-v", "1", std::slice::from_ref(&d2)))
        .expect_err("re-registration with other dirs");
    assert!(
        err.contains("already registered with other localDirs"),
        "{err}"
    );
    let (sid, _) = victim.open(&fetch("app-v", "1", 1, 0));
    assert_eq!(victim.chunk(sid, 0).expect("victim's block"), parts[0]);
    d.stop();
}

#[test]
fn huge_fetch_requests_are_refused_before_they_cost_memory() {
    let (tmp, root, state) = tmpdirs();
    let d1 = bm(&root, 1);
    mkdirs(&[&d1]);
    let port = free_port();
    let d = Daemon::start_with(
        port,
        &root,
        &state,
        &tmp.path().join("svc.log"),
        &[
            "--max-open-blocks-per-connection",
            "300000",
            "--max-frame-size",
            "32MiB",
        ],
    );
    let parts = write_map_output(std::slice::from_ref(&d1), 0, 1, &[10]);
    let mut c = Client::connect(port);
    c.rpc(&register("app-1", "1", std::slice::from_ref(&d1)))
        .expect("register");
    let rss0 = rss_kib(d.child.id());
    // millions of ids in one request
    let many: Vec<String> = (0..1_000_000).map(|i| format!("shuffle_0_{i}_0")).collect();
    let err = c
        .rpc(&BlockTransferMessage::OpenBlocks {
            app_id: "app-1".into(),
            exec_id: "1".into(),
            block_ids: many,
        })
        .expect_err("too many ids");
    assert!(err.contains("--max-ids-per-request"), "{err}");
    let err = c
        .rpc(&BlockTransferMessage::FetchShuffleBlocks {
            app_id: "app-1".into(),
            exec_id: "1".into(),
            shuffle_id: 0,
            map_ids: (0..1_000_000).collect(),
            reduce_ids: vec![vec![]; 1_000_000],
            batch_fetch_enabled: false,
        })
        .expect_err("too many maps");
    assert!(err.contains("--max-ids-per-request"), "{err}");
    // under the per-request limit, but streams left open pile up: refused past the
    // per-connection budget
    let mut refused = None;
    for i in 0..10 {
        let r = c.rpc(&BlockTransferMessage::FetchShuffleBlocks {
            app_id: "app-1".into(),
            exec_id: "1".into(),
            shuffle_id: 0,
            map_ids: (0..150_000).collect(),
            reduce_ids: vec![vec![0]; 150_000],
            batch_fetch_enabled: false,
        });
        if let Err(e) = r {
            refused = Some((i, e));
            break;
        }
    }
    let (i, err) = refused.expect("open streams must be bounded");
    assert_eq!(i, 2, "300,000 blocks fit, the third 150,000 do not");
    assert!(err.contains("--max-open-blocks-per-connection"), "{err}");
    let grew = rss_kib(d.child.id()).saturating_sub(rss0);
    assert!(grew < 150 * 1024, "RSS grew by {grew} KiB");
    // other connections are still served (this one until it reads its open streams)
    let mut c2 = Client::connect(port);
    let (sid, _) = c2.open(&fetch("app-1", "1", 1, 0));
    assert_eq!(c2.chunk(sid, 0).expect("block"), parts[0]);
    assert!(support::metric_labelled(d.admin_port, "shuffle_refused_total", "reason") >= 3.0);
    drop(c);
    d.stop();
}

#[test]
fn idle_connections_cannot_crowd_out_a_legitimate_client() {
    let (tmp, root, state) = tmpdirs();
    let d1 = bm(&root, 1);
    mkdirs(&[&d1]);
    let parts = write_map_output(std::slice::from_ref(&d1), 0, 1, &[64]);
    let port = free_port();
    let d = Daemon::start_with(
        port,
        &root,
        &state,
        &tmp.path().join("svc.log"),
        &[
            "--max-connections",
            "120",
            "--max-connections-per-peer",
            "50",
        ],
    );
    // one peer opens far more than its share; three more peers fill the service
    let mut idle = Vec::new();
    for ip in ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"] {
        for _ in 0..80 {
            idle.push(connect_from(ip, port));
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let took = legit_fetch("127.0.0.2", port, std::slice::from_ref(&d1), &parts[0]);
    assert!(
        took < Duration::from_secs(2),
        "legitimate fetch took {took:?}"
    );
    assert!(metric(d.admin_port, "shuffle_connections") <= 120.0);
    drop(idle);
    d.stop();
}

#[test]
fn clients_that_never_read_cannot_exhaust_file_descriptors() {
    let (tmp, root, state) = tmpdirs();
    let (d1, d2) = (bm(&root, 1), bm(&root, 2));
    mkdirs(&[&d1, &d2]);
    // one 1 MiB block: replies fill the socket buffers at once
    write_map_output(std::slice::from_ref(&d1), 0, 1, &[1 << 20, 16]);
    let parts = write_map_output(std::slice::from_ref(&d2), 0, 1, &[16]);
    let port = free_port();
    let d = Daemon::start_with(
        port,
        &root,
        &state,
        &tmp.path().join("svc.log"),
        &["--idle-timeout", "3s", "--max-files-per-connection", "16"],
    );
    let fds0 = open_fds(d.child.id());
    let mut hogs = Vec::new();
    for _ in 0..50 {
        let mut c = Client::connect(port);
        c.rpc(&register("app-1", "1", std::slice::from_ref(&d1)))
            .expect("register");
        let (sid, _) = c.open(&BlockTransferMessage::FetchShuffleBlocks {
            app_id: "app-1".into(),
            exec_id: "1".into(),
            shuffle_id: 0,
            map_ids: vec![1; 2000],
            reduce_ids: vec![vec![0]; 2000],
            batch_fetch_enabled: false,
        });
        // pipeline every chunk request, never read a reply
        let mut reqs = Vec::new();
        for i in 0..2000 {
            reqs.extend_from_slice(
                &Message::ChunkFetchRequest {
                    stream_id: sid,
                    chunk_index: i,
                }
                .encode(),
            );
        }
        let _ = c.s.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = c.s.write_all(&reqs);
        hogs.push(c);
    }
    let peak = open_fds(d.child.id());
    // 50 connections, at most 16 files each (plus the sockets)
    assert!(
        peak <= fds0 + 50 * (16 + 1) + 16,
        "{peak} fds open (started with {fds0})"
    );
    // a legitimate client is served meanwhile
    let took = legit_fetch("127.0.0.2", port, std::slice::from_ref(&d2), &parts[0]);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // and the hogs are closed once they have read nothing for --idle-timeout
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(d.admin_port, "shuffle_connections") > 1.0 {
        assert!(
            Instant::now() < deadline,
            "stalled connections were not closed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(open_fds(d.child.id()) <= fds0 + 4);
    drop(hogs);
    d.stop();
}

#[test]
fn a_second_instance_on_the_same_state_dir_fails_and_changes_nothing() {
    let (tmp, root, state) = tmpdirs();
    let d1 = bm(&root, 1);
    mkdirs(&[&d1]);
    let port = free_port();
    let first = Daemon::start(port, &root, &state, &tmp.path().join("first.log"));
    let mut c = Client::connect(port);
    c.rpc(&register("app-1", "1", std::slice::from_ref(&d1)))
        .expect("register");
    let before: Vec<_> = std::fs::read_dir(&state)
        .expect("state")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let out_path = tmp.path().join("second.log");
    let out = std::fs::File::create(&out_path).expect("log");
    let mut second = std::process::Command::new(service_bin())
        .args([
            "--no-kube",
            "--auth",
            "off",
            "--port",
            "0",
            "--admin-port",
            "0",
        ])
        .arg("--allowed-root")
        .arg(&root)
        .arg("--state-dir")
        .arg(&state)
        .stdout(out.try_clone().expect("log fd"))
        .stderr(out)
        .spawn()
        .expect("run second");
    // it must exit at once; one still running after 10 s has taken the state dir over
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = second.try_wait().expect("wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&out_path).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("a second instance on the same --state-dir kept running; its log:\n{err}")
    });
    assert!(!status.success());
    assert!(
        err.contains("in use by another shuffle-service")
            && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );
    let after: Vec<_> = std::fs::read_dir(&state)
        .expect("state")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(before, after, "the second instance changed the state dir");
    // the first keeps its registrations, also over a restart
    let mut first = first;
    first.kill9();
    let again = Daemon::start(port, &root, &state, &tmp.path().join("again.log"));
    assert_eq!(
        metric(again.admin_port, "shuffle_registered_executors"),
        1.0
    );
    again.stop();
}

/// A full disk under --state-dir: registrations fail with the reason, /readyz says not ready,
/// and once space is back the service recovers without a restart. The state dir is a small
/// tmpfs in a mount namespace of the daemon's own (needs root and unshare, as in CI).
#[test]
fn a_full_state_disk_is_reported_and_recovered_from() {
    let (tmp, root, state) = tmpdirs();
    std::fs::create_dir_all(&state).expect("mkdir");
    let port = free_port();
    let admin = free_port();
    let log = tmp.path().join("svc.log");
    let script = format!(
        "mount -t tmpfs -o size=3m tmpfs {state} && exec {bin} --no-kube --auth off --bind 127.0.0.1 --port {port} --admin-port {admin} --allowed-root {root} --state-dir {state}",
        state = state.display(),
        bin = service_bin().display(),
        root = root.display(),
    );
    let mut child = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(tmp.path().join("svc.err")).expect("log"))
        .spawn()
        .expect("unshare");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "service exited {status}: {}",
                std::fs::read_to_string(tmp.path().join("svc.err")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "service did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child.id();
    let child = Kill(child);
    let ns = |cmd: &str| {
        std::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "sh", "-c", cmd])
            .status()
            .expect("nsenter")
    };
    assert!(!http_get(admin, "/readyz").contains("not ready"));
    let mut c = Client::connect(port);
    let d0 = bm(&root, 0x100);
    mkdirs(&[&d0]);
    c.rpc(&register("app-0", "1", std::slice::from_ref(&d0)))
        .expect("registers while there is room");
    ns(&format!(
        "dd if=/dev/zero of={}/fill bs=64k 2>/dev/null; true",
        state.display()
    ));
    let mut failed = None;
    for i in 0..3000u32 {
        let d = bm(&root, 0x1000 + i);
        mkdirs(&[&d]);
        if let Err(e) = c.rpc(&register(
            &format!("fill-{i}"),
            "1",
            std::slice::from_ref(&d),
        )) {
            failed = Some(e);
            break;
        }
    }
    let err = failed.expect("the full disk must make a registration fail");
    assert!(err.contains("registration database"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get(admin, "/readyz").contains("not ready") {
        assert!(
            Instant::now() < deadline,
            "/readyz still ready on a full disk"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric(admin, "shuffle_state_db_healthy"), 0.0);
    ns(&format!("rm -f {}/fill", state.display()));
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_get(admin, "/readyz").contains("not ready") {
        assert!(
            Instant::now() < deadline,
            "did not recover after space came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let d = bm(&root, 0x9999);
    mkdirs(&[&d]);
    c.rpc(&register("app-after", "1", std::slice::from_ref(&d)))
        .expect("registers again after recovery");
    assert_eq!(metric(admin, "shuffle_state_db_healthy"), 1.0);
    drop(child);
}

#[test]
fn unauthenticated_connections_must_authenticate_in_time() {
    let (tmp, root, state) = tmpdirs();
    let secret = secret_file(tmp.path(), "s3cret");
    let port = free_port();
    let d = Daemon::start_with(
        port,
        &root,
        &state,
        &tmp.path().join("svc.log"),
        &[
            "--auth",
            "required",
            "--auth-secret-file",
            secret.to_str().expect("utf8"),
            "--auth-timeout",
            "1s",
        ],
    );
    let mut silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut b = [0u8; 1];
    let t = Instant::now();
    assert_eq!(silent.read(&mut b).expect("closed, not timed out"), 0);
    assert!(t.elapsed() < Duration::from_secs(4));
    // the shared secret works for any app id, by either protocol and every cipher
    for (i, (cipher, version)) in [
        (Cipher::Ctr, 1),
        (Cipher::Ctr, 2),
        (Cipher::Gcm, 1),
        (Cipher::Gcm, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = Client::connect(port);
        c.auth_engine(&format!("app-{i}"), "s3cret", cipher, version)
            .expect("handshake");
        let err = c
            .rpc(&fetch(&format!("app-{i}"), "1", 1, 0))
            .map(|_| String::new())
            .unwrap_or_else(|e| e);
        // an encrypted round trip happened: the reply (a handle for an unregistered
        // executor) decrypted
        assert!(err.is_empty(), "{cipher:?} v{version}: {err}");
    }
    d.stop();
}
