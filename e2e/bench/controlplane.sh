#!/usr/bin/env bash
# The benchmark's own control plane: etcd, kube-apiserver and kube-controller-manager (job,
# garbage-collector, serviceaccount and ttl-after-finished controllers), on loopback ports of
# their own, so the shared e2e cluster is never touched. No kubelet, no scheduler: the bench
# harness binds pods itself and writes their status.
#
#   e2e/bench/controlplane.sh up      fresh state, certificates, start, wait for /readyz
#   e2e/bench/controlplane.sh down    stop everything this script started (pid files), keep logs
#   e2e/bench/controlplane.sh env     KUBECONFIG lines (admin, operator)
#
# Reuses the cached Kubernetes binaries of e2e/cluster (same versions, built by
# e2e/cluster/build-binaries.sh when missing). State in ${SBOMJOB_BENCH_DIR:-/tmp/sbomjob-bench}.
set -euo pipefail
# shellcheck source=../cluster/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib/common.sh"
# shellcheck source=../cluster/lib/pki.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib/pki.sh"

BENCH=${SBOMJOB_BENCH_DIR:-/tmp/sbomjob-bench}
CP=$BENCH/cp
# Not the e2e cluster's PKI (common.sh): the bench's own, for lib/pki.sh.
PKI=$CP/pki
BLOGS=$CP/logs
BPIDS=$CP/pids
ETCD_URL=http://127.0.0.1:22379
ETCD_PEER=http://127.0.0.1:22380
API_PORT=16443
API_URL=https://127.0.0.1:$API_PORT
KCM_PORT=20257
# Limits raised for 10,000 pods: the API server's concurrency, and the controller manager's
# client rate (the job controller must not be what the bench measures).
MAX_INFLIGHT=800
MAX_MUTATING_INFLIGHT=400
KCM_QPS=500
KCM_BURST=1000
# The audit log is rotated at this size (MB). 0 is not "never": the log writer (lumberjack) takes
# it as its default of 100 MB, and at 100,000 pods the operator's requests are more than that, so
# the start of the run went to a backup file. Big enough not to rotate; the harness reads backups
# too.
AUDIT_LOG_MAX_MB=100000
# The operator's user: its own client certificate, so the audit log can pick its requests.
OPERATOR_USER=sbomjob-operator

# Read by log() of hack/lib.sh (sourced through lib/common.sh).
# shellcheck disable=SC2034
LOG_TAG=bench-cp
bstart() { daemon_start "$BPIDS" "$BLOGS" "$@"; }
bstop() { daemon_stop "$BPIDS" "$1" 15; }

pki() {
  mkdir -p "$PKI"
  pki_ca ca sbomjob-bench-ca
  pki_cert apiserver "/CN=kube-apiserver" serverAuth "DNS:localhost,IP:127.0.0.1"
  pki_cert admin "/O=system:masters/CN=sbomjob-bench-admin" clientAuth
  # system:masters like the admin: both land in the same (exempt) API priority level, so the
  # operator and the raw patch loop are compared under the same server-side limits.
  pki_cert "$OPERATOR_USER" "/O=system:masters/CN=$OPERATOR_USER" clientAuth
  # One identity for all of its controllers (no per-controller service-account tokens here).
  pki_cert controller-manager "/O=system:masters/CN=system:kube-controller-manager" clientAuth
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  chmod 0600 "$PKI"/*.key
  pki_kubeconfig "$BENCH/admin.kubeconfig" admin "$API_URL" sbomjob-bench
  pki_kubeconfig "$BENCH/operator.kubeconfig" "$OPERATOR_USER" "$API_URL" sbomjob-bench
  pki_kubeconfig "$CP/controller-manager.kubeconfig" controller-manager "$API_URL" sbomjob-bench
}

audit_policy() {
  # Metadata for the operator's requests only; nothing for the harness or the controllers.
  cat >"$CP/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["$OPERATOR_USER"]
- level: None
EOF
}

cmd_up() {
  have_bins() { [[ -x $K8S_BIN_DIR/kube-apiserver && -x $K8S_BIN_DIR/kube-controller-manager && -x $K8S_BIN_DIR/etcd ]]; }
  # Its exit code is not what matters (its last step is a cache clean-up): the binaries are.
  have_bins || "$E2E_CLUSTER_DIR/build-binaries.sh" >&2 || true
  have_bins || { log "no Kubernetes binaries in $K8S_BIN_DIR"; exit 1; }
  cmd_down 2>/dev/null || true
  for p in 22379 22380 $API_PORT $KCM_PORT; do
    if [[ -n $(ss -Hltn "sport = :$p") ]]; then log "port $p is in use"; exit 1; fi
  done
  rm -rf "$CP"
  mkdir -p "$CP" "$BLOGS" "$BPIDS" "$CP/etcd"
  pki
  audit_policy
  bstart etcd "$K8S_BIN_DIR/etcd" --name sbomjob-bench --data-dir "$CP/etcd" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "$ETCD_PEER" --initial-advertise-peer-urls "$ETCD_PEER" \
    --initial-cluster "sbomjob-bench=$ETCD_PEER" --listen-metrics-urls "" \
    --quota-backend-bytes 4294967296 --log-level warn
  wait_for 60 "etcd health" curl -fsS "$ETCD_URL/health"
  bstart kube-apiserver "$K8S_BIN_DIR/kube-apiserver" \
    --etcd-servers="$ETCD_URL" \
    --bind-address=127.0.0.1 --secure-port="$API_PORT" --advertise-address=127.0.0.1 \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --service-cluster-ip-range=10.97.0.0/16 \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --authorization-mode=RBAC \
    --max-requests-inflight=$MAX_INFLIGHT --max-mutating-requests-inflight=$MAX_MUTATING_INFLIGHT \
    --audit-policy-file="$CP/audit-policy.yaml" --audit-log-path="$CP/audit.log" \
    --audit-log-format=json --audit-log-maxsize=$AUDIT_LOG_MAX_MB --audit-log-mode=batch \
    --audit-log-batch-buffer-size=200000 --audit-log-batch-max-size=1000 \
    --audit-log-batch-max-wait=1s --audit-log-batch-throttle-enable=false \
    --profiling=false --v=0
  wait_for 120 "kube-apiserver /readyz" curl -fsS --cacert "$PKI/ca.crt" \
    --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$API_URL/readyz"
  bstart kube-controller-manager "$K8S_BIN_DIR/kube-controller-manager" \
    --kubeconfig="$CP/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$CP/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$CP/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=$KCM_PORT \
    --leader-elect=false \
    --controllers=job-controller,garbage-collector-controller,serviceaccount-controller,ttl-after-finished-controller \
    --kube-api-qps=$KCM_QPS --kube-api-burst=$KCM_BURST \
    --service-cluster-ip-range=10.97.0.0/16 \
    --profiling=false --v=1
  wait_for 60 "kube-controller-manager /healthz" curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
  # The digest cache's CRD, as the chart installs it.
  KUBECONFIG=$BENCH/admin.kubeconfig "$(kubectl_bin)" apply -f "$REPO_ROOT/charts/sbomjob/crds/imagerecords.yaml" >/dev/null
  KUBECONFIG=$BENCH/admin.kubeconfig wait_for 60 "ImageRecord CRD established" \
    "$(kubectl_bin)" wait --for=condition=Established crd/imagerecords.sbomjob.io --timeout=5s
  log "control plane up: $API_URL (state $CP)"
}

cmd_down() {
  bstop kube-controller-manager
  bstop kube-apiserver
  bstop etcd
}

cmd_env() {
  echo "export KUBECONFIG=$BENCH/admin.kubeconfig"
  echo "export SBOMJOB_BENCH_OPERATOR_KUBECONFIG=$BENCH/operator.kubeconfig"
  echo "export SBOMJOB_BENCH_AUDIT_LOG=$CP/audit.log"
}

# Flags that RESULTS.md quotes.
cmd_flags() {
  echo "kube-apiserver --max-requests-inflight=$MAX_INFLIGHT --max-mutating-requests-inflight=$MAX_MUTATING_INFLIGHT (audit log: batch, Metadata for user $OPERATOR_USER only)"
  echo "kube-controller-manager --kube-api-qps=$KCM_QPS --kube-api-burst=$KCM_BURST --controllers=job-controller,garbage-collector-controller,serviceaccount-controller,ttl-after-finished-controller"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  flags) cmd_flags ;;
  *)
    echo "usage: $0 up | down | env | flags" >&2
    exit 2
    ;;
esac
