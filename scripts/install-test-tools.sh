#!/usr/bin/env bash
# Installs everything the test suite needs, once, into a cache outside the clone:
#   - pyspark venvs for Spark 3.5 and 4.x (real Spark for the end-to-end tests)
#   - Garage, a real S3 server, built from crates.io
#   - Debian's chromium + chromedriver for the web UI tests
# Each step is skipped when its result is already cached, so a warm run costs seconds.
# Prints shell `export` lines for the paths it set up when called with --print-env.
set -euo pipefail

CACHE="${SIDECARS_CACHE:-$HOME/.cache/spark-sidecars}"
SPARK35_VERSION="${SPARK35_VERSION:-3.5.7}"
SPARK4_VERSION="${SPARK4_VERSION:-4.3.0}"
GARAGE_VERSION="${GARAGE_VERSION:-2.5.0}"
mkdir -p "$CACHE/tools"

log() { echo "[install-test-tools] $*" >&2; }

install_venv() {
  local version="$1" dir="$CACHE/venv-spark-$1"
  # the marker is written last, so a half-made venv is rebuilt rather than trusted
  if [ -f "$dir/.complete" ]; then return; fi
  log "creating pyspark $version venv in $dir"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "pyspark==$version"
  touch "$dir/.complete"
}

install_garage() {
  local bin="$CACHE/tools/garage-$GARAGE_VERSION/bin/garage"
  if [ -x "$bin" ]; then return; fi
  log "building garage $GARAGE_VERSION (about 15 minutes on 2 cores, once)"
  cargo install --quiet --locked garage --version "$GARAGE_VERSION" \
    --root "$CACHE/tools/garage-$GARAGE_VERSION" --target-dir "$CACHE/garage-build"
  rm -rf "$CACHE/garage-build"
}

install_chromium() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return; fi
  log "installing chromium and chromium-driver from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq chromium chromium-driver >/dev/null
}

what="${1:-all}"
case "$what" in
  --print-env)
    echo "export SPARK35_HOME=$CACHE/venv-spark-$SPARK35_VERSION/lib/python3.11/site-packages/pyspark"
    echo "export SPARK35_PYTHON=$CACHE/venv-spark-$SPARK35_VERSION/bin/python"
    echo "export SPARK4_HOME=$CACHE/venv-spark-$SPARK4_VERSION/lib/python3.11/site-packages/pyspark"
    echo "export SPARK4_PYTHON=$CACHE/venv-spark-$SPARK4_VERSION/bin/python"
    echo "export GARAGE_BIN=$CACHE/tools/garage-$GARAGE_VERSION/bin/garage"
    ;;
  spark) install_venv "$SPARK35_VERSION"; install_venv "$SPARK4_VERSION" ;;
  garage) install_garage ;;
  chromium) install_chromium ;;
  all)
    install_venv "$SPARK35_VERSION"
    install_venv "$SPARK4_VERSION"
    install_chromium
    install_garage
    ;;
  *) echo "usage: $0 [all|spark|garage|chromium|--print-env]" >&2; exit 2 ;;
esac
