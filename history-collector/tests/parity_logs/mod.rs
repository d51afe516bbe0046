//! Real Spark event logs for the API tests: `tests/api_gen_eventlogs.py` (with the Java job
//! in `tests/parity_job/`) run once with Spark 3.5 and once with Spark 4.x, cached under the
//! target dir (outside the clone) and reused only while the scripts and both Pythons are
//! the same. Shared by `api_parity` and `api_store`.
// each test uses a part of it
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A test tool's location from the environment (`scripts/install-test-tools.sh` sets them).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run through scripts/test.sh or eval \"$(bash scripts/install-test-tools.sh --print-env)\"")
    })
}

fn generate(python: &str, out: &Path) {
    let script = sidecars_common::crate_dir!().join("tests/api_gen_eventlogs.py");
    // Spark's own output, kept beside the logs for whoever debugs a failed generation
    let log_path = out.with_extension("log");
    let _ = std::fs::create_dir_all(out.parent().unwrap_or(out));
    let log = std::fs::File::create(&log_path).expect("generator log");
    let status = Command::new(python)
        .arg(&script)
        .arg(out)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("PYSPARK_PYTHON", python)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log.try_clone().expect("generator log")))
        .status()
        .expect("cannot start python");
    assert!(
        status.success(),
        "{python} {} failed: see {}",
        script.display(),
        log_path.display()
    );
}

/// Copies a tree, keeping modification times (Spark reports them); the cache's own
/// `.complete` stamp is not a log and is left out.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name.to_string_lossy().starts_with(".complete") {
            continue;
        }
        let dst = to.join(&name);
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
            let mtime = std::fs::metadata(e.path()).unwrap().modified().unwrap();
            std::fs::File::options()
                .write(true)
                .open(&dst)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
    }
}

/// Where the generated logs are.
pub struct LogDirs {
    /// Spark 3.5's and 4.x's together.
    pub all: PathBuf,
    /// Spark 3.5's only.
    pub spark35: PathBuf,
}

/// The directory holding every generated log (Spark 3.5's and 4.x's together), generating
/// them first when the cache is missing or stale.
pub fn logs_dir() -> PathBuf {
    logs_dirs().all
}

/// The generated logs, generated first when the cache is missing or stale.
pub fn logs_dirs() -> LogDirs {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("api-parity-eventlogs");
    let dirs = LogDirs {
        all: root.join("all"),
        spark35: root.join("s35"),
    };
    // the cached logs are reused only if they came from these very scripts and Sparks
    let tests = sidecars_common::crate_dir!().join("tests");
    let stamp = format!(
        "{}\n{}\n{}\n{}",
        env("SPARK35_PYTHON"),
        env("SPARK4_PYTHON"),
        std::fs::read_to_string(tests.join("api_gen_eventlogs.py")).unwrap_or_default(),
        std::fs::read_to_string(tests.join("parity_job/ParityJob.java")).unwrap_or_default()
    );
    // PARITY_LOGS_FRESH=1: generate once in this process even if the cache is good (what
    // a fresh machine does)
    static GENERATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let must = std::env::var_os("PARITY_LOGS_FRESH").is_some_and(|v| v == "1")
        && !GENERATED.load(std::sync::atomic::Ordering::SeqCst);
    if !must && std::fs::read_to_string(dirs.all.join(".complete")).is_ok_and(|s| s == stamp) {
        return dirs;
    }
    GENERATED.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = std::fs::remove_dir_all(&root);
    for (py, sub) in [("SPARK35_PYTHON", "s35"), ("SPARK4_PYTHON", "s4")] {
        let d = root.join(sub);
        generate(&env(py), &d);
        copy_tree(&d, &dirs.all);
    }
    std::fs::write(dirs.all.join(".complete"), stamp).unwrap();
    dirs
}
