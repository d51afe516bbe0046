#!/usr/bin/env bash
# Restart recovery of our shuffle-service (release build): register APPS x EXECUTORS executors
# with Spark's own client, kill -9 the service, start it again on the same --state-dir, and
# report how long restoring the registrations took before the port opened.
#
#   bash shuffle-service/bench/restore.sh          # 100 apps x 100 executors = 10,000
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${SPARK4_HOME:?SPARK4_HOME is not set: eval \"\$(bash scripts/install-test-tools.sh --print-env)\"}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/spark-sidecars/target}
APPS=${APPS:-100}
EXECUTORS=${EXECUTORS:-100}

work=$(mktemp -d "${TMPDIR:-/tmp}/shuffle-restore.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# SKIP_BUILD=1 uses the release binary as it is (another build may hold cargo's lock).
[ "${SKIP_BUILD:-}" = 1 ] || (cd "$repo" && cargo build --release -q -p shuffle-service)
bin=$CARGO_TARGET_DIR/release/shuffle-service
mkdir -p "$work/classes" "$work/root"
javac -nowarn -d "$work/classes" -cp "$SPARK4_HOME/jars/*" "$here/ShuffleBench.java"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port=$(free_port)
admin_port=$(free_port)
start() {
  "$bin" --bind 127.0.0.1 --port "$port" --admin-port "$admin_port" --allowed-root "$work/root" \
    --state-dir "$work/state" --no-kube --auth off >"$1" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.01
  done
  echo "port $port did not open" >&2
  exit 1
}

start "$work/first.log"
java -cp "$work/classes:$SPARK4_HOME/jars/*" ShuffleBench register --port "$port" \
  --root "$work/root" --apps "$APPS" --executors "$EXECUTORS"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
t0=$(date +%s%N)
start "$work/second.log"
t1=$(date +%s%N)
echo "from exec to the port accepting: $(( (t1 - t0) / 1000000 )) ms (polled every 10 ms)"
sed 's/\x1b\[[0-9;]*m//g' "$work/second.log" | grep -o 'executors=[0-9]* took_ms=[0-9]*' ||
  { cat "$work/second.log"; exit 1; }
echo "second start, log up to the port opening:"
sed 's/\x1b\[[0-9;]*m//g' "$work/second.log" | sed -n '1,/listening/p'
