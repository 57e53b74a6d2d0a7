#!/bin/sh
# A job image that abuses the result channel (docs/write-your-own-job-image.md, "Reporting what
# you found"), for e2e/tests/results.rs. For the first element of its config it prints:
#   - a valid result line (packages 1), later overridden;
#   - about 10 MB of result lines that are not JSON;
#   - two lines longer than the 4096-byte bound, one for its own digest;
#   - well-formed lines for a digest not in its config and for an index past its end;
#   - a line whose tool name is out of bounds;
#   - last, the valid line that must count (packages 7, tool "hostile").
# Then it exits 0, so the Job completes and its log is read.
# The jq programs below name jq variables ($d), not shell ones.
# shellcheck disable=SC2016
set -eu
CONFIG=/sbom/image-config.json
digest=$(jq -r '.[0].image | split("@")[1]' "$CONFIG")
other=sha256:$(printf '%064d' 0 | tr 0 e)
line() { printf 'sbomjob.result/v1 %s\n' "$(jq -nc "$@")"; }

line --arg d "$digest" '{index: 0, digest: $d, outcome: "succeeded", packages: 1}'
# 2400 lines of about 4 KB that are not JSON (under the line bound; under the kubelet's 10 MiB
# log file, whose rotation would hide what came before it).
junk=$(head -c 4000 /dev/zero | tr '\0' x)
yes "sbomjob.result/v1 {\"index\":0,\"junk\":\"$junk" | head -n 2400
# Over the bound: 5 KB, and one line of 256 KB.
line --arg d "$digest" --arg pad "$(head -c 5000 /dev/zero | tr '\0' x)" \
  '{index: 0, digest: $d, outcome: "succeeded", tool: {name: "padded", version: $pad}}'
printf 'sbomjob.result/v1 %s\n' "$(head -c 262144 /dev/zero | tr '\0' y)"
line --arg d "$other" '{index: 0, digest: $d, outcome: "succeeded", packages: 99}'
line --arg d "$other" '{index: 5, digest: $d, outcome: "succeeded", packages: 99}'
line --arg d "$digest" --arg name "$(head -c 100 /dev/zero | tr '\0' n)" \
  '{index: 0, digest: $d, outcome: "succeeded", tool: {name: $name}}'
line --arg d "$digest" '{index: 0, digest: $d, outcome: "succeeded", tool: {name: "hostile", version: "1.0"}, packages: 7, findings: {critical: 1, high: 2, medium: 3, low: 4, unknown: 0}}'
