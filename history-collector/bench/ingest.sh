#!/usr/bin/env bash
# Release-build ingest benchmarks of history-collector (figures in BENCHMARKS.md, section
# "history-collector ingest"): event-log throughput into file:// and into s3:// on a real
# Garage server, and memory while following 500 pod logs. The benchmark drivers are cargo
# tests marked #[ignore]; they start the collector binary named by HISTORY_COLLECTOR_BIN,
# here the release build.
#
#   bash history-collector/bench/ingest.sh            # both benchmarks
#   bash history-collector/bench/ingest.sh throughput # only ingest_bench_throughput
#   bash history-collector/bench/ingest.sh podlogs    # only ingest_bench_podlogs
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/spark-sidecars/target}
# GARAGE_BIN (the S3 server) and the other test tools
eval "$(bash scripts/install-test-tools.sh --print-env)"
cargo build --release -p history-collector --bin history-collector
export HISTORY_COLLECTOR_BIN="$CARGO_TARGET_DIR/release/history-collector"
export INGEST_TEST_LOG_LEVEL=${INGEST_TEST_LOG_LEVEL:-warn}
tests=()
case "${1:-all}" in
  throughput) tests=(--test ingest_bench_throughput) ;;
  podlogs) tests=(--test ingest_bench_podlogs) ;;
  all) tests=(--test ingest_bench_throughput --test ingest_bench_podlogs) ;;
  *) echo "usage: $0 [throughput|podlogs|all]" >&2; exit 2 ;;
esac
cargo test -p history-collector "${tests[@]}" -- --ignored --nocapture --test-threads 1
