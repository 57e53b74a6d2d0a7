#!/usr/bin/env bash
# Tests of docs/examples/jq-loop/entrypoint.sh (option B of docs/write-your-own-job-image.md),
# with a stand-in for skopeo that records what it got. Needs jq. Ends with "N passed, M failed".
set -uo pipefail

SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/examples/jq-loop/entrypoint.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# pass/fail and summary; a failed check shows the end of the script's output.
# shellcheck disable=SC2034 # read by hack/lib.sh
REPORT_DETAIL=tail REPORT_DETAIL_LINES=15
# shellcheck source=../../hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../hack/lib.sh"
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what" "$WORK/out"; fi
}
command -v jq >/dev/null || { echo "jq is required"; exit 1; }

# The stand-in: logs its arguments and the credentials file; fails for images named */bad@...
# Called as `skopeo run-tool-args ...` (by the copy of the script made below), it logs each of
# run_tool's arguments followed by `|`, so empty ones show.
mkdir -p "$WORK/bin"
cat >"$WORK/bin/skopeo" <<'STUB'
#!/bin/sh
if [ "$1" = run-tool-args ]; then
  shift
  printf 'run_tool: ' >>"$STUB_LOG"
  printf '%s|' "$@" >>"$STUB_LOG"
  echo >>"$STUB_LOG"
  exit 0
fi
echo "args: $*" >>"$STUB_LOG"
echo "auth: $(jq -c . "$REGISTRY_AUTH_FILE")" >>"$STUB_LOG"
[ "$DOCKER_CONFIG/config.json" = "$REGISTRY_AUTH_FILE" ] || echo "DOCKER_CONFIG differs" >>"$STUB_LOG"
case "$*" in *"/bad@"*) exit 3 ;; esac
STUB
chmod +x "$WORK/bin/skopeo"

run() { # run CONFIG-TEXT [SCRIPT]: exit code in $rc
  printf '%s' "$1" >"$WORK/config.json"
  : >"$WORK/stub.log"
  CONFIG=$WORK/config.json STUB_LOG=$WORK/stub.log PATH="$WORK/bin:$PATH" sh "${2:-$SCRIPT}" >"$WORK/out" 2>&1
  rc=$?
  cat "$WORK/stub.log" >>"$WORK/out"
}

d=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
# The second element has an empty pods list: an image an ImageSource found in a registry before
# any pod runs it.
two='[{"registry-host":"https://ghcr.io/v2/","registry-user":"robot","registry-password":"p@ss:w rd","image":"ghcr.io/acme/api@'$d'",
       "pods":[{"pod":"a","namespace":"shop","cluster":"c"},{"pod":"a","namespace":"shop","cluster":"c"}]},
      {"registry-host":"","registry-user":"","registry-password":"","image":"nginx@'$d'","pods":[]}]'
run "$two"
auth=$(printf '%s' 'robot:p@ss:w rd' | base64 | tr -d '\n')
check "two images: exit 0" test "$rc" -eq 0
check "the tool gets each image" grep -qx "args: inspect --no-tags docker://ghcr.io/acme/api@$d" "$WORK/stub.log"
check "credentials keyed by host and by registry-host" \
  grep -qxF "auth: {\"auths\":{\"ghcr.io\":{\"auth\":\"$auth\"},\"https://ghcr.io/v2/\":{\"auth\":\"$auth\"}}}" "$WORK/stub.log"
check "no credentials: an empty auths" grep -qxF 'auth: {"auths":{}}' "$WORK/stub.log"
check "DOCKER_CONFIG and REGISTRY_AUTH_FILE agree" bash -c "! grep -q 'DOCKER_CONFIG differs' '$WORK/stub.log'"
check "pods are unique in the log line" grep -q "processing ghcr.io/acme/api@$d (pods a)" "$WORK/out"
check "an element without pods is processed" grep -qx "args: inspect --no-tags docker://nginx@$d" "$WORK/stub.log"
check "an element without pods: its log line says so" grep -qxF "processing nginx@$d (pods none)" "$WORK/out"
check "an element without pods: its result line says succeeded" grep -qxF \
  "sbomjob.result/v1 {\"index\":1,\"digest\":\"$d\",\"outcome\":\"succeeded\",\"tool\":{\"name\":\"skopeo\"}}" "$WORK/out"

# What run_tool gets: a copy of the script whose run_tool hands all its arguments to the stand-in.
# shellcheck disable=SC2016 # the $1 and $@ are the script's, not expanded here
sed 's|^  skopeo inspect --no-tags "docker://$1"$|  skopeo run-tool-args "$@"|' "$SCRIPT" >"$WORK/args.sh"
check "the copy's run_tool hands on its arguments" grep -q 'skopeo run-tool-args "$@"' "$WORK/args.sh"
run "$two" "$WORK/args.sh"
check "run_tool gets the pods, namespaces and clusters" grep -qxF "run_tool: ghcr.io/acme/api@$d|a|shop|c|" "$WORK/stub.log"
check "run_tool gets empty pods, namespaces and clusters for an element without pods" \
  grep -qxF "run_tool: nginx@$d||||" "$WORK/stub.log"

run '[{"registry-host":"","registry-user":"","registry-password":"","image":"r.io/bad@'$d'","pods":[]},
      {"registry-host":"","registry-user":"","registry-password":"","image":"r.io/good@'$d'","pods":[]}]'
check "a failed image: exit 1" test "$rc" -eq 1
check "a failed image does not stop the others" grep -q "args: inspect --no-tags docker://r.io/good@$d" "$WORK/stub.log"
check "the failure is named" grep -q "FAILED r.io/bad@$d (exit code 3)" "$WORK/out"

run '[]'
check "empty config: exit 0" test "$rc" -eq 0
run '{"image":"x"}'
check "not an array: exit 2" test "$rc" -eq 2
run '[{"image":"x"}]'
check "element without the pods key: exit 2" test "$rc" -eq 2
rm -f "$WORK/config.json"
CONFIG=$WORK/config.json sh "$SCRIPT" >"$WORK/out" 2>&1
rc=$?
check "missing config: exit 2" test "$rc" -eq 2

summary
