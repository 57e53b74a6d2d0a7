#!/usr/bin/env bash
# The demo: a local cluster, sbomjob installed with Helm and the syft preset, three workloads
# built here from real package sources (a Debian image of dpkg packages, a Python application
# with its PyPI packages, a Go binary with its modules), and what sbomjob did: the annotated pods,
# the records, the SBOMs syft produced (attached to each image in the local registry, fetched back
# into ./demo-output/) and one query over them with the kubectl plugin.
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

step "helm install sbomjob (syft preset)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
helm upgrade --install sbomjob charts/sbomjob --namespace "$NS" --wait --timeout 5m \
  --set image.repository="${OPERATOR_IMAGE%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" \
  --set jobImage="$JOB_SYFT_IMAGE" \
  --set interval=1m --set debounce=5s \
  --set-json 'jobEnv=[
    {"name":"ENTRYPOINT_ATTACH","value":"true"},
    {"name":"ENTRYPOINT_ATTACH_INSECURE_REGISTRIES","value":"'"$REGISTRY"'"},
    {"name":"SYFT_REGISTRY_INSECURE_USE_HTTP","value":"true"}]'

APPS_LIST=(debian python go)
step "workloads: ${APPS_LIST[*]}"
kubectl create namespace "$APPS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for app in "${APPS_LIST[@]}"; do
  var=WORKLOAD_${app^^}_IMAGE
  kubectl -n "$APPS" create deployment "$app" --image="${!var}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
kubectl -n "$APPS" rollout status deployment --timeout=3m

step "waiting for sbomjob to catalogue the images"
deadline=$(( $(date +%s) + 600 ))
until [[ $(kubectl -n "$APPS" get pods -o json | jq '[.items[] | select((.metadata.annotations // {}) | keys | any(startswith("sbomjob.io/"))) ] | length') == "${#APPS_LIST[@]}" ]]; do
  if (( $(date +%s) > deadline )); then
    kubectl -n "$NS" get jobs,pods; kubectl -n "$NS" logs deploy/sbomjob --tail=40
    echo "the demo workloads were not annotated within 10 minutes" >&2; exit 1
  fi
  sleep 5
done

step "annotated pods"
kubectl get pods -n "$APPS" -o json | jq -r '.items[] | . as $p | (.metadata.annotations // {}) | to_entries[]
  | select(.key | startswith("sbomjob.io/")) | "\($p.metadata.namespace)/\($p.metadata.name)  \(.key)=\(.value)"'

step "Jobs"
kubectl -n "$NS" get jobs -l app.kubernetes.io/managed-by=sbomjob

step "what the Jobs found (ImageRecords)"
kubectl get imagerecords -o wide

step "SBOMs attached to the images in the registry (copied to $OUT)"
mkdir -p "$OUT"
for app in "${APPS_LIST[@]}"; do
  var=WORKLOAD_${app^^}_IMAGE
  image=${!var}
  digest_var=${var}_DIGEST
  digest=${!digest_var}
  repo=${image#"$REGISTRY"/}; repo=${repo%:*}
  tag="sha256-${digest#sha256:}.sbom"
  manifest=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$SBOMJOB_REGISTRY_HOST/v2/$repo/manifests/$tag")
  blob=$(jq -r '.layers[0].digest' <<<"$manifest")
  curl -fsS -o "$OUT/$app.spdx.json" "http://$SBOMJOB_REGISTRY_HOST/v2/$repo/blobs/$blob"
  printf '%-6s %s  subject=%s  packages=%s  -> %s\n' "$app" "$repo:$tag" "$(jq -r '.subject.digest' <<<"$manifest")" \
    "$(jq '.packages | length' "$OUT/$app.spdx.json")" "$OUT/$app.spdx.json"
done

step "kubectl sbomjob find pip: the running containers whose SBOM lists pip"
"$PLUGIN" find pip -n "$APPS" --insecure-registry "$REGISTRY"

step "demo done in $(( $(date +%s) - started )) s; the cluster keeps running (e2e/cluster/cluster.sh down stops it)"
echo "Try: eval \"\$(e2e/cluster/cluster.sh env)\"; kubectl get pods -A; kubectl -n $NS logs deploy/sbomjob"
