//! Test support (cargo feature `test-support`): a throw-away single-node Garage server, a
//! real S3 implementation, for tests of anything that uses the S3 backend.
//!
//! ```ignore
//! let garage = sidecars_common::objstore::testing::Garage::start().expect("garage");
//! let store = garage.open("some/prefix").await.expect("open");
//! ```
//!
//! `Garage::start` reads `$GARAGE_BIN` (set by `scripts/install-test-tools.sh --print-env`) and
//! fails with a message saying so when it is missing. Each server gets its own temp directory
//! and free loopback ports, one key and one bucket; dropping the `Garage` kills it. The server
//! is also killed if the test process dies (parent-death signal), as long as the thread that
//! started it is still alive: start it from the test's own thread, not a `spawn_blocking` one.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{ObjectStore, S3Options, StaticCredentials};

/// The region Garage is configured with.
pub const REGION: &str = "garage";
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Garage server with one key allowed on one bucket.
pub struct Garage {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    bin: PathBuf,
    /// `http://127.0.0.1:<port>`, the S3 API.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// A bucket the key can read, write and own.
    pub bucket: String,
}

impl std::fmt::Debug for Garage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Garage")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Garage {
    /// Starts a server with the binary named by `$GARAGE_BIN`.
    pub fn start() -> anyhow::Result<Self> {
        let bin = std::env::var_os("GARAGE_BIN").context(
            "GARAGE_BIN is not set: it must name the garage binary (run \
             `eval \"$(bash scripts/install-test-tools.sh --print-env)\"`, or scripts/test.sh)",
        )?;
        Self::start_with(Path::new(&bin))
    }

    /// Starts a server with the given `garage` binary. Blocks until the bucket is usable.
    pub fn start_with(bin: &Path) -> anyhow::Result<Self> {
        if !bin.is_file() {
            bail!(
                "garage binary {} does not exist (GARAGE_BIN)",
                bin.display()
            );
        }
        // a port picked free can be taken by someone else before garage binds it: retry
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(bin) {
                Ok(g) => return Ok(g),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("garage did not start")))
    }

    fn try_start(bin: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("garage-test-")
            .tempdir()
            .context("creating a temp dir for garage")?;
        let [s3_port, rpc_port, admin_port] = free_ports()?;
        let config = dir.path().join("garage.toml");
        let rpc_secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
                root = dir.path().display(),
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let log =
            std::fs::File::create(dir.path().join("garage.log")).context("creating garage.log")?;
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("garage.log")?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} server", bin.display()))?;
        let mut garage = Garage {
            child,
            dir,
            config,
            bin: bin.to_path_buf(),
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            region: REGION.into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            bucket: "sidecars-test".into(),
        };
        garage
            .setup()
            .with_context(|| format!("setting up garage (log: {})", garage.log_path().display()))?;
        Ok(garage)
    }

    fn setup(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let node_id = loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("garage server exited with {status}: {}", self.log_tail());
            }
            let out = self.cli_output(&["node", "id", "-q"])?;
            if out.status.success() {
                break String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            if Instant::now() > deadline {
                bail!(
                    "garage did not answer within {BOOT_TIMEOUT:?}: {}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let short_id = node_id.split('@').next().unwrap_or(&node_id).to_string();
        self.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &short_id])?;
        self.cli(&["layout", "apply", "--version", "1"])?;
        // garage key ids are GK + 24 hex digits, secrets 64 hex digits
        let id = format!("GK{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "sidecars-test",
            &id,
            &secret,
        ])?;
        self.access_key_id = id;
        self.secret_access_key = secret;
        let bucket = self.bucket.clone();
        self.create_bucket(&bucket)?;
        self.wait_until_serving(deadline)
    }

    /// Creates another bucket that the key can read, write and own.
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        self.cli(&["bucket", "create", name])?;
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            name,
            "--key",
            &self.access_key_id,
        ])?;
        Ok(())
    }

    /// Runs `garage -c <config> <args>` and returns its output, failing on a non-zero status.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self.cli_output(args)?;
        if !out.status.success() {
            bail!(
                "`garage {}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    fn cli_output(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} {}", self.bin.display(), args.join(" ")))
    }

    /// Waits until the bucket is known and the S3 API answers (the layout takes a moment).
    fn wait_until_serving(&self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let known = self
                .cli_output(&["bucket", "info", &self.bucket])?
                .status
                .success();
            if known && s3_answers(&self.endpoint, &self.bucket) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "garage S3 API at {} not ready: {}",
                    self.endpoint,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The options that reach this server: endpoint, region, path-style, the key.
    pub fn s3_options(&self) -> S3Options {
        S3Options {
            s3_endpoint: Some(self.endpoint.clone()),
            s3_region: Some(self.region.clone()),
            s3_path_style: true,
            credentials: Some(StaticCredentials {
                access_key_id: self.access_key_id.clone(),
                secret_access_key: self.secret_access_key.clone(),
            }),
            ..S3Options::default()
        }
    }

    /// `s3://<bucket>/<prefix>` (or just the bucket when `prefix` is empty).
    pub fn url(&self, prefix: &str) -> String {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{prefix}", self.bucket)
        }
    }

    /// Opens the store `s3://<bucket>/<prefix>` on this server.
    pub async fn open(&self, prefix: &str) -> super::Result<Arc<dyn ObjectStore>> {
        super::open(&self.url(prefix), &self.s3_options()).await
    }

    /// The environment variables that make a child process reach this server through the
    /// standard AWS chain and the `SIDECARS_S3_*` settings.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("AWS_REGION", self.region.clone()),
            ("SIDECARS_S3_ENDPOINT", self.endpoint.clone()),
            ("SIDECARS_S3_REGION", self.region.clone()),
            ("SIDECARS_S3_PATH_STYLE", "true".into()),
        ]
    }

    /// A plain S3 client for this server, to look behind the store's back.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(self.region.clone()))
            .force_path_style(true)
            .credentials_provider(aws_credential_types::Credentials::new(
                &self.access_key_id,
                &self.secret_access_key,
                None,
                None,
                "garage-test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The server's log file, worth printing when a test fails.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("garage.log")
    }

    /// Where the server keeps its data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        format!("garage log tail:\n{}", &text[start..])
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three distinct loopback ports that were free a moment ago.
fn free_ports() -> anyhow::Result<[u16; 3]> {
    let ls = [
        TcpListener::bind("127.0.0.1:0")?,
        TcpListener::bind("127.0.0.1:0")?,
        TcpListener::bind("127.0.0.1:0")?,
    ];
    Ok([
        ls[0].local_addr()?.port(),
        ls[1].local_addr()?.port(),
        ls[2].local_addr()?.port(),
    ])
}

/// True once an unsigned HEAD of the bucket gets an HTTP answer from the S3 API.
fn s3_answers(endpoint: &str, bucket: &str) -> bool {
    use std::io::{Read, Write};
    let Some(addr) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("HEAD /{bucket} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => {
            let head = String::from_utf8_lossy(&buf[..n]);
            // 403: up and checking signatures; 5xx: still settling
            head.starts_with("HTTP/1.1 4")
        }
        Err(_) => false,
    }
}
