#!/usr/bin/env bash
# Starts the three daemons on this machine with embedded defaults: local disk under one data
# directory, no S3, no Kubernetes. Ctrl-C (or SIGTERM) stops all three gracefully; the script
# then exits with the first non-zero exit status of a daemon, or 0.
#
#   SIDECARS_DATA_DIR   where everything is stored (default: ./sidecars-data)
#   SIDECARS_PROFILE    cargo profile to build (default: release; `dev` builds faster)
#   SIDECARS_BIN_DIR    use the binaries in this directory instead of building
#   STAGING_PORT, SHUFFLE_PORT, SHUFFLE_ADMIN_PORT, HISTORY_PORT   override the ports
#   SHUFFLE_AUTH, SHUFFLE_AUTH_SECRET_FILE   spark.authenticate for the shuffle service (default off)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spark-sidecars/target}"
profile="${SIDECARS_PROFILE:-release}"
data="$(realpath -m "${SIDECARS_DATA_DIR:-./sidecars-data}")"
mkdir -p "$data"/{staging,shuffle-state,shuffle-local,history,event-logs}

if [ -n "${SIDECARS_BIN_DIR:-}" ]; then
  bindir="$SIDECARS_BIN_DIR"   # prebuilt binaries (the test suite uses this)
else
  cargo build --quiet --profile "$profile" --bins
  bindir="$CARGO_TARGET_DIR/$([ "$profile" = dev ] && echo debug || echo "$profile")"
fi

pids=()
stopped=""
# SIGTERM to every daemon, then their exit status: the first non-zero one, else 0
stop() {
  [ -n "$stopped" ] && return "$stopped"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local rc=0 p s
  for p in "${pids[@]}"; do
    s=0; wait "$p" 2>/dev/null || s=$?
    # 127: reaped already by `wait -n` below, which reported it
    if [ "$s" -ne 0 ] && [ "$s" -ne 127 ] && [ "$rc" -eq 0 ]; then rc=$s; fi
  done
  stopped=$rc
  return "$rc"
}
trap 'stop && exit 0 || exit $?' INT TERM
trap 'stop || true' EXIT

"$bindir/staging-server" --storage "file://$data/staging" & pids+=($!)
# No secret here, so no spark.authenticate unless SHUFFLE_AUTH=required and
# SHUFFLE_AUTH_SECRET_FILE are set (docs/shuffle-service.md#authentication).
SHUFFLE_AUTH="${SHUFFLE_AUTH:-off}" "$bindir/shuffle-service" --state-dir "$data/shuffle-state" --allowed-root "$data/shuffle-local" --allowed-root /tmp & pids+=($!)
"$bindir/history-collector" --storage "file://$data/history" --event-log-dir "$data/event-logs" & pids+=($!)

host=$(hostname -I 2>/dev/null | awk '{print $1}'); host=${host:-127.0.0.1}
cat <<MSG
spark-sidecars running (data in $data):
  staging-server     http://127.0.0.1:${STAGING_PORT:-10000}/api/v0/ping
  shuffle-service    spark protocol on $host:${SHUFFLE_PORT:-7337}, metrics http://127.0.0.1:${SHUFFLE_ADMIN_PORT:-7338}/metrics
  history-collector  http://127.0.0.1:${HISTORY_PORT:-18080}/  (event logs from $data/event-logs)
Ctrl-C stops them.
MSG
set +e
wait -n "${pids[@]}"
rc=$?
echo "a daemon exited with status $rc; stopping the others" >&2
exit "$rc"
