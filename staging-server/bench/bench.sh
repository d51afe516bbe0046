#!/usr/bin/env bash
# Loopback benchmark of the staging server: a 1 GiB bundle up and down (MB/s, server peak RSS),
# then 200 concurrent downloads of a 50 MiB bundle (all must succeed, byte counts checked).
# Usage: staging-server/bench/bench.sh [BIN_DIR] (default: $CARGO_TARGET_DIR/release).
# BENCH_SERVER_ARGS adds server flags (e.g. --no-fsync); BENCH_DIR holds the data (same disk as
# the store, so what is measured is that disk).
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/release}
work=${BENCH_DIR:-/tmp/staging-bench}
port=${BENCH_PORT:-18777}
mkdir -p "$work"; cd "$work"
owner='resourcesOwner={"ownerNamespace":"bench","ownerLabels":{},"ownerType":"Pod"};type=application/json'
mk() { # size-MiB out.tgz: incompressible payload, gzip -1 (like jars: already compressed)
  [ -s "$2" ] || { head -c "$1M" /dev/urandom > payload.bin; tar cf - payload.bin | gzip -1 > "$2"; rm -f payload.bin; }
}
mk 1024 b1g.tgz; mk 50 b50.tgz
# start with nothing of an earlier run (or of making the bundles) still being written, and
# measure what the disk does with the same bytes: copied and fsynced by dd, just before
rm -rf data; sync
dd if=b1g.tgz of=dd.tmp bs=1M conv=fsync 2>&1 | awk -F, 'END{print "disk: dd conv=fsync of the 1 GiB bundle:" $NF}'; rm -f dd.tmp; sync
"$bin/staging-server" --bind 127.0.0.1 --port "$port" --data-dir "$work/data" --max-bundle-size 2GiB ${BENCH_SERVER_ARGS:-} >server.log 2>&1 &
pid=$!; trap 'kill $pid' EXIT; sleep 1
up() { curl -sf -o "$2" -F "resources=@$1;type=multipart/form-data" -F "$owner" "http://127.0.0.1:$port/api/v0/resources/"; }
field() { python3 -c "import json,sys;print(json.load(open('$1'))['$2'])"; }
size=$(stat -c %s b1g.tgz)
t0=$(date +%s.%N); up b1g.tgz up.json; t1=$(date +%s.%N)
id=$(field up.json resourceId); sec=$(field up.json resourceSecret)
got=$(curl -sf -o /dev/null -w '%{size_download}' -H "Authorization: $sec" "http://127.0.0.1:$port/api/v0/resources/$id"); t2=$(date +%s.%N)
[ "$got" = "$size" ] || { echo "download size $got != $size"; exit 1; }
python3 -c "s=$size;print('1 GiB bundle: upload %.0f MB/s, download %.0f MB/s' % (s/($t1-$t0)/1e6, s/($t2-$t1)/1e6))"
grep VmHWM "/proc/$pid/status"
up b50.tgz up50.json; id=$(field up50.json resourceId); sec=$(field up50.json resourceSecret); s50=$(stat -c %s b50.tgz)
rm -f dl.txt; t0=$(date +%s.%N)
pids=()
for i in $(seq 200); do curl -s -o /dev/null -w '%{http_code} %{size_download}\n' -H "Authorization: $sec" "http://127.0.0.1:$port/api/v0/resources/$id" >> dl.txt & pids+=($!); done
wait "${pids[@]}"
t1=$(date +%s.%N)
ok=$(grep -c "^200 $s50\$" dl.txt || true)
python3 -c "print('200 concurrent 50 MiB downloads: %d/200 complete, %.1f s, %.0f MB/s aggregate' % ($ok, $t1-$t0, 200*$s50/($t1-$t0)/1e6))"
grep VmHWM "/proc/$pid/status"
[ "$ok" = 200 ]
