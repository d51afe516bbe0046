#!/usr/bin/env bash
# Fetch throughput of our shuffle-service against Spark's own Java ExternalShuffleService, both
# driven by Spark's own client (ExternalBlockStoreClient) on the same shuffle files, in one run.
#
#   bash shuffle-service/bench/bench.sh            # every case
#   CASES=small bash shuffle-service/bench/bench.sh
#
# Cases: small (20,000 blocks of 4 KiB) and large (512 of 4 MiB) without authentication, and
# the same with spark.authenticate on both sides: small-sasl (SASL DIGEST-MD5, QOP auth) and
# large-ctr (the AuthEngine handshake, then AES-CTR network crypto). The authenticated cases
# run against a second pair of services that require authentication with a shared secret
# (Spark's: spark.authenticate=true, spark.network.crypto.enabled=true, which also takes SASL
# clients), so each pair's peak RSS covers its own cases.
#
# Needs SPARK4_HOME (scripts/install-test-tools.sh --print-env), javac, and a release build of
# shuffle-service (built here). Prints a markdown table; raw per-round lines go to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${SPARK4_HOME:?SPARK4_HOME is not set: eval \"\$(bash scripts/install-test-tools.sh --print-env)\"}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/spark-sidecars/target}
CASES=${CASES:-"small large small-sasl large-ctr"}
ROUNDS=${ROUNDS:-3}
INFLIGHT=${INFLIGHT:-8}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
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
mkdir -p "$root" "$work/state" "$work/state-auth"
secret=bench-shared-secret
printf '%s\n' "$secret" >"$work/secret"
chmod 600 "$work/secret"

# Starts our service and Spark's, both serving $root; "auth" makes both require
# spark.authenticate with $secret. Sets ours_port/ours_pid/spark_port/spark_pid.
start_pair() {
  local sec=$1 ours_args=() spark_opts=""
  if [ "$sec" = auth ]; then
    ours_args=(--auth required --auth-secret-file "$work/secret" --state-dir "$work/state-auth")
    spark_opts="-Dspark.authenticate=true -Dspark.authenticate.secret=$secret -Dspark.network.crypto.enabled=true"
  else
    ours_args=(--auth off --state-dir "$work/state")
  fi
  ours_port=$(free_port)
  "$ours_bin" --bind 127.0.0.1 --port "$ours_port" --admin-port "$(free_port)" \
    --allowed-root "$root" --no-kube --log-level warn "${ours_args[@]}" \
    >"$work/ours-$sec.log" 2>&1 &
  ours_pid=$!
  pids+=("$ours_pid")
  spark_port=$(free_port)
  SPARK_SHUFFLE_OPTS="-Dspark.shuffle.service.port=$spark_port -Dspark.local.dir=$root $spark_opts" \
    SPARK_LOG_DIR=$work/spark-logs-$sec SPARK_NO_DAEMONIZE=1 \
    "$SPARK4_HOME/bin/spark-class" org.apache.spark.deploy.ExternalShuffleService \
    >"$work/spark-$sec.log" 2>&1 &
  spark_pid=$!
  pids+=("$spark_pid")
  wait_port "$ours_port"
  wait_port "$spark_port"
}

results=$work/results.tsv
: >"$results"
# Both services of a pair start before any file exists and serve all of that pair's cases, so
# each one's peak RSS covers them.
for sec in plain auth; do
  started=
  for c in $CASES; do
    case $c in
      small) maps=500 reducers=40 size=4096 auth=none csec=plain ;;            # 20,000 x 4 KiB
      large) maps=64 reducers=8 size=4194304 auth=none csec=plain ;;         # 512 x 4 MiB (2 GiB)
      small-sasl) maps=500 reducers=40 size=4096 auth=sasl csec=auth ;;
      large-ctr) maps=64 reducers=8 size=4194304 auth=ctr csec=auth ;;
      *) echo "unknown case $c" >&2; exit 2 ;;
    esac
    [ "$csec" = "$sec" ] || continue
    if [ -z "$started" ]; then start_pair "$sec"; started=1; fi
    d="$root/$c"
    dirs="$d/blockmgr-00000000-0000-0000-0000-000000000001,$d/blockmgr-00000000-0000-0000-0000-000000000002"
    java -cp "$cp" ShuffleBench gen --dirs "$dirs" --maps $maps --reducers $reducers --block-size $size
    java -cp "$cp" ShuffleBench run --case "$c" --dirs "$dirs" --maps $maps --reducers $reducers \
      --block-size $size --inflight "$INFLIGHT" --rounds "$ROUNDS" --auth "$auth" --secret "$secret" \
      --targets "spark:$spark_port:$spark_pid,ours:$ours_port:$ours_pid" | tee -a "$results"
    rm -rf "$d"
  done
done

echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet HEAD -- shuffle-service || echo '+changes'), load average before: $load0, after: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
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
