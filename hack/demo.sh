#!/usr/bin/env bash
# The demo: a local cluster, sbomjob installed with Helm and the syft preset, three workloads
# built here from real package sources (a Debian image of dpkg packages, a Python application
# with its PyPI packages, a Go binary with its modules), and what sbomjob did: the annotated pods,
# the records, the SBOMs syft produced (attached to each image in the local registry, fetched back
# into ./demo-output/) and one query over them with the kubectl plugin. sbomjob catalogues itself
# too: its operator's pod like any other, and its job image through an ImageSource naming that
# image's repository in the local registry, so its own job image makes the SBOM of itself.
# The cluster keeps running afterwards; `e2e/cluster/cluster.sh down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. hack/lib.sh
started=$(date +%s)
NS=sbomjob
APPS=demo-apps
OUT=${DEMO_OUTPUT:-$PWD/demo-output}

step "local cluster"
e2e/cluster/cluster.sh up
eval "$(e2e/cluster/cluster.sh env)"

step "images (operator, job image with syft, workloads)"
SBOMJOB_JOB_PRESETS=syft e2e/images/build.sh
step "kubectl sbomjob (the plugin)"
cargo build --release --locked -p sbomjob-kubectl
PLUGIN=${CARGO_TARGET_DIR:-$PWD/target}/release/kubectl-sbomjob
set -a
# shellcheck source=/dev/null # written by e2e/images/build.sh
. "$SBOMJOB_IMAGES_ENV"
set +a

step "helm install sbomjob (syft preset, registry sources from the local registry)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
helm upgrade --install sbomjob charts/sbomjob --namespace "$NS" --wait --timeout 5m \
  --set image.repository="${OPERATOR_IMAGE%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" \
  --set jobImage="$JOB_SYFT_IMAGE" \
  --set interval=1m --set debounce=5s \
  --set sources.registries="$REGISTRY" --set registryLookup.insecureRegistries="$REGISTRY" \
  --set-json 'jobEnv=[
    {"name":"ENTRYPOINT_ATTACH","value":"true"},
    {"name":"ENTRYPOINT_ATTACH_INSECURE_REGISTRIES","value":"'"$REGISTRY"'"},
    {"name":"SYFT_REGISTRY_INSECURE_USE_HTTP","value":"true"}]'

step "ImageSource: sbomjob's own job image, catalogued by itself"
JOB_REPO=${JOB_SYFT_IMAGE#"$REGISTRY"/}
JOB_REPO=${JOB_REPO%:*}
jq -n --arg ns "$NS" --arg reg "$REGISTRY" --arg repo "$JOB_REPO" --arg tag "${JOB_SYFT_IMAGE##*:}" \
  '{apiVersion: "sbomjob.io/v1alpha1", kind: "ImageSource",
    metadata: {name: "sbomjob-job-image", namespace: $ns},
    spec: {registry: $reg, repositories: [$repo], tags: {include: [$tag]}}}' | kubectl apply -f -

APPS_LIST=(debian python go)
step "workloads: ${APPS_LIST[*]}"
kubectl create namespace "$APPS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for app in "${APPS_LIST[@]}"; do
  var=WORKLOAD_${app^^}_IMAGE
  kubectl -n "$APPS" create deployment "$app" --image="${!var}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
kubectl -n "$APPS" rollout status deployment --timeout=3m

# The SBOMs the demo shows, "NAME VAR" (VAR: the image's variable in images.env): the
# workloads', then sbomjob's own two images'.
SBOMS=()
for app in "${APPS_LIST[@]}"; do SBOMS+=("$app WORKLOAD_${app^^}_IMAGE"); done
SBOMS+=("operator OPERATOR_IMAGE" "job-syft JOB_SYFT_IMAGE")

# sbom_manifest VAR: the manifest of the SBOM attached to VAR's image (tag sha256-<digest>.sbom).
sbom_manifest() {
  local image=${!1} digest_var=${1}_DIGEST repo
  repo=${image#"$REGISTRY"/}
  repo=${repo%:*}
  curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$SBOMJOB_REGISTRY_HOST/v2/$repo/manifests/sha256-${!digest_var#sha256:}.sbom"
}
annotated() {
  kubectl -n "$APPS" get pods -o json |
    jq '[.items[] | select((.metadata.annotations // {}) | keys | any(startswith("sbomjob.io/"))) ] | length'
}
attached() {
  local entry n=0
  for entry in "${SBOMS[@]}"; do
    if sbom_manifest "${entry#* }" >/dev/null 2>&1; then n=$((n + 1)); fi
  done
  echo "$n"
}

step "waiting for sbomjob to catalogue the images (the workloads, its own operator and job image)"
deadline=$(($(date +%s) + 600))
until [[ $(annotated) == "${#APPS_LIST[@]}" && $(attached) == "${#SBOMS[@]}" ]]; do
  if (($(date +%s) > deadline)); then
    kubectl -n "$NS" get jobs,pods,imagesources
    kubectl -n "$NS" logs deploy/sbomjob --tail=40
    echo "within 10 minutes, $(annotated) of ${#APPS_LIST[@]} workloads annotated, $(attached) of ${#SBOMS[@]} SBOMs attached" >&2
    exit 1
  fi
  sleep 5
done

step "annotated pods (the workloads, and sbomjob's own operator)"
for ns in "$APPS" "$NS"; do
  kubectl get pods -n "$ns" -o json | jq -r '.items[] | . as $p | (.metadata.annotations // {}) | to_entries[]
    | select(.key | startswith("sbomjob.io/")) | "\($p.metadata.namespace)/\($p.metadata.name)  \(.key)=\(.value)"'
done

step "Jobs"
kubectl -n "$NS" get jobs -l app.kubernetes.io/managed-by=sbomjob

step "the ImageSource of sbomjob's job image"
kubectl -n "$NS" get imagesources

step "what the Jobs found (ImageRecords)"
kubectl get imagerecords -o wide

step "SBOMs attached to the images in the registry (copied to $OUT)"
mkdir -p "$OUT"
for entry in "${SBOMS[@]}"; do
  name=${entry%% *} var=${entry#* }
  image=${!var}
  digest_var=${var}_DIGEST
  repo=${image#"$REGISTRY"/}
  repo=${repo%:*}
  manifest=$(sbom_manifest "$var")
  blob=$(jq -r '.layers[0].digest' <<<"$manifest")
  curl -fsS -o "$OUT/$name.spdx.json" "http://$SBOMJOB_REGISTRY_HOST/v2/$repo/blobs/$blob"
  printf '%-8s %s  subject=%s  packages=%s  -> %s\n' "$name" "$repo:sha256-${!digest_var#sha256:}.sbom" \
    "$(jq -r '.subject.digest' <<<"$manifest")" "$(jq '.packages | length' "$OUT/$name.spdx.json")" "$OUT/$name.spdx.json"
done
echo "in sbomjob's own images, the crates syft read from the binaries (built with cargo auditable):"
for name in operator job-syft; do
  printf '  %-8s %s\n' "$name" "$(jq -r '[.packages[] | select(any(.externalRefs[]?; .referenceLocator | startswith("pkg:cargo/"))) | .name]
    | "\(length) crates (\(.[0:5] | join(", ")), ...)"' "$OUT/$name.spdx.json")"
done

step "kubectl sbomjob find pip: the running containers whose SBOM lists pip"
"$PLUGIN" find pip -n "$APPS" --insecure-registry "$REGISTRY"

step "demo done in $(($(date +%s) - started)) s; the cluster keeps running (e2e/cluster/cluster.sh down stops it)"
echo "Try: eval \"\$(e2e/cluster/cluster.sh env)\"; kubectl get pods -A; kubectl -n $NS logs deploy/sbomjob"
