#!/usr/bin/env bash
# Installs everything the test suite needs, once, into a cache outside the clone:
#   - pyspark venvs for Spark 3.5 and 4.x (real Spark for the end-to-end tests)
#   - Garage, a real S3 server, built from crates.io
#   - Debian's chromium + chromedriver for the web UI tests
#   - a real Kubernetes control plane: Debian's etcd-server, and kube-apiserver,
#     kube-controller-manager and kube-scheduler built from Debian's `kubernetes` source package
#     (1.20.2) with the patches in scripts/kube/ (about 40 minutes of CPU, once)
# Each step is skipped when its result is already cached, so a warm run costs seconds.
# Prints shell `export` lines for the paths it set up when called with --print-env.
set -euo pipefail

CACHE="${SIDECARS_CACHE:-$HOME/.cache/spark-sidecars}"
SPARK35_VERSION="${SPARK35_VERSION:-3.5.7}"
SPARK4_VERSION="${SPARK4_VERSION:-4.3.0}"
GARAGE_VERSION="${GARAGE_VERSION:-2.5.0}"
# Debian bookworm's source package; "1.20.5+really1.20.2" is Kubernetes 1.20.2
KUBE_VERSION=1.20.2
KUBE_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
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

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "$@" >/dev/null
}

# The control-plane recipe: this step's code and the patch. Any change to either gives a new
# directory, so a cached build is reused exactly when it was made by the same recipe.
kube_recipe_hash() {
  { declare -f install_kube build_kube; cat "$SCRIPTS_DIR"/kube/*.patch; } | sha256sum | cut -c1-12
}

kube_dir() { echo "$CACHE/tools/kube-$KUBE_VERSION-$(kube_recipe_hash)"; }

install_kube() {
  # etcd and the Go toolchain come from Debian; kubectl is the one on PATH (see docs/local-kubernetes.md)
  if ! command -v etcd >/dev/null 2>&1 || ! command -v go >/dev/null 2>&1; then
    log "installing etcd-server and golang-go from Debian"
    apt_install etcd-server golang-go
  fi
  if ! command -v kubectl >/dev/null 2>&1; then
    log "kubectl is not on PATH: the local Kubernetes needs kubectl >= 1.21 (kustomize components)"
    exit 1
  fi
  local dir; dir="$(kube_dir)"
  # the marker is written last and the binaries are checked against their recorded sums, so a
  # half-made or damaged build is redone rather than trusted
  if [ -f "$dir/.complete" ] && (cd "$dir/bin" && sha256sum --quiet --strict -c ../SHA256SUMS >/dev/null 2>&1); then
    return
  fi
  log "building the Kubernetes $KUBE_VERSION control plane into $dir (about 40 minutes on 2 cores, once)"
  rm -rf "$dir"
  local work="$CACHE/kube-build"
  rm -rf "$work"
  mkdir -p "$work"
  (build_kube "$work" "$dir")
  (cd "$dir/bin" && sha256sum kube-apiserver kube-controller-manager kube-scheduler > ../SHA256SUMS)
  touch "$dir/.complete"
  # the source tree and the Go build cache are several GB and only needed for this build
  rm -rf "$work"
  # older recipes' builds are dead weight
  find "$CACHE/tools" -maxdepth 1 -name "kube-$KUBE_VERSION-*" ! -path "$dir" -exec rm -rf {} +
}

build_kube() {
  local work="$1" dir="$2"
  if ! [ -f /etc/apt/sources.list.d/sidecars-bookworm-src.sources ]; then
    cat > /etc/apt/sources.list.d/sidecars-bookworm-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq >/dev/null
  fi
  command -v dpkg-source >/dev/null 2>&1 || apt_install dpkg-dev
  (cd "$work" && apt-get source --download-only -qq "kubernetes=$KUBE_DEB_VERSION" >/dev/null 2>&1)
  local src="$work/gopath/src/k8s.io/kubernetes"
  mkdir -p "$(dirname "$src")"
  dpkg-source --no-check -x "$work/kubernetes_$KUBE_DEB_VERSION.dsc" "$src" >/dev/null
  # scripts/kube/*.patch: each says what it changes and why
  local p
  for p in "$SCRIPTS_DIR"/kube/*.patch; do patch -d "$src" -p1 --quiet < "$p"; done
  # GOPATH mode: the tree's vendor/ is used as it is
  export GOPATH="$work/gopath" GOCACHE="$work/gocache" GO111MODULE=off
  cd "$src"
  # kube-apiserver serves the OpenAPI schema generated from every API package carrying a
  # +k8s:openapi-gen tag (grep -R follows vendor/'s symlinks into staging/)
  go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  local pkgs
  pkgs="$(grep -Rl --include='*.go' '+k8s:openapi-gen=' vendor pkg cmd plugin | xargs -n1 dirname | sort -u \
    | grep -v -e code-generator -e sample-apiserver | sed 's#^#k8s.io/kubernetes/#' | paste -sd, -)"
  "$work/openapi-gen" -i "$pkgs" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$work/api-violations.txt" \
    -o "$GOPATH/src" >"$work/openapi-gen.log" 2>&1 || { tail -20 "$work/openapi-gen.log" >&2; return 1; }
  # the version the binaries report (GET /version), as the upstream build stamps it
  local v=k8s.io/kubernetes/vendor/k8s.io/component-base/version
  local ldflags="-s -w -X $v.gitVersion=v$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=20 -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  mkdir -p "$dir/bin"
  go build -ldflags "$ldflags" -o "$dir/bin/" ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler
}

what="${1:-all}"
case "$what" in
  --print-env)
    echo "export SPARK35_HOME=$CACHE/venv-spark-$SPARK35_VERSION/lib/python3.11/site-packages/pyspark"
    echo "export SPARK35_PYTHON=$CACHE/venv-spark-$SPARK35_VERSION/bin/python"
    echo "export SPARK4_HOME=$CACHE/venv-spark-$SPARK4_VERSION/lib/python3.11/site-packages/pyspark"
    echo "export SPARK4_PYTHON=$CACHE/venv-spark-$SPARK4_VERSION/bin/python"
    echo "export GARAGE_BIN=$CACHE/tools/garage-$GARAGE_VERSION/bin/garage"
    echo "export KUBE_BIN_DIR=$(kube_dir)/bin"
    ;;
  spark) install_venv "$SPARK35_VERSION"; install_venv "$SPARK4_VERSION" ;;
  garage) install_garage ;;
  chromium) install_chromium ;;
  kube) install_kube ;;
  all)
    install_venv "$SPARK35_VERSION"
    install_venv "$SPARK4_VERSION"
    install_chromium
    install_garage
    install_kube
    ;;
  *) echo "usage: $0 [all|spark|garage|chromium|kube|--print-env]" >&2; exit 2 ;;
esac
