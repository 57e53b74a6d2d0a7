#!/usr/bin/env bash
# Smoke test of a running e2e cluster (after `cluster.sh up`): proves that
#   1. a pod using a workload image from the local registry runs, and its imageID is the digest
#      that was pushed;
#   2. a Job in a namespace enforcing the `restricted` Pod Security Standard, with a restricted
#      pod running skopeo against both registries at the bridge address, completes;
#   3. a pod reaches the API server through the `kubernetes` Service ClusterIP (kube-proxy),
#      and the host verifies the API server's certificate on that address.
# Prints one line per check and "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

NS=sbomjob-smoke

[[ -f $STATE/images.env ]] || die "no $STATE/images.env: run e2e/cluster/cluster.sh up first"
# shellcheck disable=SC1091
. "$STATE/images.env"

RESTRICTED_SC='{"runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
  "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
  "seccompProfile": {"type": "RuntimeDefault"}}'

# wait_job NAME SECONDS: until the Job is Complete (0) or Failed (1)
wait_job() {
  local i c
  for ((i = 0; i < $2; i++)); do
    c=$(kc -n "$NS" get job "$1" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}')
    [[ $c == *Complete* ]] && return 0
    [[ $c == *Failed* ]] && return 1
    sleep 1
  done
  return 1
}

# restricted_job NAME IMAGE < FIELDS: a Job whose one container `sbom` passes the restricted Pod
# Security Standard, as the operator's Jobs do; FIELDS (stdin) are the container's JSON fields
# for command, args and env.
restricted_job() {
  local fields
  fields=$(cat)
  kc -n "$NS" apply -f - >/dev/null <<EOF
{"apiVersion": "batch/v1", "kind": "Job",
 "metadata": {"name": "$1"},
 "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 300, "ttlSecondsAfterFinished": 600,
  "template": {"spec": {
    "restartPolicy": "Never", "automountServiceAccountToken": false,
    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
    "volumes": [{"name": "tmp", "emptyDir": {}}],
    "containers": [{"name": "sbom", "image": "$2", $fields,
      "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
      "securityContext": $RESTRICTED_SC}]}}}}
EOF
}

kc delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
kc create namespace "$NS" >/dev/null
kc label namespace "$NS" pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/enforce-version=latest >/dev/null
kc -n "$NS" create secret docker-registry private-registry --docker-server="$REGISTRY_AUTH" \
  --docker-username="$REGISTRY_AUTH_USER" --docker-password="$REGISTRY_AUTH_PASSWORD" >/dev/null

# --- 0. the restricted policy is enforced -----------------------------------------------------
if kc -n "$NS" run privileged-probe --image="$WORKLOAD_ALPHA_IMAGE" --restart=Never \
  --overrides='{"spec":{"containers":[{"name":"p","image":"'"$WORKLOAD_ALPHA_IMAGE"'","securityContext":{"privileged":true}}]}}' \
  >/dev/null 2>&1; then
  fail "a privileged pod was admitted in a restricted namespace"
else
  pass "PodSecurity rejects a privileged pod in namespace $NS (enforce=restricted)"
fi

# --- 1. workload pod from the local registry; imageID is the pushed digest --------------------
for name in alpha delta; do
  if [[ $name == delta ]]; then # private registry: pulled with an imagePullSecret
    image=$WORKLOAD_DELTA_IMAGE want=$WORKLOAD_DELTA_IMAGE_DIGEST pull='[{"name":"private-registry"}]'
  else
    image=$WORKLOAD_ALPHA_IMAGE want=$WORKLOAD_ALPHA_IMAGE_DIGEST pull='[]'
  fi
  kc -n "$NS" apply -f - >/dev/null <<EOF
{"apiVersion": "v1", "kind": "Pod",
 "metadata": {"name": "workload-$name", "labels": {"app": "smoke"}},
 "spec": {"automountServiceAccountToken": false, "imagePullSecrets": $pull,
   "terminationGracePeriodSeconds": 5,
   "containers": [{"name": "main", "image": "$image", "securityContext": $RESTRICTED_SC}]}}
EOF
  if kc -n "$NS" wait pod "workload-$name" --for=condition=Ready --timeout=120s >/dev/null; then
    image_id=$(kc -n "$NS" get pod "workload-$name" -o jsonpath='{.status.containerStatuses[0].imageID}')
    if [[ $image_id == *@sha256:* && $image_id == *"@$want" ]]; then
      pass "pod workload-$name Running, imageID $image_id"
    else
      fail "pod workload-$name imageID '$image_id' is not the pushed digest $want"
    fi
  else
    fail "pod workload-$name did not become Ready"
    kc -n "$NS" describe pod "workload-$name" | tail -15
  fi
done

# --- 2. restricted Job running skopeo against the registries ----------------------------------
# digest references: a re-pushed tag is not re-pulled by a node that has it (IfNotPresent)
if [[ -n ${JOB_SKOPEO_IMAGE:-} ]]; then
  job_image=$JOB_SKOPEO_IMAGE@$JOB_SKOPEO_IMAGE_DIGEST
else
  job_image=$E2E_SKOPEO_IMAGE@$E2E_SKOPEO_IMAGE_DIGEST
fi
restricted_job skopeo-inspect "$job_image" <<EOF
      "command": ["/usr/bin/skopeo"],
      "args": ["inspect", "--tls-verify=false", "--format", "{{.Digest}}",
               "docker://$WORKLOAD_BETA_IMAGE"]
EOF
if wait_job skopeo-inspect 180; then
  out=$(kc -n "$NS" logs job/skopeo-inspect)
  if [[ $out == "$WORKLOAD_BETA_IMAGE_DIGEST" ]]; then
    pass "restricted Job (image $job_image) ran skopeo inspect docker://$WORKLOAD_BETA_IMAGE -> $out"
  else
    fail "skopeo Job printed '$out', expected $WORKLOAD_BETA_IMAGE_DIGEST"
  fi
else
  fail "restricted skopeo Job did not complete"
  kc -n "$NS" describe job skopeo-inspect | tail -10
  kc -n "$NS" logs job/skopeo-inspect 2>&1 | tail -10 || true
fi

# ... and against the registry with basic auth, credentials from a Secret
kc -n "$NS" create secret generic registry-creds --from-literal=user="$REGISTRY_AUTH_USER" \
  --from-literal=password="$REGISTRY_AUTH_PASSWORD" >/dev/null
restricted_job skopeo-inspect-private "$job_image" <<EOF
      "command": ["/usr/bin/skopeo"],
      "env": [{"name": "REG_USER", "valueFrom": {"secretKeyRef": {"name": "registry-creds", "key": "user"}}},
              {"name": "REG_PASS", "valueFrom": {"secretKeyRef": {"name": "registry-creds", "key": "password"}}}],
      "args": ["inspect", "--tls-verify=false", "--creds", "\$(REG_USER):\$(REG_PASS)",
               "--format", "{{.Digest}}", "docker://$WORKLOAD_DELTA_IMAGE"]
EOF
if wait_job skopeo-inspect-private 180; then
  out=$(kc -n "$NS" logs job/skopeo-inspect-private)
  if [[ $out == "$WORKLOAD_DELTA_IMAGE_DIGEST" ]]; then
    pass "restricted Job ran skopeo inspect --creds docker://$WORKLOAD_DELTA_IMAGE -> $out"
  else
    fail "skopeo Job (auth registry) printed '$out', expected $WORKLOAD_DELTA_IMAGE_DIGEST"
  fi
else
  fail "restricted skopeo Job against the auth registry did not complete"
  kc -n "$NS" logs job/skopeo-inspect-private 2>&1 | tail -10 || true
fi

# ... and, when the syft job image was built, syft catalogues a workload image from the registry
if [[ -n ${JOB_SYFT_IMAGE:-} ]]; then
  restricted_job syft-scan "$JOB_SYFT_IMAGE@$JOB_SYFT_IMAGE_DIGEST" <<EOF
      "command": ["/usr/bin/syft"],
      "args": ["scan", "registry:$WORKLOAD_BETA_IMAGE", "-o", "syft-table", "-q"],
      "env": [{"name": "SYFT_REGISTRY_INSECURE_USE_HTTP", "value": "true"}]
EOF
  if wait_job syft-scan 240 && out=$(kc -n "$NS" logs job/syft-scan) && [[ $out == *left-pad* && $out == *busybox* ]]; then
    pass "restricted Job ran syft on registry:$WORKLOAD_BETA_IMAGE: $(echo "$out" | awk 'NR > 1 {print $1 "@" $2}' | tr '\n' ' ')"
  else
    fail "syft Job did not catalogue $WORKLOAD_BETA_IMAGE: $(kc -n "$NS" logs job/syft-scan 2>&1 | tail -5)"
  fi
else
  echo "SKIP: syft Job (no JOB_SYFT_IMAGE in images.env: e2e/images/build.sh builds it)"
fi

# --- 3. a pod reaches the API server through the kubernetes Service ClusterIP -----------------
# kube-probe: KUBERNETES_SERVICE_HOST:PORT (10.96.0.1:443), TLS verified with the service-account
# CA, authenticated with the service-account token (a SelfSubjectReview).
kc -n "$NS" apply -f - >/dev/null <<EOF
{"apiVersion": "batch/v1", "kind": "Job",
 "metadata": {"name": "api-probe"},
 "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 120,
  "template": {"spec": {"restartPolicy": "Never", "automountServiceAccountToken": true,
   "containers": [{"name": "main", "image": "$E2E_KUBE_PROBE_IMAGE@$E2E_KUBE_PROBE_IMAGE_DIGEST",
     "securityContext": $RESTRICTED_SC}]}}}}
EOF
wait_job api-probe 120 && rc=0 || rc=1
out=$(kc -n "$NS" logs job/api-probe 2>&1 || true)
if [[ $rc == 0 && $out == *"user=system:serviceaccount:$NS:default"* ]]; then
  pass "in-pod client reached the API server via the ClusterIP: $out"
else
  fail "in-pod client could not use the API server through $KUBERNETES_SVC_IP:443: $out"
fi

# The host side: the API server certificate is valid for the ClusterIP (what in-cluster
# clients with the service-account CA verify).
# The output in a variable, not piped to grep -q: the line comes again after it (TLS 1.3 session
# tickets), and openssl writing into a closed pipe would fail the check (SIGPIPE, pipefail).
if s_client=$(openssl s_client -connect "$KUBERNETES_SVC_IP:443" -CAfile "$PKI/ca.crt" \
  -verify_ip "$KUBERNETES_SVC_IP" -verify_return_error 2>/dev/null <<<"") &&
  grep -q 'Verify return code: 0' <<<"$s_client"; then
  pass "API server certificate verifies for $KUBERNETES_SVC_IP through kube-proxy (from the host)"
else
  fail "API server certificate did not verify for $KUBERNETES_SVC_IP"
fi

kc delete namespace "$NS" --wait=false >/dev/null
summary smoke
