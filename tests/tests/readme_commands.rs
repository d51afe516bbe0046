//! README command 1 (`scripts/run-local.sh`) starts all three daemons on embedded defaults,
//! their health endpoints answer, and SIGTERM stops them all with exit status 0.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

fn repo_root() -> PathBuf {
    // as cargo sets it when it runs the test: a binary reused from another clone that shares the
    // target directory would name that clone
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("..")
}

#[tokio::test(flavor = "multi_thread")]
async fn run_local_starts_all_daemons_and_stops_on_sigterm() {
    let bin_dir = std::env::var("SIDECARS_BIN_DIR").expect(
        "SIDECARS_BIN_DIR is not set: run the suite through scripts/test.sh, which builds the daemons",
    );
    let data = tempfile::tempdir().unwrap();
    let (staging, shuffle, shuffle_admin, history) =
        (free_port(), free_port(), free_port(), free_port());
    let child = Command::new("bash")
        .arg(repo_root().join("scripts/run-local.sh"))
        .env("SIDECARS_BIN_DIR", &bin_dir)
        .env("SIDECARS_DATA_DIR", data.path())
        .env("STAGING_PORT", staging.to_string())
        .env("SHUFFLE_PORT", shuffle.to_string())
        .env("SHUFFLE_ADMIN_PORT", shuffle_admin.to_string())
        .env("HISTORY_PORT", history.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run scripts/run-local.sh");

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for port in [staging, shuffle_admin, history] {
        for path in ["/healthz", "/readyz", "/metrics"] {
            let url = format!("http://127.0.0.1:{port}{path}");
            loop {
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => break,
                    _ if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    other => panic!("{url} never answered 200: {other:?}"),
                }
            }
        }
    }
    // the shuffle protocol port accepts connections too
    std::net::TcpStream::connect(("127.0.0.1", shuffle)).expect("shuffle-service port is not open");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in ["staging-server", "shuffle-service", "history-collector"] {
        assert!(
            stdout.contains(name),
            "run-local.sh did not say where {name} listens:\n{stdout}"
        );
    }
    assert!(
        out.status.success(),
        "run-local.sh exited with {:?}",
        out.status
    );
}

/// run-local.sh passes its daemons' exit status through: a daemon that exits 3 on SIGTERM
/// makes the script exit 3 (and the others are still stopped), so the 0 above means something.
#[test]
fn run_local_passes_a_daemons_failure_through_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let bins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let marks = tempfile::tempdir().unwrap();
    for (name, rc) in [
        ("staging-server", 0),
        ("shuffle-service", 3),
        ("history-collector", 0),
    ] {
        let path = bins.path().join(name);
        // stands in for the daemon: records its SIGTERM, exits with `rc`
        let script = format!(
            "#!/bin/bash\ntrap 'touch {}/{name}; exit {rc}' TERM\nwhile true; do sleep 0.05; done\n",
            marks.path().display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let child = Command::new("bash")
        .arg(repo_root().join("scripts/run-local.sh"))
        .env("SIDECARS_BIN_DIR", bins.path())
        .env("SIDECARS_DATA_DIR", data.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run scripts/run-local.sh");
    std::thread::sleep(Duration::from_secs(1));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "run-local.sh exited with {:?}",
        out.status
    );
    for name in ["staging-server", "shuffle-service", "history-collector"] {
        assert!(marks.path().join(name).exists(), "{name} got no SIGTERM");
    }
}
