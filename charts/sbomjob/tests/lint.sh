#!/usr/bin/env bash
# Static tests of the sbomjob chart; no cluster needed.
#
#   charts/sbomjob/tests/lint.sh            every check (helm install --dry-run only with a cluster)
#   charts/sbomjob/tests/lint.sh install    only the helm install --dry-run checks; needs a cluster
#
# - helm lint, with jobImage set
# - helm template with the defaults (+ jobImage), with replicaCount=2 + metrics.enabled ("ha"),
#   with cache.ttl=0 + leaderElection.enabled=false + podEvents=none + crds.upgrade.enabled=false ("off"), on a 1.33
#   capability set with the admission policy "auto" and off ("policy", "policyoff"), and with
#   ci/full-values.yaml (every value; with crds/), all validated against the
#   Kubernetes 1.33 schemas (kubernetes-validate --strict; the ServiceMonitor, a Prometheus
#   Operator CRD, has no schema there and is checked by check_render.py only)
# - assertions on the renders (tests/check_render.py): env mapping, admin port and probes,
#   strategy, metrics Service/ServiceMonitor, RBAC, security, and a cross-check with
#   the operator's `--print-settings` (the variables it reads, from operator/src/settings/table.rs)
# - the admission policy's CEL evaluated by the API server's code on allowed and denied pod
#   updates (policycheck, built with the e2e cluster's binaries; skipped until it is); cluster-scoped
#   names differ between namespaces and between releases
# - crds/imagerecords.yaml and crds/imagesources.yaml: present, one CRD each, and (with a built
#   crdgen) current
# - values the schema or the templates must refuse, with the message a user sees
# - NOTES.txt renders, and its jq query lists annotations of a sample pod list
# - if an operator binary is built, it accepts every setting of the full render
# - yamllint on values.yaml and ci/full-values.yaml
# - with a reachable cluster (KUBECONFIG), helm install --dry-run refuses a missing jobImage and
#   a value of the wrong type with the schema's message, and accepts jobImage alone
#
# helm comes from PATH or e2e/cluster/tools.sh; kubernetes-validate and yamllint are installed
# into a venv under $SBOMJOB_CACHE (default ~/.cache/sbomjob). Ends with "N passed, M failed".
set -uo pipefail
MODE=${1:-all}
[[ $MODE == all || $MODE == install ]] || { echo "usage: $0 [install]" >&2; exit 2; }

CHART=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_ROOT=$(cd "$CHART/../.." && pwd)
CACHE=${SBOMJOB_CACHE:-$HOME/.cache/sbomjob}
K8S_VERSION=1.33.0
# K8S_BIN_DIR: where the cluster's binaries (and policycheck) are cached.
# shellcheck source=../../../e2e/cluster/versions.sh
. "$REPO_ROOT/e2e/cluster/versions.sh"
KUBERNETES_VALIDATE_VERSION=1.37.0
YAMLLINT_VERSION=1.38.0

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# pass/fail/skip and summary (a failed check shows the start of its output).
# shellcheck source=../../../hack/lib.sh
. "$REPO_ROOT/hack/lib.sh"

log() { printf '%s\n' "$*" >&2; }

# --- helm install --dry-run (needs a reachable API server) -------------------------------------
# helm 3.18 asks the API server even for --dry-run=client, so these need a cluster; hack/test.sh
# runs them again (`lint.sh install`) once the local cluster is up.
install_checks() {
  if ! { [[ -n ${KUBECONFIG:-} ]] && timeout 10 helm list >/dev/null 2>&1; }; then
    if [[ $MODE == install ]]; then
      fail "helm install --dry-run: no reachable cluster in KUBECONFIG"
    else
      skip "helm install --dry-run (no reachable cluster in KUBECONFIG; hack/test.sh runs it with one)"
    fi
    return
  fi
  if helm install sbomjob-lint "$CHART" --dry-run=server >"$WORK/install.out" 2>&1; then
    fail "helm install --dry-run refuses a missing jobImage" "$WORK/install.out"
  elif grep -qF "jobImage: String length must be greater than or equal to 1" "$WORK/install.out"; then
    pass "helm install --dry-run refuses a missing jobImage"
  else
    fail "helm install --dry-run refuses a missing jobImage (other message)" "$WORK/install.out"
  fi
  if helm install sbomjob-lint "$CHART" --dry-run=server --set jobImage=x \
    --set-json 'job.maxImages="x"' >"$WORK/install.out" 2>&1; then
    fail "helm install --dry-run refuses job.maxImages of the wrong type" "$WORK/install.out"
  elif grep -qF "job.maxImages: Invalid type. Expected: integer, given: string" "$WORK/install.out"; then
    pass "helm install --dry-run refuses job.maxImages of the wrong type"
  else
    fail "helm install --dry-run refuses job.maxImages of the wrong type (other message)" "$WORK/install.out"
  fi
  if helm install sbomjob-lint "$CHART" --dry-run=server --set jobImage=x >"$WORK/install.out" 2>&1; then
    pass "helm install --dry-run=server --set jobImage=x"
  else
    fail "helm install --dry-run=server --set jobImage=x" "$WORK/install.out"
  fi
}

# --- tools ---------------------------------------------------------------------------------
if ! command -v helm >/dev/null || ! grep -q '^v3\.' <<<"$(helm version --short 2>/dev/null)"; then
  if [[ -x $REPO_ROOT/e2e/cluster/tools.sh ]]; then
    PATH="$("$REPO_ROOT/e2e/cluster/tools.sh" 2>/dev/null):$PATH"
  fi
fi
command -v helm >/dev/null || { log "helm 3 not found (put it on PATH or run e2e/cluster/tools.sh)"; exit 1; }

VENV=$CACHE/tools/chart-lint-kv$KUBERNETES_VALIDATE_VERSION-yl$YAMLLINT_VERSION
if [[ ! -x $VENV/bin/kubernetes-validate || ! -x $VENV/bin/yamllint ]]; then
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and yamllint $YAMLLINT_VERSION into $VENV"
  rm -rf "$VENV"
  if ! { python3 -m venv "$VENV" &&
    "$VENV/bin/pip" install -q --disable-pip-version-check \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "yamllint==$YAMLLINT_VERSION" >&2; }; then
    log "could not install the Python tools"
    exit 1
  fi
fi
PY=$VENV/bin/python
log "helm $(helm version --short), kubernetes-validate $KUBERNETES_VALIDATE_VERSION (-k $K8S_VERSION --strict)"

if [[ $MODE == install ]]; then
  install_checks
  summary
  exit
fi

# --- lint and render -------------------------------------------------------------------------
if helm lint "$CHART" --strict --set jobImage=x >"$WORK/lint.out" 2>&1; then
  pass "helm lint --strict --set jobImage=x"
else
  fail "helm lint --strict --set jobImage=x" "$WORK/lint.out"
fi

render() { # render NAME helm-template-args...
  local name=$1
  shift
  if helm template sbomjob "$CHART" --namespace sbomjob "$@" >"$WORK/$name.yaml" 2>"$WORK/$name.err"; then
    pass "helm template ($name)"
  else
    fail "helm template ($name)" "$WORK/$name.err"
    return 1
  fi
  if "$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" --quiet "$WORK/$name.yaml" >"$WORK/$name.kv" 2>&1; then
    pass "kubernetes-validate --strict -k $K8S_VERSION ($name)"
  else
    fail "kubernetes-validate --strict -k $K8S_VERSION ($name)" "$WORK/$name.kv"
  fi
}

# check_render.py prints one ok/FAIL line per assertion; count them.
count_checks() {
  local out=$1 line
  while IFS= read -r line; do
    case $line in
      "ok    "*) pass "${line#ok    }" ;;
      "FAIL  "*) fail "${line#FAIL  }" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done <"$out"
}

# The operator binary (SBOMJOB_OPERATOR_BIN, else a build under target/): its --print-settings
# is what the chart's values are checked against, and it must accept the full render's env.
operator_bin=${SBOMJOB_OPERATOR_BIN:-}
for candidate in "$REPO_ROOT/target/x86_64-unknown-linux-musl/release/sbomjob-operator" \
  "$REPO_ROOT/target/release/sbomjob-operator" "$REPO_ROOT/target/debug/sbomjob-operator"; do
  [[ -n $operator_bin || ! -x $candidate ]] || operator_bin=$candidate
done
settings_args=()
if [[ -z $operator_bin ]]; then
  skip "cross-check with the operator's settings (no operator binary under target/; set SBOMJOB_OPERATOR_BIN)"
elif "$operator_bin" --print-settings >"$WORK/settings.json" 2>"$WORK/settings.err"; then
  settings_args=("$WORK/settings.json" "$CHART/templates/_helpers.tpl")
else
  fail "$operator_bin --print-settings" "$WORK/settings.err"
fi

if render default --set jobImage=x; then
  "$PY" "$CHART/tests/check_render.py" default "$WORK/default.yaml" "${settings_args[@]:0:1}" >"$WORK/default.checks" 2>&1 ||
    grep -q '^FAIL' "$WORK/default.checks" || fail "check_render.py default crashed" "$WORK/default.checks"
  count_checks "$WORK/default.checks"
fi
if render ha --set jobImage=x --set replicaCount=2 --set metrics.enabled=true; then
  "$PY" "$CHART/tests/check_render.py" ha "$WORK/ha.yaml" >"$WORK/ha.checks" 2>&1 ||
    grep -q '^FAIL' "$WORK/ha.checks" || fail "check_render.py ha crashed" "$WORK/ha.checks"
  count_checks "$WORK/ha.checks"
fi

if render off --set jobImage=x --set-json cache.ttl=0 --set leaderElection.enabled=false --set podEvents=none \
  --set rbac.aggregateToDefaultRoles=false --set crds.upgrade.enabled=false; then
  "$PY" "$CHART/tests/check_render.py" off "$WORK/off.yaml" >"$WORK/off.checks" 2>&1 ||
    grep -q '^FAIL' "$WORK/off.checks" || fail "check_render.py off crashed" "$WORK/off.checks"
  count_checks "$WORK/off.checks"
fi

# --include-crds: crds/imagerecords.yaml is validated and cross-checked with the RBAC rule too.
if render full -f "$CHART/ci/full-values.yaml" --include-crds; then
  "$PY" "$CHART/tests/check_render.py" full "$WORK/full.yaml" "$CHART/ci/full-values.yaml" "${settings_args[@]}" \
    >"$WORK/full.checks" 2>&1 ||
    grep -q '^FAIL' "$WORK/full.checks" || fail "check_render.py full crashed" "$WORK/full.checks"
  count_checks "$WORK/full.checks"
fi

# --- the admission policy, the NetworkPolicy, names of cluster-scoped objects ------------------
# What a 1.33 cluster serves: helm install finds the ValidatingAdmissionPolicy API there, helm
# template only when told.
CAPABILITIES=(--kube-version "$K8S_VERSION" --api-versions admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy)
if render policy --set jobImage=x "${CAPABILITIES[@]}"; then
  "$PY" "$CHART/tests/check_render.py" policy "$WORK/policy.yaml" >"$WORK/policy.checks" 2>&1 ||
    grep -q '^FAIL' "$WORK/policy.checks" || fail "check_render.py policy crashed" "$WORK/policy.checks"
  count_checks "$WORK/policy.checks"
fi
if render policyoff --set jobImage=x "${CAPABILITIES[@]}" --set admissionPolicy.enabled=false; then
  "$PY" "$CHART/tests/check_render.py" policyoff "$WORK/policyoff.yaml" >"$WORK/policyoff.checks" 2>&1 ||
    grep -q '^FAIL' "$WORK/policyoff.checks" || fail "check_render.py policyoff crashed" "$WORK/policyoff.checks"
  count_checks "$WORK/policyoff.checks"
fi

# The policy's CEL, evaluated by the API server's own admission code (policycheck, Go, the
# cluster's Kubernetes version) on pod updates that must be allowed or denied. The binary is
# built with the cluster's (e2e/cluster/build-binaries.sh; hack/test.sh runs this script once
# it is there); SBOMJOB_POLICYCHECK_BIN points at another build.
policycheck_bin=${SBOMJOB_POLICYCHECK_BIN:-$K8S_BIN_DIR/policycheck}
if [[ ! -x $policycheck_bin ]]; then
  skip "admission policy evaluation (no $policycheck_bin yet: e2e/cluster/build-binaries.sh builds it)"
elif [[ -f $WORK/policy.yaml ]]; then
  # The operator's user name and prefix as the render has them: sbomjob in sbomjob, sbomjob.io.
  "$policycheck_bin" -user system:serviceaccount:sbomjob:sbomjob -prefix sbomjob.io "$WORK/policy.yaml" \
    >"$WORK/policycheck.checks" 2>&1 ||
    grep -q '^FAIL' "$WORK/policycheck.checks" || fail "policycheck crashed" "$WORK/policycheck.checks"
  count_checks "$WORK/policycheck.checks"
else
  fail "admission policy evaluation: the policy render is missing"
fi

# One release name in two namespaces, and a second release next to the first.
for target in "sbomjob team-a" "sbomjob team-b" "other team-a"; do
  read -r release namespace <<<"$target"
  helm template "$release" "$CHART" --namespace "$namespace" --set jobImage=x --set admissionPolicy.enabled=true \
    >"$WORK/names-$release-$namespace.yaml" 2>"$WORK/names.err" || fail "helm template $release -n $namespace" "$WORK/names.err"
done
"$PY" "$CHART/tests/check_render.py" names "$WORK/names-sbomjob-team-a.yaml" "$WORK/names-sbomjob-team-b.yaml" \
  "$WORK/names-other-team-a.yaml" >"$WORK/names.checks" 2>&1 ||
  grep -q '^FAIL' "$WORK/names.checks" || fail "check_render.py names crashed" "$WORK/names.checks"
count_checks "$WORK/names.checks"

# --- the CRDs ----------------------------------------------------------------------------------
# helm installs crds/ on install (never on upgrade); the operator's unit tests and crdgen keep
# them in step with operator/src/cache/record.rs and operator/src/sources/spec.rs.
# crd_ok FILE NAME SCOPE: one CRD of that name and scope, served and stored as v1alpha1.
crd_ok() {
  local file=$1 name=$2 scope=$3
  if [[ -f $file ]] && "$PY" - "$file" "$name" "$scope" >"$WORK/crd.out" 2>&1 <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert len(docs) == 1, f"{len(docs)} documents"
(crd,) = docs
assert crd["kind"] == "CustomResourceDefinition", crd["kind"]
assert crd["metadata"]["name"] == sys.argv[2], crd["metadata"]["name"]
assert crd["spec"]["scope"] == sys.argv[3], crd["spec"]["scope"]
assert [v["name"] for v in crd["spec"]["versions"] if v["served"] and v["storage"]] == ["v1alpha1"]
EOF
  then
    pass "crds/$(basename "$file"): one $scope CRD $name (v1alpha1)"
  else
    [[ -f $file ]] || echo "missing: $file" >"$WORK/crd.out"
    fail "crds/$(basename "$file"): one $scope CRD $name (v1alpha1)" "$WORK/crd.out"
  fi
}
crd_ok "$CHART/crds/imagerecords.yaml" imagerecords.sbomjob.io Cluster
crd_ok "$CHART/crds/imagesources.yaml" imagesources.sbomjob.io Namespaced
crd_ok "$CHART/crds/trustpolicies.yaml" trustpolicies.sbomjob.io Cluster
# Renders in variables, not piped to grep -q: grep stops at the CRD (the first document) and
# helm, still writing, would die of SIGPIPE and fail the pipeline (pipefail).
with_crds=$(helm template sbomjob "$CHART" --set jobImage=x --include-crds 2>/dev/null) || with_crds=
without_crds=$(helm template sbomjob "$CHART" --set jobImage=x 2>/dev/null) || without_crds=
if grep -q '^kind: CustomResourceDefinition' <<<"$with_crds" &&
  ! grep -q '^kind: CustomResourceDefinition' <<<"$without_crds"; then
  pass "the CRD is in crds/ (installed by helm install, not a template)"
else
  fail "the CRD is in crds/ (installed by helm install, not a template)"
fi
crdgen_bin=${SBOMJOB_CRDGEN_BIN:-}
for candidate in "$REPO_ROOT/target/release/crdgen" "$REPO_ROOT/target/debug/crdgen"; do
  [[ -n $crdgen_bin || ! -x $candidate ]] || crdgen_bin=$candidate
done
if [[ -n $crdgen_bin ]]; then
  for crd in imagerecords imagesources trustpolicies; do
    if "$crdgen_bin" "$crd" >"$WORK/crdgen.yaml" 2>"$WORK/crdgen.err" &&
      diff -u "$CHART/crds/$crd.yaml" "$WORK/crdgen.yaml" >"$WORK/crdgen.diff"; then
      pass "crds/$crd.yaml is what crdgen prints ($(basename "$(dirname "$crdgen_bin")") build)"
    else
      cat "$WORK/crdgen.err" >>"$WORK/crdgen.diff"
      echo "regenerate: cargo run -p sbomjob-operator --bin crdgen $crd > charts/sbomjob/crds/$crd.yaml" >>"$WORK/crdgen.diff"
      fail "crds/$crd.yaml is what crdgen prints (stale build? rebuild crdgen)" "$WORK/crdgen.diff"
    fi
  done
else
  skip "crdgen comparison (no crdgen binary under target/; set SBOMJOB_CRDGEN_BIN)"
fi

# --- values that must be refused ---------------------------------------------------------------
# refused DESCRIPTION EXPECTED-MESSAGE helm-template-args...
refused() {
  local what=$1 want=$2
  shift 2
  if helm template sbomjob "$CHART" "$@" >"$WORK/refused.out" 2>&1; then
    fail "refused: $what (helm template succeeded)" "$WORK/refused.out"
  elif grep -qF -- "$want" "$WORK/refused.out"; then
    pass "refused: $what"
  else
    echo "expected: $want" >>"$WORK/refused.out"
    fail "refused: $what (other message)" "$WORK/refused.out"
  fi
}

refused "missing jobImage" "jobImage: String length must be greater than or equal to 1"
refused "empty jobImage" "jobImage: String length must be greater than or equal to 1" --set jobImage=
refused "jobImage with a space" "jobImage: Does not match pattern" --set "jobImage=a b"
refused "metrics.prometheusRule without metrics.enabled" "metrics.prometheusRule.enabled needs metrics.enabled" \
  --set jobImage=x --set metrics.prometheusRule.enabled=true
refused "networkPolicy.operator.enabled without the API server's addresses" \
  "networkPolicy.operator.enabled: the API server's addresses are unknown" --set jobImage=x \
  --set networkPolicy.operator.enabled=true
refused "image.digest that is no sha256 digest" "image.digest: Does not match pattern" --set jobImage=x \
  --set image.digest=latest
refused "topologySpreadConstraints without topologyKey" "topologyKey is required" --set jobImage=x \
  --set 'topologySpreadConstraints[0].maxSkew=1' --set 'topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule'
refused "podDisruptionBudget.minAvailable=-1" "podDisruptionBudget.minAvailable: Must be greater than or equal to 0" \
  --set jobImage=x --set-json 'podDisruptionBudget.minAvailable=-1'
refused "jobTimeout={}" "jobTimeout: Invalid type. Expected: [string,integer], given: object" \
  --set jobImage=x --set-json 'jobTimeout={}'
refused "jobTimeout=0" "jobTimeout: Must be greater than or equal to 1" --set jobImage=x --set-json 'jobTimeout=0'
refused "jobTimeout above 7d" "jobTimeout: Must be less than or equal to 604800" \
  --set jobImage=x --set-json 'jobTimeout=604801'
refused "jobTimeout=9223372036854775807" "jobTimeout: Must be less than or equal to 604800" \
  --set jobImage=x --set-json 'jobTimeout=9223372036854775807'
refused "job.maxImages=10001" "job.maxImages: Must be less than or equal to 10000" \
  --set jobImage=x --set job.maxImages=10001
refused "retryBackoff=0" "retryBackoff: Must be greater than or equal to 1" --set jobImage=x --set-json 'retryBackoff=0'
refused "retryBackoffMax above 30d" "retryBackoffMax: Must be less than or equal to 2.592e+06" \
  --set jobImage=x --set-json 'retryBackoffMax=2592001'
refused "retryBackoff=soon" "retryBackoff: Does not match pattern" --set jobImage=x --set retryBackoff=soon
refused "job.maxImages=\"x\"" "job.maxImages: Invalid type. Expected: integer, given: string" \
  --set jobImage=x --set-json 'job.maxImages="x"'
refused "job.maxParallel=0" "job.maxParallel: Must be greater than or equal to 1" --set jobImage=x --set job.maxParallel=0
refused "maxJobsPerCycle=0" "maxJobsPerCycle: Must be greater than or equal to 1" --set jobImage=x --set maxJobsPerCycle=0
refused "maxCredentialSize=1023" "maxCredentialSize: Must be greater than or equal to 1024" \
  --set jobImage=x --set maxCredentialSize=1023
refused "job.privileged=\"yes\"" "job.privileged: Invalid type. Expected: boolean, given: string" \
  --set jobImage=x --set-json 'job.privileged="yes"'
refused "job.nodeSelector not a map" "job.nodeSelector: Invalid type. Expected: object" \
  --set jobImage=x --set-json 'job.nodeSelector=["a"]'
refused "job.resources with an unknown key" "Additional property cpu is not allowed" \
  --set jobImage=x --set-json 'job.resources={"cpu":"1"}'
refused "unknown job.* key" "Additional property maxImage is not allowed" --set jobImage=x --set job.maxImage=3
refused "jobEnv=\"x\"" "jobEnv: Invalid type. Expected: array, given: string" --set jobImage=x --set jobEnv=x
refused "jobEnv entry without value or secretKeyRef" "jobEnv.0: Must validate one and only one schema" \
  --set jobImage=x --set-json 'jobEnv=[{"name":"A"}]'
refused "jobEnv entry with both value and secretKeyRef" "jobEnv.0: Must validate one and only one schema" \
  --set jobImage=x --set-json 'jobEnv=[{"name":"A","value":"1","secretKeyRef":{"name":"s","key":"k"}}]'
refused "jobEnv secretKeyRef without key" "key is required" \
  --set jobImage=x --set-json 'jobEnv=[{"name":"A","secretKeyRef":{"name":"s"}}]'
refused "jobEnv name with a space" "jobEnv.0.name: Does not match pattern" \
  --set jobImage=x --set-json 'jobEnv=[{"name":"A B","value":"1"}]'
refused "jobEnv value that is an object" "jobEnv.0.value: Invalid type" \
  --set jobImage=x --set-json 'jobEnv=[{"name":"A","value":{}}]'
refused "jobEnv literal named like an operator setting" "jobEnv[0]: timeout is reserved: SBOM_JOB_TIMEOUT" \
  --set jobImage=x --set-json 'jobEnv=[{"name":"timeout","value":"1"}]'
refused "jobEnv name twice" "jobEnv[1]: a is set twice" \
  --set jobImage=x --set-json 'jobEnv=[{"name":"A","value":"1"},{"name":"a","secretKeyRef":{"name":"s","key":"k"}}]'
refused "cron and interval together" "cron and interval are both set" --set jobImage=x --set cron=@hourly --set interval=1h
refused "jobImagePullPolicy=Sometimes" "jobImagePullPolicy: jobImagePullPolicy must be one of the following" \
  --set jobImage=x --set jobImagePullPolicy=Sometimes
refused "annotationPrefix not a DNS subdomain" "annotationPrefix: Does not match pattern" \
  --set jobImage=x --set annotationPrefix=Not_A_Domain
refused "logging.format=xml" "logging.format: logging.format must be one of the following" \
  --set jobImage=x --set logging.format=xml
refused "ignoreAnnotations=\"maybe\"" "ignoreAnnotations: Invalid type. Expected: boolean" \
  --set jobImage=x --set ignoreAnnotations=maybe
refused "podEvents=some" "podEvents: podEvents must be one of the following" \
  --set jobImage=x --set podEvents=some
refused "replicaCount=2 without leader election" "replicaCount: Must be less than or equal to 1" \
  --set jobImage=x --set replicaCount=2 --set leaderElection.enabled=false
refused "replicaCount=2 without leader election (schema skipped)" "replicaCount > 1 needs leaderElection.enabled" \
  --set jobImage=x --set replicaCount=2 --set leaderElection.enabled=false --skip-schema-validation
refused "replicaCount=-1" "replicaCount: Must be greater than or equal to 0" --set jobImage=x --set replicaCount=-1
refused "leaderElection.enabled=\"yes\"" "leaderElection.enabled: Invalid type. Expected: boolean" \
  --set jobImage=x --set-json 'leaderElection.enabled="yes"'
refused "leaderElection.leaseDuration=2" "leaderElection.leaseDuration: Must be greater than or equal to 3" \
  --set jobImage=x --set-json 'leaderElection.leaseDuration=2'
refused "leaderElection.leaseName not a DNS subdomain" "leaderElection.leaseName: Does not match pattern" \
  --set jobImage=x --set leaderElection.leaseName=Bad_Name
refused "crds.upgrade.enabled=\"yes\"" "crds.upgrade.enabled: Invalid type. Expected: boolean" \
  --set jobImage=x --set-json 'crds.upgrade.enabled="yes"'
refused "crds.upgrade.timeoutSeconds=0" "crds.upgrade.timeoutSeconds: Must be greater than or equal to 10" \
  --set jobImage=x --set crds.upgrade.timeoutSeconds=0
refused "cache.ttl=forever" "cache.ttl: Does not match pattern" --set jobImage=x --set cache.ttl=forever
refused "unknown cache.* key" "Additional property tll is not allowed" --set jobImage=x --set cache.tll=1h
refused "debounce={}" "debounce: Invalid type" --set jobImage=x --set-json 'debounce={}'
refused "admin.port=0" "admin.port: Must be greater than or equal to 1" --set jobImage=x --set admin.port=0
refused "admin.port=\"8080\"" "admin.port: Invalid type. Expected: integer, given: string" \
  --set jobImage=x --set-json 'admin.port="8080"'
refused "readinessProbe.httpGet (set by the chart)" "Additional property httpGet is not allowed" \
  --set jobImage=x --set readinessProbe.httpGet.path=/
refused "metrics.port (now admin.port)" "metrics.port was replaced by admin.port" --set jobImage=x --set metrics.port=9090
refused "metrics.serviceMonitor without metrics.enabled" "metrics.serviceMonitor.enabled needs metrics.enabled" \
  --set jobImage=x --set metrics.serviceMonitor.enabled=true
refused "metrics.serviceMonitor.interval=30sec" "metrics.serviceMonitor.interval: Does not match pattern" \
  --set jobImage=x --set metrics.enabled=true --set metrics.serviceMonitor.interval=30sec
refused "serviceAccount.create=false without a name" "serviceAccount.name is required" \
  --set jobImage=x --set serviceAccount.create=false
refused "job.tmpSize=2GB" "job.tmpSize: Does not match pattern" --set jobImage=x --set job.tmpSize=2GB
refused "job.tmpSize below 64Mi" "job.tmpSize: Must be greater than or equal to" \
  --set jobImage=x --set-json 'job.tmpSize=1024'
refused "admissionPolicy.enabled=maybe" "admissionPolicy.enabled: admissionPolicy.enabled must be one of the following" \
  --set jobImage=x --set admissionPolicy.enabled=maybe
refused "networkPolicy without API server addresses (nothing to look up)" "set networkPolicy.apiServerCIDRs" \
  --set jobImage=x --set networkPolicy.enabled=true
refused "networkPolicy.apiServerCIDRs entry not an address" "networkPolicy.apiServerCIDRs.0: Does not match pattern" \
  --set jobImage=x --set networkPolicy.enabled=true --set-json 'networkPolicy.apiServerCIDRs=["kubernetes.default"]'

# --- NOTES.txt --------------------------------------------------------------------------------
# helm template does not render NOTES.txt; render a copy of the chart where it is a ConfigMap.
cp -r "$CHART" "$WORK/notes-chart"
{
  echo '{{- define "sbomjob.notesForTest" -}}'
  cat "$CHART/templates/NOTES.txt"
  echo '{{- end -}}'
} >"$WORK/notes-chart/templates/_notes_for_test.tpl"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ include "sbomjob.notesForTest" . | toJson }}\n' \
  >"$WORK/notes-chart/templates/notes-for-test.yaml"
if helm template sbomjob "$WORK/notes-chart" --namespace sbomjob --set jobImage=x \
  --set annotationPrefix=ckotzbauer.sbom-operator.io --show-only templates/notes-for-test.yaml \
  >"$WORK/notes.yaml" 2>&1 &&
  "$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["notes"])' "$WORK/notes.yaml" \
    >"$WORK/notes.txt" 2>&1; then
  pass "NOTES.txt renders"
  if grep -qF -- 'jsonpath=' "$WORK/notes.txt" && grep -qF 'ckotzbauer\.sbom-operator\.io/<container>' "$WORK/notes.txt" &&
    grep -qF 'kubectl get jobs -n sbomjob -l app.kubernetes.io/managed-by=sbomjob' "$WORK/notes.txt"; then
    pass "NOTES.txt: jsonpath with escaped dots, Jobs by label"
  else
    fail "NOTES.txt: jsonpath with escaped dots, Jobs by label" "$WORK/notes.txt"
  fi
  # Run its jq query on a sample pod list instead of `kubectl get pods -A -o json`.
  cat >"$WORK/pods.json" <<'EOF'
{"apiVersion": "v1", "kind": "List", "items": [
 {"metadata": {"name": "web-1", "namespace": "shop", "annotations": {
   "ckotzbauer.sbom-operator.io/nginx": "docker.io/library/nginx@sha256:aa", "other.io/x": "y"}}},
 {"metadata": {"name": "api-0", "namespace": "shop"}}]}
EOF
  jq_line=$(grep -F 'kubectl get pods -A -o json | jq' "$WORK/notes.txt" | sed 's/^ *kubectl get pods -A -o json | //')
  if command -v jq >/dev/null; then
    if (eval "$jq_line" <"$WORK/pods.json") >"$WORK/jq.out" 2>&1 &&
      [[ $(cat "$WORK/jq.out") == $'shop/web-1\tnginx\tdocker.io/library/nginx@sha256:aa' ]]; then
      pass "NOTES.txt: the jq query lists the annotated containers"
    else
      fail "NOTES.txt: the jq query lists the annotated containers" "$WORK/jq.out"
    fi
  else
    skip "NOTES.txt jq query (jq not installed)"
  fi
else
  fail "NOTES.txt renders" "$WORK/notes.yaml"
fi

# --- the operator accepts what the chart renders ----------------------------------------------
if [[ -n $operator_bin && -f $WORK/full.yaml ]]; then
  # The operator exits 2 on a bad setting (before logging starts); with settings it likes it goes
  # on to look for a Kubernetes client configuration, finds none here (no kubeconfig, not in a
  # cluster) and exits 1 with one JSON error line.
  "$PY" - "$WORK/full.yaml" >"$WORK/full.env" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Deployment":
        for e in d["spec"]["template"]["spec"]["containers"][0]["env"]:
            if "value" in e:
                # what the kubelet passes: $$ -> $
                print(e["name"] + "=" + e["value"].replace("$$", "$").replace("\n", " "))
EOF
  mapfile -t operator_env <"$WORK/full.env"
  # SBOM_INTERVAL instead of SBOM_CRON, once, so both parse.
  for variant in cron interval; do
    extra=()
    if [[ $variant == interval ]]; then
      mapfile -t operator_env < <(grep -v '^SBOM_CRON=' "$WORK/full.env")
      extra=(SBOM_INTERVAL=90m)
    fi
    env -i PATH=/usr/bin:/bin HOME="$WORK" KUBECONFIG="$WORK/no-kubeconfig" POD_NAME=p POD_NAMESPACE=sbomjob \
      "${operator_env[@]}" "${extra[@]}" timeout 30 "$operator_bin" >"$WORK/operator.out" 2>&1
    rc=$?
    if [[ $rc -eq 1 ]] && grep -q '^{.*"level":"ERROR"' "$WORK/operator.out"; then
      pass "the operator accepts every setting of the full render ($variant; $(basename "$(dirname "$operator_bin")") build)"
    else
      echo "exit code $rc" >>"$WORK/operator.out"
      fail "the operator accepts every setting of the full render ($variant)" "$WORK/operator.out"
    fi
  done
else
  skip "operator settings parse check (no operator binary under target/; set SBOMJOB_OPERATOR_BIN)"
fi

# --- promtool: the operator's metrics, the PrometheusRule ---------------------------------------
# promtool (Prometheus from Go modules) is built with the cluster's binaries
# (e2e/cluster/promtool.sh; hack/test.sh runs this script once it is there and names it in
# SBOMJOB_PROMTOOL, which must then work); SBOMJOB_PROMTOOL points at another build.
promtool_bin=${SBOMJOB_PROMTOOL:-$PROMTOOL_BIN}
if [[ ! -x $promtool_bin ]]; then
  if [[ -n ${SBOMJOB_PROMTOOL:-} ]]; then
    fail "promtool checks: SBOMJOB_PROMTOOL=$SBOMJOB_PROMTOOL is not executable"
  else
    skip "promtool checks (no $PROMTOOL_BIN yet: e2e/cluster/promtool.sh builds it)"
  fi
else
  # What the operator's /metrics serves at start (the e2e suite checks a scrape after Jobs ran).
  if [[ -z $operator_bin ]]; then
    skip "promtool check metrics on --print-metrics (no operator binary)"
  elif "$operator_bin" --print-metrics >"$WORK/metrics.txt" 2>"$WORK/metrics.err" &&
    SBOMJOB_PROMTOOL=$promtool_bin "$REPO_ROOT/hack/promtool-check-metrics.sh" "$WORK/metrics.txt" >>"$WORK/metrics.err" 2>&1; then
    pass "promtool check metrics: the operator's --print-metrics"
  else
    fail "promtool check metrics: the operator's --print-metrics" "$WORK/metrics.err"
  fi
  # ... and the check fails on what promtool's lint refuses (a unit not in base units, no help).
  printf '# HELP sbomjob_x_milliseconds X.\n# TYPE sbomjob_x_milliseconds gauge\nsbomjob_x_milliseconds 1\n# TYPE sbomjob_y gauge\nsbomjob_y 1\n# EOF\n' \
    >"$WORK/bad-metrics.txt"
  if SBOMJOB_PROMTOOL=$promtool_bin "$REPO_ROOT/hack/promtool-check-metrics.sh" "$WORK/bad-metrics.txt" >"$WORK/bad-metrics.out" 2>&1; then
    fail "promtool check metrics refuses milliseconds and a missing help text" "$WORK/bad-metrics.out"
  elif grep -q 'sbomjob_x_milliseconds use base unit' "$WORK/bad-metrics.out" && grep -q 'sbomjob_y no help text' "$WORK/bad-metrics.out"; then
    pass "promtool check metrics refuses milliseconds and a missing help text"
  else
    fail "promtool check metrics refuses milliseconds and a missing help text (other output)" "$WORK/bad-metrics.out"
  fi

  # The PrometheusRule's groups as a Prometheus rule file: with the defaults' thresholds (release
  # sbomjob in namespace sbomjob, as tests/rules-test.yaml assumes) and the full values'.
  rule_file() { # rule_file RENDER OUT [--no-annotations]
    "$PY" - "$@" <<'EOF'
import sys, yaml
rules = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule"]
assert len(rules) == 1, f"{len(rules)} PrometheusRules"
groups = rules[0]["spec"]["groups"]
if sys.argv[3:] == ["--no-annotations"]:
    for g in groups:
        for r in g["rules"]:
            r.pop("annotations", None)
yaml.safe_dump({"groups": groups}, open(sys.argv[2], "w"), sort_keys=False)
EOF
  }
  mkdir -p "$WORK/rules-test"
  if helm template sbomjob "$CHART" --namespace sbomjob --set jobImage=x --set metrics.enabled=true \
    --set metrics.prometheusRule.enabled=true --show-only templates/prometheusrule.yaml >"$WORK/rule.yaml" 2>"$WORK/rules.out" &&
    rule_file "$WORK/rule.yaml" "$WORK/rules.yaml" >>"$WORK/rules.out" 2>&1 &&
    rule_file "$WORK/rule.yaml" "$WORK/rules-test/rules.yaml" --no-annotations >>"$WORK/rules.out" 2>&1 &&
    rule_file "$WORK/full.yaml" "$WORK/rules-full.yaml" >>"$WORK/rules.out" 2>&1; then
    for f in rules.yaml rules-full.yaml; do
      if "$promtool_bin" check rules --lint=all --lint-fatal "$WORK/$f" >"$WORK/check-rules.out" 2>&1; then
        pass "promtool check rules --lint=all: the PrometheusRule ($f)"
      else
        fail "promtool check rules --lint=all: the PrometheusRule ($f)" "$WORK/check-rules.out"
      fi
    done
    # When each alert fires and when not, on input series (tests/rules-test.yaml).
    cp "$CHART/tests/rules-test.yaml" "$WORK/rules-test/"
    if "$promtool_bin" test rules "$WORK/rules-test/rules-test.yaml" >"$WORK/test-rules.out" 2>&1; then
      pass "promtool test rules tests/rules-test.yaml: stale results, failing Jobs, no leader (or none scraped)"
    else
      fail "promtool test rules tests/rules-test.yaml" "$WORK/test-rules.out"
    fi
  else
    fail "the PrometheusRule as a rule file" "$WORK/rules.out"
  fi
fi

# --- yamllint ---------------------------------------------------------------------------------
cat >"$WORK/yamllint.yaml" <<'EOF'
extends: default
rules:
  document-start: disable
  line-length: {max: 120}
  comments: {min-spaces-from-content: 1}
  braces: {max-spaces-inside: 1}
  truthy: {check-keys: false}
EOF
for f in values.yaml ci/full-values.yaml; do
  if "$VENV/bin/yamllint" -c "$WORK/yamllint.yaml" "$CHART/$f" >"$WORK/yamllint.out" 2>&1; then
    pass "yamllint $f"
  else
    fail "yamllint $f" "$WORK/yamllint.out"
  fi
done


install_checks
summary
