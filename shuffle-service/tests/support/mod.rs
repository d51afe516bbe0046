//! Helpers shared by the integration tests: start our binary on free ports, read its metrics,
//! stop it gracefully or with SIGKILL.
#![allow(dead_code)]

pub mod client;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A block manager dir name as Spark makes them (`blockmgr-<uuid>`), numbered for tests.
pub fn bm(root: &Path, n: u32) -> PathBuf {
    root.join(format!("blockmgr-00000000-0000-0000-0000-{n:012x}"))
}

/// The binary under test: this build's, or `SHUFFLE_SERVICE_BIN` (another build, e.g. the one
/// before the attack tests existed: `shuffle-service/tests/attacks_on_old_build.sh`).
pub fn service_bin() -> PathBuf {
    std::env::var_os("SHUFFLE_SERVICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_shuffle-service")))
}

pub fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub log_path: PathBuf,
}

impl Daemon {
    pub fn start(port: u16, allowed_root: &Path, state: &Path, log_path: &Path) -> Daemon {
        Self::start_with(port, allowed_root, state, log_path, &[])
    }

    pub fn start_with(
        port: u16,
        allowed_root: &Path,
        state: &Path,
        log_path: &Path,
        extra: &[&str],
    ) -> Daemon {
        let admin_port = free_port();
        let log = std::fs::File::create(log_path).expect("service log");
        let child = Command::new(service_bin())
            .args(["--bind", "0.0.0.0", "--port", &port.to_string()])
            .args(["--admin-port", &admin_port.to_string()])
            .args(if extra.contains(&"--kubeconfig") {
                None
            } else {
                Some("--no-kube")
            })
            // tests that do not name an auth mode speak to the service without authentication
            .args(
                if extra.contains(&"--auth") {
                    None
                } else {
                    Some(["--auth", "off"])
                }
                .into_iter()
                .flatten(),
            )
            .arg("--allowed-root")
            .arg(allowed_root)
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start shuffle-service");
        let d = Daemon {
            child,
            port,
            admin_port,
            log_path: log_path.to_owned(),
        };
        d.wait_listening();
        d
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.admin_port)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "shuffle-service did not start listening; log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status must be 0.
    pub fn stop(mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "shuffle-service exited with {status} on SIGTERM; log:\n{}",
                    self.log()
                );
                return;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "shuffle-service did not exit on SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET /metrics on the admin port and return the value of the first sample named `name`.
pub fn metric(admin_port: u16, name: &str) -> f64 {
    let text = http_get(admin_port, "/metrics");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name || n.starts_with(&format!("{name}{{"))).then(|| v.parse::<f64>().ok())?
        })
        .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
}

/// The value of the sample of `name` whose labels contain `label` (e.g. `reason="x"`), 0 if none.
pub fn metric_labelled(admin_port: u16, name: &str, label: &str) -> f64 {
    let text = http_get(admin_port, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

pub fn http_get(port: u16, path: &str) -> String {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect admin");
    // a service that stopped answering fails the test instead of hanging it
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(out)
}
