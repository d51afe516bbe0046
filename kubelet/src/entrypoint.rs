//! What the official Spark images' entrypoint (`/opt/entrypoint.sh`) does, written here so a
//! Spark pod behaves as in the real image. Spark's Kubernetes backend gives its pods no
//! command, only arguments; the first argument picks the mode:
//!
//! - `driver ARGS…`: `spark-submit` in client mode inside the pod, bound to the pod's address
//!   (`SPARK_DRIVER_BIND_ADDRESS`); Spark 4 also tells executors the driver pod's IP;
//! - `executor`: the executor JVM (`KubernetesExecutorBackend`) built from the `SPARK_*`
//!   variables Spark sets on executor pods: memory, cores, driver URL, ids, `SPARK_JAVA_OPT_<n>`
//!   options in numeric order, and a class path of the conf dir, the jars, any extra class path
//!   and the working directory;
//! - anything else runs as given (pass-through).
//!
//! A driver or executor started as root switches to the `spark` user (185), as the image's
//! entrypoint does with `gosu`.

use std::collections::BTreeMap;

use crate::images::SPARK_UID;

/// The command line to exec, and the user to run it as when the entrypoint changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub argv: Vec<String>,
    pub run_as_spark: bool,
}

/// `args` are the container's arguments; `env` its final environment; `cwd` its working
/// directory.
pub fn spark(version: &str, args: &[String], env: &[(String, String)], cwd: &str) -> Launch {
    let vars: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let get = |k: &str| vars.get(k).copied().unwrap_or("");
    let spark_home = match get("SPARK_HOME") {
        "" => "/opt/spark",
        h => h,
    };
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    match args.first().map(String::as_str) {
        Some("driver") => {
            let bind = get("SPARK_DRIVER_BIND_ADDRESS");
            let mut argv = vec![
                format!("{spark_home}/bin/spark-submit"),
                "--conf".into(),
                format!("spark.driver.bindAddress={bind}"),
            ];
            if major >= 4 {
                argv.push("--conf".into());
                argv.push(format!("spark.executorEnv.SPARK_DRIVER_POD_IP={bind}"));
            }
            argv.extend(["--deploy-mode".into(), "client".into()]);
            argv.extend(args[1..].iter().cloned());
            Launch {
                argv,
                run_as_spark: true,
            }
        }
        Some("executor") => {
            let java = match get("JAVA_HOME") {
                "" => "java".to_string(),
                h => format!("{h}/bin/java"),
            };
            let mem = get("SPARK_EXECUTOR_MEMORY");
            let mut argv = vec![java];
            argv.extend(java_opts(env));
            argv.extend([
                format!("-Xms{mem}"),
                format!("-Xmx{mem}"),
                "-cp".into(),
                format!(
                    "{}:{}",
                    class_path(&vars, spark_home, cwd),
                    get("SPARK_DIST_CLASSPATH")
                ),
                "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend".into(),
            ]);
            for (flag, var) in [
                ("--driver-url", "SPARK_DRIVER_URL"),
                ("--executor-id", "SPARK_EXECUTOR_ID"),
                ("--cores", "SPARK_EXECUTOR_CORES"),
                ("--app-id", "SPARK_APPLICATION_ID"),
                ("--hostname", "SPARK_EXECUTOR_POD_IP"),
                ("--resourceProfileId", "SPARK_RESOURCE_PROFILE_ID"),
                ("--podName", "SPARK_EXECUTOR_POD_NAME"),
            ] {
                argv.push(flag.into());
                argv.push(get(var).into());
            }
            Launch {
                argv,
                run_as_spark: true,
            }
        }
        _ => Launch {
            argv: args.to_vec(),
            run_as_spark: false,
        },
    }
}

/// `SPARK_JAVA_OPT_<n>` values ordered by n.
fn java_opts(env: &[(String, String)]) -> Vec<String> {
    let mut opts: Vec<(u64, &str)> = env
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("SPARK_JAVA_OPT_")
                .and_then(|n| n.parse::<u64>().ok())
                .map(|n| (n, v.as_str()))
        })
        .collect();
    opts.sort_by_key(|(n, _)| *n);
    opts.into_iter().map(|(_, v)| v.to_string()).collect()
}

fn class_path(vars: &BTreeMap<&str, &str>, spark_home: &str, cwd: &str) -> String {
    let get = |k: &str| vars.get(k).copied();
    let mut cp = format!(
        "{}:{spark_home}/jars/*",
        get("SPARK_CLASSPATH").unwrap_or("")
    );
    if let Some(extra) = get("SPARK_EXTRA_CLASSPATH").filter(|e| !e.is_empty()) {
        cp = format!("{cp}:{extra}");
    }
    if let Some(h) = get("HADOOP_CONF_DIR") {
        cp = format!("{h}:{cp}");
    }
    match get("SPARK_CONF_DIR") {
        Some(c) => cp = format!("{c}:{cp}"),
        None => cp = format!("{spark_home}/conf:{cp}"),
    }
    // the working directory, as the image adds it (SPARK-43540)
    format!("{cp}:{cwd}")
}

/// The uid/gid a Spark driver or executor runs as when the pod asked for root.
pub fn spark_user(uid: u32, gid: u32, launch: &Launch) -> (u32, u32) {
    if launch.run_as_spark && uid == 0 {
        (SPARK_UID, SPARK_UID)
    } else {
        (uid, gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn driver_binds_to_the_pod_address() {
        let e = env(&[
            ("SPARK_DRIVER_BIND_ADDRESS", "198.18.1.2"),
            ("SPARK_HOME", "/opt/spark"),
        ]);
        let args: Vec<String> = [
            "driver",
            "--properties-file",
            "/opt/spark/conf/spark.properties",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let l = spark("3.5.7", &args, &e, "/opt/spark/work-dir");
        assert_eq!(
            l.argv,
            [
                "/opt/spark/bin/spark-submit",
                "--conf",
                "spark.driver.bindAddress=198.18.1.2",
                "--deploy-mode",
                "client",
                "--properties-file",
                "/opt/spark/conf/spark.properties"
            ]
        );
        let l4 = spark("4.3.0", &args, &e, "/opt/spark/work-dir");
        assert!(l4
            .argv
            .contains(&"spark.executorEnv.SPARK_DRIVER_POD_IP=198.18.1.2".to_string()));
        assert_eq!(spark_user(0, 0, &l), (185, 185));
        assert_eq!(spark_user(1000, 1000, &l), (1000, 1000));
    }

    #[test]
    fn executor_command_from_spark_variables() {
        let e = env(&[
            ("JAVA_HOME", "/jvm"),
            ("SPARK_EXECUTOR_MEMORY", "1024m"),
            ("SPARK_JAVA_OPT_10", "-Dten"),
            ("SPARK_JAVA_OPT_2", "-Dtwo"),
            (
                "SPARK_DRIVER_URL",
                "spark://CoarseGrainedScheduler@drv:7078",
            ),
            ("SPARK_EXECUTOR_ID", "3"),
            ("SPARK_EXECUTOR_CORES", "1"),
            ("SPARK_APPLICATION_ID", "spark-abc"),
            ("SPARK_EXECUTOR_POD_IP", "198.18.0.11"),
            ("SPARK_RESOURCE_PROFILE_ID", "0"),
            ("SPARK_EXECUTOR_POD_NAME", "pi-exec-3"),
            ("SPARK_CONF_DIR", "/opt/spark/conf"),
        ]);
        let l = spark(
            "3.5.7",
            &["executor".to_string()],
            &e,
            "/opt/spark/work-dir",
        );
        let a = l.argv.join(" ");
        assert!(a.starts_with("/jvm/bin/java -Dtwo -Dten -Xms1024m -Xmx1024m -cp /opt/spark/conf::/opt/spark/jars/*:/opt/spark/work-dir: org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"), "{a}");
        assert!(a.ends_with("--driver-url spark://CoarseGrainedScheduler@drv:7078 --executor-id 3 --cores 1 --app-id spark-abc --hostname 198.18.0.11 --resourceProfileId 0 --podName pi-exec-3"), "{a}");
    }

    #[test]
    fn anything_else_passes_through() {
        let args = vec!["/bin/echo".to_string(), "hi".to_string()];
        let l = spark("3.5.7", &args, &[], "/");
        assert_eq!(l.argv, args);
        assert!(!l.run_as_spark);
    }
}
