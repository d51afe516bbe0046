//! The small Spark application the end-to-end tests run: a Java UDF from a jar compiled here
//! (used on the executors), a data file read with SparkFiles (driver and executors), and a
//! Python module imported on the executors.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct App {
    _dir: tempfile::TempDir,
    pub jar: PathBuf,
    pub data: PathBuf,
    pub module: PathBuf,
    pub main: PathBuf,
}

/// Compiles the UDF jar against `spark_home`'s jars and writes the Python app and its inputs.
pub fn build_app(spark_home: &str) -> App {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src/stagetest");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("Plus.java"),
        "package stagetest;\npublic class Plus implements org.apache.spark.sql.api.java.UDF1<Integer, Integer> {\n  public Integer call(Integer x) { return x + 1000; }\n}\n",
    )
    .unwrap();
    let classes = dir.path().join("classes");
    let ok = Command::new("javac")
        .arg("-cp")
        .arg(format!("{spark_home}/jars/*"))
        .arg("-d")
        .arg(&classes)
        .arg(src.join("Plus.java"))
        .status()
        .expect("javac (Java 17 JDK) must be installed");
    assert!(ok.success(), "javac failed");
    let jar = dir.path().join("stagetest-udf.jar");
    let ok = Command::new("jar")
        .arg("cf")
        .arg(&jar)
        .arg("-C")
        .arg(&classes)
        .arg(".")
        .status()
        .expect("jar tool");
    assert!(ok.success(), "jar failed");
    let data = dir.path().join("staged-data.txt");
    std::fs::write(&data, "seven77\n").unwrap();
    let module = dir.path().join("stagemod.py");
    std::fs::write(&module, "def twice(x):\n    return 2 * x\n").unwrap();
    let main = dir.path().join("stage_app.py");
    std::fs::write(
        &main,
        r#"
from pyspark.sql import SparkSession
from pyspark import SparkFiles
from pyspark.sql.types import IntegerType
import stagemod

spark = SparkSession.builder.appName("staging-test").getOrCreate()
sc = spark.sparkContext
spark.udf.registerJavaFunction("plus1000", "stagetest.Plus", IntegerType())
udf_sum = spark.range(4).repartition(2).selectExpr("plus1000(cast(id as int)) as v").groupBy().sum("v").collect()[0][0]
driver_data = open(SparkFiles.get("staged-data.txt")).read().strip()

def per_task(x):
    import stagemod
    from pyspark import SparkFiles
    return stagemod.twice(x) + len(open(SparkFiles.get("staged-data.txt")).read().strip())

task_sum = sc.parallelize(range(4), 2).map(per_task).sum()
print("STAGE-RESULT udf=%d data=%s module=%d tasks=%d" % (udf_sum, driver_data, stagemod.twice(21), task_sum))
spark.stop()
"#,
    )
    .unwrap();
    App {
        _dir: dir,
        jar,
        data,
        module,
        main,
    }
}

/// udf: 4 rows of id+1000; tasks: twice(0..4) + 7 chars each.
pub const EXPECTED: &str = "STAGE-RESULT udf=4006 data=seven77 module=42 tasks=40";

pub fn spark_cmd(program: &Path, spark_home: &str, python: &str) -> Command {
    let mut c = Command::new(program);
    c.env("SPARK_HOME", spark_home)
        .env("PYSPARK_PYTHON", python)
        .env("PYSPARK_DRIVER_PYTHON", python)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env_remove("PYTHONPATH");
    c
}

pub fn check_output(out: std::process::Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(EXPECTED),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr (tail):\n{}",
        out.status,
        stderr
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
