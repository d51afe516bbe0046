"""Real Spark applications for the history-collector UI tests.

Usage: python ui_gen_eventlogs.py <event-log-dir> <pod-log-dir>

1. "ui main": a local-cluster (a standalone master, two workers, executors in their own JVMs)
   application that does on purpose what the UI must show: SQL with a join and an
   aggregation, a skewed stage, a stage that spills, tasks that fail once and are retried, an
   executor JVM killed under a running task (ExecutorLostFailure, the executor removed and
   replaced), a job with a skipped stage, an executor removed by the driver, then (so they
   stay cached) a cached DataFrame and a persisted RDD (block updates logged), a failing job
   and a failing SQL query. Markup is
   planted in the application name, job descriptions, an RDD name, a property and the
   executors' logs; a password property checks redaction. The executors' stdout/stderr (from
   the workers' work directory) are copied to <pod-log-dir>/<appId>/<executorId>/.
2. "ui killed driver": a second process whose driver JVM is killed with SIGKILL while a job
   runs, so its event log ends without an application end. Its stderr is the driver's log.

The driver's own stderr (the caller captures it) is the main application's driver log.
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

events = os.path.abspath(sys.argv[1])
podlogs = os.path.abspath(sys.argv[2])
os.makedirs(events, exist_ok=True)
os.makedirs(podlogs, exist_ok=True)

import pyspark  # noqa: E402
from pyspark import StorageLevel, TaskContext  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

major = int(pyspark.__version__.split(".")[0])
MARK = '<img src=x onerror="window.__pwned=1"><b class="planted">bold</b>'


def log(msg):
    sys.stderr.write("ui_gen: %s\n" % msg)
    sys.stderr.flush()


def executor_jvm_pid():
    """The pid of the executor JVM this Python worker runs under (walks up the parents)."""
    pid = os.getppid()
    for _ in range(6):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read()
            if b"CoarseGrainedExecutorBackend" in cmd:
                return pid
            with open("/proc/%d/stat" % pid) as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return None


def fail_first_attempt(it):
    ctx = TaskContext.get()
    if ctx.partitionId() in (0, 1) and ctx.attemptNumber() == 0:
        raise RuntimeError("planned failure of the first attempt <b>retry me</b>")
    return it


def always_fail(it):
    raise ValueError("this job fails <script>window.__pwned=3</script> on purpose")


def kill_my_executor_once(it):
    ctx = TaskContext.get()
    if ctx.partitionId() == 0 and ctx.attemptNumber() == 0:
        pid = executor_jvm_pid()
        sys.stderr.write("killing executor JVM %s under task %d\n" % (pid, ctx.taskAttemptId()))
        sys.stderr.flush()
        if pid:
            os.kill(pid, signal.SIGKILL)
        time.sleep(30)
    time.sleep(0.2)
    return it


def skewed(x):
    if x == 0:
        time.sleep(2.5)
    return x


def noisy(it):
    # a line with markup in the executor's log
    sys.stderr.write("task log line %s WARN planted\n" % MARK)
    sys.stderr.flush()
    return it


def wait_executors(sc, n, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sc._jsc.sc().getExecutorIds().size() == n:
            return True
        time.sleep(0.5)
    return False


def ui_main():
    spark = (
        SparkSession.builder.master("local-cluster[2,1,1024]")
        .appName("ui main " + MARK + " & co")
        .config("spark.eventLog.enabled", "true")
        .config("spark.eventLog.dir", "file://" + events)
        .config("spark.eventLog.compress", "false")
        .config("spark.eventLog.logBlockUpdates.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.executor.memory", "512m")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.shuffle.spill.numElementsForceSpillThreshold", "20000")
        .config("spark.ui.planted.markup", MARK)
        .config("spark.my.password", "hunter2-not-shown")
        .getOrCreate()
    )
    sc = spark.sparkContext
    if not wait_executors(sc, 2):
        log("executors did not all register")

    sc.setJobDescription("join & aggregate " + MARK)
    people = spark.createDataFrame(
        [(i, "name%d" % i, i % 5) for i in range(400)], ["id", "name", "dept"]
    )
    depts = spark.createDataFrame([(d, "dept%d" % d) for d in range(5)], ["dept", "dname"])
    people.join(depts, "dept").groupBy("dname").agg(
        F.count("*").alias("n"), F.sum("id").alias("s")
    ).collect()

    sc.setJobDescription("a skewed stage")
    sc.parallelize(range(8), 8).map(skewed).collect()

    sc.setJobDescription("a sort that spills")
    spark.range(0, 200000, 1, 4).selectExpr("id", "rand(7) as r").orderBy("r").write.format(
        "noop"
    ).mode("overwrite").save()

    sc.setJobDescription("tasks that fail once")
    sc.parallelize(range(100), 4).mapPartitions(fail_first_attempt).sum()

    sc.setJobDescription("an executor killed under a task")
    sc.parallelize(range(4), 4).mapPartitions(kill_my_executor_once).count()
    if not wait_executors(sc, 2):
        log("the killed executor was not replaced")

    sc.setJobDescription("a reused shuffle (a skipped stage)")
    pairs = sc.parallelize(range(1000), 4).map(lambda x: (x % 10, 1)).reduceByKey(lambda a, b: a + b)
    pairs.count()
    pairs.collect()

    # the driver removes an executor
    seq = sc._jsc.sc().getExecutorIds()
    ids = [seq.apply(i) for i in range(seq.size())]
    if ids:
        sc._jsc.sc().killExecutor(sorted(ids)[0])
        wait_executors(sc, len(ids) - 1, timeout=30)

    # cached after the executors came and went, so the blocks are still there at the end
    sc.setJobDescription("cache a DataFrame")
    cached = people.filter("id % 2 = 0").cache()
    cached.count()
    cached.groupBy("dept").count().collect()
    sc.setJobDescription(None)
    rdd = sc.parallelize(range(2000), 4).mapPartitions(noisy).setName("kept rdd " + MARK)
    rdd.persist(StorageLevel.MEMORY_AND_DISK).count()

    sc.setJobDescription("a failing job")
    try:
        sc.parallelize(range(10), 2).mapPartitions(always_fail).collect()
    except Exception:
        pass

    sc.setJobDescription("a failing query")
    try:
        boom = F.udf(lambda x: 1 // (x - x), "int")
        spark.range(0, 10, 1, 2).select(boom("id")).collect()
    except Exception:
        pass
    sc.setJobDescription(None)

    app_id = sc.applicationId
    spark.stop()
    # the executors' logs, from the workers' work directory
    work = os.path.join(os.environ.get("SPARK_HOME", os.path.dirname(pyspark.__file__)), "work", app_id)
    if os.path.isdir(work):
        for ex in os.listdir(work):
            for name in ("stdout", "stderr"):
                src = os.path.join(work, ex, name)
                if os.path.isfile(src):
                    dst = os.path.join(podlogs, app_id, ex)
                    os.makedirs(dst, exist_ok=True)
                    shutil.copyfile(src, os.path.join(dst, name))
        shutil.rmtree(work, ignore_errors=True)
    else:
        log("no work directory at %s" % work)
    with open(os.path.join(podlogs, "main-app-id"), "w") as f:
        f.write(app_id)


def long_tasks(it):
    time.sleep(120)
    return it


def killed_driver():
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("ui killed driver " + MARK)
        .config("spark.eventLog.enabled", "true")
        .config("spark.eventLog.dir", "file://" + events)
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    sc = spark.sparkContext
    sc.setJobDescription("finished before the kill")
    spark.range(0, 1000, 1, 2).groupBy((F.col("id") % 3).alias("k")).count().collect()
    sc.setJobDescription("running when the driver was killed")
    threading.Thread(
        target=lambda: sc.parallelize(range(2), 2).mapPartitions(long_tasks).count(), daemon=True
    ).start()
    time.sleep(6)
    with open(os.path.join(podlogs, "killed-app-id"), "w") as f:
        f.write(sc.applicationId)
    log("killing the driver JVM %d" % sc._gateway.proc.pid)
    os.kill(sc._gateway.proc.pid, signal.SIGKILL)
    time.sleep(1)
    os._exit(0)


if len(sys.argv) > 3 and sys.argv[3] == "killed":
    killed_driver()
else:
    ui_main()
    with open(os.path.join(podlogs, "killed-driver.stderr"), "wb") as err:
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), events, podlogs, "killed"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=300,
        )
    log("event logs written to %s" % events)
