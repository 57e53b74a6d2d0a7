#!/usr/bin/env bash
# Builds cosign $COSIGN_VERSION from Go modules (./cosign/go.mod and go.sum pin it and all it
# depends on) into the version-keyed cache ($COSIGN_BIN) and prints that path on stdout; the build
# logs go to stderr. Does nothing but print the path when the binary is there (--force rebuilds).
#
# For the provenance tests: key pairs made offline (cosign generate-key-pair), sign and attest
# with --tlog-upload=false, the classic sha256-<hex>.sig / .att tags (cosign v2's format; v3
# writes Sigstore bundles through the referrers API by default, see versions.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$HERE/lib/common.sh"

force=0
[[ ${1:-} == --force ]] && force=1
# The version is the one `cosign version` prints, set as cosign's Makefile sets it.
build_go_tool cosign "$HERE/cosign" github.com/sigstore/cosign/v2 "$COSIGN_VERSION" \
  github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_BIN" "$force" -- \
  -ldflags "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION -X sigs.k8s.io/release-utils/version.gitTreeState=clean"
