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

if [[ -x $COSIGN_BIN && ${1:-} != --force ]]; then
  echo "$COSIGN_BIN"
  exit 0
fi

src=$HERE/cosign
grep -Eq "^[[:space:]]*(require )?github.com/sigstore/cosign/v2 $COSIGN_VERSION( |$)" "$src/go.mod" ||
  die "$src/go.mod does not require cosign $COSIGN_VERSION (versions.sh)"
go=$(find_go)
log "building cosign $COSIGN_VERSION with $("$go" env GOVERSION) into $(dirname "$COSIGN_BIN")"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
# A build cache of its own, removed once the binary is in place; an interrupted build
# keeps it, so the next try resumes. SBOMJOB_KEEP_GOCACHE=1 keeps it.
export GOCACHE=$SBOMJOB_CACHE/go-build-cosign
mkdir -p "$(dirname "$COSIGN_BIN")"
tmp=$COSIGN_BIN.tmp.$$
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
# The version cosign prints (`cosign version`), as its Makefile sets it.
(cd "$src" && "$go" build -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION -X sigs.k8s.io/release-utils/version.gitTreeState=clean" \
  -o "$tmp" github.com/sigstore/cosign/v2/cmd/cosign) >&2
mv "$tmp" "$COSIGN_BIN"
trap - EXIT
log "cosign built in $(($(date +%s) - start))s"
[[ ${SBOMJOB_KEEP_GOCACHE:-0} == 1 ]] || { chmod -R u+w "$GOCACHE" 2>/dev/null || true; rm -rf "$GOCACHE"; }
echo "$COSIGN_BIN"
