//! Real Spark against the real server and client:
//! - Spark 3.5: stock spark-submit (local[2]) with --jars/--files/--py-files set to the URLs
//!   `spark-stage upload` printed;
//! - Spark 4.x: `spark-stage submit --mode urls` end to end;
//! - init-container mode: the generated templates are k8s-openapi Pods, and running their init
//!   container command locally fills the expected directories.
//!
//! The job calls a Java UDF from a jar compiled here with javac (on the executors), reads the
//! staged file with SparkFiles (driver and executors), and imports the staged Python module.

mod util;

use std::path::PathBuf;
use std::process::Command;

use util::sparkapp::*;
use util::*;

#[test]
fn spark35_fetches_urls_from_spark_stage_upload() {
    let home = need_env("SPARK35_HOME");
    let python = need_env("SPARK35_PYTHON");
    let app = build_app(&home);
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_spark-stage"))
        .args(["upload", "--quiet", "--server", &srv.base()])
        .arg(&app.jar)
        .arg(&app.data)
        .arg(&app.module)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).expect("upload prints JSON");
    let url = |name: &str| -> String {
        up["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in {up}"))["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for f in up["files"].as_array().unwrap() {
        let u = f["url"].as_str().unwrap();
        let path = u.split_once("/api/").unwrap().1;
        assert!(
            !path.contains(['%', ',', '#', '?', '=', '+']),
            "URL has characters Spark mangles: {u}"
        );
    }
    let out = spark_cmd(
        &PathBuf::from(format!("{home}/bin/spark-submit")),
        &home,
        &python,
    )
    .args([
        "--master",
        "local[2]",
        "--jars",
        &url("stagetest-udf.jar"),
        "--files",
        &url("staged-data.txt"),
    ])
    .args(["--py-files", &url("stagemod.py")])
    .arg(&app.main)
    .output()
    .unwrap();
    check_output(out, "Spark 3.5 with staged URLs");
    let metrics = request(srv.port, "GET", "/metrics", &[], &[])
        .unwrap()
        .text();
    assert!(
        metrics.contains("staging_downloads_total{kind=\"file\"}"),
        "Spark never downloaded from the server:\n{metrics}"
    );
}

#[test]
fn spark4_spark_stage_submit_urls_mode() {
    let home = need_env("SPARK4_HOME");
    let python = need_env("SPARK4_PYTHON");
    let app = build_app(&home);
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &[]);
    let submit = PathBuf::from(env!("CARGO_BIN_EXE_spark-stage"));
    let mut cmd = spark_cmd(&submit, &home, &python);
    cmd.args([
        "submit",
        "--quiet",
        "--mode",
        "urls",
        "--server",
        &srv.base(),
        "--",
    ])
    .args(["--master", "local[2]", "--jars"])
    .arg(&app.jar)
    .arg("--files")
    .arg(format!("file://{}", app.data.display()))
    .arg("--py-files")
    .arg(&app.module)
    .arg(&app.main);
    check_output(
        cmd.output().unwrap(),
        "spark-stage submit --mode urls on Spark 4",
    );
    let metrics = request(srv.port, "GET", "/metrics", &[], &[])
        .unwrap()
        .text();
    assert!(
        metrics.contains("staging_downloads_total{kind=\"file\"}"),
        "{metrics}"
    );
}

#[test]
fn init_container_mode_templates_and_local_fetch() {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), &[]);
    let inputs = tempfile::tempdir().unwrap();
    let jar = inputs.path().join("lib.jar");
    std::fs::write(&jar, b"PK fake jar").unwrap();
    let conf = inputs.path().join("app.conf");
    std::fs::write(&conf, "a=1\n").unwrap();
    let main = inputs.path().join("main.py");
    std::fs::write(&main, "print('hi')\n").unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let pod_root = tempfile::tempdir().unwrap();
    let jars_dir = pod_root.path().join("spark-jars");
    let files_dir = pod_root.path().join("spark-files");
    let out = Command::new(env!("CARGO_BIN_EXE_spark-stage"))
        .args([
            "submit",
            "--quiet",
            "--dry-run",
            "--mode",
            "init-container",
            "--server",
            &srv.base(),
        ])
        .arg("--output-dir")
        .arg(out_dir.path())
        .arg("--jars-dir")
        .arg(&jars_dir)
        .arg("--files-dir")
        .arg(&files_dir)
        .args([
            "--",
            "--master",
            "k8s://https://127.0.0.1:6443",
            "--deploy-mode",
            "cluster",
            "--conf",
            "spark.kubernetes.namespace=etl",
        ])
        .arg("--jars")
        .arg(&jar)
        .arg("--files")
        .arg(&conf)
        .arg(&main)
        .arg("app-arg")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let argv: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let jd = jars_dir.display().to_string();
    let fd = files_dir.display().to_string();
    assert!(argv.contains(&format!("local://{jd}/lib.jar")), "{argv:?}");
    // --files go by URL in this mode too: Spark 3.5's executors do not copy local:// files
    // where SparkFiles looks
    let files_at = argv.iter().position(|a| a == "--files").unwrap();
    assert!(
        argv[files_at + 1].starts_with(&srv.base()) && argv[files_at + 1].ends_with("/app.conf"),
        "{argv:?}"
    );
    assert_eq!(argv[argv.len() - 2], format!("local://{fd}/main.py"));
    assert_eq!(argv[argv.len() - 1], "app-arg");
    assert!(argv
        .iter()
        .any(|a| a.starts_with("spark.kubernetes.driver.podTemplateFile=")));

    // Templates and Secret are real Kubernetes objects (unknown fields would fail here).
    let read = |n: &str| std::fs::read_to_string(out_dir.path().join(n)).unwrap();
    let driver: Pod = serde_yaml_ng::from_str(&read("driver-pod-template.yaml"))
        .expect("driver template is a Pod");
    let executor: Pod = serde_yaml_ng::from_str(&read("executor-pod-template.yaml"))
        .expect("executor template is a Pod");
    // executors' Python workers find the fetched py-files (Spark 3.5 does not add them)
    let exec_env = executor.spec.unwrap().containers[0].env.clone().unwrap();
    assert!(
        exec_env
            .iter()
            .any(|e| e.name == "PYTHONPATH" && e.value.as_deref() == Some(fd.as_str())),
        "{exec_env:?}"
    );
    let secret: Secret =
        serde_yaml_ng::from_str(&read("secret.yaml")).expect("secret manifest is a Secret");
    assert_eq!(secret.metadata.namespace.as_deref(), Some("etl"));
    let secret_value = secret.string_data.as_ref().unwrap()["secret"].clone();
    let spec = driver.spec.unwrap();
    let init = &spec.init_containers.as_ref().unwrap()[0];
    let mut args = init.args.clone().unwrap();
    assert_eq!(args[0], "fetch");
    // Run the init container's own command here, with the secret where the volume would be.
    let secret_file = pod_root.path().join("secret");
    std::fs::write(&secret_file, &secret_value).unwrap();
    let i = args.iter().position(|a| a == "--secret-file").unwrap();
    args[i + 1] = secret_file.display().to_string();
    let st = Command::new(env!("CARGO_BIN_EXE_spark-stage"))
        .args(&args)
        .status()
        .unwrap();
    assert!(st.success(), "init container command failed: {args:?}");
    assert_eq!(
        std::fs::read(jars_dir.join("lib.jar")).unwrap(),
        b"PK fake jar"
    );
    assert_eq!(std::fs::read(files_dir.join("app.conf")).unwrap(), b"a=1\n");
    assert_eq!(
        std::fs::read(files_dir.join("main.py")).unwrap(),
        b"print('hi')\n"
    );
    // Both volumes are mounted in the Spark container too.
    let mounts = spec.containers[0].volume_mounts.clone().unwrap();
    assert!(mounts.iter().any(|m| m.mount_path == jd) && mounts.iter().any(|m| m.mount_path == fd));

    // A wrong secret: clear error, non-zero exit, no retries needed to know.
    std::fs::write(&secret_file, "wrong").unwrap();
    let other = pod_root.path().join("other");
    let out = Command::new(env!("CARGO_BIN_EXE_spark-stage"))
        .args(&args[..args.len() - 4])
        .arg("--jars-dir")
        .arg(other.join("j"))
        .arg("--files-dir")
        .arg(other.join("f"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
