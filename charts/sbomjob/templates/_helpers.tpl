{{/* Names and labels. */}}

{{- define "sbomjob.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name alone when it already contains the chart name. */}}
{{- define "sbomjob.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sbomjob.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sbomjob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* NOTE: managed-by is Helm here; the Jobs and Secrets the operator creates say sbomjob. */}}
{{- define "sbomjob.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sbomjob.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
Name of the release's cluster-scoped objects (ClusterRole, ClusterRoleBinding, the admission
policy and its binding): "<namespace>.<fullname>". A namespace name has no dots, so two
releases get the same name only with the same namespace and full name: the same release name
installs in two namespaces, and two releases in one namespace differ by their full names.
At most 63 + 1 + 63 characters, a DNS subdomain as the admission policy's name must be.
*/}}
{{- define "sbomjob.clusterName" -}}
{{- printf "%s.%s" .Release.Namespace (include "sbomjob.fullname" .) -}}
{{- end -}}

{{/* The operator's annotation prefix: annotationPrefix, or the operator's default (--print-settings). */}}
{{- define "sbomjob.annotationPrefix" -}}
{{- default "sbomjob.io" .Values.annotationPrefix -}}
{{- end -}}

{{/* The Lease's name: leaderElection.leaseName, or the operator's default <release>-leader (--print-settings). */}}
{{- define "sbomjob.leaseName" -}}
{{- default (printf "%s-leader" .Release.Name) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/*
"true" when the ValidatingAdmissionPolicy is rendered: admissionPolicy.enabled true, or "auto"
and the cluster serves admissionregistration.k8s.io/v1 ValidatingAdmissionPolicies (1.30+).
*/}}
{{- define "sbomjob.admissionPolicyEnabled" -}}
{{- $on := .Values.admissionPolicy.enabled -}}
{{- if or (eq (toString $on) "true") (and (eq (toString $on) "auto") (.Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy")) -}}
true
{{- end -}}
{{- end -}}

{{- define "sbomjob.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sbomjob.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The operator image: [registry/]repository:tag[@digest]. The registry is global.imageRegistry (one
mirror for every chart of a platform) or image.registry; a digest pins the image whatever the
tag says (the tag stays for people reading the Deployment).
*/}}
{{- define "sbomjob.image" -}}
{{- $registry := (.Values.global).imageRegistry | default .Values.image.registry | default "" | trimSuffix "/" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- if $registry }}{{ $ref = printf "%s/%s" $registry $ref }}{{ end -}}
{{- with .Values.image.digest }}{{ $ref = printf "%s@%s" $ref . }}{{ end -}}
{{- $ref -}}
{{- end -}}

{{/*
A value as an environment variable string. Helm reads numbers from values files as float64, so
7200 would print as 7200 but 1000000 as 1e+06: whole numbers are printed as integers.
*/}}
{{- define "sbomjob.str" -}}
{{- if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/*
An env value as a quoted YAML string, exactly as given: the kubelet expands $(VAR) in env values
and turns $$ into $, so every $ is doubled.
*/}}
{{- define "sbomjob.envValue" -}}
{{- include "sbomjob.str" . | replace "$" "$$" | quote -}}
{{- end -}}

{{/*
The operator's own SBOM_JOB_* settings, without the prefix (the operator's --print-settings, "own_job_setting"): a
jobEnv literal with one of these names would set the operator's setting instead of reaching
the job, so the chart refuses it.
*/}}
{{- define "sbomjob.reservedJobEnv" -}}
IMAGE IMAGE_PULL_SECRET IMAGE_PULL_POLICY TIMEOUT TTL SERVICE_ACCOUNT PRIVILEGED RESOURCES TMP_SIZE NODE_SELECTOR TOLERATIONS AFFINITY PRIORITY_CLASS MAX_IMAGES MAX_PARALLEL
{{- end -}}

{{/*
Settings that are only rendered when set, so that the operator's default applies otherwise:
(value, variable) pairs.
*/}}
{{- define "sbomjob.optionalEnv" -}}
{{- $v := .Values -}}
{{- $pairs := list
  (list $v.jobImagePullSecret "SBOM_JOB_IMAGE_PULL_SECRET")
  (list $v.jobImagePullPolicy "SBOM_JOB_IMAGE_PULL_POLICY")
  (list $v.jobTimeout "SBOM_JOB_TIMEOUT")
  (list $v.jobTTL "SBOM_JOB_TTL")
  (list $v.cron "SBOM_CRON")
  (list $v.interval "SBOM_INTERVAL")
  (list $v.podLabelSelector "SBOM_POD_LABEL_SELECTOR")
  (list $v.namespaceLabelSelector "SBOM_NAMESPACE_LABEL_SELECTOR")
  (list $v.clusterId "SBOM_KUBERNETES_CLUSTER_ID")
  (list $v.annotationPrefix "SBOM_ANNOTATION_PREFIX")
  (list $v.fallbackPullSecret "SBOM_FALLBACK_PULL_SECRET")
  (list $v.job.priorityClassName "SBOM_JOB_PRIORITY_CLASS")
  (list $v.job.serviceAccountName "SBOM_JOB_SERVICE_ACCOUNT")
  (list $v.job.maxImages "SBOM_JOB_MAX_IMAGES")
  (list $v.job.maxParallel "SBOM_JOB_MAX_PARALLEL")
  (list $v.job.tmpSize "SBOM_JOB_TMP_SIZE")
  (list $v.debounce "SBOM_DEBOUNCE")
  (list $v.retryBackoff "SBOM_RETRY_BACKOFF")
  (list $v.retryBackoffMax "SBOM_RETRY_BACKOFF_MAX")
  (list $v.maxJobsPerCycle "SBOM_MAX_JOBS_PER_CYCLE")
  (list $v.maxCredentialSize "SBOM_MAX_CREDENTIAL_SIZE")
  (list $v.cache.ttl "SBOM_CACHE_TTL")
  (list $v.cache.grace "SBOM_CACHE_GRACE")
  (list $v.registryLookup.enabled "SBOM_REGISTRY_LOOKUP")
  (list $v.registryLookup.acceptArtifactTypes "SBOM_REGISTRY_LOOKUP_ACCEPT")
  (list $v.registryLookup.insecureRegistries "SBOM_REGISTRY_LOOKUP_INSECURE")
  (list $v.registryLookup.repositories "SBOM_REGISTRY_LOOKUP_REPOSITORIES")
  (list $v.sources.registries "SBOM_SOURCE_REGISTRIES")
  (list $v.drift.interval "SBOM_DRIFT_INTERVAL")
  (list $v.admin.healthTimeout "SBOM_HEALTH_TIMEOUT")
  (list $v.leaderElection.leaseName "SBOM_LEASE_NAME")
  (list $v.leaderElection.leaseDuration "SBOM_LEASE_DURATION")
  (list $v.logging.format "SBOM_LOG_FORMAT")
  (list $v.logging.level "RUST_LOG")
-}}
{{- range $pairs }}
{{- $value := index . 0 }}
{{- if not (or (kindIs "invalid" $value) (eq (include "sbomjob.str" $value | trim) "")) }}
- name: {{ index . 1 }}
  value: {{ include "sbomjob.envValue" $value }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
"true" unless cache.ttl is zero ("0", 0, "0s", "0h", ...), which turns the digest cache off;
empty otherwise (for `if`).
*/}}
{{- define "sbomjob.cacheEnabled" -}}
{{- if not (regexMatch "^\\s*0+\\s*[a-zA-Z]*\\s*$" (include "sbomjob.str" .Values.cache.ttl)) -}}
true
{{- end -}}
{{- end -}}

{{/* Pod-shape settings of the Jobs, as JSON (the operator parses them with serde). */}}
{{- define "sbomjob.jsonEnv" -}}
{{- $job := .Values.job -}}
{{- $pairs := list
  (list $job.resources "SBOM_JOB_RESOURCES")
  (list $job.nodeSelector "SBOM_JOB_NODE_SELECTOR")
  (list $job.tolerations "SBOM_JOB_TOLERATIONS")
  (list $job.affinity "SBOM_JOB_AFFINITY")
-}}
{{- range $pairs }}
{{- if index . 0 }}
- name: {{ index . 1 }}
  value: {{ index . 0 | toJson | include "sbomjob.envValue" }}
{{- end }}
{{- end }}
{{- end -}}

{{/* jobEnv: literals as SBOM_JOB_<NAME>, Secret references as SBOM_JOBSECRET_<NAME>. */}}
{{- define "sbomjob.jobEnv" -}}
{{- $reserved := splitList " " (include "sbomjob.reservedJobEnv" .) -}}
{{- $seen := dict -}}
{{- range $i, $e := .Values.jobEnv }}
{{- if hasKey $seen (upper $e.name) }}
{{- fail (printf "jobEnv[%d]: %s is set twice (names are compared without case)" $i $e.name) }}
{{- end }}
{{- $_ := set $seen (upper $e.name) true }}
{{- if $e.secretKeyRef }}
- name: {{ printf "SBOM_JOBSECRET_%s" $e.name }}
  value: {{ printf "%s/%s" $e.secretKeyRef.name $e.secretKeyRef.key | include "sbomjob.envValue" }}
{{- else }}
{{- if has (upper $e.name) $reserved }}
{{- fail (printf "jobEnv[%d]: %s is reserved: SBOM_JOB_%s is the operator's own setting; use the chart value for it (see docs/configuration.md)" $i $e.name (upper $e.name)) }}
{{- end }}
- name: {{ printf "SBOM_JOB_%s" $e.name }}
  value: {{ include "sbomjob.envValue" $e.value }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The API server's addresses for the NetworkPolicies, as a JSON list of CIDRs: networkPolicy.apiServerCIDRs,
else the endpoints of the default/kubernetes Service looked up at install. Fails naming `what`
when neither is there (helm template cannot look up). Call with (dict "ctx" . "what" "...").
*/}}
{{- define "sbomjob.apiServerCIDRs" -}}
{{- $ctx := .ctx -}}
{{- $cidrs := $ctx.Values.networkPolicy.apiServerCIDRs | default list -}}
{{- if not $cidrs -}}
{{- $slice := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" -}}
{{- range $slice.endpoints | default list -}}
{{- range .addresses -}}
{{- $cidrs = append $cidrs . -}}
{{- end -}}
{{- end -}}
{{- if not $cidrs -}}
{{- $endpoints := lookup "v1" "Endpoints" "default" "kubernetes" -}}
{{- range $endpoints.subsets | default list -}}
{{- range .addresses | default list -}}
{{- $cidrs = append $cidrs .ip -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $cidrs -}}
{{- fail (printf "%s: the API server's addresses are unknown (no cluster to look up the default/kubernetes endpoints, as with helm template): set networkPolicy.apiServerCIDRs" .what) -}}
{{- end -}}
{{- $blocks := list -}}
{{- range $cidrs -}}
{{- $blocks = append $blocks (include "sbomjob.cidr" .) -}}
{{- end -}}
{{- toJson $blocks -}}
{{- end -}}

{{/* An address as a NetworkPolicy ipBlock names it: a bare IP is a /32 (or /128). */}}
{{- define "sbomjob.cidr" -}}
{{- if contains "/" . -}}{{ . }}{{- else -}}{{ printf "%s/%s" . (ternary "128" "32" (contains ":" .)) }}{{- end -}}
{{- end -}}
