"""Short real Spark applications that write event logs, for the ingest tests.

usage: ingest_spark_job.py EVENT_LOG_DIR RUN [RUN ...]
  RUN is MODE:CODEC, run one after another in the same JVM:
    MODE: single | rolling | hang   (hang: runs the jobs, prints READY, sleeps until killed)
    CODEC: none | lz4 | snappy | zstd | lzf
Prints "APP_ID <id>" for each application.
"""
import sys
import time

from pyspark.sql import SparkSession

log_dir = sys.argv[1]
for run in sys.argv[2:]:
    mode, codec = run.split(":")
    b = (
        SparkSession.builder.master("local[2]")
        .appName("ingest-test-" + mode)
        .config("spark.ui.enabled", "false")
        .config("spark.eventLog.enabled", "true")
        .config("spark.eventLog.dir", "file://" + log_dir)
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.eventLog.rolling.enabled", "true" if mode in ("rolling", "hang") else "false")
        .config("spark.eventLog.rolling.maxFileSize", "10m")
    )
    if codec == "none":
        b = b.config("spark.eventLog.compress", "false")
    else:
        b = b.config("spark.eventLog.compress", "true").config("spark.eventLog.compression.codec", codec)
    spark = b.getOrCreate()
    sc = spark.sparkContext
    print("APP_ID", sc.applicationId, flush=True)
    total = 0
    for i in range(3):
        total += sc.parallelize(range(10000), 8).map(lambda x: (x % 7, x)).reduceByKey(lambda a, b: a + b).count()
    df = spark.range(0, 50000).selectExpr("id % 13 as k", "id").groupBy("k").count()
    total += len(df.collect())
    print("RESULT", total, flush=True)
    if mode == "hang":
        print("READY", flush=True)
        time.sleep(3600)
    spark.stop()
