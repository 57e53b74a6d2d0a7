#!/usr/bin/env bash
# A real single-node Kubernetes cluster for the e2e suites, built and started by the project.
#
#   e2e/cluster/cluster.sh up       install deps, build/cache binaries, start everything, wait Ready
#   e2e/cluster/cluster.sh down     stop everything, clean mounts, netns, cgroups, iptables, bridge
#   e2e/cluster/cluster.sh status   each component and its health
#   e2e/cluster/cluster.sh env      shell lines to use the cluster (KUBECONFIG, PATH, image refs)
#   e2e/cluster/cluster.sh deps     only install what the scripts and tests use (Debian packages,
#                                   the musl Rust target, kubectl, helm); starts nothing
#
# State (certs, configs, logs, pids, data) lives in ${SBOMJOB_CLUSTER_DIR:-/tmp/sbomjob-cluster};
# binaries and tools in ${SBOMJOB_CACHE:-~/.cache/sbomjob}. See e2e/cluster/README.md.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/pki.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/pki.sh"

BIN=$K8S_BIN_DIR
CTR_NS=k8s.io

# ================================================================= processes ==================

# start NAME COMMAND...: runs COMMAND detached (own session), logs to $LOGS/NAME.log
start() { daemon_start "$PIDS" "$LOGS" "$@"; }

# stop NAME [SIGNAL_TIMEOUT]: SIGTERM, then SIGKILL after the timeout
stop() { daemon_stop "$PIDS" "$@"; }

# ================================================================= PKI ========================

gen_pki() {
  log "generating CA, certificates and kubeconfigs"
  mkdir -p "$PKI"
  pki_ca ca sbomjob-e2e-ca
  # The aggregation layer's front proxy (requestheader authentication) has a CA of its own.
  pki_ca front-proxy-ca sbomjob-e2e-front-proxy-ca
  pki_cert front-proxy-client "/CN=front-proxy-client" clientAuth "" front-proxy-ca
  pki_cert apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$BRIDGE_IP,IP:$KUBERNETES_SVC_IP"
  pki_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  pki_cert admin "/O=system:masters/CN=sbomjob-e2e-admin" clientAuth
  pki_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  pki_cert scheduler "/CN=system:kube-scheduler" clientAuth
  pki_cert kube-proxy "/CN=system:kube-proxy" clientAuth
  pki_cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  pki_cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth \
    "DNS:$NODE_NAME,DNS:localhost,IP:$BRIDGE_IP,IP:127.0.0.1"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  chmod 0600 "$PKI"/*.key
  pki_kubeconfig "$KUBECONFIG_PATH" admin "$APISERVER_URL" sbomjob-e2e
  pki_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager "$APISERVER_URL" sbomjob-e2e
  pki_kubeconfig "$STATE/scheduler.kubeconfig" scheduler "$APISERVER_URL" sbomjob-e2e
  pki_kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy "$APISERVER_URL" sbomjob-e2e
  pki_kubeconfig "$STATE/kubelet.kubeconfig" kubelet-client "$APISERVER_URL" sbomjob-e2e
}

# ================================================================= network ====================

net_up() {
  log "pod network: bridge $BRIDGE $BRIDGE_IP/24"
  # br_netfilter makes bridged pod-to-service traffic visible to kube-proxy's rules.
  modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1
  [[ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || sysctl -qw net.bridge.bridge-nf-call-iptables=1
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/cni/net.d/10-sbomjob.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "sbomjob",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP" }]],
        "routes": [{ "dst": "$SERVICE_CIDR", "gw": "$BRIDGE_IP" }]
      }
    }
  ]
}
EOF
}

# ================================================================= components =================

start_etcd() {
  mkdir -p "$STATE/etcd"
  start etcd "$BIN/etcd" --name sbomjob-e2e --data-dir "$STATE/etcd" \
    --listen-client-urls "$ETCD_CLIENT_URL" --advertise-client-urls "$ETCD_CLIENT_URL" \
    --listen-peer-urls "$ETCD_PEER_URL" --initial-advertise-peer-urls "$ETCD_PEER_URL" \
    --initial-cluster "sbomjob-e2e=$ETCD_PEER_URL" --listen-metrics-urls "" \
    --quota-backend-bytes 4294967296 --snapshot-count 10000 --log-level warn
  wait_for 60 "etcd health" curl -fsS "$ETCD_CLIENT_URL/health"
}

# registry_config NAME PORT [htpasswd]
start_registry() {
  local name=$1 port=$2 auth=${3:-}
  mkdir -p "$STATE/$name/data"
  {
    cat <<EOF
version: 0.1
log:
  level: info
  fields:
    service: $name
storage:
  filesystem:
    rootdirectory: $STATE/$name/data
  delete:
    enabled: true
http:
  addr: $BRIDGE_IP:$port
  secret: sbomjob-e2e-$name
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    if [[ -n $auth ]]; then
      htpasswd -Bbn "$REGISTRY_AUTH_USER" "$REGISTRY_AUTH_PASSWORD" >"$STATE/$name/htpasswd"
      cat <<EOF
auth:
  htpasswd:
    realm: sbomjob-e2e
    path: $STATE/$name/htpasswd
EOF
    fi
  } >"$STATE/$name/config.yml"
  start "$name" docker-registry serve "$STATE/$name/config.yml"
  # Pushes from the host go to loopback; one forwarder per registry.
  start "$name-loopback" socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "TCP:$BRIDGE_IP:$port"
}

# The referrers-API registry: built once into the version-keyed cache (a few seconds; its Go
# modules come from the module proxy), then served on the bridge address, forwarded from loopback.
start_referrers_registry() {
  if [[ ! -x $REFERRERS_REGISTRY_BIN ]]; then
    local go src=$E2E_CLUSTER_DIR/referrers-registry
    go=$(find_go)
    log "building the referrers-API registry (go-containerregistry $GGCR_VERSION)"
    mkdir -p "$(dirname "$REFERRERS_REGISTRY_BIN")"
    grep -q "go-containerregistry $GGCR_VERSION" "$src/go.mod" || die "$src/go.mod does not require go-containerregistry $GGCR_VERSION (versions.sh)"
    (cd "$src" && GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
      "$go" build -trimpath -ldflags "-s -w" -o "$REFERRERS_REGISTRY_BIN.tmp" .)
    mv "$REFERRERS_REGISTRY_BIN.tmp" "$REFERRERS_REGISTRY_BIN"
  fi
  mkdir -p "$STATE/registry-referrers/blobs"
  start registry-referrers "$REFERRERS_REGISTRY_BIN" -addr "$REGISTRY_REFERRERS" -blobs "$STATE/registry-referrers/blobs"
  start registry-referrers-loopback socat "TCP-LISTEN:$REGISTRY_REFERRERS_PORT,bind=127.0.0.1,reuseaddr,fork" "TCP:$REGISTRY_REFERRERS"
}

wait_registries() {
  wait_for 30 "registry" curl -fsS -o /dev/null "http://$REGISTRY_HOST_LOCAL/v2/"
  wait_for 30 "registry (auth)" bash -c "curl -sS -o /dev/null -w '%{http_code}' http://$REGISTRY_AUTH_HOST_LOCAL/v2/ | grep -q 401"
  wait_for 30 "registry (referrers API)" curl -fsS -o /dev/null "http://$REGISTRY_REFERRERS_HOST_LOCAL/v2/"
}

start_apiserver() {
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="$ETCD_CLIENT_URL" \
    --bind-address="$BRIDGE_IP" --secure-port="$APISERVER_PORT" --advertise-address="$BRIDGE_IP" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --profiling=false \
    --v=1
  wait_for 120 "kube-apiserver /readyz" kc get --raw /readyz
}

start_controller_manager() {
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --leader-elect=false \
    --controllers='*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --profiling=false \
    --v=1
}

start_scheduler() {
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --leader-elect=false \
    --profiling=false \
    --v=1
}

start_containerd() {
  local c=$STATE/containerd h
  mkdir -p "$c/root" "$c/state" "$c/opt" "$c/certs.d"
  # Plain http for the local registries, under every name they are reached by.
  for h in "$REGISTRY" "$REGISTRY_HOST_LOCAL" "localhost:$REGISTRY_PORT" \
    "$REGISTRY_AUTH" "$REGISTRY_AUTH_HOST_LOCAL" "localhost:$REGISTRY_AUTH_PORT" \
    "$REGISTRY_REFERRERS" "$REGISTRY_REFERRERS_HOST_LOCAL"; do
    mkdir -p "$c/certs.d/$h"
    cat >"$c/certs.d/$h/hosts.toml" <<EOF
server = "http://$h"

[host."http://$h"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
EOF
  done
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
oom_score = 0

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # The machine's root lacks CAP_SYS_RESOURCE, so nothing may lower oom_score_adj below
  # containerd's own (the sandbox asks for -998: runc init dies with "Permission denied").
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  # pod network namespaces under our state dir, not /var/run/netns
  netns_mounts_under_state_dir = true
  device_ownership_from_security_context = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$c/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$c/certs.d"
EOF
  start containerd containerd --config "$c/config.toml"
  wait_for 30 "containerd" ctr --address "$CONTAINERD_SOCK" version
}

start_kubelet() {
  local k=$STATE/kubelet
  mkdir -p "$k/root" "$k/pod-logs"
  # Pods get no DNS server: nothing answers on the bridge address's port 53, so lookups fail fast.
  printf 'nameserver %s\noptions ndots:1 timeout:1 attempts:1\n' "$BRIDGE_IP" >"$k/resolv.conf"
  cat >"$k/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
failSwapOn: false
memorySwap: {}
resolvConf: $k/resolv.conf
podLogsDir: $k/pod-logs
registerNode: true
serializeImagePulls: false
maxPods: 200
# Disk thresholds off (shared CI disks can run low), memory kept sane.
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
containerLogMaxSize: 10Mi
containerLogMaxFiles: 3
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 20s
EOF
  start kubelet "$BIN/kubelet" \
    --config="$k/config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" \
    --root-dir="$k/root" \
    --cert-dir="$k/pki" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$BRIDGE_IP" \
    --v=1
}

kube_proxy_config() {
  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $BRIDGE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$BRIDGE_IP/32"]
iptables:
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 1s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

start_kube_proxy() {
  kube_proxy_config
  start kube-proxy "$BIN/kube-proxy" --config="$STATE/kube-proxy.yaml" --v=1
}

node_ready() {
  [[ $(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# ================================================================= up =========================

cmd_up() {
  local t0=$SECONDS
  [[ $EUID -eq 0 ]] || die "must run as root (containerd, kubelet, iptables)"
  if [[ -f $STATE/.sbomjob-cluster ]]; then
    log "previous cluster state found in $STATE: running down first"
    cmd_down
  fi
  cmd_deps
  "$E2E_CLUSTER_DIR/build-binaries.sh" >&2
  check_ports

  # Fresh state every time (logs of the previous run are dropped here, not by down).
  clean_state_dir
  mkdir -p "$STATE" "$LOGS" "$PIDS"
  echo "$STATE" >"$STATE/.sbomjob-cluster"
  gen_pki
  net_up
  start_etcd
  start_registry registry "$REGISTRY_PORT"
  start_registry registry-auth "$REGISTRY_AUTH_PORT" htpasswd
  start_referrers_registry
  wait_registries
  start_apiserver
  start_controller_manager
  start_scheduler
  "$E2E_DIR/images/build.sh" pause
  start_containerd
  start_kubelet
  start_kube_proxy
  log "waiting for node $NODE_NAME to be Ready"
  wait_for 180 "node $NODE_NAME Ready" node_ready || { tail -n 30 "$LOGS/kubelet.log" >&2; die "node not Ready"; }
  wait_for 120 "default ServiceAccount" kc -n default get serviceaccount default
  wait_for 60 "kube-root-ca.crt in default" kc -n default get configmap kube-root-ca.crt
  wait_for 60 "kubernetes Service endpoints" \
    bash -c "'$(kubectl_bin)' --kubeconfig '$KUBECONFIG_PATH' get endpointslices -n default -l kubernetes.io/service-name=kubernetes -o jsonpath='{.items[0].endpoints[0].addresses[0]}' | grep -q ."
  if [[ ${SBOMJOB_SKIP_WORKLOAD_IMAGES:-} != 1 ]]; then
    "$E2E_DIR/images/build.sh" workloads tools
  fi
  if [[ ${SBOMJOB_PROJECT_IMAGES:-0} == 1 ]]; then
    "$E2E_DIR/images/build.sh" project
  fi
  log "cluster up in $((SECONDS - t0))s"
  cmd_env
}

check_ports() {
  local p
  for p in 2379 2380 "$APISERVER_PORT" "$REGISTRY_PORT" "$REGISTRY_AUTH_PORT" "$REGISTRY_REFERRERS_PORT" 10248 10250 10256 10249 10257 10259; do
    if [[ -n $(ss -Hltn "sport = :$p") ]]; then
      die "port $p is already in use: $(ss -Hltnp "sport = :$p" | sed -n 1p)"
    fi
  done
}

clean_state_dir() {
  [[ -d $STATE ]] || return 0
  # Refuse to delete a directory that is not ours.
  if [[ -n $(ls -A "$STATE") && ! -f $STATE/.sbomjob-cluster ]]; then
    die "$STATE exists and is not a sbomjob cluster directory"
  fi
  unmount_under "$STATE"
  rm -rf "$STATE"
}

cmd_env() {
  cat <<EOF
export KUBECONFIG=$KUBECONFIG_PATH
export PATH=$TOOLS_BIN:\$PATH
export SBOMJOB_REGISTRY=$REGISTRY            # image names pods and containerd use
export SBOMJOB_REGISTRY_HOST=$REGISTRY_HOST_LOCAL  # same registry, for pushes from the host
export SBOMJOB_IMAGES_ENV=$STATE/images.env  # VAR=ref lines of the pushed images
EOF
}

# ================================================================= down =======================

# Unmounts everything below a directory, deepest first.
unmount_under() {
  local dir=$1 m
  [[ -d $dir ]] || return 0
  dir=$(readlink -f "$dir")
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r |
    while read -r m; do
      m=$(printf '%b' "$m") # /proc/mounts escapes spaces as \040
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

# Kills every process of a cgroup subtree (all hierarchies), then removes the cgroups.
kill_cgroup_tree() {
  local rel=$1 hier pids
  for _ in 1 2 3 4 5; do
    pids=$(for hier in /sys/fs/cgroup/*/; do
      [[ -d $hier$rel ]] && find "$hier$rel" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u) || true
    [[ -n $pids ]] || break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  done
  for hier in /sys/fs/cgroup/*/; do
    [[ -d $hier$rel ]] || continue
    find "$hier$rel" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# PIDs of processes whose command line mentions the given string (our containerd's shims).
pids_mentioning() {
  local needle=$1 p
  for p in /proc/[0-9]*; do
    if grep -qF -- "$needle" <<<"$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")"; then echo "${p#/proc/}"; fi
  done
}

iptables_cleanup() {
  # kube-proxy removes its own chains (iptables, ipvs and nftables modes).
  if [[ -x $BIN/kube-proxy ]]; then
    "$BIN/kube-proxy" --cleanup --v=0 >/dev/null 2>&1 || true
  fi
  # The kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT ...).
  local ipt table chain rule
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle raw; do
      "$ipt" -t "$table" -S >/dev/null 2>&1 || continue
      # rules in built-in chains that jump to KUBE-* chains
      while read -r rule; do
        # shellcheck disable=SC2086
        eval "$ipt -t $table ${rule/-A /-D }" 2>/dev/null || true
      done < <("$ipt" -t "$table" -S | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-')
      for chain in $("$ipt" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
  # kube-proxy's nftables tables, had it ever run in that mode
  if command -v nft >/dev/null; then
    nft delete table ip kube-proxy 2>/dev/null || true
    nft delete table ip6 kube-proxy 2>/dev/null || true
  fi
}

cmd_down() {
  [[ $EUID -eq 0 ]] || die "must run as root"
  log "stopping cluster in $STATE"
  stop kubelet 20
  stop kube-proxy 10

  # Pods: stop their tasks through containerd when it still answers, then kill whatever is
  # left in the kubelet's cgroups, then containerd and its shims.
  if [[ -S $CONTAINERD_SOCK ]] && pid_alive containerd; then
    local t
    for t in $(ctr --address "$CONTAINERD_SOCK" -n "$CTR_NS" tasks ls -q 2>/dev/null); do
      ctr --address "$CONTAINERD_SOCK" -n "$CTR_NS" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
    done
  fi
  kill_cgroup_tree kubepods
  stop containerd 15
  local shims
  shims=$(pids_mentioning "$CONTAINERD_SOCK" | grep -vx "$$" || true)
  if [[ -n $shims ]]; then
    log "killing leftover containerd shims: ${shims//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -KILL $shims 2>/dev/null || true
  fi
  kill_cgroup_tree kubepods

  # Pod network namespaces are bind mounts under our state dir (netns_mounts_under_state_dir);
  # unmounting them (below) frees them and their veths. libcni caches results in /var/lib/cni.
  rm -f /var/lib/cni/results/sbomjob-* 2>/dev/null || true
  local sb
  for sb in "$STATE"/containerd/root/io.containerd.grpc.v1.cri/sandboxes/*/; do
    [[ -d $sb ]] && rm -f /var/lib/cni/results/cni-loopback-"$(basename "$sb")"-lo
  done

  stop kube-scheduler 10
  stop kube-controller-manager 10
  stop kube-apiserver 20
  stop etcd 20
  local r
  for r in registry registry-auth registry-referrers; do
    stop "$r-loopback" 5
    stop "$r" 10
  done

  iptables_cleanup
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link delete "$BRIDGE" 2>/dev/null || true
  fi
  # veths of pods whose netns is gone disappear with it; any other leftover veth on our bridge
  # went with the bridge.
  unmount_under "$STATE"
  log "cluster stopped (logs kept in $LOGS)"
}

# ================================================================= status =====================

# check NAME PROCESS HEALTH_COMMAND...
check() {
  local name=$1 proc=$2 state health
  shift 2
  if [[ -z $proc ]]; then
    state="-"
  elif pid_alive "$proc"; then
    state="pid $(cat "$PIDS/$proc.pid")"
  else
    state="NOT RUNNING"
    FAILED=1
  fi
  if "$@" >/dev/null 2>&1; then health=ok; else
    health=FAIL
    FAILED=1
  fi
  printf '%-26s %-14s %s\n' "$name" "$state" "$health"
}

kubelet_healthz() { curl -fsS http://127.0.0.1:10248/healthz; }
https_healthz() { curl -fsSk "https://127.0.0.1:$1/healthz"; }

cmd_status() {
  FAILED=0
  printf '%-26s %-14s %s\n' COMPONENT PROCESS HEALTH
  check etcd etcd curl -fsS "$ETCD_CLIENT_URL/health"
  check registry registry curl -fsS -o /dev/null "http://$REGISTRY/v2/"
  check "registry (127.0.0.1)" registry-loopback curl -fsS -o /dev/null "http://$REGISTRY_HOST_LOCAL/v2/"
  check registry-auth registry-auth bash -c "curl -fsS -o /dev/null -u '$REGISTRY_AUTH_USER:$REGISTRY_AUTH_PASSWORD' http://$REGISTRY_AUTH/v2/"
  check "registry-auth (127.0.0.1)" registry-auth-loopback bash -c "curl -fsS -o /dev/null -u '$REGISTRY_AUTH_USER:$REGISTRY_AUTH_PASSWORD' http://$REGISTRY_AUTH_HOST_LOCAL/v2/"
  check registry-referrers registry-referrers curl -fsS -o /dev/null "http://$REGISTRY_REFERRERS/v2/"
  check "registry-referrers (127.0.0.1)" registry-referrers-loopback curl -fsS -o /dev/null "http://$REGISTRY_REFERRERS_HOST_LOCAL/v2/"
  check kube-apiserver kube-apiserver kc get --raw /readyz
  check kube-controller-manager kube-controller-manager https_healthz 10257
  check kube-scheduler kube-scheduler https_healthz 10259
  check containerd containerd ctr --address "$CONTAINERD_SOCK" version
  check kubelet kubelet kubelet_healthz
  check kube-proxy kube-proxy curl -fsS http://127.0.0.1:10256/healthz
  check "node $NODE_NAME Ready" "" node_ready
  if [[ -f $KUBECONFIG_PATH ]] && kc get --raw /version >/dev/null 2>&1; then
    echo
    echo "server: $(kc get --raw /version | jq -r .gitVersion)   kubeconfig: $KUBECONFIG_PATH"
    kc get nodes -o wide 2>/dev/null || true
  fi
  return "$FAILED"
}

# ================================================================= main =======================

cmd_deps() {
  [[ $EUID -eq 0 ]] || die "must run as root (apt-get)"
  ensure_apt_packages
  ensure_rust_musl || log "warning: no x86_64-unknown-linux-musl Rust target (needed for the project images)"
  "$E2E_CLUSTER_DIR/tools.sh" >/dev/null
}

# up, down and deps of one state dir never run at the same time.
case ${1:-} in
  up | down | deps)
    exec 8>"${STATE%/}.lock"
    flock -w 900 8 || die "another cluster.sh holds ${STATE%/}.lock"
    ;;
esac

case ${1:-} in
  deps) cmd_deps ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *)
    echo "usage: $0 up | down | status | env | deps" >&2
    exit 2
    ;;
esac
