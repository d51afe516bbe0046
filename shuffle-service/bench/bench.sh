#!/usr/bin/env bash
# Fetch throughput of our shuffle-service against Spark's own Java ExternalShuffleService, both
# driven by Spark's own client (ExternalBlockStoreClient) on the same shuffle files, in one run.
#
#   bash shuffle-service/bench/bench.sh            # both cases
#   CASES=small bash shuffle-service/bench/bench.sh
#
# Needs SPARK4_HOME (scripts/install-test-tools.sh --print-env), javac, and a release build of
# shuffle-service (built here). Prints a markdown table; raw per-round lines go to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${SPARK4_HOME:?SPARK4_HOME is not set: eval \"\$(bash scripts/install-test-tools.sh --print-env)\"}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/spark-sidecars/target}
CASES=${CASES:-"small large"}
ROUNDS=${ROUNDS:-3}
INFLIGHT=${INFLIGHT:-8}

work=$(mktemp -d "${TMPDIR:-/tmp}/shuffle-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# SKIP_BUILD=1 uses the release binary as it is (another build may hold cargo's lock).
[ "${SKIP_BUILD:-}" = 1 ] || (cd "$repo" && cargo build --release -q -p shuffle-service)
ours_bin=$CARGO_TARGET_DIR/release/shuffle-service

mkdir -p "$work/classes"
javac -nowarn -d "$work/classes" -cp "$SPARK4_HOME/jars/*" "$here/ShuffleBench.java"
cp="$work/classes:$SPARK4_HOME/jars/*"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  return 1
}

root=$work/root
mkdir -p "$root" "$work/state"

# Both services start before any file exists and serve every case, so each one's peak RSS
# covers the whole run.
ours_port=$(free_port)
"$ours_bin" --bind 127.0.0.1 --port "$ours_port" --admin-port "$(free_port)" \
  --allowed-root "$root" --state-dir "$work/state" --no-kube --log-level warn \
  >"$work/ours.log" 2>&1 &
ours_pid=$!
pids+=("$ours_pid")

spark_port=$(free_port)
SPARK_SHUFFLE_OPTS="-Dspark.shuffle.service.port=$spark_port -Dspark.local.dir=$root" \
  SPARK_LOG_DIR=$work/spark-logs SPARK_NO_DAEMONIZE=1 \
  "$SPARK4_HOME/bin/spark-class" org.apache.spark.deploy.ExternalShuffleService \
  >"$work/spark.log" 2>&1 &
spark_pid=$!
pids+=("$spark_pid")
wait_port "$ours_port"
wait_port "$spark_port"

results=$work/results.tsv
: >"$results"
for c in $CASES; do
  case $c in
    small) maps=500 reducers=40 size=4096 ;;       # 20,000 blocks of 4 KiB
    large) maps=64 reducers=8 size=4194304 ;;      # 512 blocks of 4 MiB (2 GiB)
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
  dirs="$root/$c/blockmgr-1,$root/$c/blockmgr-2"
  java -cp "$cp" ShuffleBench gen --dirs "$dirs" --maps $maps --reducers $reducers --block-size $size
  java -cp "$cp" ShuffleBench run --case "$c" --dirs "$dirs" --maps $maps --reducers $reducers \
    --block-size $size --inflight "$INFLIGHT" --rounds "$ROUNDS" \
    --targets "spark:$spark_port:$spark_pid,ours:$ours_port:$ours_pid" | tee -a "$results"
done

echo
echo "| case | service | blocks | blocks/s | MB/s | server CPU s | server CPU µs/block | client CPU s | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
while IFS=$'\t' read -r c svc blocks bytes secs bps mbps cpu cpub ccpu hwm; do
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %d |\n' \
    "$c" "$svc" "$blocks" "$bps" "$mbps" "$cpu" "$cpub" "$ccpu" $((hwm / 1024))
done <"$results"
echo
awk -F'\t' '
  { k = $1; if ($2 == "ours") { ob[k] = $6; om[k] = $7; or[k] = $11 } else { sb[k] = $6; sm[k] = $7; sr[k] = $11 } }
  END { for (k in ob) printf "%s: ours/spark blocks/s %.2fx, MB/s %.2fx, peak RSS %.3fx\n", k, ob[k]/sb[k], om[k]/sm[k], or[k]/sr[k] }
' "$results"
