"""Writes real Spark event logs for the history-collector parity tests.

Usage: python api_gen_eventlogs.py <event-log-dir>
Runs several short applications in one driver process (one JVM), each with a different
event-log codec/layout, so a single Spark start covers the formats the server must read.
Then compiles parity_job/ParityJob.java against this Spark and runs it on a small
standalone cluster (one master, two workers on different loopback addresses) for what only
the JVM API or several hosts can produce: named accumulators, speculative tasks and
exclude-on-failure.

Every rare case the servers must agree on is made to happen on purpose, not by chance,
and checked in the logs before the script succeeds: tasks that fail and are retried,
tasks killed by a cancelled job group, a speculative copy that wins and the killed
attempt it replaces, tasks still running when a completed application ended, executors
and nodes excluded for a stage and for the application, and an application that is
still running (its log cut short).
"""
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

from pyspark import StorageLevel, TaskContext
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

out = os.path.abspath(sys.argv[1])
os.makedirs(out, exist_ok=True)
major = int(__import__("pyspark").__version__.split(".")[0])


def session(name, **conf):
    b = (
        SparkSession.builder.master("local[2,2]")
        .appName(name)
        .config("spark.eventLog.enabled", "true")
        .config("spark.eventLog.dir", "file://" + out)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "3")
        .config("spark.sql.adaptive.enabled", "false")
    )
    for k, v in conf.items():
        b = b.config(k, v)
    return b.getOrCreate()


def fail_first_attempt(it):
    ctx = TaskContext.get()
    if ctx.partitionId() == 0 and ctx.attemptNumber() == 0:
        raise RuntimeError("planned failure of the first attempt")
    return it


def always_fail(it):
    raise ValueError("this job fails <b>on purpose</b>")


def sleep_unless_first(it):
    # partition 0 ends at once, the others run until the application is gone
    if TaskContext.get().partitionId() != 0:
        time.sleep(120)
    return it


def sleep_long(it):
    time.sleep(120)
    return it


def wait_for_tasks(sc, active, completed):
    """Until some active stage runs `active` tasks with `completed` done."""
    deadline = time.time() + 120
    while time.time() < deadline:
        for sid in sc.statusTracker().getActiveStageIds():
            info = sc.statusTracker().getStageInfo(sid)
            if info and info.numActiveTasks == active and info.numCompletedTasks == completed:
                return
        time.sleep(0.1)
    raise RuntimeError("tasks did not start in time")


def in_background(sc, group, job):
    """Runs `job` in a thread of its own under job group `group` (its failure expected)."""
    def run():
        sc.setJobGroup(group, group, interruptOnCancel=True)
        try:
            job()
        except Exception:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def killed_tasks(sc):
    """A job group cancelled while its two tasks run: both end KILLED."""
    t = in_background(sc, "cancelled-on-purpose",
                      lambda: sc.parallelize(range(2), 2).mapPartitions(sleep_long).collect())
    wait_for_tasks(sc, 2, 0)
    sc.cancelJobGroup("cancelled-on-purpose")
    t.join(60)


def stop_with_running_task(spark):
    """Stops the application while one task of a job runs: the scheduler stops before the
    task can report, so the log has its start and never its end."""
    sc = spark.sparkContext
    in_background(sc, "running-at-the-end",
                  lambda: sc.parallelize(range(2), 2).mapPartitions(sleep_unless_first).collect())
    wait_for_tasks(sc, 1, 1)
    spark.stop()


def main_workload(spark):
    sc = spark.sparkContext
    sc.setJobDescription("join & aggregate <i>markup</i>")
    people = spark.createDataFrame(
        [(i, "name%d" % i, i % 5) for i in range(200)], ["id", "name", "dept"]
    )
    depts = spark.createDataFrame([(d, "dept%d" % d) for d in range(5)], ["dept", "dname"])
    joined = people.join(depts, "dept").groupBy("dname").agg(F.count("*").alias("n"), F.sum("id").alias("s"))
    joined.collect()
    sc.setJobDescription(None)
    w = Window.partitionBy("dept").orderBy(F.col("id").desc())
    people.withColumn("rank", F.rank().over(w)).filter("rank <= 2").collect()
    cached = people.filter("id % 2 = 0").cache()
    cached.count()
    cached.groupBy("dept").count().collect()
    sc.parallelize(range(100), 4).mapPartitions(fail_first_attempt).sum()
    killed_tasks(sc)
    try:
        sc.parallelize(range(10), 2).mapPartitions(always_fail).collect()
    except Exception:
        pass
    # storage: an RDD kept on disk, one dropped again (unpersist)
    sc.parallelize(range(300), 3).persist(StorageLevel.DISK_ONLY).count()
    dropped = sc.parallelize(range(50), 2).cache()
    dropped.count()
    dropped.unpersist(blocking=True)
    # adaptive execution (plan updates, several jobs per execution, a modified config)
    spark.conf.set("spark.sql.adaptive.enabled", "true")
    people.join(depts, "dept").groupBy("dname").agg(F.avg("id").alias("a")).collect()
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    # a failing SQL query
    try:
        boom = F.udf(lambda x: 1 // (x - x), "int")
        spark.range(0, 10, 1, 2).select(boom("id")).collect()
    except Exception:
        pass


def small_workload(spark):
    df = spark.range(0, 1000, 1, 4)
    df.groupBy((df.id % 7).alias("k")).count().collect()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def java_cluster_app(out):
    """Compiles ParityJob.java against this Spark and runs it on a standalone cluster of
    two workers on different loopback addresses (two hosts to Spark)."""
    import pyspark

    home = os.path.dirname(pyspark.__file__)
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "parity_job", "ParityJob.java")
    work = tempfile.mkdtemp(prefix="parity-cluster-")
    classes = os.path.join(work, "classes")
    os.makedirs(classes)
    subprocess.run(["javac", "-nowarn", "-d", classes, "-cp", os.path.join(home, "jars", "*"), src],
                   check=True)
    jar = os.path.join(work, "parity-job.jar")
    with zipfile.ZipFile(jar, "w") as z:
        for f in glob.glob(os.path.join(classes, "*.class")):
            z.write(f, os.path.basename(f))
    env = dict(os.environ, SPARK_HOME=home, SPARK_LOG_DIR=os.path.join(work, "logs"),
               SPARK_NO_DAEMONIZE="1", SPARK_DAEMON_MEMORY="256m")
    env.pop("PYSPARK_PYTHON", None)
    port = free_port()
    master = "spark://127.0.0.1:%d" % port
    log = open(os.path.join(work, "cluster.log"), "w")
    procs = []

    def daemon(cls, host, *args):
        e = dict(env, SPARK_LOCAL_IP=host)
        procs.append(subprocess.Popen([os.path.join(home, "bin", "spark-class"), cls, "--host", host, *args],
                                      env=e, stdout=log, stderr=subprocess.STDOUT))

    try:
        daemon("org.apache.spark.deploy.master.Master", "127.0.0.1", "--port", str(port), "--webui-port", "0")
        for i, host in enumerate(["127.0.0.1", "127.0.0.2"]):
            daemon("org.apache.spark.deploy.worker.Worker", host, "--port", "0", "--webui-port", "0",
                   "--cores", "2", "--memory", "1g", "--work-dir", os.path.join(work, "worker%d" % i), master)
        conf = {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": "file://" + out,
            "spark.eventLog.compress": "false",
            "spark.eventLog.rolling.enabled": "false",
            "spark.ui.enabled": "false",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.memory": "512m",
            "spark.executor.memory": "512m",
            "spark.executor.cores": "2",
            "spark.cores.max": "4",
            "spark.task.maxFailures": "4",
            # a straggler is copied once three of its stage's four tasks are done
            "spark.speculation": "true",
            "spark.speculation.interval": "100ms",
            "spark.speculation.efficiency.enabled": "false",
            # one failed task on an executor keeps that task off it; two exclude the
            # executor for the stage, then for the application, and its node with it
            "spark.excludeOnFailure.enabled": "true",
            "spark.excludeOnFailure.application.enabled": "true",
            "spark.excludeOnFailure.taskAndStage.enabled": "true",
            "spark.excludeOnFailure.task.maxTaskAttemptsPerExecutor": "1",
            "spark.excludeOnFailure.stage.maxFailedTasksPerExecutor": "2",
            "spark.excludeOnFailure.stage.maxFailedExecutorsPerNode": "1",
            "spark.excludeOnFailure.application.maxFailedTasksPerExecutor": "2",
            "spark.excludeOnFailure.application.maxFailedExecutorsPerNode": "1",
        }
        cmd = [os.path.join(home, "bin", "spark-submit"), "--master", master, "--class", "ParityJob"]
        for k, v in conf.items():
            cmd += ["--conf", "%s=%s" % (k, v)]
        subprocess.run(cmd + [jar], env=dict(env, SPARK_LOCAL_IP="127.0.0.1"), check=True,
                       stdout=log, stderr=subprocess.STDOUT, timeout=600)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def check_rare_cases(out):
    """Fails unless the plain (uncompressed, single-file) logs hold every rare case."""
    events = []
    for f in glob.glob(os.path.join(out, "*")):
        if os.path.isfile(f) and "." not in os.path.basename(f):
            with open(f, encoding="utf-8") as fh:
                events += [json.loads(line) for line in fh if line.strip()]
    def any_event(kind, pred=lambda e: True):
        # events JsonProtocol does not know are logged under their class name
        return any(e.get("Event", "").rsplit(".", 1)[-1] == kind and pred(e) for e in events)
    started = {e["Task Info"]["Task ID"] for e in events if e.get("Event") == "SparkListenerTaskStart"}
    ended = {e["Task Info"]["Task ID"] for e in events if e.get("Event") == "SparkListenerTaskEnd"}
    reason = lambda r: lambda e: e.get("Task End Reason", {}).get("Reason") == r
    wanted = {
        "a task retried after a failure": any_event("SparkListenerTaskEnd", reason("ExceptionFailure")),
        "a killed task": any_event("SparkListenerTaskEnd", reason("TaskKilled")),
        "a speculative task": any_event("SparkListenerTaskEnd", lambda e: e["Task Info"]["Speculative"]),
        "a task still running at the end": bool(started - ended),
        "a named accumulator": any_event("SparkListenerStageCompleted", lambda e: any(
            a.get("Name") == "parity.records" for a in e["Stage Info"].get("Accumulables", []))),
        "an executor excluded for a stage": any_event("SparkListenerExecutorExcludedForStage"),
        "a node excluded for a stage": any_event("SparkListenerNodeExcludedForStage"),
        "an executor excluded": any_event("SparkListenerExecutorExcluded"),
        "a node excluded": any_event("SparkListenerNodeExcluded"),
    }
    missing = [k for k, ok in wanted.items() if not ok]
    if missing:
        raise SystemExit("the generated logs lack: " + ", ".join(missing))


# block updates make the storage endpoints and executors' memory use meaningful
blocks = {"spark.eventLog.logBlockUpdates.enabled": "true"}
if major < 4:
    s = session("parity-main-plain", **blocks)
    main_workload(s)
    stop_with_running_task(s)
    s = session("parity-lz4", **{"spark.eventLog.compress": "true", "spark.eventLog.compression.codec": "lz4"})
    small_workload(s)
    s.stop()
    s = session("parity-snappy", **{"spark.eventLog.compress": "true", "spark.eventLog.compression.codec": "snappy"})
    small_workload(s)
    s.stop()
    s = session("parity-rolling-zstd", **{"spark.eventLog.compress": "true", "spark.eventLog.rolling.enabled": "true"})
    small_workload(s)
    s.stop()
else:
    s = session("parity-main-rolling-zstd", **blocks)
    main_workload(s)
    stop_with_running_task(s)
    s = session("parity-lzf", **{"spark.eventLog.rolling.enabled": "false", "spark.eventLog.compression.codec": "lzf"})
    small_workload(s)
    s.stop()
    s = session("parity-lz4-single", **{"spark.eventLog.rolling.enabled": "false", "spark.eventLog.compression.codec": "lz4"})
    small_workload(s)
    s.stop()

# an application whose driver "died": an uncompressed log cut in the middle of a line,
# left with its .inprogress name
s = session("parity-truncated", **{"spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false"})
small_workload(s)
app_id = s.sparkContext.applicationId
s.stop()
src = os.path.join(out, app_id)
with open(src, "rb") as f:
    data = f.read()
cut = data.rfind(b"SparkListenerJobEnd")
cut = cut + 10 if cut > 0 else len(data) * 2 // 3
with open(src + ".inprogress", "wb") as f:
    f.write(data[:cut])
os.remove(src)

java_cluster_app(out)
check_rare_cases(out)
print("event logs written to", out)
