//! The whole system on a real Kubernetes (scripts/kube-local.sh: Kubernetes 1.20 control plane,
//! two nodes of sidecars-kubelet), deploy/ installed as docs/spark-on-k8s.md says, and stock
//! `spark-submit --deploy-mode cluster` of Spark 3.5.7 and 4.3.0. One cluster for the whole
//! binary; the tests take turns. Needs root (network namespaces) and everything
//! scripts/install-test-tools.sh installs; run through scripts/test.sh.

#[path = "kubernetes/cluster.rs"]
mod cluster;

use std::time::Duration;

use cluster::{cluster, local_pi_jar, serial, Cluster, Spark, APPS, SPARK35, SPARK4};

/// Runs one application to completion and returns its driver pod's name; the driver pod must
/// have Succeeded.
fn run_to_success(c: &Cluster, spark: Spark, name: &str, args: &[&str]) -> String {
    let mut all = vec!["--name", name];
    all.extend_from_slice(args);
    let out = c.spark_submit(spark, &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "spark-submit {name} failed:\n{stderr}");
    let driver = c.driver_pod(name);
    assert!(!driver.is_empty(), "no driver pod for {name}:\n{stderr}");
    let phase = c.get(APPS, &format!("pod/{driver}"), "{.status.phase}");
    assert_eq!(
        phase,
        "Succeeded",
        "driver {driver} ended {phase}; its log:\n{}",
        c.logs(APPS, &driver, "spark-kubernetes-driver")
    );
    driver
}

fn pi_of(log: &str) -> f64 {
    let line = log
        .lines()
        .find(|l| l.starts_with("Pi is roughly "))
        .unwrap_or_else(|| panic!("no \"Pi is roughly\" in the driver's log:\n{log}"));
    line["Pi is roughly ".len()..].trim().parse().expect("a number")
}

fn delete_app(c: &Cluster, name: &str) {
    c.kubectl_ok(&[
        "-n",
        APPS,
        "delete",
        "pods,services,configmaps",
        "-l",
        &format!("spark-app-name={name}"),
        "--wait=true",
        "--timeout=120s",
    ]);
}

/// Stock SparkPi-style JVM job and Spark's own pi.py in cluster mode: the driver pod runs
/// `spark-submit` through the image's entrypoint, executors come up on the nodes, register
/// with the driver through its Service name, the result is in the driver's log as `kubectl
/// logs` shows it, and Spark deletes its executors at the end.
fn spark_pi(spark: Spark) {
    let _turn = serial();
    let c = cluster();
    let jar = local_pi_jar(spark);
    let jar_url = format!("local://{}", jar.display());
    let name = format!("pi-jvm-{}", spark.tag());
    let driver = run_to_success(
        c,
        spark,
        &name,
        &["--conf", "spark.executor.instances=2", "--class", "LocalPi", &jar_url, "4"],
    );
    let log = c.logs(APPS, &driver, "spark-kubernetes-driver");
    let pi = pi_of(&log);
    assert!((3.0..3.3).contains(&pi), "pi = {pi}");
    assert!(
        log.matches("Registered executor").count() >= 2,
        "two executors should have registered:\n{log}"
    );
    // Spark deleted its executors; the kubelets stopped them
    c.wait("the executors to be gone", Duration::from_secs(60), || {
        c.get(APPS, &format!("pods -l spark-app-name={name},spark-role=executor"), "{.items}")
            .trim()
            .eq("[]")
            .then_some(())
    });
    delete_app(c, &name);

    let name = format!("pi-py-{}", spark.tag());
    let driver = run_to_success(
        c,
        spark,
        &name,
        &[
            "--conf",
            "spark.executor.instances=2",
            "local:///opt/spark/examples/src/main/python/pi.py",
            "4",
        ],
    );
    let pi = pi_of(&c.logs(APPS, &driver, "spark-kubernetes-driver"));
    assert!((3.0..3.3).contains(&pi), "pi = {pi}");
    delete_app(c, &name);
}

#[test]
fn spark_pi_cluster_mode_spark35() {
    spark_pi(SPARK35);
}

#[test]
fn spark_pi_cluster_mode_spark4() {
    spark_pi(SPARK4);
}
