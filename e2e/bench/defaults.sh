#!/usr/bin/env bash
# The first cycle with the chart's defaults (issue 9, "defaults that finish"): 500 distinct images
# of a tool that takes 30 s per image, through the real entrypoint, split and run the way the
# operator runs a cycle; the tool is a stand-in that only sleeps, with time scaled down (1:100:
# 0.3 s per image). Only local processes: no cluster, no registry, no CPU burnt by the tool.
#
#   e2e/bench/defaults.sh [OUT.md]
#
# Prints a Markdown table (and writes it to OUT.md, if given): for each configuration the Jobs,
# the images the tool did and the images the operator would annotate, the Jobs that hit their
# deadline, the longest Job, and the measured wall time of the cycle scaled back to real seconds.
#
# Configurations: "before" is the defaults before issue 9 (200 images per Job, 1 Job at a time,
# 3600 s, concurrency 1); "defaults" is read from the tree: charts/sbomjob/values.yaml
# (jobTimeout, job.maxImages, job.maxParallel; an empty value = operator/src/settings.rs' default)
# and ENTRYPOINT_CONCURRENCY of entrypoints/{syft,trivy}/preset.env (absent = 1); and the same
# defaults at concurrency 1 (the entrypoint's own default, as in the vcn-compatible preset and
# in job images of your own). DEFAULTS_CONFIGS="label:M:P:T:C ..." adds configurations.
#
# How the operator runs a cycle, as simulated here (operator/src/cycle.rs, objects.rs):
# - the images are split in order into Jobs of at most M images (plan_jobs), one config file each;
# - at most P Jobs run at once; the next starts as soon as one ends (`follow`);
# - each Job's entrypoint gets ENTRYPOINT_DEADLINE = T minus the operator's margin
#   (objects.rs entrypoint_deadline: max(T/10, min(10 s, T/2)), at most 600 s), divided by the scale;
# - a Job that fails (exit code not 0) annotates nothing. The operator then re-plans its images
#   within the cycle (replan.rs): the ones its report names as failed alone, the others, ok or not
#   run, together again; that is not simulated here (a Job of M images that hit its deadline would
#   hit it again), so "images annotated" counts the images of the Jobs that succeeded.
# Not simulated: pod start-up (scheduling, pulling the job image), the API calls. The entrypoint's
# own cost per image (a few ms) is not scaled, so it counts SCALE times in the real-time figures.
#
# Settings (environment): SBOMJOB_ENTRYPOINT_BIN (default: `cargo build --release -p
# sbomjob-job-image`), DEFAULTS_IMAGES (500), DEFAULTS_IMAGE_SECONDS (30), DEFAULTS_SCALE (100),
# SBOMJOB_BENCH_DIR (/tmp/sbomjob-bench).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${1:-}
IMAGES=${DEFAULTS_IMAGES:-500}
PER_IMAGE=${DEFAULTS_IMAGE_SECONDS:-30}
SCALE=${DEFAULTS_SCALE:-100}
DIR=${SBOMJOB_BENCH_DIR:-/tmp/sbomjob-bench}/defaults
MAX_JOBS=1000 # bound on the Jobs of one configuration

# shellcheck source=../../hack/lib.sh
. "$ROOT/hack/lib.sh"
# shellcheck disable=SC2034 # read by hack/lib.sh
LOG_TAG=defaults-bench
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

for v in IMAGES PER_IMAGE SCALE; do is_count "${!v}" || die "$v=${!v}: expected a whole number ≥ 1"; done
for t in jq awk timeout sleep; do command -v "$t" >/dev/null || die "$t not found"; done

# --- the entrypoint -------------------------------------------------------------------------------
if [[ -n ${SBOMJOB_ENTRYPOINT_BIN:-} ]]; then
  BIN=$(readlink -f "$SBOMJOB_ENTRYPOINT_BIN")
else
  log "building the entrypoint (release)"
  (cd "$ROOT" && cargo build --release --locked -p sbomjob-job-image >&2)
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/sbomjob-entrypoint
fi
[[ -x $BIN ]] || die "no entrypoint at $BIN"

# --- the defaults in the tree ---------------------------------------------------------------------
# value_of FILE SED-EXPRESSION: the first match, quotes removed.
value_of() { sed -n "$2" "$1" | sed -n '1{s/^"\(.*\)"$/\1/;s/^'"'"'\(.*\)'"'"'$/\1/;p}'; }
# seconds DURATION: whole seconds of "3600", "3600s", "60m", "1h"; empty if anything else.
seconds() {
  case $1 in
  *[!0-9smh]* | '') ;;
  *h) is_count "${1%h}" && echo $((${1%h} * 3600)) ;;
  *m) is_count "${1%m}" && echo $((${1%m} * 60)) ;;
  *s) is_count "${1%s}" && echo "${1%s}" ;;
  *) is_count "$1" && echo "$1" ;;
  esac
}
settings_rs=$ROOT/operator/src/settings.rs
values=$ROOT/charts/sbomjob/values.yaml
rs_images=$(value_of "$settings_rs" 's/^pub const DEFAULT_MAX_IMAGES: usize = \([0-9]*\);$/\1/p')
rs_parallel=$(value_of "$settings_rs" 's/^pub const DEFAULT_MAX_PARALLEL: usize = \([0-9]*\);$/\1/p')
rs_timeout=$(value_of "$settings_rs" 's/^pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(\([0-9]*\));$/\1/p')
chart_timeout=$(value_of "$values" 's/^jobTimeout: *\(.*\)$/\1/p')
chart_images=$(value_of "$values" 's/^  maxImages: *\(.*\)$/\1/p')
chart_parallel=$(value_of "$values" 's/^  maxParallel: *\(.*\)$/\1/p')
def_images=${chart_images:-$rs_images}
def_parallel=${chart_parallel:-$rs_parallel}
def_timeout=$(seconds "${chart_timeout:-$rs_timeout}")
for v in def_images def_parallel def_timeout; do
  is_count "${!v}" || die "cannot read the default ($v=${!v}) from $values / $settings_rs"
done
# concurrency PRESET: ENTRYPOINT_CONCURRENCY of its preset.env (the last line wins), else 1.
concurrency() {
  local c
  c=$(sed -n 's/^ENTRYPOINT_CONCURRENCY=//p' "$ROOT/entrypoints/$1/preset.env" | tail -n 1)
  c=${c:-1}
  is_count "$c" || die "entrypoints/$1/preset.env: ENTRYPOINT_CONCURRENCY=$c"
  echo "$c"
}
c_syft=$(concurrency syft)
c_trivy=$(concurrency trivy)

# Each configuration: label:M:P:T:C (the label without ":" and spaces).
configs=("before-issue-9:200:1:3600:1")
if [[ $c_syft == "$c_trivy" ]]; then
  configs+=("defaults,syft+trivy:$def_images:$def_parallel:$def_timeout:$c_syft")
else
  configs+=("defaults,syft:$def_images:$def_parallel:$def_timeout:$c_syft"
    "defaults,trivy:$def_images:$def_parallel:$def_timeout:$c_trivy")
fi
((c_syft == 1 && c_trivy == 1)) || configs+=("defaults,concurrency-1:$def_images:$def_parallel:$def_timeout:1")
read -r -a extra <<<"${DEFAULTS_CONFIGS:-}"
configs+=("${extra[@]}")

# The operator's entrypoint_deadline (operator/src/objects.rs), in whole seconds as it writes it.
entrypoint_deadline() {
  awk -v t="$1" 'BEGIN {
    m = t / 10; h = (10 < t / 2) ? 10 : t / 2; if (h > m) m = h; if (m > 600) m = 600
    d = int(t - m); if (d < 1) d = 1; print d }'
}

# --- the images and the stand-in CLI ----------------------------------------------------------------
rm -rf "$DIR"
mkdir -p "$DIR"
jq -n --argjson n "$IMAGES" '[range(1; $n + 1) | . as $i |
  {"registry-host": "", "registry-user": "", "registry-password": "",
   image: "r.example/app\($i)@sha256:\("0" * (64 - ($i | tostring | length)))\($i)",
   pods: [{pod: "p", namespace: "n", cluster: "c"}]}]' >"$DIR/image-config.json"
[[ $(jq '[.[].image] | unique | length' "$DIR/image-config.json") -eq $IMAGES ]] || die "images not distinct"
STEP=$(calc "$PER_IMAGE / $SCALE")
# The tool: sleeps its time per image (no CPU), whatever the image.
cat >"$DIR/standin" <<'EOF'
#!/bin/sh
exec sleep "$1"
EOF
chmod +x "$DIR/standin"

# --- one configuration ----------------------------------------------------------------------------
# run_job D I C DEADLINE BOUND: the entrypoint on config D/job-I.json; writes D/job-I.result:
# "start end exit-code" (seconds since the epoch).
run_job() {
  local d=$1 i=$2 c=$3 deadline=$4 bound=$5 t0 rc=0
  t0=$(now)
  env -i PATH="/usr/bin:/bin" HOME="$d" TMPDIR="$d/tmp" \
    ENTRYPOINT_CONFIG="$d/job-$i.json" ENTRYPOINT_COMMAND="$DIR/standin $STEP {reference}" \
    ENTRYPOINT_CONCURRENCY="$c" ENTRYPOINT_DEADLINE="$deadline" \
    ENTRYPOINT_TIMEOUT="$(calc "900 / $SCALE")" ENTRYPOINT_RETRIES=1 \
    ENTRYPOINT_TERMINATION_LOG="$d/job-$i.termination" ENTRYPOINT_PRESET_FILE="$d/no-preset.env" \
    timeout -k 5 "$bound" "$BIN" >"$d/job-$i.log" 2>&1 || rc=$?
  echo "$t0 $(now) $rc" >"$d/job-$i.result"
}

rows=() details=()
declare -A wall_of annotated_of
for config in "${configs[@]}"; do
  IFS=: read -r label m p t c <<<"$config"
  for v in m p t c; do is_count "${!v}" || die "configuration $config: $v=${!v}"; done
  njobs=$(((IMAGES + m - 1) / m))
  ((njobs <= MAX_JOBS)) || die "configuration $config: $njobs Jobs (more than $MAX_JOBS)"
  dl=$(entrypoint_deadline "$t")
  dl_scaled=$(calc "$dl / $SCALE")
  bound=$(calc "$dl_scaled * 2 + 30")
  d=$DIR/$label
  mkdir -p "$d/tmp"
  for ((i = 0; i < njobs; i++)); do
    jq -c ".[$((i * m)):$(((i + 1) * m))]" "$DIR/image-config.json" >"$d/job-$i.json"
  done
  log "$label: $IMAGES images, $njobs Jobs of ≤ $m, $p at once, concurrency $c, entrypoint deadline ${dl} s (${dl_scaled} s scaled); load $(cut -d' ' -f1-3 /proc/loadavg)"
  start=$(now)
  for ((i = 0; i < njobs; i++)); do
    # As the operator: no more than P at once; the next starts when one ends.
    for ((spins = 0; spins < njobs + 1; spins++)); do
      (($(jobs -rp | wc -l) < p)) && break
      wait -n || true
    done
    run_job "$d" "$i" "$c" "$dl_scaled" "$bound" &
  done
  wait
  end=$(now)

  ok=0 annotated=0 hit=0 longest=0 failed_jobs=0 list=()
  for ((i = 0; i < njobs; i++)); do
    read -r t0 t1 rc <"$d/job-$i.result"
    n=$(jq length "$d/job-$i.json")
    secs=$(calc "($t1 - $t0) * $SCALE")
    longest=$(awk -v a="$longest" -v b="$secs" 'BEGIN { print (b > a) ? b : a }')
    report=$(cat "$d/job-$i.termination" 2>/dev/null || true)
    job_ok=$(jq -r 'if has("ok") then .ok | length else "?" end' <<<"${report:-null}" 2>/dev/null || echo "?")
    job_failed=$(jq -r '.failed | length' <<<"${report:-null}" 2>/dev/null || echo "?")
    [[ $job_ok == "?" ]] || ok=$((ok + job_ok))
    deadline_hit=no
    if grep -q 'DEADLINE of .* reached' "$d/job-$i.log"; then deadline_hit=yes hit=$((hit + 1)); fi
    if [[ $rc -eq 0 ]]; then annotated=$((annotated + n)); else failed_jobs=$((failed_jobs + 1)); fi
    list+=("$n images: $(printf '%.0f' "$secs") s, exit $rc, $job_ok ok, $job_failed failed$([[ $deadline_hit == no ]] || echo ', deadline')")
  done
  wall=$(calc "($end - $start) * $SCALE")
  # What the same plan takes by arithmetic: each Job ceil(n/C) × the time per image (at most the
  # deadline), P at a time, the next starting when one ends.
  model=$(for ((i = 0; i < njobs; i++)); do jq length "$d/job-$i.json"; done |
    awk -v c="$c" -v s="$PER_IMAGE" -v p="$p" -v dl="$dl" '{
      w = int(($1 + c - 1) / c) * s; if (w > dl) w = dl
      k = 0; for (j = 1; j < p; j++) if (free[j] < free[k]) k = j
      free[k] += w; if (free[k] > end) end = free[k] }
      END { printf "%d", end }')
  finishes=no
  if ((failed_jobs == 0 && annotated == IMAGES)); then finishes=yes; fi
  wall_of[$label]=$wall annotated_of[$label]=$annotated
  pct=$(awk -v a="$longest" -v b="$dl" 'BEGIN { printf "%d", 100 * a / b }')
  rows+=("| $label: M=$m, P=$p, T=$t, C=$c | $njobs | $ok / $IMAGES | $annotated / $IMAGES | $hit | $(printf '%.0f' "$longest") s / $dl s ($pct %) | **$(printf '%.0f' "$wall") s** ($(awk -v w="$wall" 'BEGIN { printf "%d h %02d min", w / 3600, (w % 3600) / 60 }')) | $model s | **$finishes** |")
  joined=$(printf '%s; ' "${list[@]}")
  details+=("- $label: ${joined%; }")
  log "$label: done in $(printf '%.1f' "$(calc "$end - $start")") s scaled ($(printf '%.0f' "$wall") s real): $annotated images annotated, $hit Jobs hit the deadline"
done

# --- the table ------------------------------------------------------------------------------------
before=${configs[0]%%:*} new=${configs[1]%%:*}
{
  echo "$IMAGES distinct images, a stand-in tool of $PER_IMAGE s per image (\`sleep\`, scaled 1:$SCALE: $STEP s), through \`sbomjob-entrypoint\`;"
  echo "M = images per Job (\`SBOM_JOB_MAX_IMAGES\`), P = Jobs at once (\`SBOM_JOB_MAX_PARALLEL\`), T = \`SBOM_JOB_TIMEOUT\` (s),"
  echo "C = \`ENTRYPOINT_CONCURRENCY\`. Times scaled back to real seconds; \"model\" is the same plan by arithmetic."
  echo
  echo "| configuration | Jobs | images the tool did (ok) | images annotated (Jobs that succeeded) | Jobs that hit the deadline | longest Job / entrypoint deadline | cycle wall time (measured) | model | cycle finishes |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
  echo
  awk -v a="${wall_of[$before]}" -v b="${wall_of[$new]}" -v na="${annotated_of[$before]}" -v nb="${annotated_of[$new]}" \
    -v l1="$before" -v l2="$new" 'BEGIN {
      printf "**%s vs %s**: wall time of the cycle %.2f× (%.0f s vs %.0f s); images annotated per hour of the cycle: %.0f vs %.0f (%.1f×).\n",
        l2, l1, b / a, b, a, nb * 3600 / b, na * 3600 / a, (na > 0) ? (nb / b) / (na / a) : 0 }'
  [[ ${annotated_of[$before]} -eq $IMAGES ]] || echo "The $before cycle does not finish: its Jobs that hit the deadline annotate nothing, and the operator runs their images again together (replan.rs), which hits the same deadline."
  echo
  echo "Jobs, in order:"
  echo
  printf '%s\n' "${details[@]}"
} | tee "${OUT:-/dev/null}"
