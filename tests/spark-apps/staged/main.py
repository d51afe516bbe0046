# The staged application of the Kubernetes tests: every file it needs is local to the machine
# that runs spark-submit (in a directory pods cannot read) and reaches the pods through the
# staging server: this file, helper.py (--py-files), data.txt (--files) and staged.jar (--jars).
# Driver and executors use each of them; prints "STAGED <json>".
import json

from pyspark import SparkFiles
from pyspark.sql import SparkSession
from pyspark.sql.types import StringType

import helper

# the name comes from spark-submit --name (the tests delete the pods by it)
spark = SparkSession.builder.getOrCreate()
sc = spark.sparkContext


def data(_=None):
    with open(SparkFiles.get("data.txt")) as f:
        return f.read().strip()


on_executors = sc.parallelize(range(4), 4).map(lambda i: [helper.double(i), data()]).collect()
spark.udf.registerJavaFunction("staged_upper", "StagedUpper", StringType())
udf = spark.sql("SELECT staged_upper(id) AS u FROM (SELECT CAST(id AS STRING) AS id FROM range(3))")
result = {
    "driver_data": data(),
    "driver_helper": helper.double(21),
    "driver_jar": sc._jvm.StagedUpper().call("jar"),
    "executors": on_executors,
    "executors_jar": sorted(r.u for r in udf.collect()),
}
print("STAGED " + json.dumps(result, sort_keys=True))
spark.stop()
