#!/usr/bin/env bash
# The end-to-end suite on the running local cluster (`make test`'s last step; run
# `eval "$(e2e/cluster/cluster.sh env)"` first when calling it by hand).
#
#   hack/e2e.sh              every file of e2e/tests, plus the e2e crate's own unit tests
#   hack/e2e.sh FILE...      only these files (names as in e2e/tests/, without .rs)
#
# A test file is one test binary, and its tests run one at a time (--test-threads=1). Files
# run $SBOMJOB_E2E_LANES at a time (default 2): every scenario has its own namespaces, unique
# images, its own Helm releases and a settings identity no other run has, and the suite mostly
# waits on the cluster, so two files side by side halve the wall time without sharing state.
# A file that disturbs the whole cluster (reliability restarts the API server) runs alone,
# before the others.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. hack/lib.sh
# Read by log and die, from the sourced lib.sh.
# shellcheck disable=SC2034
LOG_TAG=e2e

# Files that must have the cluster to themselves (reliability restarts the API server; upgrade
# puts the previous chart's ImageRecord CRD in force for a while).
ALONE=(reliability upgrade)
# The others, longest first so that the lanes end close together (a file missing here runs
# after these; every file of e2e/tests runs).
LONGEST_FIRST=(isolation scenarios beyond releases leader tenants results admission secrets)
LANES=${SBOMJOB_E2E_LANES:-2}
[[ $LANES =~ ^[1-9][0-9]*$ ]] || die "SBOMJOB_E2E_LANES must be a whole number >= 1, not '$LANES'"

# --one NAME: runs one binary from the list made below; its output goes to a log printed in
# one piece when it ends (two lanes never interleave), and a result line is appended.
if [[ ${1:-} == --one ]]; then
  name=$2
  exe=$(awk -F'\t' -v n="$name" '$1 == n { print $2 }' "$E2E_WORK/bins.tsv")
  start=$(date +%s) rc=0
  (cd e2e && "$exe" --test-threads=1) >"$E2E_WORK/$name.log" 2>&1 || rc=$?
  took=$(($(date +%s) - start))
  {
    flock 9
    printf -- '---- %s: exit %s in %s s (%s)\n' "$name" "$rc" "$took" "$(date +%H:%M:%S)"
    cat "$E2E_WORK/$name.log"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$took" >>"$E2E_WORK/results.tsv"
  } 9>"$E2E_WORK/print.lock"
  # Never 255: that would stop xargs before the other files ran.
  exit $((rc == 0 ? 0 : 1))
fi

E2E_WORK=$(mktemp -d)
export E2E_WORK
trap 'rm -rf "$E2E_WORK"' EXIT

# Build once; the binaries' paths come from cargo's own messages (NAME<TAB>PATH, NAME being the
# file name for tests/*.rs and "unit-<target>" for the crate's library and bench binary).
log "building the e2e test binaries"
cargo test --locked -p sbomjob-e2e --no-run --message-format=json-render-diagnostics |
  jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null)
         | [(if .target.kind == ["test"] then .target.name else "unit-" + .target.name end), .executable]
         | @tsv' >"$E2E_WORK/bins.tsv"

mapfile -t all < <(cut -f1 "$E2E_WORK/bins.tsv")
has() { local x; for x in "${all[@]}"; do [[ $x == "$1" ]] && return 0; done; return 1; }
wanted=("$@")
if ((${#wanted[@]} == 0)); then wanted=("${all[@]}"); fi
for n in "${wanted[@]}"; do has "$n" || die "no e2e test file '$n' (have: ${all[*]})"; done
is_wanted() { local x; for x in "${wanted[@]}"; do [[ $x == "$1" ]] && return 0; done; return 1; }

alone=() lanes=()
for n in "${ALONE[@]}"; do is_wanted "$n" && alone+=("$n"); done
for n in "${LONGEST_FIRST[@]}"; do is_wanted "$n" && lanes+=("$n"); done
for n in "${wanted[@]}"; do
  case " ${ALONE[*]} ${LONGEST_FIRST[*]} " in *" $n "*) ;; *) lanes+=("$n") ;; esac
done

started=$(date +%s)
for n in "${alone[@]}"; do
  log "$n (alone on the cluster)"
  "$0" --one "$n" || true
done
if ((${#lanes[@]})); then
  log "${lanes[*]} ($LANES at a time)"
  printf '%s\n' "${lanes[@]}" | xargs -P "$LANES" -n 1 "$0" --one || true
fi

echo
echo "e2e files (exit, seconds):"
sort "$E2E_WORK/results.tsv" | awk -F'\t' '{ printf "  %-14s %s %5s s\n", $1, ($2 == 0 ? "ok  " : "FAIL"), $3 }'
ran=$(wc -l <"$E2E_WORK/results.tsv")
bad=$(awk -F'\t' '$2 != 0' "$E2E_WORK/results.tsv" | wc -l)
echo "e2e: $((ran - bad)) of ${#wanted[@]} files passed in $(($(date +%s) - started)) s"
((ran == ${#wanted[@]} && bad == 0))
