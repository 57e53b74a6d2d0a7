#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy from the pinned Go modules in ./etcd and ./k8s into a version-keyed cache
# directory ($K8S_BIN_DIR), and policycheck (./k8s/cmd/policycheck: the chart's admission
# policy run through the API server's own admission code, for charts/sbomjob/tests/lint.sh) in
# the same go build, where it costs little. Does nothing when that directory is complete.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$HERE/lib/common.sh"

BINS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

complete() {
  local b
  for b in "${BINS[@]}"; do [[ -x $K8S_BIN_DIR/$b ]] || return 1; done
}

# A cache made before policycheck existed: build it alone (once; it compiles part of the API
# server again).
policycheck_only() {
  local go
  go=$(find_go)
  echo "building policycheck into $K8S_BIN_DIR"
  (cd "$HERE/k8s" && GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
    "$go" build -trimpath -ldflags "-s -w" -o "$K8S_BIN_DIR/policycheck.tmp" ./cmd/policycheck)
  mv "$K8S_BIN_DIR/policycheck.tmp" "$K8S_BIN_DIR/policycheck"
}

if complete && [[ ${1:-} != --force ]]; then
  [[ -x $K8S_BIN_DIR/policycheck ]] || policycheck_only
  echo "binaries present in $K8S_BIN_DIR"
  exit 0
fi

# --- a Go toolchain new enough for etcd's go.mod -----------------------------------
GO=$(find_go)
echo "using $GO ($("$GO" env GOVERSION))"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
# A build cache of our own (~3 GiB for Kubernetes), removed once the binaries are in place;
# an interrupted build keeps it, so the next try resumes. SBOMJOB_KEEP_GOCACHE=1 keeps it.
export GOCACHE=$SBOMJOB_CACHE/go-build

tmp=$K8S_BIN_DIR.tmp.$$
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
# --- etcd ---------------------------------------------------------------------------
(
  cd "$HERE/etcd"
  "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
)
echo "etcd built in $(( $(date +%s) - start ))s"

# --- kubernetes ---------------------------------------------------------------------
ver=${KUBE_VERSION#v}
major=${ver%%.*}; rest=${ver#*.}; minor=${rest%%.*}
build_date=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ld+=" -X $pkg.gitCommit=$KUBE_GIT_COMMIT -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
(
  cd "$HERE/k8s"
  # One go build for all six commands: shared packages are compiled once.
  "$GO" build -trimpath -ldflags "$ld" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy \
    ./cmd/policycheck
)
echo "kubernetes built in $(( $(date +%s) - start ))s"

mkdir -p "$(dirname "$K8S_BIN_DIR")"
rm -rf "$K8S_BIN_DIR"
mv "$tmp" "$K8S_BIN_DIR"
trap - EXIT
[[ ${SBOMJOB_KEEP_GOCACHE:-0} == 1 ]] || { chmod -R u+w "$GOCACHE" 2>/dev/null || true; rm -rf "$GOCACHE"; }
"$K8S_BIN_DIR/kube-apiserver" --version
# sed -n 1p, not head -1: it reads to the end, so etcd never dies of SIGPIPE (141 with pipefail).
"$K8S_BIN_DIR/etcd" --version | sed -n 1p
