#!/usr/bin/env bash
# Fuzzes the entrypoint's parsers (image-config.json, the command template, the ENTRYPOINT_*
# settings) with cargo-fuzz, on the stable toolchain: no nightly can be downloaded here, so
# RUSTC_BOOTSTRAP=1 lets stable accept cargo-fuzz's -Z flags, and `-s none` drops the sanitizer
# (ASan needs a nightly std). libfuzzer-sys builds libFuzzer with the system C++ compiler.
#
#   e2e/bench/fuzz.sh [OUT.json]      FUZZ_SECONDS per target (default 80)
#
# Exits non-zero when a target crashes (the input is kept in job-image/fuzz/artifacts/).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${1:-/tmp/sbomjob-bench/out/fuzz.json}
SECS=${FUZZ_SECONDS:-80}
CARGO_FUZZ_VERSION=0.13.2
TARGETS=(config template settings)
mkdir -p "$(dirname "$OUT")"

if ! grep -q "$CARGO_FUZZ_VERSION" <<<"$(cargo fuzz --version 2>/dev/null)"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION (crates.io)" >&2
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" >&2
fi
command -v c++ >/dev/null || { echo "no C++ compiler: apt-get install g++" >&2; exit 1; }

cd "$ROOT/job-image"
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none >&2

failed=0
results=()
for t in "${TARGETS[@]}"; do
  corpus=fuzz/corpus/$t
  mkdir -p "$corpus"
  cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  extra=()
  [[ $t != config ]] || extra=(-dict=fuzz/dict.json)
  log=$(dirname "$OUT")/fuzz-$t.log
  echo "fuzzing $t for ${SECS}s" >&2
  set +e
  started=$SECONDS
  cargo fuzz run -s none "$t" "$corpus" -- -max_total_time="$SECS" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
  rc=$?
  set -e
  # What libFuzzer reports it did ("Done N runs in S second(s)"), not the budget asked for; a
  # crash ends the run early, and then no Done line: the wall time of the command stands in.
  runs=$(grep -oE 'Done [0-9]+ runs' "$log" | awk '{print $2}' | tail -1)
  ran=$(grep -oE 'runs in [0-9]+ second' "$log" | awk '{print $3}' | tail -1)
  if [[ $rc -eq 0 ]]; then
    outcome="no crash, no panic (corpus: $(find "$corpus" -mindepth 1 -maxdepth 1 ! -name '.*' -printf . | wc -c) inputs)"
  else
    outcome="FAILED (exit $rc): $(grep -m1 -E 'panicked|ERROR|SUMMARY' "$log" || tail -1 "$log")"
    failed=1
  fi
  results+=("$(jq -n --arg t "$t" --argjson s "${ran:-$((SECONDS - started))}" --argjson r "${runs:-0}" --argjson c "$rc" --arg o "$outcome" \
    '{target: $t, seconds: $s, runs: $r, exit_code: $c, outcome: $o}')")
done
printf '%s\n' "${results[@]}" | jq -s . >"$OUT"
cat "$OUT" >&2
exit $failed
