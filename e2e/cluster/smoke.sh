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
PASSED=0
FAILED=0
ok() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }

[[ -f $STATE/images.env ]] || die "no $STATE/images.env: run e2e/cluster/cluster.sh up first"
# shellcheck disable=SC1091
. "$STATE/images.env"

RESTRICTED_SC='{"runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
  "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
  "seccompProfile": {"type": "RuntimeDefault"}}'

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
  ok "PodSecurity rejects a privileged pod in namespace $NS (enforce=restricted)"
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
      ok "pod workload-$name Running, imageID $image_id"
    else
      fail "pod workload-$name imageID '$image_id' is not the pushed digest $want"
    fi
  else
    fail "pod workload-$name did not become Ready"
    kc -n "$NS" describe pod "workload-$name" | tail -15
  fi
done

# --- 2. restricted Job running skopeo against the registries ----------------------------------
job_image=${JOB_SKOPEO_IMAGE:-$E2E_SKOPEO_IMAGE}
kc -n "$NS" apply -f - >/dev/null <<EOF
{"apiVersion": "batch/v1", "kind": "Job",
 "metadata": {"name": "skopeo-inspect"},
 "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 300, "ttlSecondsAfterFinished": 600,
  "template": {"spec": {
    "restartPolicy": "Never", "automountServiceAccountToken": false,
    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
    "volumes": [{"name": "tmp", "emptyDir": {}}],
    "containers": [{"name": "sbom", "image": "$job_image",
      "command": ["/usr/bin/skopeo"],
      "args": ["inspect", "--tls-verify=false", "--format", "{{.Digest}}",
               "docker://$WORKLOAD_BETA_IMAGE"],
      "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
      "securityContext": $RESTRICTED_SC}]}}}}
EOF
if kc -n "$NS" wait job skopeo-inspect --for=condition=Complete --timeout=180s >/dev/null; then
  out=$(kc -n "$NS" logs job/skopeo-inspect)
  if [[ $out == "$WORKLOAD_BETA_IMAGE_DIGEST" ]]; then
    ok "restricted Job (image $job_image) ran skopeo inspect docker://$WORKLOAD_BETA_IMAGE -> $out"
  else
    fail "skopeo Job printed '$out', expected $WORKLOAD_BETA_IMAGE_DIGEST"
  fi
else
  fail "restricted skopeo Job did not complete"
  kc -n "$NS" describe job skopeo-inspect | tail -10
  kc -n "$NS" logs job/skopeo-inspect 2>&1 | tail -10 || true
fi

# --- 3. a pod reaches the API server through the kubernetes Service ClusterIP -----------------
kc -n "$NS" apply -f - >/dev/null <<EOF
{"apiVersion": "v1", "kind": "Pod",
 "metadata": {"name": "api-probe"},
 "spec": {"restartPolicy": "Never", "automountServiceAccountToken": true,
   "containers": [{"name": "main", "image": "$WORKLOAD_ALPHA_IMAGE",
     "command": ["/bin/busybox", "sh", "-c",
       "env | /bin/busybox grep '^KUBERNETES_SERVICE_HOST=' && /bin/busybox nc -z -w 5 \$KUBERNETES_SERVICE_HOST \$KUBERNETES_SERVICE_PORT && echo tcp-ok && /bin/busybox wget -q -T 10 -O - --no-check-certificate --header \"Authorization: Bearer \$(/bin/busybox cat /var/run/secrets/kubernetes.io/serviceaccount/token)\" https://\$KUBERNETES_SERVICE_HOST:\$KUBERNETES_SERVICE_PORT/version"],
     "securityContext": $RESTRICTED_SC}]}}
EOF
phase=""
for _ in $(seq 60); do
  phase=$(kc -n "$NS" get pod api-probe -o jsonpath='{.status.phase}')
  [[ $phase == Succeeded || $phase == Failed ]] && break
  sleep 1
done
out=$(kc -n "$NS" logs api-probe 2>&1 || true)
if [[ $phase == Succeeded && $out == *tcp-ok* && $out == *gitVersion* ]]; then
  ok "pod reached https://$KUBERNETES_SVC_IP:443/version with its token: $(echo "$out" | tr -d ' \n' | grep -o '"gitVersion":"[^"]*"')"
elif [[ $out == *tcp-ok* ]]; then
  ok "pod reached $KUBERNETES_SVC_IP:443 over TCP (busybox wget could not do the TLS handshake: $(echo "$out" | tail -1))"
else
  fail "pod could not reach the API server through $KUBERNETES_SVC_IP:443 (phase $phase): $out"
fi

# The host side: the API server certificate is valid for the ClusterIP (what in-cluster
# clients with the service-account CA verify).
if echo | openssl s_client -connect "$KUBERNETES_SVC_IP:443" -CAfile "$PKI/ca.crt" \
  -verify_ip "$KUBERNETES_SVC_IP" -verify_return_error 2>/dev/null | grep -q 'Verify return code: 0'; then
  ok "API server certificate verifies for $KUBERNETES_SVC_IP through kube-proxy (from the host)"
else
  fail "API server certificate did not verify for $KUBERNETES_SVC_IP"
fi

kc delete namespace "$NS" --wait=false >/dev/null
echo "smoke: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
