#!/usr/bin/env bash
# A real Kubernetes on this machine, no Docker needed (docs/local-kubernetes.md):
#   scripts/kube-local.sh up       etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
#                                  N nodes of sidecars-kubelet (pods run as processes); prints
#                                  `export KUBECONFIG=...` (an admin kubeconfig) on stdout
#   scripts/kube-local.sh down     stops everything; leaves no process, mount, network namespace,
#                                  veth or bridge behind, and deletes the cluster's data
#   scripts/kube-local.sh status   what runs
#   scripts/kube-local.sh example  up (if needed), deploy/ installed as docs/spark-on-k8s.md says,
#                                  a shuffle job with dynamic allocation submitted by stock
#                                  spark-submit (cluster mode, Spark 3.5.7), its pods deleted; prints
#                                  the history UI's address, where the finished application is
# Needs root (network namespaces, bind mounts). Traffic stays on this machine: the API server
# listens on 198.18.0.1:443 on a bridge with no uplink (RFC 2544 test range), etcd on loopback.
#
#   SIDECARS_KUBE_NODES   number of nodes (default 2)
#   SIDECARS_KUBE_NODE_CPU, SIDECARS_KUBE_NODE_MEMORY   what each node reports (default 2 CPUs,
#                         8Gi: the nodes share this machine's cores, so a few executors fill one)
#   SIDECARS_KUBE_DIR     state: certificates (kept), and run/ (deleted by down);
#                         default ~/.cache/spark-sidecars/kube-local
#   SIDECARS_BIN_DIR      the spark-sidecars binaries and sidecars-kubelet (default: built here,
#                         SIDECARS_PROFILE=release unless set to dev)
set -euo pipefail
cd "$(dirname "$0")/.."
export SIDECARS_CACHE="${SIDECARS_CACHE:-$HOME/.cache/spark-sidecars}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SIDECARS_CACHE/target}"
STATE="${SIDECARS_KUBE_DIR:-$SIDECARS_CACHE/kube-local}"
PKI="$STATE/pki"
RUN="$STATE/run"
NODES="${SIDECARS_KUBE_NODES:-2}"
NODE_CPU="${SIDECARS_KUBE_NODE_CPU:-2}"
NODE_MEMORY="${SIDECARS_KUBE_NODE_MEMORY:-8Gi}"
BRIDGE=sidecars0
HOST_IP=198.18.0.1
API_PORT=443
ETCD_CLIENT=127.0.0.1:23790
ETCD_PEER=127.0.0.1:23800

log() { echo "[kube-local] $*" >&2; }
die() { log "error: $*"; exit 1; }

node_ip() { echo "198.18.0.$((10 + $1))"; }

# --- certificates (made once; RSA/PKCS#1 keys, which every client here reads)
new_ca() {
  local name="$1" cn="$2"
  [ -f "$PKI/$name.crt" ] && return
  openssl genrsa -traditional -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$PKI/$name.key" -subj "/CN=$cn" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/$name.crt" 2>/dev/null
}

# new_cert NAME CN ORG(or "") SANS(or "") CA USAGE(serverAuth|clientAuth|both)
new_cert() {
  local name="$1" cn="$2" org="$3" sans="$4" ca="$5" usage="$6"
  [ -f "$PKI/$name.crt" ] && return
  local subj="/CN=$cn"; [ -n "$org" ] && subj="$subj/O=$org"
  local eku="serverAuth,clientAuth"
  [ "$usage" = serverAuth ] && eku=serverAuth
  [ "$usage" = clientAuth ] && eku=clientAuth
  openssl genrsa -traditional -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } > "$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

kubeconfig() { # NAME CERT
  local name="$1" cert="$2"
  cat > "$STATE/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: spark-sidecars-local
  cluster:
    server: https://$HOST_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: spark-sidecars-local
  context: {cluster: spark-sidecars-local, user: $name}
current-context: spark-sidecars-local
EOF
}

make_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  new_ca ca spark-sidecars-local-ca
  # signs the API server's kubelet client certificate and nothing else: kubelets accept only it
  new_ca kubelet-client-ca spark-sidecars-local-kubelet-client-ca
  new_cert apiserver kube-apiserver "" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$HOST_IP,IP:198.19.0.1,IP:127.0.0.1" \
    ca serverAuth
  new_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" kubelet-client-ca clientAuth
  new_cert admin kubernetes-admin system:masters "" ca clientAuth
  new_cert controller-manager system:kube-controller-manager "" "" ca clientAuth
  new_cert scheduler system:kube-scheduler "" "" ca clientAuth
  new_cert kube-proxy system:kube-proxy "" "" ca clientAuth
  for i in $(seq 1 "$NODES"); do
    new_cert "node-$i" "system:node:node-$i" system:nodes "" ca clientAuth
    new_cert "node-$i-serving" "node-$i" "" "IP:$(node_ip "$i"),DNS:node-$i" ca serverAuth
  done
  if [ ! -f "$PKI/sa.key" ]; then
    openssl genrsa -traditional -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kube-proxy kube-proxy
  for i in $(seq 1 "$NODES"); do kubeconfig "node-$i" "node-$i"; done
}

# --- processes: each runs in its own session, logs to $RUN/logs/NAME.log, pid in $RUN/NAME.pid
start() { # NAME CMD...
  local name="$1"; shift
  mkdir -p "$RUN/logs"
  setsid "$@" >"$RUN/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

alive() { # NAME
  local f="$RUN/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

stop() { # NAME TIMEOUT
  local f="$RUN/$1.pid" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $(( $2 * 10 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

wait_for() { # SECONDS DESCRIPTION CMD...
  local secs="$1" what="$2"; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then die "timed out after ${secs}s waiting for $what (logs in $RUN/logs)"; fi
    sleep 0.5
  done
}

tools() {
  eval "$(bash scripts/install-test-tools.sh --print-env)"
  if [ ! -x "$KUBE_BIN_DIR/kube-apiserver" ] || ! command -v etcd >/dev/null; then
    bash scripts/install-test-tools.sh kube
  fi
  if [ ! -x "$SPARK35_HOME/bin/spark-submit" ] || [ ! -x "$SPARK4_HOME/bin/spark-submit" ]; then
    bash scripts/install-test-tools.sh spark
  fi
  command -v kubectl >/dev/null || die "kubectl is not on PATH (docs/local-kubernetes.md)"
  if [ -n "${SIDECARS_BIN_DIR:-}" ]; then
    BIN="$SIDECARS_BIN_DIR"
  else
    local profile="${SIDECARS_PROFILE:-release}"
    log "building the daemons and sidecars-kubelet ($profile)"
    cargo build --quiet --profile "$profile" --bins
    BIN="$CARGO_TARGET_DIR/$([ "$profile" = dev ] && echo debug || echo "$profile")"
  fi
  [ -x "$BIN/sidecars-kubelet" ] || die "$BIN/sidecars-kubelet does not exist (cargo build -p sidecars-kubelet)"
}

kctl() { kubectl --kubeconfig "$STATE/admin.kubeconfig" "$@"; }

api_ready() {
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://$HOST_IP:$API_PORT/readyz" >/dev/null
}

nodes_ready() {
  [ "$(kctl get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" -ge "$NODES" ]
}

up() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces and bind mounts)"
  if alive kube-apiserver; then die "already up ($0 down first)"; fi
  local t0; t0=$(date +%s)
  tools
  mkdir -p "$STATE" "$RUN"
  make_pki
  # leftovers of an earlier run that was not brought down
  teardown quiet

  # a fixed MAC: a bridge otherwise takes the lowest of its ports' MACs, which changes as pods
  # come and go, and the pods' ARP entries for the API server's address go stale
  ip link add name "$BRIDGE" address 02:5c:5c:00:00:01 type bridge
  ip addr add "$HOST_IP/15" dev "$BRIDGE"
  ip link set "$BRIDGE" up

  start etcd etcd --name local --data-dir "$RUN/etcd" \
    --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
    --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
    --initial-cluster "local=http://$ETCD_PEER" --log-level warn
  # the flags kube-apiserver, kube-controller-manager and kube-scheduler 1.20 need to listen
  # nowhere but where we say, and to talk JSON (scripts/kube/*.patch: the patched API fields
  # have no protobuf encoding)
  start kube-apiserver "$KUBE_BIN_DIR/kube-apiserver" \
    --advertise-address="$HOST_IP" --bind-address="$HOST_IP" --secure-port="$API_PORT" --insecure-port=0 \
    --etcd-servers="http://$ETCD_CLIENT" --storage-media-type=application/json \
    --service-cluster-ip-range=198.19.0.0/16 \
    --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --allow-privileged=true --profiling=false --cert-dir="$RUN/apiserver"
  wait_for 90 "the API server" api_ready
  start kube-controller-manager "$KUBE_BIN_DIR/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" --kube-api-content-type=application/json \
    --port=0 --secure-port=0 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" --profiling=false
  start kube-scheduler "$KUBE_BIN_DIR/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" --kube-api-content-type=application/json \
    --port=0 --secure-port=0 --leader-elect=false --profiling=false
  kctl apply -f scripts/kube/cluster.yaml >/dev/null
  start provisioner "$BIN/sidecars-kubelet" provisioner --kubeconfig "$STATE/admin.kubeconfig" --root "$RUN/volumes"
  local spark_homes=(
    --spark-home "3.5.7=$SPARK35_HOME:$(dirname "$SPARK35_PYTHON")"
    --spark-home "4.3.0=$SPARK4_HOME:$(dirname "$SPARK4_PYTHON")"
  )
  for i in $(seq 1 "$NODES"); do
    start "node-$i" "$BIN/sidecars-kubelet" node --name "node-$i" --index "$i" \
      --kubeconfig "$STATE/node-$i.kubeconfig" --proxy-kubeconfig "$STATE/kube-proxy.kubeconfig" \
      --root-dir "$RUN/nodes/node-$i" --bridge "$BRIDGE" \
      --tls-cert "$PKI/node-$i-serving.crt" --tls-key "$PKI/node-$i-serving.key" \
      --client-ca "$PKI/kubelet-client-ca.crt" --api-server-ip "$HOST_IP" --api-server-port "$API_PORT" \
      --cpu "$NODE_CPU" --memory "$NODE_MEMORY" "${spark_homes[@]}" --sidecars-bin-dir "$BIN"
  done
  wait_for 120 "$NODES Ready nodes" nodes_ready
  # the token controller has made the default service account (pods need it)
  wait_for 60 "the default service account" kctl -n default get serviceaccount default
  log "up in $(( $(date +%s) - t0 ))s: $NODES nodes; admin kubeconfig $STATE/admin.kubeconfig"
  echo "export KUBECONFIG=$STATE/admin.kubeconfig"
}

# Stops everything and removes every trace; "quiet" for the sweep before up.
teardown() {
  local quiet="${1:-}"
  for f in "$RUN"/node-*.pid; do [ -e "$f" ] && stop "$(basename "$f" .pid)" 40; done
  for name in provisioner kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$name" 15; done
  # containers of a node that was killed before it could stop them
  for f in "$RUN"/nodes/*/pods/*/containers/*/pid; do
    [ -e "$f" ] || continue
    local pid; pid="$(cat "$f")"
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q container-init; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^sidecars-' || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  local link
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(sk[0-9a-f]{12}p?|skn[0-9]+p?)$' || true); do
    ip link del "$link" 2>/dev/null || true
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  # mounts live in the containers' own mount namespaces, gone with them; check anyway
  if [ -d "$RUN" ] && grep -q " $RUN" /proc/self/mountinfo 2>/dev/null; then
    grep " $RUN" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  fi
  rm -rf "$RUN"
  [ -n "$quiet" ] || log "down: nothing left running"
}

status() {
  local any=0 name
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    name="$(basename "$f" .pid)"
    if alive "$name"; then echo "$name: running (pid $(cat "$f"))"; any=1; else echo "$name: dead"; fi
  done
  if [ "$any" = 0 ]; then echo "not running"; return 0; fi
  # only with the bridge up: 198.18.0.1 must never be sought beyond this machine
  if ip link show "$BRIDGE" >/dev/null 2>&1 && api_ready 2>/dev/null; then kctl get nodes -o wide; fi
  echo "export KUBECONFIG=$STATE/admin.kubeconfig"
}

example() {
  if ! alive kube-apiserver; then up >/dev/null; else tools; fi
  log "installing deploy/ (kubectl apply -k deploy/)"
  kctl apply -k deploy/ >/dev/null
  kctl -n spark-sidecars rollout status deploy/staging-server deploy/history-collector ds/shuffle-service --timeout=300s >&2
  kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: spark-apps}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: spark, namespace: spark-apps}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: spark-edit, namespace: spark-apps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{kind: ServiceAccount, name: spark, namespace: spark-apps}]
EOF
  # pods see this machine's files: the job goes in a directory they may read
  mkdir -p "$RUN/apps" && chmod 755 "$RUN/apps"
  install -m 644 tests/spark-apps/shuffle_da.py "$RUN/apps/shuffle_da.py"
  local name; name="example-$(date +%s)"
  log "submitting $name (Spark 3.5.7, cluster mode, deploy/spark/spark-defaults.conf)"
  KUBECONFIG="$STATE/admin.kubeconfig" "$SPARK35_HOME/bin/spark-submit" \
    --master "k8s://https://$HOST_IP:$API_PORT" --deploy-mode cluster --name "$name" \
    --properties-file deploy/spark/spark-defaults.conf \
    --conf spark.kubernetes.namespace=spark-apps \
    --conf spark.kubernetes.authenticate.driver.serviceAccountName=spark \
    --conf spark.kubernetes.container.image=apache/spark:3.5.7 \
    --conf spark.driver.memory=512m --conf spark.executor.memory=512m \
    --conf spark.kubernetes.driver.request.cores=0.5 --conf spark.kubernetes.executor.request.cores=0.5 \
    --conf spark.dynamicAllocation.initialExecutors=4 --conf spark.dynamicAllocation.maxExecutors=4 \
    --conf spark.dynamicAllocation.executorIdleTimeout=3s \
    "local://$RUN/apps/shuffle_da.py" >"$RUN/logs/$name.submit.log" 2>&1 \
    || die "spark-submit failed (see $RUN/logs/$name.submit.log)"
  local app ui
  app="$(kctl -n spark-apps get pods -l "spark-app-name=$name,spark-role=driver" -o jsonpath='{.items[0].metadata.labels.spark-app-selector}')"
  kctl -n spark-apps delete pods,services,configmaps -l "spark-app-name=$name" --wait=true >/dev/null
  ui="$(kctl -n spark-sidecars get pods -l app.kubernetes.io/name=history-collector -o jsonpath='{.items[0].status.podIP}')"
  log "$name ($app) finished; all its pods are deleted"
  echo "history UI: http://$ui:18080/  (application $app: http://$ui:18080/history/$app/)"
  echo "export KUBECONFIG=$STATE/admin.kubeconfig"
}

case "${1:-}" in
  up) up ;;
  down) teardown ;;
  status) status ;;
  example) example ;;
  *) echo "usage: $0 up|down|status|example" >&2; exit 2 ;;
esac
