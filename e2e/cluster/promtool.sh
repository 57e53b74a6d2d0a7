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

force=0
[[ ${1:-} == --force ]] && force=1
# Prometheus needs a newer Go than the cluster's binaries do (find_go reads GO_MIN_VERSION).
# remove_all_sd: without the service discovery plugins (cloud SDKs, client-go), which only
# `promtool check config` of a scrape config would use; several times quicker to build. The
# version is the one `promtool --version` prints, set as Prometheus's Makefile sets it.
GO_MIN_VERSION=$PROMTOOL_GO_MIN_VERSION build_go_tool promtool "$HERE/promtool" \
  github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION" \
  github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_BIN" "$force" -- \
  -tags remove_all_sd \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_MODULE_VERSION"
