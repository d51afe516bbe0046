#!/usr/bin/env bash
# Runs every test: installs what the tests need (pyspark venvs for Spark 3.5 and 4.x, the
# Garage S3 server, Chromium, the Kubernetes control plane), cached under ~/.cache/spark-sidecars,
# then the whole suite (tests/tests/kubernetes.rs brings a local Kubernetes up and down itself).
set -euo pipefail
cd "$(dirname "$0")/.."
export SIDECARS_CACHE="${SIDECARS_CACHE:-$HOME/.cache/spark-sidecars}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SIDECARS_CACHE/target}"
bash scripts/install-test-tools.sh all
eval "$(bash scripts/install-test-tools.sh --print-env)"
# the end-to-end tests start the daemons' binaries from here
cargo build --workspace --bins
export SIDECARS_BIN_DIR="$CARGO_TARGET_DIR/debug"
cargo test --workspace --no-fail-fast
