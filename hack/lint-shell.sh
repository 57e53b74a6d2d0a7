#!/usr/bin/env bash
# Runs shellcheck on every shell script of the project: the *.sh files and any file without the
# extension whose first line is a sh/bash shebang (.ci/run, ...). Installs Debian's shellcheck
# when it is missing (the e2e cluster's apt helper). Sourced files are followed (-x), relative to
# the script that sources them. Default severity: style and up.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../e2e/cluster/lib/common.sh
. e2e/cluster/lib/common.sh

if ! command -v shellcheck >/dev/null; then
  # Read by ensure_apt_packages, from the sourced lib/common.sh.
  # shellcheck disable=SC2034
  APT_PACKAGES=(shellcheck)
  ensure_apt_packages
fi

# Tracked files and new ones not ignored yet; a deleted file is still listed until committed.
files=()
while IFS= read -r -d '' f; do
  [[ -f $f && ! -L $f ]] || continue
  case $f in
    *.sh | *.bash) files+=("$f") ;;
    *)
      first=
      IFS= read -r -n 128 first <"$f" || true
      if [[ $first =~ ^#![[:space:]]*(/usr/bin/env[[:space:]]+)?([^[:space:]]*/)?(sh|bash|dash|ksh)([[:space:]]|$) ]]; then
        files+=("$f")
      fi
      ;;
  esac
done < <(git ls-files -z --cached --others --exclude-standard)

((${#files[@]})) || die "no shell scripts found"
if ! shellcheck --external-sources --source-path=SCRIPTDIR --severity=style "${files[@]}"; then
  echo "shellcheck: findings above (${#files[@]} files checked)" >&2
  exit 1
fi
echo "shellcheck: ${#files[@]} files clean"
