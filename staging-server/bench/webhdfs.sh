#!/usr/bin/env bash
# WebHDFS against the v0 API, the same bytes both ways: the 1 GiB bench bundle (b1g.tgz,
# incompressible, as bench.sh makes it) uploaded and downloaded
# - through the v0 API with curl (multipart POST /api/v0/resources/, GET /api/v0/resources/<id>);
# - through Hadoop's own WebHDFS client from Spark 4.3's jars (OAuth2 with a credential:
#   FileSystem.copyFromLocalFile as Spark's upload does it, then FileSystem.open read whole),
#   timed inside the JVM (JVM start and the token exchange excluded: a warm-up MKDIRS first).
# Each run starts a fresh server (so its peak RSS is that run's), with fsync (the default).
# Prints a Markdown table: MB/s both ways, WebHDFS/v0 ratios, server peak RSS (VmHWM).
# Usage: staging-server/bench/webhdfs.sh [BIN_DIR] (default: $CARGO_TARGET_DIR/release).
# Needs SPARK4_HOME (eval "$(bash scripts/install-test-tools.sh --print-env)"), java, javac.
# RUNS (default 3) alternating pairs; BENCH_DIR holds the data (/tmp/staging-bench).
set -euo pipefail
bin=$(cd "${1:-${CARGO_TARGET_DIR:-target}/release}" && pwd)
src=$(cd "$(dirname "$0")/../tests/java" && pwd)
: "${SPARK4_HOME:?set SPARK4_HOME (eval \"\$(bash scripts/install-test-tools.sh --print-env)\")}"
work=${BENCH_DIR:-/tmp/staging-bench}
port=${BENCH_PORT:-18778}
runs=${RUNS:-3}
commit=$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)
mkdir -p "$work"; cd "$work"
[ -s b1g.tgz ] || { head -c 1024M /dev/urandom > payload.bin; tar cf - payload.bin | gzip -1 > b1g.tgz; rm -f payload.bin; }
size=$(stat -c %s b1g.tgz)
mkdir -p probe
javac -cp "$SPARK4_HOME/jars/*" -d probe "$src/WebHdfsProbe.java"
head -c 24 /dev/urandom | base64 > admin.token
owner='resourcesOwner={"ownerNamespace":"bench","ownerLabels":{},"ownerType":"Pod"};type=application/json'
pid=
stop() { [ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=; }; }
trap stop EXIT
serve() {
  rm -rf data; sync
  "$bin/staging-server" --bind 127.0.0.1 --port "$port" --data-dir "$work/data" --admin-token-file admin.token \
    --max-bundle-size 2GiB --max-file-size 2GiB ${BENCH_SERVER_ARGS:-} >server.log 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v0/ping" >/dev/null && return; sleep 0.1; done
  echo "server did not start"; cat server.log; exit 1
}
rss() { awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$pid/status"; }
now() { date +%s.%N; }
results=()
for run in $(seq "$runs"); do
  # v0
  serve
  t0=$(now); curl -sf -o up.json -F "resources=@b1g.tgz;type=multipart/form-data" -F "$owner" "http://127.0.0.1:$port/api/v0/resources/"; t1=$(now)
  id=$(python3 -c "import json;print(json.load(open('up.json'))['resourceId'])")
  sec=$(python3 -c "import json;print(json.load(open('up.json'))['resourceSecret'])")
  got=$(curl -sf -o /dev/null -w '%{size_download}' -H "Authorization: $sec" "http://127.0.0.1:$port/api/v0/resources/$id"); t2=$(now)
  [ "$got" = "$size" ] || { echo "v0 download size $got != $size"; exit 1; }
  v0=$(python3 -c "print('%.6f %.6f' % ($t1-$t0, $t2-$t1))"); v0rss=$(rss); stop
  # WebHDFS
  serve
  cred=$(curl -sf -H "Authorization: Bearer $(cat admin.token)" -d '{"namespace":"bench"}' "http://127.0.0.1:$port/api/v1/credentials" | python3 -c "import json,sys;print(json.load(sys.stdin)['credential'])")
  rm -f got.bin
  out=$(printf 'mkdirs\t/warm\nput\t%s\t/b/b1g.tgz\nget\t/b/b1g.tgz\t%s\n' "$work/b1g.tgz" "$work/got.bin" | java -Dprobe.timing=true \
    -Dhadoop.dfs.webhdfs.oauth2.enabled=true \
    -Dhadoop.dfs.webhdfs.oauth2.access.token.provider=org.apache.hadoop.hdfs.web.oauth2.ConfCredentialBasedAccessTokenProvider \
    -Dhadoop.dfs.webhdfs.oauth2.client.id=spark -Dhadoop.dfs.webhdfs.oauth2.credential="$cred" \
    -Dhadoop.dfs.webhdfs.oauth2.refresh.url="http://127.0.0.1:$port/oauth2/token" \
    -cp "probe:$SPARK4_HOME/jars/*" WebHdfsProbe "webhdfs://127.0.0.1:$port/" 2>/dev/null | grep -E '^(OK|ERR)')
  echo "$out" | grep -q '^ERR' && { echo "$out"; exit 1; }
  cmp -s got.bin b1g.tgz || { echo "WebHDFS download differs"; exit 1; }
  wh=$(echo "$out" | sed -n '2p;3p' | sed 's/.*ms=//' | tr '\n' ' ')
  whrss=$(rss); stop; rm -f got.bin
  results+=("$run $v0 $v0rss $wh $whrss")
done
python3 - "$size" "$commit" "$(uptime | sed 's/.*load average: //')" "${BENCH_SERVER_ARGS:-}" "${results[@]}" <<'EOF'
import sys, datetime
size, commit, load, args = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
print(f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, commit {commit}, load average {load}, server args `{args or 'default (fsync)'}`, {size} bytes")
print()
print("| run | v0 upload (curl) | WebHDFS upload (Hadoop client) | ratio | v0 download (curl) | WebHDFS download (Hadoop client) | ratio | peak RSS v0 / WebHDFS |")
print("|---|---|---|---|---|---|---|---|")
for line in sys.argv[5:]:
    run, vu, vd, vr, wu, wd, wr = line.split()
    vu, vd, wu, wd = float(vu), float(vd), float(wu) / 1000, float(wd) / 1000
    mb = lambda t: size / t / 1e6
    print(f"| {run} | {mb(vu):.0f} MB/s | {mb(wu):.0f} MB/s | {mb(wu)/mb(vu):.2f}x | {mb(vd):.0f} MB/s | {mb(wd):.0f} MB/s | {mb(wd)/mb(vd):.2f}x | {vr} / {wr} MiB |")
EOF
