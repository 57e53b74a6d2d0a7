#!/usr/bin/env bash
# Every test of the project, as CI runs it: format and lints, unit and process tests, chart
# checks, then the end-to-end suite on a local cluster that this script starts and always stops.
# Installs what it needs (idempotently); slow builds are cached under ~/.cache/sbomjob.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. hack/lib.sh
started=$(date +%s)

# The cluster's binaries (etcd and Kubernetes, ~20 min on a fresh machine, cached after),
# cosign for the provenance tests (~2 min) and promtool for the metrics and rules checks (~6 min
# of CPU) build in the background while the lints and unit tests run: the Go module downloads
# and the link steps leave a core free. Their output goes to a log shown when the cluster step
# waits for them.
bins_log=$(mktemp)
bins_pid=
bg_start bins_pid "$bins_log" bash -c \
  'e2e/cluster/build-binaries.sh && e2e/cluster/cosign.sh >/dev/null && e2e/cluster/promtool.sh >/dev/null'
trap 'bg_stop "$bins_pid"; rm -f "$bins_log"' EXIT

DEBUG_BIN=${CARGO_TARGET_DIR:-target}/debug

step "Rust toolchain components"
rustup component add clippy rustfmt >/dev/null 2>&1 || true

step "format and lints"
# Shell scripts first (a few seconds): the later steps run them.
hack/lint-shell.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit and process tests"
# The entrypoint's process tests use Debian's skopeo, docker-registry and umoci.
e2e/cluster/cluster.sh deps
cargo test --locked

step "Dockerfiles, presets, documented examples"
hack/lint-images.sh
# Every debug binary the later steps run (the chart's checks use the operator and crdgen).
cargo build --locked -p sbomjob-job-image -p sbomjob-operator -p sbomjob-kubectl
# The rest of the Rust builds (e2e test binaries, the images' musl release build) go to the
# background now: from here until the images step nothing else compiles Rust (cargo would wait
# for the build lock), and these steps mostly wait on the network, Helm and the cluster.
rust_log=$(mktemp)
rust_pid=
# `cross`: the arm64 build (binaries and images, checked, no registry needed).
bg_start rust_pid "$rust_log" bash -c 'cargo test --locked -p sbomjob-e2e --no-run && e2e/images/build.sh compile && e2e/images/build.sh cross'
trap 'bg_stop "$bins_pid" "$rust_pid"; rm -f "$bins_log" "$rust_log"' EXIT
SBOMJOB_ENTRYPOINT_BIN=$DEBUG_BIN/sbomjob-entrypoint PRESETS_FETCH=1 entrypoints/tests/presets.sh
docs/tests/examples.sh
# The settings tables of docs/configuration.md and job-image/README.md are the binaries' --print-settings.
python3 docs/tests/settings.py check "$DEBUG_BIN/sbomjob-operator" "$DEBUG_BIN/sbomjob-entrypoint"

step "cluster binaries"
bins_rc=0; wait "$bins_pid" || bins_rc=$?
cat "$bins_log"; rm -f "$bins_log"
((bins_rc == 0)) || { echo "the background builds (cluster binaries, cosign, promtool) failed ($bins_rc)" >&2; exit "$bins_rc"; }
# The chart's checks and the e2e suite lint metrics and rules with it (they fail without it).
SBOMJOB_PROMTOOL=$(e2e/cluster/promtool.sh)
export SBOMJOB_PROMTOOL

# After the cluster binaries: the admission policy check runs with policycheck, built with them.
step "Helm chart"
# The chart's checks compare crds/ with crdgen and feed the operator every setting: name the
# ones built from this tree above (lint.sh would otherwise take a release or musl build left
# under target/ by an earlier run, possibly stale).
SBOMJOB_OPERATOR_BIN=$DEBUG_BIN/sbomjob-operator SBOMJOB_CRDGEN_BIN=$DEBUG_BIN/crdgen \
  charts/sbomjob/tests/lint.sh

step "local cluster"
trap 'bg_stop "$rust_pid"; rm -f "$rust_log"; step "stopping the local cluster"; e2e/cluster/cluster.sh down' EXIT
e2e/cluster/cluster.sh up
eval "$(e2e/cluster/cluster.sh env)"

step "helm install --dry-run against the local cluster"
charts/sbomjob/tests/lint.sh install

step "images"
rust_rc=0; wait "$rust_pid" || rust_rc=$?
cat "$rust_log"; rm -f "$rust_log"
((rust_rc == 0)) || { echo "the e2e test binaries, the musl build or the arm64 build failed ($rust_rc)" >&2; exit "$rust_rc"; }
e2e/images/build.sh

step "end-to-end suite"
hack/e2e.sh

step "all tests passed in $(( $(date +%s) - started )) s"
