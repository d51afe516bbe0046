# A shuffle-heavy pyspark job for the Kubernetes tests, run with dynamic allocation and the
# external shuffle service (deploy/spark/spark-defaults.conf):
#   1. a reduceByKey job writes map output on several executors, and a DISK_ONLY RDD is cached;
#   2. the job waits until dynamic allocation has removed every executor;
#   3. the reduce side runs again on new executors (its map stage is skipped: the map output is
#      only reachable through the shuffle services), and the cached RDD is counted again
#      (its blocks are only reachable through the shuffle services: not recomputed);
# results are checked against values computed here. Prints "HOSTS <executor hosts>" and
# "RESULT OK" at the end; any failure exits non-zero.
# Optional argument: seconds to sleep (holding registrations and files) before stopping.
import sys
import time

from pyspark import StorageLevel
from pyspark.sql import SparkSession

# the name comes from spark-submit --name: the tests find the executors by it (spark-app-name)
spark = SparkSession.builder.getOrCreate()
sc = spark.sparkContext
jsc = sc._jsc.sc()
hold = int(sys.argv[1]) if len(sys.argv) > 1 else 0

N = 200000
KEYS = 1000
hosts = set()


def executor_hosts():
    # executors run with hostNetwork: their block managers are at node addresses
    status = jsc.getExecutorMemoryStatus()
    it = status.keySet().iterator()
    out = set()
    while it.hasNext():
        out.add(str(it.next()).rsplit(":", 1)[0])
    return out


def wait_for_no_executors(timeout=240):
    deadline = time.time() + timeout
    while jsc.getExecutorIds().size() > 0:
        hosts.update(executor_hosts())
        if time.time() > deadline:
            raise SystemExit("dynamic allocation did not remove the executors")
        time.sleep(1)


computed = sc.accumulator(0)


def mark(x):
    computed.add(1)
    return x


pairs = sc.parallelize(range(N), 8).map(lambda i: (i % KEYS, i))
summed = pairs.reduceByKey(lambda a, b: a + b, numPartitions=6)
cached = sc.parallelize(range(N), 8).map(mark).persist(StorageLevel.DISK_ONLY)

first = dict(summed.collect())
assert cached.count() == N
hosts.update(executor_hosts())
computed_before = computed.value
wait_for_no_executors()

again = dict(summed.collect())
assert cached.count() == N
expected = {k: sum(range(k, N, KEYS)) for k in range(KEYS)}
if first != expected or again != expected:
    raise SystemExit("wrong sums")
if computed.value != computed_before:
    raise SystemExit(
        "the DISK_ONLY blocks were recomputed (%d marks, %d before)" % (computed.value, computed_before)
    )
print("HOSTS " + " ".join(sorted(h for h in hosts if h.startswith("198.18.0."))))
print("RESULT OK")
sys.stdout.flush()
time.sleep(hold)
spark.stop()
