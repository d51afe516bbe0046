"""Writes real Spark event logs for the history-collector parity tests.

Usage: python api_gen_eventlogs.py <event-log-dir>
Runs several short applications in one driver process (one JVM), each with a different
event-log codec/layout, so a single Spark start covers the formats the server must read.
"""
import os
import shutil
import sys

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


# block updates make the storage endpoints and executors' memory use meaningful
blocks = {"spark.eventLog.logBlockUpdates.enabled": "true"}
if major < 4:
    s = session("parity-main-plain", **blocks)
    main_workload(s)
    s.stop()
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
    s.stop()
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
print("event logs written to", out)
