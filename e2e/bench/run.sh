#!/usr/bin/env bash
# The benchmark of sbomjob (issue 6): prints a table and writes e2e/bench/RESULTS.md.
#
#   e2e/bench/run.sh
#
# 1. builds the entrypoint and the bench harness in release mode, the operator as its image
#    ships it (release, static musl);
# 2. for N = 1,000 and 10,000 (BENCH_SIZES): starts the bench's own control plane
#    (e2e/bench/controlplane.sh: etcd + kube-apiserver + kube-controller-manager on loopback ports
#    of their own, never the shared e2e cluster), runs `bench cluster` (simulated pods, the
#    operator's two cycles, the raw patch loop, the audit log), stops the control plane;
# 3. the entrypoint over 200 images with skopeo against a registry on loopback (entrypoint.sh);
# 4. the first cycle with the defaults: 500 images of a 30 s stand-in tool, scaled 1:100, through
#    the entrypoint, Jobs as the operator plans and runs them (defaults.sh);
# 5. cargo fuzz of the entrypoint's parsers (fuzz.sh, FUZZ_SECONDS per target, default 80);
# 6. RESULTS.md: machine, versions, the command, the tables.
#
# Installs what it needs, idempotently: Debian packages, kubectl (e2e/cluster/tools.sh), the
# Kubernetes binaries (e2e/cluster/build-binaries.sh, cached), cargo-fuzz. Needs root (apt-get).
# Everything it starts is stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BENCH_DIR=${SBOMJOB_BENCH_DIR:-/tmp/sbomjob-bench}
OUT=$BENCH_DIR/out
SIZES=${BENCH_SIZES:-1000 10000}
NAMESPACES=${BENCH_NAMESPACES:-200}
export FUZZ_SECONDS=${FUZZ_SECONDS:-80}
RESULTS=$ROOT/e2e/bench/RESULTS.md
started=$(date +%s)

# shellcheck source=../../hack/lib.sh
. "$ROOT/hack/lib.sh"

# shellcheck disable=SC2317 # run by the EXIT trap (shellcheck 0.9 calls it unreachable)
cleanup() { "$ROOT/e2e/bench/controlplane.sh" down >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "dependencies" >&2
# shellcheck source=../cluster/lib/common.sh
. "$ROOT/e2e/cluster/lib/common.sh"
# The cluster's installer, with the bench's list: it keeps docker-registry's own service (on
# the e2e registry's port 5000) from starting.
# Read by ensure_apt_packages, from the sourced lib/common.sh.
# shellcheck disable=SC2034
APT_PACKAGES=(docker-registry skopeo umoci jq bc curl openssl g++ procps)
ensure_apt_packages
"$ROOT/e2e/cluster/tools.sh" >/dev/null
[[ -x $K8S_BIN_DIR/kube-apiserver ]] || "$ROOT/e2e/cluster/build-binaries.sh" >&2 || true

# The audit log of a run with the backups the API server rotated it to, oldest first.
save_audit_log() {
  local backups
  shopt -s nullglob
  backups=("$BENCH_DIR"/cp/audit-*.log)
  shopt -u nullglob
  cat "${backups[@]}" "$BENCH_DIR/cp/audit.log" >"$1"
}

# What else ran on the machine before each measurement (the shared e2e cluster and its suites
# may be busy): the load average, the CPU idle share over 3 s, and whether e2e tests ran.
busy() {
  local a b idle total suites
  read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ </proc/stat
  a=$((a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8)); idle=$((a4 + a5))
  sleep 3
  read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ </proc/stat
  b=$((b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8)); total=$((b - a))
  idle=$(( (b4 + b5 - idle) * 100 / (total > 0 ? total : 1) ))
  # pgrep exits 1 when nothing matches: not a failure here (set -e, pipefail).
  suites=$({ pgrep -f 'target/debug/deps/(scenarios|beyond|reliability)-' || true; } | wc -l)
  printf '%s: load average %s; CPU idle over 3 s: %s%%; e2e test processes running: %s\n' \
    "$1" "$(cut -d' ' -f1-3 /proc/loadavg)" "$idle" "$suites" >>"$OUT/load.txt"
}

step "release build" >&2
cargo build --release --locked -p sbomjob-job-image -p sbomjob-e2e --bins >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
# The operator is measured as the image ships it: static musl build (Dockerfile.operator).
ensure_rust_musl
cargo build --release --locked --target x86_64-unknown-linux-musl -p sbomjob-operator >&2
OPERATOR=${CARGO_TARGET_DIR:-$ROOT/target}/x86_64-unknown-linux-musl/release/sbomjob-operator
rm -rf "$OUT"
mkdir -p "$OUT"
: >"$OUT/load.txt"

cluster_files=()
for n in $SIZES; do
  step "operator, N = $n"
  busy "before N = $n"
  "$ROOT/e2e/bench/controlplane.sh" up
  eval "$("$ROOT/e2e/bench/controlplane.sh" env)"
  "$TARGET/bench" cluster --pods "$n" --namespaces "$NAMESPACES" \
    --operator "$OPERATOR" --out "$OUT/cluster-$n.json"
  save_audit_log "$OUT/audit-$n.log"
  "$ROOT/e2e/bench/controlplane.sh" down
  cluster_files+=(--cluster "$OUT/cluster-$n.json")
done

# The same smallest N as before per-pod Normal Events became opt-in: the API writes per processed
# pod with podEvents all, beside the default's.
n=${SIZES%% *}
step "operator, N = $n, podEvents all"
busy "before N = $n, podEvents all"
"$ROOT/e2e/bench/controlplane.sh" up
eval "$("$ROOT/e2e/bench/controlplane.sh" env)"
"$TARGET/bench" cluster --pods "$n" --namespaces "$NAMESPACES" --pod-events all \
  --operator "$OPERATOR" --out "$OUT/cluster-$n-events-all.json"
save_audit_log "$OUT/audit-$n-events-all.log"
"$ROOT/e2e/bench/controlplane.sh" down
cluster_files+=(--cluster "$OUT/cluster-$n-events-all.json")

step "entrypoint, 200 images" >&2
busy "before the entrypoint bench"
"$ROOT/e2e/bench/entrypoint.sh" "$TARGET/sbomjob-entrypoint" "$OUT/entrypoint.json"

step "first cycle with the defaults, 500 images of 30 s" >&2
busy "before the defaults bench"
SBOMJOB_ENTRYPOINT_BIN="$TARGET/sbomjob-entrypoint" "$ROOT/e2e/bench/defaults.sh" "$OUT/defaults.md" >/dev/null

step "fuzzing, ${FUZZ_SECONDS}s per target" >&2
fuzz_rc=0
"$ROOT/e2e/bench/fuzz.sh" "$OUT/fuzz.json" || fuzz_rc=$?

step "RESULTS.md" >&2
{
  echo "# Benchmark results"
  echo
  echo "Written by \`e2e/bench/run.sh\` on $(date -u +'%Y-%m-%d %H:%M UTC') in $(( $(date +%s) - started )) s"
  echo "(commit \`$(git rev-parse --short HEAD)\`$(git diff --quiet HEAD -- operator job-image e2e ':!e2e/bench/RESULTS.md' || echo ', with local changes'))."
  echo
  echo "Command (as root, from the repository root):"
  echo
  echo '```sh'
  echo "e2e/bench/run.sh"
  echo "# here: BENCH_SIZES=\"$SIZES\" BENCH_NAMESPACES=$NAMESPACES FUZZ_SECONDS=$FUZZ_SECONDS"
  echo '```'
  echo
  echo "## Machine and versions"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| CPU | $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
  echo "| memory | $(free -g | awk '/Mem:/ {print $2}') GiB |"
  echo "| kernel / OS | $(uname -r) / $(. /etc/os-release && echo "$PRETTY_NAME") |"
  echo "| Rust | $(rustc --version) |"
  echo "| kube-apiserver, kube-controller-manager | $("$K8S_BIN_DIR/kube-apiserver" --version) (Go module build, e2e/cluster) |"
  echo "| etcd | $("$K8S_BIN_DIR/etcd" --version | sed -n 1p) |"
  echo "| skopeo | $(skopeo --version) |"
  echo "| registry | Debian docker-registry $(dpkg-query -W -f='${Version}' docker-registry) |"
  echo "| cargo-fuzz | $(cargo fuzz --version 2>/dev/null || echo none) (stable toolchain with RUSTC_BOOTSTRAP=1, \`-s none\`) |"
  echo
  echo "## Set-up"
  echo
  echo "- The bench's own control plane (\`e2e/bench/controlplane.sh\`): etcd on 127.0.0.1:22379, kube-apiserver"
  echo "  on 127.0.0.1:16443, kube-controller-manager; fresh state for each N. No kubelet, no scheduler."
  "$ROOT/e2e/bench/controlplane.sh" flags | sed 's/^/- /'
  echo "- The harness and the operator both authenticate as \`system:masters\` (so both requests land in the"
  echo "  same, exempt, API priority level); the operator has a client certificate of its own (user"
  echo "  \`sbomjob-operator\`) and the audit policy logs that user only (level Metadata, batch backend)."
  echo "- Simulated pods: $NAMESPACES namespaces, N/5 distinct digests, one container each, bound to one of 10"
  echo "  node objects at creation; the harness writes their Running status with an imageID"
  echo "  \`10.244.0.1:5000/bench/app-<k>@sha256:<hex>\`. The harness binds each Job pod and writes it"
  echo "  Succeeded (exit code 0): the job controller sets Complete, so the figures measure the operator."
  echo "- The operator: release build for x86_64-unknown-linux-musl (the static binary its image ships),"
  echo "  settings as the chart's defaults except \`SBOM_INTERVAL=15s\` (the second cycle),"
  echo "  \`SBOM_JOB_MAX_IMAGES=N/5\`, at most 10,000, the setting's maximum (fewest Jobs; a Secret's config is capped at 512 KiB,"
  echo "  so 10,000 pods take two Jobs) and \`SBOM_JOB_MAX_PARALLEL=1\` (run one after the other), JSON logs; digest cache CRD installed,"
  echo "  leader election on (the Lease renewals are counted apart)."
  echo "- Times come from the audit log (request received / response complete), the harness's watch of"
  echo "  the Jobs (Complete) and the operator's log (cycle boundaries). \"Job Complete → every pod"
  echo "  annotated\" is summed over the Jobs: from the Complete condition to the operator's last pod patch."
  echo "- The raw patch loop: the harness merge-patches one annotation on each of the N pods, 16 in flight"
  echo "  (what operator/src/annotate.rs uses), asking for metadata-only responses (the request the operator"
  echo "  makes; whole-pod responses are shown too), in the same run on the same API server after the"
  echo "  operator stopped; and one in flight on up to 1,000 pods (sequential)."
  echo "- API writes per processed pod: the operator's create, patch, update and delete requests (Lease"
  echo "  renewals left out) over the pods it annotated. In cycle 1 every digest is new, so each costs one"
  echo "  ImageRecord (the digest cache, one object per digest so that \`kubectl get imagerecords\` shows"
  echo "  each image's summary) beside each pod's patch: 1 + digests / pods, 1.2 here at N/5 digests."
  echo "  \"Later pods\": after cycle 2 the harness starts N/10 more pods on digests already recorded (what"
  echo "  rollouts and scale-ups do) and counts the operator's writes until the end of the first cycle that"
  echo "  started after the last of them; peak RSS and CPU are read before them."
  echo "- Peak RSS: VmHWM of /proc/<pid>/status; CPU: utime + stime of /proc/<pid>/stat."
  echo "- The machine was not reserved for the bench: $(nproc) cores shared with whatever else ran (the shared"
  echo "  e2e cluster and its suites among them). Load when each part started:"
  echo
  sed 's/^/  - /' "$OUT/load.txt"
  echo
  echo "## Results"
  echo
  "$TARGET/bench" table "${cluster_files[@]}" --entrypoint "$OUT/entrypoint.json" --fuzz "$OUT/fuzz.json"
  echo
  echo "## Memory at 10,000 pods"
  echo
  # Measured by hand (how is at its top): copied, not made by this run.
  cat "$ROOT/e2e/bench/memory.md"
  echo
  echo "## First cycle with the defaults: 500 images of 30 s"
  echo
  echo "\`e2e/bench/defaults.sh\`, in this run (issue 9: defaults that finish; how it simulates the operator's"
  echo "cycle is described at its top):"
  echo
  cat "$OUT/defaults.md"
} >"$RESULTS"
cat "$RESULTS"
echo >&2
echo "raw data: $OUT (results JSON, operator logs, audit logs); table: $RESULTS" >&2
exit $fuzz_rc
