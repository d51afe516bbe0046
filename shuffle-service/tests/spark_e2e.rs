//! End to end with real Spark (pyspark 3.5 and 4.x wheels) in local-cluster mode: dynamic
//! allocation removes every executor between two jobs, the service is killed with SIGKILL and
//! restarted in between, and the second job must read map output and DISK_ONLY cached blocks
//! through our service alone (`spark.stage.maxConsecutiveAttempts=1`, results checked).
//!
//! The same job with `spark.authenticate`: a shared secret over SASL (`auth`, and `auth-conf`
//! with `spark.authenticate.enableSaslEncryption`), and network crypto (AES/CTR; AES/GCM with
//! Spark 4); and a wrong secret, or no authentication, refused by a service that requires it.

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, metric, Daemon};

/// As long as the secrets Spark on Kubernetes generates (64 hex characters): their SASL
/// password spans two lines (Netty's base64).
const SECRET: &str = "6f1c0b3e9a7d4c2b8e5f0a1d3c7b9e2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4f";

fn secret_file(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let f = dir.join("service-secret");
    std::fs::write(&f, format!("{SECRET}\n")).expect("secret");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    f.display().to_string()
}

/// Spark settings for the job: `spark.authenticate` with `secret` plus `extra`.
fn auth_conf(secret: &str, extra: &str) -> String {
    format!("spark.authenticate=true;spark.authenticate.secret={secret};{extra}")
}

fn run_spark_job(python_var: &str, home_var: &str) {
    run_spark_job_with(python_var, home_var, "", false);
}

/// The job; with `auth`, the service requires authentication with the shared secret and the
/// job's `spark_conf` brings it.
fn run_spark_job_with(python_var: &str, home_var: &str, spark_conf: &str, auth: bool) {
    let python = std::env::var(python_var).unwrap_or_else(|_| {
        panic!("{python_var} is not set: run scripts/test.sh, or eval \"$(bash scripts/install-test-tools.sh --print-env)\"")
    });
    let spark_home = std::env::var(home_var)
        .unwrap_or_else(|_| panic!("{home_var} is not set: run scripts/test.sh"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let local = tmp.path().join("local");
    let state = tmp.path().join("state");
    let markers = tmp.path().join("markers");
    for d in [&local, &state, &markers] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let port = free_port();
    let secret = secret_file(tmp.path());
    let svc_args: Vec<&str> = if auth {
        vec!["--auth", "required", "--auth-secret-file", &secret]
    } else {
        vec![]
    };
    let start =
        |log: &str| Daemon::start_with(port, &local, &state, &tmp.path().join(log), &svc_args);
    let mut service = start("service-1.log");

    let script = sidecars_common::crate_dir!().join("tests/spark_job.py");
    let log_path = tmp.path().join("driver.log");
    let log = std::fs::File::create(&log_path).expect("driver log");
    let mut driver = Command::new(&python)
        .arg(&script)
        .arg(port.to_string())
        .arg(&local)
        .arg(&markers)
        .env("SPARK_HOME", &spark_home)
        .env("PYSPARK_PYTHON", &python)
        .env("PYSPARK_DRIVER_PYTHON", &python)
        .env("SPARK_LOCAL_DIRS", &local)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("SPARK_E2E_CONF", spark_conf)
        .current_dir(tmp.path())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {python}: {e}"));

    let deadline = Instant::now() + Duration::from_secs(400);
    let mut restarted = false;
    let status = loop {
        if let Some(status) = driver.try_wait().expect("wait driver") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = driver.kill();
            let _ = driver.wait();
            panic!(
                "Spark job timed out; driver log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        if !restarted && markers.join("stage1-done").exists() {
            let registered = metric(service.admin_port, "shuffle_registered_executors");
            assert!(registered >= 1.0, "no executor registered with the service");
            service.kill9();
            service = start("service-2.log");
            let restored = metric(service.admin_port, "shuffle_registered_executors");
            assert_eq!(restored, registered, "registrations lost over kill -9");
            std::fs::write(markers.join("go"), b"").expect("go marker");
            restarted = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let driver_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success() && driver_log.contains("RESULT OK"),
        "Spark job failed ({status}); driver log:\n{driver_log}\nservice log:\n{}",
        service.log()
    );
    assert!(restarted, "the job never reached the restart point");
    // Everything job 2 read went through the restarted service.
    let blocks = metric(service.admin_port, "shuffle_blocks_sent_total");
    assert!(
        blocks >= 5.0,
        "only {blocks} blocks were served after the restart"
    );
    if auth {
        assert!(
            metric(service.admin_port, "shuffle_authentications_total") >= 1.0,
            "no authenticated connection"
        );
    }
    service.stop();
}

/// A service that requires authentication, and an application with the wrong secret (or
/// none): its executors' registrations are refused and nothing is registered.
fn run_refused_job(python_var: &str, home_var: &str, spark_conf: &str) {
    let python = std::env::var(python_var).unwrap_or_else(|_| panic!("{python_var} is not set"));
    let spark_home = std::env::var(home_var).unwrap_or_else(|_| panic!("{home_var} is not set"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let local = tmp.path().join("local");
    let state = tmp.path().join("state");
    let markers = tmp.path().join("markers");
    for d in [&local, &state, &markers] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let port = free_port();
    let secret = secret_file(tmp.path());
    let service = Daemon::start_with(
        port,
        &local,
        &state,
        &tmp.path().join("service.log"),
        &["--auth", "required", "--auth-secret-file", &secret],
    );
    let script = sidecars_common::crate_dir!().join("tests/spark_job.py");
    let log_path = tmp.path().join("driver.log");
    let log = std::fs::File::create(&log_path).expect("driver log");
    let mut driver = Command::new(&python)
        .arg(&script)
        .arg(port.to_string())
        .arg(&local)
        .arg(&markers)
        .env("SPARK_HOME", &spark_home)
        .env("PYSPARK_PYTHON", &python)
        .env("PYSPARK_DRIVER_PYTHON", &python)
        .env("SPARK_LOCAL_DIRS", &local)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("SPARK_E2E_CONF", spark_conf)
        .env("SPARK_E2E_EXPECT", "refused")
        .current_dir(tmp.path())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start driver");
    let deadline = Instant::now() + Duration::from_secs(180);
    let refused = loop {
        let failures = metric(service.admin_port, "shuffle_authentication_failures_total");
        let unauth = support::metric_labelled(
            service.admin_port,
            "shuffle_refused_total",
            "reason=\"unauthenticated\"",
        );
        if failures + unauth >= 2.0 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        if let Ok(Some(_)) = driver.try_wait() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    // SAFETY: signalling the process group of the driver we started (python and its JVMs).
    unsafe {
        libc::kill(-(driver.id() as i32), libc::SIGKILL);
    }
    let _ = driver.wait();
    let driver_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        refused,
        "the service did not refuse the executors; driver log:\n{driver_log}\nservice log:\n{}",
        service.log()
    );
    assert_eq!(
        metric(service.admin_port, "shuffle_registered_executors"),
        0.0
    );
    assert!(!driver_log.contains("UNEXPECTED"), "{driver_log}");
    service.stop();
}

#[test]
fn spark_35_with_a_shared_secret_over_sasl() {
    run_spark_job_with(
        "SPARK35_PYTHON",
        "SPARK35_HOME",
        &auth_conf(SECRET, ""),
        true,
    );
}

#[test]
fn spark_35_with_sasl_encryption() {
    run_spark_job_with(
        "SPARK35_PYTHON",
        "SPARK35_HOME",
        &auth_conf(SECRET, "spark.authenticate.enableSaslEncryption=true"),
        true,
    );
}

#[test]
fn spark_35_with_network_crypto_ctr() {
    run_spark_job_with(
        "SPARK35_PYTHON",
        "SPARK35_HOME",
        &auth_conf(SECRET, "spark.network.crypto.enabled=true"),
        true,
    );
}

#[test]
fn spark_4_with_a_shared_secret_over_sasl() {
    run_spark_job_with("SPARK4_PYTHON", "SPARK4_HOME", &auth_conf(SECRET, ""), true);
}

#[test]
fn spark_4_with_network_crypto_ctr() {
    run_spark_job_with(
        "SPARK4_PYTHON",
        "SPARK4_HOME",
        &auth_conf(SECRET, "spark.network.crypto.enabled=true"),
        true,
    );
}

#[test]
fn spark_4_with_network_crypto_gcm_and_auth_engine_v2() {
    run_spark_job_with(
        "SPARK4_PYTHON",
        "SPARK4_HOME",
        &auth_conf(
            SECRET,
            "spark.network.crypto.enabled=true;spark.network.crypto.cipher=AES/GCM/NoPadding;spark.network.crypto.authEngineVersion=2",
        ),
        true,
    );
}

#[test]
fn spark_35_with_a_wrong_secret_is_refused() {
    run_refused_job(
        "SPARK35_PYTHON",
        "SPARK35_HOME",
        &auth_conf("not-the-secret", ""),
    );
}

#[test]
fn spark_4_without_authentication_is_refused_when_required() {
    run_refused_job("SPARK4_PYTHON", "SPARK4_HOME", "");
}

#[test]
fn spark_4_with_a_wrong_secret_is_refused() {
    run_refused_job(
        "SPARK4_PYTHON",
        "SPARK4_HOME",
        &auth_conf("not-the-secret", "spark.network.crypto.enabled=true"),
    );
}

#[test]
fn spark_35_reads_map_output_and_cached_blocks_through_the_service_across_kill_9() {
    run_spark_job("SPARK35_PYTHON", "SPARK35_HOME");
}

#[test]
fn spark_4_reads_map_output_and_cached_blocks_through_the_service_across_kill_9() {
    run_spark_job("SPARK4_PYTHON", "SPARK4_HOME");
}
