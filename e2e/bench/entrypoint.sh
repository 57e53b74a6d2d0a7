#!/usr/bin/env bash
# The entrypoint over 200 images with a real CLI (skopeo inspect) against a registry of its own
# on loopback (Debian's docker-registry at 127.0.0.1:25000): concurrency 1 vs 8, and the same CLI
# in a plain shell loop, to show what the entrypoint costs per image.
#
#   e2e/bench/entrypoint.sh ENTRYPOINT_BINARY [OUT.json]
set -euo pipefail
BIN=$(readlink -f "$1")
OUT=${2:-/tmp/sbomjob-bench/out/entrypoint.json}
IMAGES=${BENCH_IMAGES:-200}
DIR=${SBOMJOB_BENCH_DIR:-/tmp/sbomjob-bench}/entrypoint
PORT=25000
REG=127.0.0.1:$PORT
CLI='skopeo inspect --tls-verify=false docker://{reference}'

# shellcheck source=../../hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../hack/lib.sh"
# shellcheck disable=SC2034 # read by hack/lib.sh
LOG_TAG=entrypoint-bench
now() { date +%s.%N; }
since() { printf '%.6f' "$(echo "$(now) - $1" | bc -l)"; }

rm -rf "$DIR"
mkdir -p "$DIR/registry" "$DIR/out"
cat >"$DIR/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $DIR/registry
http:
  addr: $REG
YML
bg_start REG_PID "$DIR/registry.log" docker-registry serve "$DIR/registry.yml"
trap 'bg_stop "$REG_PID"' EXIT
for _ in $(seq 50); do curl -fsS -o /dev/null "http://$REG/v2/" 2>/dev/null && break; sleep 0.2; done

log "building $IMAGES distinct images (umoci) and pushing them to $REG"
umoci init --layout "$DIR/oci"
umoci new --image "$DIR/oci:base"
echo "sbomjob bench" >"$DIR/hello.txt"
umoci insert --image "$DIR/oci:base" "$DIR/hello.txt" /hello.txt
for i in $(seq 1 "$IMAGES"); do
  # A label per image: a different config blob, so a different manifest digest.
  umoci config --image "$DIR/oci:base" --tag "app-$i" --config.label "sbomjob.bench=$i"
  skopeo copy --quiet --dest-tls-verify=false --digestfile "$DIR/digest" \
    "oci:$DIR/oci:app-$i" "docker://$REG/bench/app-$i:1.0"
  printf '%s/bench/app-%s@%s\n' "$REG" "$i" "$(cat "$DIR/digest")"
done >"$DIR/refs.txt"
jq -R '{"registry-host": "", "registry-user": "", "registry-password": "", image: ., pods: [{pod: "p", namespace: "bench", cluster: "bench"}]}' \
  "$DIR/refs.txt" | jq -s . >"$DIR/image-config.json"
[[ $(jq length "$DIR/image-config.json") -eq $IMAGES ]]
# Warm the page cache and the registry once.
skopeo inspect --tls-verify=false "docker://$(head -1 "$DIR/refs.txt")" >/dev/null

run_entrypoint() {
  local c=$1 t0 rc
  t0=$(now)
  set +e
  ENTRYPOINT_CONFIG=$DIR/image-config.json ENTRYPOINT_COMMAND=$CLI ENTRYPOINT_CONCURRENCY=$c \
    ENTRYPOINT_OUTPUT_DIR=$DIR/out "$BIN" >"$DIR/entrypoint-c$c.log" 2>&1
  rc=$?
  set -e
  echo "$(since "$t0") $rc"
}

# Each variant three times, interleaved; the fastest run counts (the machine is shared).
best() { printf '%s\n' "$@" | sort -g | sed -n 1p; }
c1s=() c8s=() loops=() rc1=0 rc8=0
for round in 1 2 3; do
  log "round $round: entrypoint concurrency 1, concurrency 8, plain shell loop"
  read -r t rc < <(run_entrypoint 1)
  c1s+=("$t"); [[ $rc -eq 0 ]] || rc1=$rc
  read -r t rc < <(run_entrypoint 8)
  c8s+=("$t"); [[ $rc -eq 0 ]] || rc8=$rc
  t0=$(now)
  while read -r ref; do
    skopeo inspect --tls-verify=false "docker://$ref"
  done <"$DIR/refs.txt" >"$DIR/shell-loop.log" 2>&1
  loops+=("$(since "$t0")")
done
c1=$(best "${c1s[@]}") c8=$(best "${c8s[@]}") loop=$(best "${loops[@]}")
log "concurrency 1: ${c1s[*]}; concurrency 8: ${c8s[*]}; shell loop: ${loops[*]}"

jq -n --argjson n "$IMAGES" --arg cli "$CLI" --argjson c1 "$c1" --argjson c8 "$c8" --argjson loop "$loop" \
  --argjson ok1 "$([[ $rc1 -eq 0 ]] && echo true || echo false)" \
  --argjson ok8 "$([[ $rc8 -eq 0 ]] && echo true || echo false)" \
  --argjson runs "$(printf '%s\n' "${c1s[@]}" "${c8s[@]}" "${loops[@]}" | jq -s .)" \
  '{images: $n, cli: $cli, runs: $runs, concurrency1_s: $c1, concurrency8_s: $c8, speedup: ($c1 / $c8),
    shell_loop_s: $loop, overhead_per_image_ms: (($c1 - $loop) * 1000 / $n), ok1: $ok1, ok8: $ok8}' >"$OUT"
cat "$OUT" >&2
[[ $rc1 -eq 0 && $rc8 -eq 0 ]] || { tail -20 "$DIR"/entrypoint-c*.log >&2; exit 1; }
