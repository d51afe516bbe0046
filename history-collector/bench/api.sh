#!/usr/bin/env bash
# Benchmark of the history API against Spark's own History Server, on the same synthetic event
# log in the same run: the time until /api/v1/applications/<id>/jobs first answers, and the peak
# RSS of each. Both answers must be the same document.
#
# Usage: history-collector/bench/api.sh <a real, complete, uncompressed Spark event log>
# Env: TASKS (default 1000000) or BYTES (a target size instead), BENCH_DIR (default
# /tmp/history-api-bench), SPARK_HOME_BENCH (default $SPARK4_HOME), SHS_MEMORY (the History
# Server's heap, SPARK_DAEMON_MEMORY; default 4g, since its default 1g is too small for a
# million tasks in its in-memory store).
# Needs: `eval "$(bash scripts/install-test-tools.sh --print-env)"` for SPARK4_HOME.
set -euo pipefail
src=${1:?usage: api.sh <real uncompressed event log>}
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${BENCH_DIR:-/tmp/history-api-bench}
spark=${SPARK_HOME_BENCH:-${SPARK4_HOME:?run: eval \"\$(bash scripts/install-test-tools.sh --print-env)\"}}
target=${BYTES:+$BYTES}
target=${target:-tasks=${TASKS:-1000000}}
port=${BENCH_PORT:-18996}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/spark-sidecars/target}

mkdir -p "$work/dir"
# named after the application inside, as Spark names it (the collector lists a log only then)
app=$(grep -o -m1 '"App ID":"[^"]*"' "$src" | cut -d'"' -f4)
rm -f "$work"/dir/local-1795000000000 # the name earlier versions of this script used
log="$work/dir/$app"
if [ ! -s "$log" ] || [ "$(cat "$work/target" 2>/dev/null)" != "$target" ]; then
  python3 "$here/history-collector/tests/api_bench_gen.py" "$src" "$log" "$target" 1000 | tee "$work/gen.out"
  echo "$target" > "$work/target"
fi
echo "event log: $(stat -c %s "$log") bytes; $(cat "$work/gen.out")"

(cd "$here" && cargo build --release -q -p history-collector --example api_bench)
# both servers read the log from the page cache (the History Server runs second, after ours)
cat "$log" > /dev/null
/usr/bin/time -v "$CARGO_TARGET_DIR/release/examples/api_bench" "$work/dir" --save "$work/ours.jobs" > "$work/ours.out" 2>&1
echo "ours: $(grep answered "$work/ours.out"); $(grep 'Maximum resident' "$work/ours.out" | sed 's/^\s*//'); user $(grep 'User time' "$work/ours.out" | awk '{print $NF}') s, sys $(grep 'System time' "$work/ours.out" | awk '{print $NF}') s"

printf 'spark.history.fs.logDirectory file:%s\nspark.history.ui.port %s\nspark.history.fs.update.interval 1s\n' "$work/dir" "$port" > "$work/shs.props"
start=$(date +%s.%N)
SPARK_DAEMON_MEMORY=${SHS_MEMORY:-4g} SPARK_LOG_DIR="$work" SPARK_LOCAL_IP=127.0.0.1 \
  "$spark/bin/spark-class" org.apache.spark.deploy.history.HistoryServer --properties-file "$work/shs.props" > "$work/shs.out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; pkill -f "$work/shs.props" || true' EXIT
until id=$(curl -s "localhost:$port/api/v1/applications" | python3 -c 'import sys,json; print(json.load(sys.stdin)[0]["id"])' 2>/dev/null); do
  kill -0 $pid 2>/dev/null || { echo "History Server exited; see $work/shs.out"; exit 1; }
  sleep 0.2
done
listed=$(date +%s.%N)
curl -s -o "$work/shs.jobs" "localhost:$port/api/v1/applications/$id/jobs"
end=$(date +%s.%N)
jpid=$(pgrep -f "$work/shs.props" | while read -r p; do [ "$(cat /proc/$p/comm)" = java ] && echo "$p"; done | head -1)
echo "Spark History Server: listed after $(echo "$listed - $start" | bc) s; /jobs answered after $(echo "$end - $start" | bc) s ($(wc -c < "$work/shs.jobs") bytes); $(grep VmHWM /proc/$jpid/status | tr -s ' \t' ' '); cpu $(ps -o cputime= -p "$jpid")"
if cmp -s "$work/shs.jobs" "$work/ours.jobs"; then echo "answers: identical"; else echo "answers DIFFER: $work/shs.jobs vs $work/ours.jobs"; exit 1; fi
