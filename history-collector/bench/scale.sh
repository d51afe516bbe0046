#!/usr/bin/env bash
# Benchmark at scale: N (default 100,000) small completed applications, listed by our
# collector and by Spark's own History Server, in the same run. For each: seconds from
# process start until /api/v1/applications lists all N, its peak RSS (VmHWM) and CPU time,
# on a cold start (nothing indexed) and on a restart (ours with its listing index in the
# store, Spark's with its listing database in spark.history.store.path).
#
# The applications are clones of one real event log written by Spark 4.3.0 (generated here
# once: a small two-stage RDD job; one uncompressed file, as Spark 3.5 writes by default),
# each with its own id and times
# (bench/scale_gen.py). Spark reads them from an event-log directory; ours from the
# `file://` store layout the agents ship logs into, hard links to the same files.
#
# Usage: history-collector/bench/scale.sh
# Env: N (default 100000), BENCH_DIR (default /var/tmp/history-scale-bench: about 4 GB),
# SHS_MEMORY (the History Server's heap, SPARK_DAEMON_MEMORY; default its own 1g).
# Needs: `eval "$(bash scripts/install-test-tools.sh --print-env)"` (SPARK4_HOME, SPARK4_PYTHON).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
n=${N:-100000}
work=${BENCH_DIR:-/var/tmp/history-scale-bench}
spark=${SPARK4_HOME:?run: eval \"\$(bash scripts/install-test-tools.sh --print-env)\"}
py=${SPARK4_PYTHON:?}
port=${BENCH_PORT:-18997}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/spark-sidecars/target}
bench=$here/history-collector/bench
mkdir -p "$work"

# one real application, written by Spark 4.3.0
tpl=$work/template
if ! ls "$tpl"/local-* > /dev/null 2>&1; then
  rm -rf "$tpl"; mkdir -p "$tpl"
  SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$py "$py" - "$tpl" > "$work/template.log" 2>&1 <<'EOF'
import sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[2]").appName("nightly-aggregate")
         .config("spark.eventLog.enabled", "true").config("spark.eventLog.dir", sys.argv[1])
         .config("spark.eventLog.compress", "false").config("spark.eventLog.rolling.enabled", "false")
         .config("spark.ui.enabled", "false")
         .getOrCreate())
sc = spark.sparkContext
sc.parallelize(range(10000), 4).map(lambda x: (x % 10, x)).reduceByKey(lambda a, b: a + b, 4).collect()
spark.stop()
EOF
fi
src=$(ls "$tpl"/local-* | head -1)

# N clones, unless this many are there already
if [ "$(cat "$work/generated" 2>/dev/null)" != "$n $(sha256sum < "$src")" ]; then
  rm -rf "$work/logs" "$work/store" "$work/generated"
  "$py" "$bench/scale_gen.py" "$src" "$work/logs" "$work/store" "$n" | tee "$work/gen.out"
  echo "$n $(sha256sum < "$src")" > "$work/generated"
fi
# the application that ended first (the generator's first); its end is the file's time
oldest_end=$(find "$work/logs" -type f -printf '%T@\n' | sort -n | awk 'NR == 1 { printf "%d000", $1 }')

(cd "$here" && cargo build --release -q -p history-collector)
bin=$CARGO_TARGET_DIR/release/history-collector

# ours: serving the store, no event-log directory, no Kubernetes
ours() {
  local out=$work/ours-$1.out
  local start; start=$(date +%s.%N)
  "$bin" --bind 127.0.0.1 --port "$port" --ingest-port $((port + 1)) --storage "file://$work/store" \
    --data-dir "$work/data" --log-level warn > "$out" 2>&1 &
  local pid=$!
  local r; r=$("$py" "$bench/scale_wait.py" "http://127.0.0.1:$port" "$pid" "$start" "$n" "$oldest_end")
  kill -TERM "$pid"; wait "$pid" || true
  echo "$r"
}

# Spark's History Server over the directory, its listing database in $work/shs-store
shs() {
  local out=$work/shs-$1.out
  printf 'spark.history.fs.logDirectory file:%s\nspark.history.ui.port %s\nspark.history.fs.update.interval 1s\nspark.history.store.path %s\n' \
    "$work/logs" "$port" "$work/shs-store" > "$work/shs.props"
  local start; start=$(date +%s.%N)
  SPARK_DAEMON_MEMORY=${SHS_MEMORY:-1g} SPARK_LOG_DIR="$work" SPARK_LOCAL_IP=127.0.0.1 SPARK_NO_DAEMONIZE=1 \
    "$spark/bin/spark-class" org.apache.spark.deploy.history.HistoryServer --properties-file "$work/shs.props" > "$out" 2>&1 &
  local pid=$!
  # spark-class execs java: the pid is the JVM's
  local r; r=$("$py" "$bench/scale_wait.py" "http://127.0.0.1:$port" "$pid" "$start" "$n" "$oldest_end")
  kill -TERM "$pid"; wait "$pid" || true
  echo "$r"
}

find "$work/logs" -type f -exec cat {} + > /dev/null # both read from the page cache
rm -rf "$work/store/index" "$work/data" "$work/shs-store"; mkdir -p "$work/shs-store"
ours_cold=$(ours cold); ours_warm=$(ours restart)
shs_cold=$(shs cold); shs_warm=$(shs restart)

row() { # name start result
  read -r secs hwm cpu listed <<< "$3"
  printf '| %s | %s | %s | %.2f | %d MiB | %.1f |\n' "$1" "$2" "$listed" "$secs" $((hwm / 1024)) "$cpu"
}
ratio() { echo "scale=1; $1 / $2" | bc; }
read -r oc ohc _ _ <<< "$ours_cold"; read -r ow ohw _ _ <<< "$ours_warm"
read -r sc shc _ _ <<< "$shs_cold"; read -r sw shw _ _ <<< "$shs_warm"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$here" rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(cat "$work/gen.out" 2>/dev/null || true)"
echo
echo "| server | start | applications listed | seconds until all listed | peak RSS | CPU s |"
echo "|---|---|---|---|---|---|"
row "history-collector" "cold (no index)" "$ours_cold"
row "history-collector" "restart (index in the store)" "$ours_warm"
row "Spark 4.3.0 History Server" "cold (empty store.path)" "$shs_cold"
row "Spark 4.3.0 History Server" "restart (store.path kept)" "$shs_warm"
echo
echo "cold: ours $(ratio "$sc" "$oc")x faster, $(ratio "$shc" "$ohc")x less memory; restart: ours $(ratio "$sw" "$ow")x faster, $(ratio "$shw" "$ohw")x less memory"
