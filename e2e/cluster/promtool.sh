#!/usr/bin/env bash
# Builds promtool from Go modules (./promtool/go.mod and go.sum pin Prometheus
# $PROMETHEUS_MODULE_VERSION and all it depends on) into the version-keyed cache ($PROMTOOL_BIN)
# and prints that path on stdout; the build logs go to stderr. Does nothing but print the path
# when the binary is there (--force rebuilds).
#
# For the metric and rule checks: `promtool check metrics` on the operator's /metrics (e2e),
# `promtool check rules` / `test rules` on the chart's PrometheusRule (charts/sbomjob/tests).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$HERE/lib/common.sh"

if [[ -x $PROMTOOL_BIN && ${1:-} != --force ]]; then
  echo "$PROMTOOL_BIN"
  exit 0
fi

src=$HERE/promtool
grep -Eq "^[[:space:]]*(require )?github.com/prometheus/prometheus $PROMETHEUS_MODULE_VERSION( |$)" "$src/go.mod" ||
  die "$src/go.mod does not require prometheus $PROMETHEUS_MODULE_VERSION (versions.sh)"
# Prometheus needs a newer Go than the cluster's binaries do (find_go reads GO_MIN_VERSION).
go=$(GO_MIN_VERSION=$PROMTOOL_GO_MIN_VERSION find_go)
log "building promtool ($PROMETHEUS_MODULE_VERSION) with $("$go" env GOVERSION) into $(dirname "$PROMTOOL_BIN")"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
# A build cache of its own, removed once the binary is in place; an interrupted build
# keeps it, so the next try resumes. SBOMJOB_KEEP_GOCACHE=1 keeps it.
export GOCACHE=$SBOMJOB_CACHE/go-build-promtool
mkdir -p "$(dirname "$PROMTOOL_BIN")"
tmp=$PROMTOOL_BIN.tmp.$$
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
# The version promtool prints (`promtool --version`), as Prometheus's Makefile sets it.
# remove_all_sd: without the service discovery plugins (cloud SDKs, client-go), which only
# `promtool check config` of a scrape config would use; several times quicker to build.
(cd "$src" && "$go" build -trimpath -tags remove_all_sd \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_MODULE_VERSION" \
  -o "$tmp" github.com/prometheus/prometheus/cmd/promtool) >&2
mv "$tmp" "$PROMTOOL_BIN"
trap - EXIT
log "promtool built in $(($(date +%s) - start))s"
[[ ${SBOMJOB_KEEP_GOCACHE:-0} == 1 ]] || { chmod -R u+w "$GOCACHE" 2>/dev/null || true; rm -rf "$GOCACHE"; }
echo "$PROMTOOL_BIN"
