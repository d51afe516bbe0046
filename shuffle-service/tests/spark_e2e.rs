//! End to end with real Spark (pyspark 3.5 and 4.x wheels) in local-cluster mode: dynamic
//! allocation removes every executor between two jobs, the service is killed with SIGKILL and
//! restarted in between, and the second job must read map output and DISK_ONLY cached blocks
//! through our service alone (`spark.stage.maxConsecutiveAttempts=1`, results checked).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, metric, Daemon};

fn run_spark_job(python_var: &str, home_var: &str) {
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
    let mut service = Daemon::start(port, &local, &state, &tmp.path().join("service-1.log"));

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
            service = Daemon::start(port, &local, &state, &tmp.path().join("service-2.log"));
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
    service.stop();
}

#[test]
fn spark_35_reads_map_output_and_cached_blocks_through_the_service_across_kill_9() {
    run_spark_job("SPARK35_PYTHON", "SPARK35_HOME");
}

#[test]
fn spark_4_reads_map_output_and_cached_blocks_through_the_service_across_kill_9() {
    run_spark_job("SPARK4_PYTHON", "SPARK4_HOME");
}
