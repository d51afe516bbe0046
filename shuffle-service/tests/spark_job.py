"""Driver for the end-to-end test: a real Spark application (local-cluster mode, dynamic
allocation down to zero executors) whose second job can only get its map output and its
DISK_ONLY cached blocks from the external shuffle service under test.

Usage: python spark_job.py <shuffle port> <local dir root> <marker dir>
Between the two jobs it writes <marker dir>/stage1-done and waits for <marker dir>/go, so the
test can kill -9 and restart the service in between.

SPARK_E2E_CONF adds Spark settings ("key=value;key=value"), e.g. spark.authenticate.
SPARK_E2E_EXPECT=refused runs one small job only: the test expects the service to refuse the
executors and stops the driver itself.
"""

import os
import sys
import time

from pyspark import StorageLevel
from pyspark.sql import SparkSession

port, local_root, markers = sys.argv[1], sys.argv[2], sys.argv[3]

builder = SparkSession.builder
for kv in filter(None, os.environ.get("SPARK_E2E_CONF", "").split(";")):
    k, v = kv.split("=", 1)
    builder = builder.config(k, v)

spark = (
    builder.master("local-cluster[2,1,1024]")
    .appName("shuffle-service-e2e")
    .config("spark.shuffle.service.enabled", "true")
    .config("spark.shuffle.service.port", port)
    .config("spark.shuffle.service.fetch.rdd.enabled", "true")
    .config("spark.shuffle.readHostLocalDisk", "false")
    .config("spark.dynamicAllocation.enabled", "true")
    .config("spark.dynamicAllocation.minExecutors", "0")
    .config("spark.dynamicAllocation.initialExecutors", "2")
    .config("spark.dynamicAllocation.maxExecutors", "2")
    .config("spark.dynamicAllocation.executorIdleTimeout", "2s")
    .config("spark.dynamicAllocation.cachedExecutorIdleTimeout", "2s")
    .config("spark.stage.maxConsecutiveAttempts", "1")
    .config("spark.task.maxFailures", "1")
    .config("spark.local.dir", local_root)
    .config("spark.executor.memory", "512m")
    .config("spark.ui.enabled", "false")
    .getOrCreate()
)
sc = spark.sparkContext
sc.setLogLevel("WARN")

if os.environ.get("SPARK_E2E_EXPECT") == "refused":
    print("running a job the service should refuse", flush=True)
    sc.parallelize(range(10), 2).count()
    print("UNEXPECTED: the job ran", flush=True)
    sys.exit(3)

N = 20000
KEYS = 37
evaluations = sc.accumulator(0)


def expensive(x):
    evaluations.add(1)
    return x * 3 + 1


# Job 1: writes map output (reduceByKey) and DISK_ONLY cached blocks on the executors.
pairs = sc.parallelize(range(N), 6).map(lambda x: (x % KEYS, x))
reduced = pairs.reduceByKey(lambda a, b: a + b, 5)
cached = sc.parallelize(range(N), 4).map(expensive).persist(StorageLevel.DISK_ONLY)
print("job1 reduced partitions:", reduced.count(), flush=True)
print("job1 cached count:", cached.count(), flush=True)
evals_after_job1 = evaluations.value
assert evals_after_job1 == N, evals_after_job1


def executors():
    return sc._jsc.sc().getExecutorIds().size()


deadline = time.time() + 90
while executors() > 0:
    if time.time() > deadline:
        raise SystemExit("executors were not removed within 90 s")
    time.sleep(0.5)
print("all executors removed", flush=True)

open(os.path.join(markers, "stage1-done"), "w").close()
deadline = time.time() + 60
while not os.path.exists(os.path.join(markers, "go")):
    if time.time() > deadline:
        raise SystemExit("the test never said go")
    time.sleep(0.2)

# Job 2: new executors; the map stage is skipped, so its output comes from the service, and
# the cached partitions come from the service too (the accumulator proves no recomputation).
got = dict(reduced.collect())
expected = {}
for x in range(N):
    expected[x % KEYS] = expected.get(x % KEYS, 0) + x
assert got == expected, (len(got), len(expected))

total = cached.sum()
assert total == sum(x * 3 + 1 for x in range(N)), total
assert evaluations.value == evals_after_job1, (
    "cached blocks were recomputed instead of read through the shuffle service",
    evaluations.value,
)
print("RESULT OK", flush=True)
spark.stop()
