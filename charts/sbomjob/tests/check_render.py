#!/usr/bin/env python3
"""Assertions on rendered manifests of the sbomjob chart (run by lint.sh).

    check_render.py default RENDERED.yaml
    check_render.py ha RENDERED.yaml        (replicaCount=2, metrics.enabled=true)
    check_render.py off RENDERED.yaml       (cache.ttl=0, leaderElection.enabled=false, podEvents=none,
                                             crds.upgrade.enabled=false)
    check_render.py full RENDERED.yaml FULL_VALUES.yaml [SETTINGS_RS HELPERS_TPL]
      (the full render includes crds/: helm template --include-crds)
    check_render.py policy RENDERED.yaml    (a 1.33 capability set: the admission policy on "auto")
    check_render.py policyoff RENDERED.yaml (the same with admissionPolicy.enabled=false)
    check_render.py names A.yaml B.yaml C.yaml
      (one release name in namespaces a and b, and another release in namespace a)

Prints one "ok <what>" or "FAIL <what>: <why>" line per check; lint.sh counts them.
"""

import json
import os
import re
import sys

import yaml


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def is_hook(d):
    return "helm.sh/hook" in (d.get("metadata", {}).get("annotations") or {})


def by_kind(docs, kind):
    """The release's objects of a kind (helm's hooks, such as the test's, aside: see hooks())."""
    return [d for d in docs if d.get("kind") == kind and not is_hook(d)]


def hooks(docs, kind):
    return [d for d in docs if d.get("kind") == kind and is_hook(d)]


def helm_test(c, docs, label, expect=True):
    """`helm test`: a Service and a pod probing /readyz through it with the operator's image."""
    pods, services = hooks(docs, "Pod"), hooks(docs, "Service")
    c.check(f"{label}: helm test {'rendered' if expect else 'not rendered (no replica)'}",
            (len(pods), len(services)) == ((1, 1) if expect else (0, 0)), (len(pods), len(services)))
    if not expect or len(pods) != 1 or len(services) != 1:
        return
    deploy, container, _ = env_of(docs)
    (pod,), (svc,) = pods, services
    (probe,) = pod["spec"]["containers"]
    port = container["ports"][0]["containerPort"]
    c.check(f"{label}: helm test: both are test hooks, replaced by the next test; the Service deleted when it passed"
            " (the pod kept for helm test --logs)",
            all(d["metadata"]["annotations"]["helm.sh/hook"] == "test"
                and "before-hook-creation" in d["metadata"]["annotations"]["helm.sh/hook-delete-policy"] for d in (pod, svc))
            and "hook-succeeded" in svc["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
            and "hook-succeeded" not in pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"])
    c.check(f"{label}: helm test: the Service selects the operator pods' admin port",
            svc["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
            and svc["spec"]["ports"][0]["targetPort"] == "admin" and svc["spec"]["ports"][0]["port"] == port,
            svc["spec"])
    link = svc["metadata"]["name"].upper().replace("-", "_")
    c.check(f"{label}: helm test: the operator's image probes /readyz through that Service (its service link variables)",
            probe["image"] == container["image"] and pod["spec"].get("enableServiceLinks") is True
            and probe["args"] == ["--probe", f"http://$({link}_SERVICE_HOST):$({link}_SERVICE_PORT)/readyz"]
            and int(svc["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(pod["metadata"]["annotations"].get("helm.sh/hook-weight", "0")),
            probe)
    sc, psc = probe["securityContext"], pod["spec"]["securityContext"]
    c.check(f"{label}: helm test pod: restricted (non-root, RuntimeDefault, no privilege escalation, drop ALL), no token",
            psc.get("runAsNonRoot") is True and psc["seccompProfile"]["type"] == "RuntimeDefault"
            and sc.get("allowPrivilegeEscalation") is False and sc["capabilities"]["drop"] == ["ALL"]
            and pod["spec"].get("automountServiceAccountToken") is False, (psc, sc))


CRD_NAMES = ["imagerecords.sbomjob.io", "imagesources.sbomjob.io", "trustpolicies.sbomjob.io"]


def crds_upgrade(c, docs, label, expect=True, values=None):
    """crds.upgrade: the hook Job applying the CRDs (--apply-crds), its ServiceAccount and RBAC."""
    kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Job")
    found = {k: hooks(docs, k) for k in kinds}
    c.check(f"{label}: CRD upgrade hook {'rendered' if expect else 'not rendered'} (ServiceAccount, ClusterRole,"
            " ClusterRoleBinding, Job)",
            all(len(v) == (1 if expect else 0) for v in found.values()), {k: len(v) for k, v in found.items()})
    if not expect or not all(len(v) == 1 for v in found.values()):
        return
    (sa,), (role,), (binding,), (job,) = (found[k] for k in kinds)
    deploy, container, _ = env_of(docs)
    notes = [d["metadata"]["annotations"] for d in (sa, role, binding, job)]
    c.check(f"{label}: CRD hook: pre-install and pre-upgrade, replaced by the next run, deleted once it succeeded",
            all(a["helm.sh/hook"] == "pre-install,pre-upgrade"
                and a["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded" for a in notes), notes)
    weight = lambda d: int(d["metadata"]["annotations"]["helm.sh/hook-weight"])
    c.check(f"{label}: CRD hook: ServiceAccount and RBAC before the Job (hook weights)",
            max(weight(d) for d in (sa, role, binding)) < weight(job), [weight(d) for d in (sa, role, binding, job)])
    c.check(f"{label}: CRD hook: the binding gives its ClusterRole to its ServiceAccount",
            binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                   "name": role["metadata"]["name"]}
            and binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                         "namespace": sa["metadata"]["namespace"]}], binding)
    rules = role["rules"]
    named = [r for r in rules if r.get("resourceNames")]
    c.check(f"{label}: CRD hook RBAC: get and patch on our three CRDs by name; create (not limitable by name) the"
            " only other verb; nothing but customresourcedefinitions",
            all(r["apiGroups"] == ["apiextensions.k8s.io"] and r["resources"] == ["customresourcedefinitions"]
                for r in rules)
            and [(sorted(r["verbs"]), sorted(r["resourceNames"])) for r in named] == [(["get", "patch"], CRD_NAMES)]
            and [r["verbs"] for r in rules if not r.get("resourceNames")] == [["create"]], rules)
    spec = job["spec"]["template"]["spec"]
    (box,) = spec["containers"]
    c.check(f"{label}: CRD hook Job: the operator image with --apply-crds, its own ServiceAccount, no retry",
            box["image"] == container["image"] and box["args"] == ["--apply-crds"]
            and spec["serviceAccountName"] == sa["metadata"]["name"] and spec["restartPolicy"] == "Never"
            and job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0, job["spec"])
    psc, sc = spec["securityContext"], box["securityContext"]
    c.check(f"{label}: CRD hook pod: restricted (non-root, RuntimeDefault, read-only root, no privilege escalation,"
            " drop ALL), resources set",
            psc.get("runAsNonRoot") is True and psc["seccompProfile"]["type"] == "RuntimeDefault"
            and sc.get("allowPrivilegeEscalation") is False and sc["capabilities"]["drop"] == ["ALL"]
            and sc.get("readOnlyRootFilesystem") is True and box["resources"]["limits"]["memory"], (psc, sc))
    selector = deploy["spec"]["selector"]["matchLabels"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    c.check(f"{label}: CRD hook pod: not selected by the operator's selector (Service, PDB, NetworkPolicy)",
            not all(labels.get(k) == v for k, v in selector.items()), labels)
    if values:
        up = values["crds"]["upgrade"]
        c.check(f"{label}: CRD hook: crds.upgrade.timeoutSeconds and resources",
                job["spec"]["activeDeadlineSeconds"] == up["timeoutSeconds"] and box["resources"] == up["resources"],
                (job["spec"], box["resources"]))


def env_of(docs):
    (deploy,) = by_kind(docs, "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return deploy, container, container.get("env", [])


def kubelet_expand(value):
    """What the kubelet makes of an env value without $(VAR) references: $$ -> $."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "$" and i + 1 < len(value) and value[i + 1] == "$":
            out.append("$")
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


# The operator's defaults the chart repeats (SBOM_LEASE_NAME, SBOM_ANNOTATION_PREFIX); the full
# check compares them with `sbomjob-operator --print-settings`.
DEFAULT_LEASE_SUFFIX = "-leader"
DEFAULT_ANNOTATION_PREFIX = "sbomjob.io"


def load_settings(path):
    """`sbomjob-operator --print-settings`, by variable name."""
    with open(path) as f:
        return {st["name"]: st for st in json.load(f)}


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, what, cond, why=""):
        if cond:
            print(f"ok    {what}")
        else:
            self.failed += 1
            print(f"FAIL  {what}: {why}")


def common(c, docs, label):
    deploy, container, env = env_of(docs)
    pod = deploy["spec"]["template"]["spec"]
    names = [e["name"] for e in env]
    c.check(f"{label}: env names unique", len(names) == len(set(names)), names)
    field_refs = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in env
        if "valueFrom" in e and "fieldRef" in e["valueFrom"]
    }
    c.check(
        f"{label}: POD_NAMESPACE and POD_NAME from fieldRefs",
        field_refs.get("POD_NAMESPACE") == "metadata.namespace"
        and field_refs.get("POD_NAME") == "metadata.name",
        field_refs,
    )
    c.check(f"{label}: automountServiceAccountToken true", pod.get("automountServiceAccountToken") is True)
    c.check(f"{label}: enableServiceLinks false", pod.get("enableServiceLinks") is False)
    admin_addr = next((e.get("value") for e in env if e["name"] == "SBOM_ADMIN_ADDR"), "")
    port = int(admin_addr.rsplit(":", 1)[1]) if re.fullmatch(r"0\.0\.0\.0:[0-9]+", admin_addr) else None
    c.check(f"{label}: SBOM_ADMIN_ADDR is 0.0.0.0:<port>", port is not None, admin_addr)
    c.check(
        f"{label}: one container port, admin = the SBOM_ADMIN_ADDR port",
        [(p.get("name"), p.get("containerPort"), p.get("protocol")) for p in container.get("ports", [])]
        == [("admin", port, "TCP")],
        container.get("ports"),
    )
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        c.check(f"{label}: {probe} GET {path} on port admin", get == {"path": path, "port": "admin"},
                container.get(probe))
        c.check(f"{label}: {probe} has period, timeout and failureThreshold",
                all(k in container.get(probe, {}) for k in ("periodSeconds", "timeoutSeconds", "failureThreshold")),
                container.get(probe))
    c.check(f"{label}: no startupProbe", "startupProbe" not in container)
    leader = next((e.get("value") for e in env if e["name"] == "SBOM_LEADER_ELECTION"), None)
    c.check(f"{label}: SBOM_LEADER_ELECTION rendered as true/false", leader in ("true", "false"), leader)
    replicas = deploy["spec"]["replicas"]
    strategy = deploy["spec"].get("strategy", {})
    if replicas <= 1:
        c.check(f"{label}: {replicas} replica(s): Recreate", strategy == {"type": "Recreate"}, strategy)
    else:
        c.check(f"{label}: {replicas} replicas: leader election on, RollingUpdate without unavailability",
                leader == "true" and strategy.get("type") == "RollingUpdate"
                and strategy.get("rollingUpdate", {}).get("maxUnavailable") == 0, (leader, strategy))
    sa_names = {d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount")}
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        (binding,) = by_kind(docs, kind)
        subject = binding["subjects"][0]
        c.check(
            f"{label}: {kind} binds the operator's service account",
            subject["name"] == pod["serviceAccountName"] and subject["name"] in sa_names,
            (subject, pod["serviceAccountName"], sa_names),
        )
    (cluster_role,) = [r for r in by_kind(docs, "ClusterRole") if not is_aggregated(r)]
    (role,) = by_kind(docs, "Role")
    (cluster_binding,) = by_kind(docs, "ClusterRoleBinding")
    cluster_name = f"{deploy['metadata']['namespace']}.{deploy['metadata']['name']}"
    c.check(f"{label}: ClusterRole and ClusterRoleBinding named <namespace>.<fullname>",
            cluster_role["metadata"]["name"] == cluster_binding["metadata"]["name"] == cluster_name
            and cluster_binding["roleRef"]["name"] == cluster_name,
            (cluster_role["metadata"]["name"], cluster_binding["metadata"]["name"], cluster_name))
    for rule in cluster_role["rules"] + role["rules"]:
        c.check(
            f"{label}: no wildcard or write-all in {rule['resources']}",
            # update (a whole-object replace) only where the resourceVersion read must guard the
            # write: the Lease, and the ImageRecords that several releases share.
            "*" not in rule["verbs"] and "*" not in rule["resources"] and "update" not in rule["verbs"]
            or rule["resources"] in (["leases"], ["imagerecords"]),
            rule,
        )
    cluster_secrets = [r for r in cluster_role["rules"] if "secrets" in r["resources"]]
    c.check(
        f"{label}: cluster-wide secrets access is get only",
        [r["verbs"] for r in cluster_secrets] == [["get"]],
        cluster_secrets,
    )

    def rules(of, group, resource):
        return [r for r in of["rules"] if resource in r["resources"] and group in r["apiGroups"]]

    c.check(f"{label}: pods: list, watch, patch (the pod store; the annotations)",
            [r["verbs"] for r in rules(cluster_role, "", "pods")] == [["list", "watch", "patch"]],
            rules(cluster_role, "", "pods"))
    cache_off = re.fullmatch(r"\s*0+\s*[a-zA-Z]*\s*",
                             next((e.get("value", "") for e in env if e["name"] == "SBOM_CACHE_TTL"), "")) is not None
    c.check(f"{label}: imagerecords (sbomjob.io): get, list, create, update, delete, cluster-wide"
            + (" (none: cache.ttl 0)" if cache_off else ""),
            [(r["apiGroups"], r["resources"], r["verbs"]) for r in rules(cluster_role, "sbomjob.io", "imagerecords")]
            == ([] if cache_off else [(["sbomjob.io"], ["imagerecords"], ["get", "list", "create", "update", "delete"])]),
            rules(cluster_role, "sbomjob.io", "imagerecords"))
    c.check(f"{label}: no imagerecords rule in the Role", not rules(role, "sbomjob.io", "imagerecords"))
    c.check(f"{label}: imagerecords/status: patch only, exactly when the cache is on (what a Job found)",
            [r["verbs"] for r in rules(cluster_role, "sbomjob.io", "imagerecords/status")]
            == ([] if cache_off else [["patch"]]),
            rules(cluster_role, "sbomjob.io", "imagerecords/status"))
    c.check(f"{label}: trustpolicies: list, watch, cluster-wide, exactly when the cache is on",
            [(r["resources"], r["verbs"]) for r in rules(cluster_role, "sbomjob.io", "trustpolicies")]
            == ([] if cache_off else [(["trustpolicies"], ["list", "watch"])])
            and not rules(role, "sbomjob.io", "trustpolicies"),
            rules(cluster_role, "sbomjob.io", "trustpolicies"))
    sources_on = not cache_off and any(e["name"] == "SBOM_SOURCE_REGISTRIES" and e.get("value", "").strip()
                                       for e in env)
    c.check(f"{label}: imagesources: list, watch; imagesources/status: patch; exactly when the cache is on"
            " and sources.registries is set" + ("" if sources_on else " (none here)"),
            [(r["resources"], r["verbs"]) for r in rules(cluster_role, "sbomjob.io", "imagesources")
             + rules(cluster_role, "sbomjob.io", "imagesources/status")]
            == ([] if not sources_on else [(["imagesources"], ["list", "watch"]), (["imagesources/status"], ["patch"])])
            and not rules(role, "sbomjob.io", "imagesources"),
            rules(cluster_role, "sbomjob.io", "imagesources"))
    c.check(f"{label}: pods/log: get, in the Role only (the job pods' result lines, never a workload pod's)",
            [r["verbs"] for r in rules(role, "", "pods/log")] == [["get"]]
            and not rules(cluster_role, "", "pods/log"),
            (rules(role, "", "pods/log"), rules(cluster_role, "", "pods/log")))
    lease_rules = [(r["verbs"], r.get("resourceNames")) for r in rules(role, "coordination.k8s.io", "leases")]
    release = next((e.get("value") for e in env if e["name"] == "SBOM_RELEASE"), None)
    c.check(f"{label}: SBOM_RELEASE is the release name", release == "sbomjob", release)
    lease_name = (next((e.get("value") for e in env if e["name"] == "SBOM_LEASE_NAME"), None)
                  or f"{release}{DEFAULT_LEASE_SUFFIX}")
    c.check(f"{label}: Lease rules exactly when leader election is on: get, update on {lease_name} only; create",
            lease_rules == ([(["get", "update"], [lease_name]), (["create"], None)] if leader == "true" else []),
            lease_rules)
    c.check(f"{label}: no rule but the Lease's has resourceNames",
            all("resourceNames" not in r for r in cluster_role["rules"] + role["rules"] if r["resources"] != ["leases"]))
    c.check(f"{label}: events.k8s.io events: create, patch, in the Role (the Jobs' Events)",
            [r["verbs"] for r in rules(role, "events.k8s.io", "events")] == [["create", "patch"]],
            rules(role, "events.k8s.io", "events"))
    c.check(f"{label}: config Secrets: create (owned by its Job from the start), delete, list; no patch",
            [r["verbs"] for r in rules(role, "", "secrets")] == [["create", "delete", "list"]],
            rules(role, "", "secrets"))
    c.check(f"{label}: Jobs: create, get, list, watch, patch (resume, done label), delete",
            [r["verbs"] for r in rules(role, "batch", "jobs")] == [["create", "get", "list", "watch", "patch", "delete"]],
            rules(role, "batch", "jobs"))
    pod_events = next((e.get("value") for e in env if e["name"] == "SBOM_POD_EVENTS"), None)
    c.check(f"{label}: SBOM_POD_EVENTS rendered as all, failures or none",
            pod_events in ("all", "failures", "none"), pod_events)
    c.check(f"{label}: events.k8s.io events: create only, cluster-wide, exactly when podEvents is not none",
            [r["verbs"] for r in rules(cluster_role, "events.k8s.io", "events")]
            == ([] if pod_events == "none" else [["create"]]),
            rules(cluster_role, "events.k8s.io", "events"))
    return deploy, container, env, cluster_role, role


def metrics_objects(c, docs, deploy, container, label, service_monitor):
    """The metrics Service (and ServiceMonitor): returns the Service."""
    services = by_kind(docs, "Service")
    c.check(f"{label}: one metrics Service", len(services) == 1, [s["metadata"]["name"] for s in services])
    if len(services) != 1:
        return None
    (svc,) = services
    port = container["ports"][0]["containerPort"]
    c.check(f"{label}: Service selects the operator pods",
            svc["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"], svc["spec"]["selector"])
    c.check(f"{label}: Service port {port} (metrics) -> admin",
            svc["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "admin", "protocol": "TCP"}],
            svc["spec"]["ports"])
    monitors = by_kind(docs, "ServiceMonitor")
    c.check(f"{label}: ServiceMonitor {'rendered' if service_monitor else 'not rendered'}",
            len(monitors) == (1 if service_monitor else 0), len(monitors))
    annotations = svc["metadata"].get("annotations", {})
    prom = {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")}
    if service_monitor:
        c.check(f"{label}: no prometheus.io annotations next to a ServiceMonitor", not prom, prom)
    else:
        c.check(f"{label}: prometheus.io scrape/port/path annotations",
                prom == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                         "prometheus.io/path": "/metrics"}, prom)
    return svc


def admission_policy(c, docs, label, expect):
    """The ValidatingAdmissionPolicy and its binding: rendered as `expect` says, and right."""
    policies = by_kind(docs, "ValidatingAdmissionPolicy")
    bindings = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    c.check(f"{label}: admission policy and binding {'rendered' if expect else 'not rendered'}",
            (len(policies), len(bindings)) == ((1, 1) if expect else (0, 0)), (len(policies), len(bindings)))
    if not expect or len(policies) != 1 or len(bindings) != 1:
        return
    deploy, _, env = env_of(docs)
    (policy,), (binding,) = policies, bindings
    spec = policy["spec"]
    ns = deploy["metadata"]["namespace"]
    sa = deploy["spec"]["template"]["spec"]["serviceAccountName"]
    cluster_name = f"{ns}.{deploy['metadata']['name']}"
    c.check(f"{label}: policy and binding named <namespace>.<fullname>; the binding names the policy, Deny",
            policy["metadata"]["name"] == binding["metadata"]["name"] == binding["spec"]["policyName"] == cluster_name
            and binding["spec"]["validationActions"] == ["Deny"] and "paramRef" not in binding["spec"],
            (policy["metadata"], binding["spec"]))
    c.check(f"{label}: policy: failurePolicy Fail, no params",
            spec.get("failurePolicy") == "Fail" and "paramKind" not in spec, spec.get("failurePolicy"))
    c.check(f"{label}: policy matches UPDATE of pods (v1, no subresources) only",
            spec["matchConstraints"] == {"resourceRules": [
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods"]}]},
            spec["matchConstraints"])
    c.check(f"{label}: policy matches the operator's service account only",
            [m["expression"] for m in spec.get("matchConditions", [])]
            == [f'request.userInfo.username == "system:serviceaccount:{ns}:{sa}"'], spec.get("matchConditions"))
    prefix = next((e.get("value") for e in env if e["name"] == "SBOM_ANNOTATION_PREFIX"), None) or DEFAULT_ANNOTATION_PREFIX
    variables = {v["name"]: v["expression"] for v in spec.get("variables", [])}
    c.check(f"{label}: policy's prefix is annotationPrefix + '/' ({prefix}/)",
            variables.get("prefix") == f"'{prefix}/'", variables.get("prefix"))
    c.check(f"{label}: every validation denies as Forbidden",
            spec["validations"] and all(v.get("reason") == "Forbidden" for v in spec["validations"]), spec["validations"])


def cidr(a):
    """An address as a NetworkPolicy ipBlock names it: a bare IP is a /32 (or /128)."""
    return a if "/" in a else a + ("/128" if ":" in a else "/32")


def network_policy(c, docs, label, values=None):
    """The job pods' NetworkPolicy: only with networkPolicy.enabled (`values` given)."""
    policies = [p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-jobs")]
    c.check(f"{label}: NetworkPolicy {'rendered' if values else 'not rendered'}",
            len(policies) == (1 if values else 0), len(policies))
    if not values or len(policies) != 1:
        return
    deploy, _, _ = env_of(docs)
    (np,) = policies
    spec = np["spec"]
    c.check(f"{label}: NetworkPolicy selects this release's job pods",
            spec["podSelector"] == {"matchLabels": {
                "app.kubernetes.io/managed-by": "sbomjob",
                "app.kubernetes.io/instance": deploy["metadata"]["labels"]["app.kubernetes.io/instance"]}}
            and np["metadata"]["namespace"] == deploy["metadata"]["namespace"], spec["podSelector"])
    c.check(f"{label}: NetworkPolicy: no ingress, egress by one rule",
            sorted(spec["policyTypes"]) == ["Egress", "Ingress"] and "ingress" not in spec
            and len(spec["egress"]) == 1 and "ports" not in spec["egress"][0], spec)
    blocks = {b["ipBlock"]["cidr"]: b["ipBlock"].get("except", []) for b in spec["egress"][0]["to"]}
    np_values = values["networkPolicy"]

    denied = {cidr(a) for a in np_values["apiServerCIDRs"] + np_values["extraDeniedCIDRs"]}
    want = {
        "0.0.0.0/0": sorted({"169.254.169.254/32"} | {a for a in denied if ":" not in a}),
        "::/0": sorted({"fd00:ec2::254/128"} | {a for a in denied if ":" in a}),
    }
    c.check(f"{label}: NetworkPolicy: everywhere but the API server and the metadata address",
            {k: sorted(v) for k, v in blocks.items()} == want, (blocks, want))


def operator_network_policy(c, docs, label, values=None):
    """The operator pods' NetworkPolicy: only with networkPolicy.operator.enabled (`values` given)."""
    policies = [p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-operator")]
    c.check(f"{label}: operator NetworkPolicy {'rendered' if values else 'not rendered'}",
            len(policies) == (1 if values else 0), len(policies))
    if not values or len(policies) != 1:
        return
    deploy, _, _ = env_of(docs)
    spec = policies[0]["spec"]
    op = values["networkPolicy"]["operator"]
    c.check(f"{label}: operator NetworkPolicy selects the operator pods",
            spec["podSelector"] == {"matchLabels": deploy["spec"]["selector"]["matchLabels"]}, spec["podSelector"])
    c.check(f"{label}: operator NetworkPolicy: in only on the admin port, from adminFrom",
            spec["ingress"] == [{"ports": [{"port": "admin", "protocol": "TCP"}], "from": op["adminFrom"]}]
            if op["adminFrom"] else spec["ingress"] == [{"ports": [{"port": "admin", "protocol": "TCP"}]}],
            spec["ingress"])

    api, dns, *registries = spec["egress"]
    c.check(f"{label}: operator NetworkPolicy: out to the API server, DNS and the registries only",
            [b["ipBlock"]["cidr"] for b in api["to"]] == [cidr(a) for a in values["networkPolicy"]["apiServerCIDRs"]]
            and dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
            and [[b["ipBlock"]["cidr"] for b in r["to"]] for r in registries] == ([op["registryCIDRs"]] if op["registryCIDRs"] else []),
            spec["egress"])
    c.check(f"{label}: operator NetworkPolicy: never the cloud metadata address",
            all(b["ipBlock"].get("except") in ([ "169.254.169.254/32"], ["fd00:ec2::254/128"])
                for r in registries for b in r["to"] if b["ipBlock"]["cidr"] in ("0.0.0.0/0", "::/0")), registries)


def check_policy(c, docs, expect):
    label = "policy" if expect else "policyoff"
    common(c, docs, label)
    admission_policy(c, docs, label, expect)


def is_aggregated(role):
    """One of the ClusterRoles aggregated into Kubernetes' view/edit/admin (rbac.aggregateToDefaultRoles)."""
    return any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in role["metadata"].get("labels", {}))


def check_names(c, a, b, other):
    """Cluster-scoped objects: one release name in two namespaces, two releases in one namespace."""
    kinds = ("ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    subdomain = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
    for kind in kinds:
        names = [[d["metadata"]["name"] for d in by_kind(docs, kind) if not is_aggregated(d)] for docs in (a, b, other)]
        c.check(f"names: one {kind} per render (the aggregated view/edit roles aside)",
                [len(n) for n in names] == [1, 1, 1], names)
        flat = [n for ns in names for n in ns]
        c.check(f"names: {kind} differs between namespaces and between releases", len(set(flat)) == len(flat), flat)
        c.check(f"names: {kind} names are DNS subdomains of at most 253 characters",
                all(len(n) <= 253 and subdomain.fullmatch(n) for n in flat), flat)
    for kind in ("ClusterRole", "ClusterRoleBinding"):
        flat = [d["metadata"]["name"] for docs in (a, b, other) for d in hooks(docs, kind)]
        c.check(f"names: the CRD hook's {kind} differs between namespaces and releases, a DNS subdomain",
                len(flat) == len(set(flat)) == 3 and all(len(n) <= 253 and subdomain.fullmatch(n) for n in flat), flat)
    views = [sorted(d["metadata"]["name"] for d in by_kind(docs, "ClusterRole") if is_aggregated(d)) for docs in (a, b, other)]
    flat = [n for ns in views for n in ns]
    c.check("names: the aggregated view/edit ClusterRoles differ between namespaces and releases",
            len(set(flat)) == len(flat) == 6, views)


def dashboards(docs):
    return [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


def grafana_dashboard(c, docs, label, values=None, chart_dir=None):
    """metrics.grafanaDashboard: a ConfigMap with dashboards/sbomjob.json for Grafana's sidecar
    (which metrics its queries name is checked by the operator's unit tests, against its registry)."""
    maps = dashboards(docs)
    if values is None:
        c.check(f"{label}: no Grafana dashboard ConfigMap (metrics.grafanaDashboard.enabled false)", not maps,
                [m["metadata"]["name"] for m in maps])
        return
    c.check(f"{label}: one Grafana dashboard ConfigMap in metrics.grafanaDashboard.namespace with its labels and annotations",
            len(maps) == 1 and maps[0]["metadata"]["namespace"] == values["namespace"]
            and values["labels"].items() <= maps[0]["metadata"]["labels"].items()
            and maps[0]["metadata"].get("annotations") == values["annotations"],
            [m["metadata"] for m in maps])
    if len(maps) != 1:
        return
    data = maps[0]["data"]
    try:
        dash = json.loads(data.get("sbomjob.json", ""))
    except ValueError as e:
        dash = None
        c.check(f"{label}: the dashboard is valid JSON", False, e)
    if dash is None:
        return
    with open(f"{chart_dir}/dashboards/sbomjob.json") as f:
        c.check(f"{label}: the ConfigMap holds dashboards/sbomjob.json as it is", list(data) == ["sbomjob.json"]
                and dash == json.load(f))
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    c.check(f"{label}: the dashboard: a uid, panels each with a query, every query on the namespace and service variables",
            dash.get("uid") and panels and all(p.get("targets") for p in panels)
            and all('namespace="$namespace"' in e and 'service="$service"' in e for e in exprs), exprs)
    titles = " ".join(p["title"].lower() for p in panels)
    c.check(f"{label}: the dashboard has cycles, Jobs, images processed, cache hit rate, findings, drift, last success, API requests, leader",
            all(w in titles for w in ("cycles", "jobs", "images processed", "cache hit rate", "findings", "drift",
                                      "last successful cycle", "kubernetes api", "leader")), titles)
    names = {v["name"] for v in dash["templating"]["list"]}
    c.check(f"{label}: the dashboard's variables: datasource, namespace, service", names == {"datasource", "namespace", "service"},
            names)


def check_default(c, docs, settings_json=None):
    deploy, container, env, cluster_role, role = common(c, docs, "default")
    values = {e["name"]: e.get("value") for e in env}
    # helm template without --api-versions knows no ValidatingAdmissionPolicy API: "auto" is off.
    admission_policy(c, docs, "default (no capabilities)", expect=False)
    network_policy(c, docs, "default")
    operator_network_policy(c, docs, "default")
    crds_upgrade(c, docs, "default")
    if settings_json:
        default = load_settings(settings_json)["SBOM_JOB_RESOURCES"]["default"]
        try:
            rendered = json.loads(values.get("SBOM_JOB_RESOURCES") or "")
        except ValueError as e:
            rendered = e
        c.check("default: job.resources is the operator's default SBOM_JOB_RESOURCES (--print-settings)",
                default is not None and rendered == json.loads(default), (rendered, default))
    c.check("default: SBOM_JOB_IMAGE set", values.get("SBOM_JOB_IMAGE") == "x", values)
    c.check("default: SBOM_JOB_TIMEOUT 3600", values.get("SBOM_JOB_TIMEOUT") == "3600", values)
    c.check(
        "default: nothing unset is rendered (operator defaults apply)",
        not any(
            k in values
            for k in ("SBOM_CRON", "SBOM_INTERVAL", "SBOM_JOB_TMP_SIZE", "SBOM_JOB_PRIVILEGED", "SBOM_JOB_TTL",
                      "SBOM_CACHE_TTL", "SBOM_CACHE_GRACE", "SBOM_LEASE_NAME", "SBOM_LEASE_DURATION",
                      "SBOM_DEBOUNCE")
        ),
        sorted(values),
    )
    c.check("default: SBOM_ADMIN_ADDR 0.0.0.0:8080", values.get("SBOM_ADMIN_ADDR") == "0.0.0.0:8080", values)
    c.check("default: SBOM_LEADER_ELECTION true", values.get("SBOM_LEADER_ELECTION") == "true", values)
    c.check("default: SBOM_POD_EVENTS failures", values.get("SBOM_POD_EVENTS") == "failures", values)
    c.check("default: one replica, Recreate", deploy["spec"]["replicas"] == 1
            and deploy["spec"]["strategy"]["type"] == "Recreate", deploy["spec"])
    c.check("default: no Service, no ServiceMonitor, no PrometheusRule (metrics.enabled false)",
            not by_kind(docs, "Service") and not by_kind(docs, "ServiceMonitor") and not by_kind(docs, "PrometheusRule"))
    c.check("default: CRDs are not templates (they are in crds/)", not by_kind(docs, "CustomResourceDefinition"))
    c.check(
        "default: no namespaces rule without namespaceLabelSelector",
        not any("namespaces" in r["resources"] for r in cluster_role["rules"]),
    )
    psc = deploy["spec"]["template"]["spec"]["securityContext"]
    sc = container["securityContext"]
    c.check(
        "default: non-root 65532, RuntimeDefault seccomp",
        psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532
        and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        psc,
    )
    c.check(
        "default: read-only root, no privilege escalation, drop ALL",
        sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
        and sc.get("capabilities", {}).get("drop") == ["ALL"],
        sc,
    )
    c.check("default: operator resources set", container.get("resources", {}).get("limits", {}).get("memory"))
    c.check("default: image sbomjob/operator:<appVersion>, no registry, no digest",
            re.fullmatch(r"sbomjob/operator:[^@/]+", container["image"]) is not None, container["image"])
    c.check("default: no PodDisruptionBudget with one replica (it would block every drain)",
            not by_kind(docs, "PodDisruptionBudget"))
    c.check("default: no topologySpreadConstraints", "topologySpreadConstraints" not in deploy["spec"]["template"]["spec"])
    aggregate(c, docs, "default", expect=True)
    helm_test(c, docs, "default")
    grafana_dashboard(c, docs, "default")


def aggregate(c, docs, label, expect):
    """rbac.aggregateToDefaultRoles: view gets read access to the CRDs, edit manages ImageSources."""
    roles = {r["metadata"]["name"].rsplit("-", 1)[-1]: r for r in by_kind(docs, "ClusterRole") if is_aggregated(r)}
    if not expect:
        c.check(f"{label}: no aggregated view/edit ClusterRoles", not roles, list(roles))
        return
    view, edit = roles.get("view"), roles.get("edit")
    c.check(f"{label}: an aggregated view and edit ClusterRole", view is not None and edit is not None, list(roles))
    if view is None or edit is None:
        return
    agg = lambda r: sorted(k.rsplit("-", 1)[-1] for k, v in r["metadata"]["labels"].items()
                           if k.startswith("rbac.authorization.k8s.io/aggregate-to-") and v == "true")
    c.check(f"{label}: view aggregates to view, edit, admin; edit to edit, admin",
            agg(view) == ["admin", "edit", "view"] and agg(edit) == ["admin", "edit"], (agg(view), agg(edit)))
    c.check(f"{label}: view reads the three CRDs, no status",
            [(r["resources"], r["verbs"]) for r in view["rules"]]
            == [(["imagerecords", "imagesources", "trustpolicies"], ["get", "list", "watch"])], view["rules"])
    c.check(f"{label}: edit writes ImageSources only (not records, not trust, not status)",
            [(r["resources"], r["verbs"]) for r in edit["rules"]]
            == [(["imagesources"], ["create", "update", "patch", "delete"])], edit["rules"])


def check_ha(c, docs):
    deploy, container, env, cluster_role, role = common(c, docs, "ha")
    c.check("ha: replicaCount=2 renders 2 replicas, RollingUpdate",
            deploy["spec"]["replicas"] == 2 and deploy["spec"]["strategy"]["type"] == "RollingUpdate",
            deploy["spec"].get("strategy"))
    metrics_objects(c, docs, deploy, container, "ha", service_monitor=False)
    pdbs = by_kind(docs, "PodDisruptionBudget")
    c.check("ha: a PodDisruptionBudget keeping 1 replica, selecting the operator pods",
            len(pdbs) == 1 and pdbs[0]["spec"]["minAvailable"] == 1
            and pdbs[0]["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"],
            [p["spec"] for p in pdbs])


def check_off(c, docs):
    """cache.ttl=0, leaderElection.enabled=false, podEvents=none: their RBAC rules are left out."""
    deploy, container, env, cluster_role, role = common(c, docs, "off")
    values = {e["name"]: e.get("value") for e in env}
    c.check("off: SBOM_CACHE_TTL 0, SBOM_LEADER_ELECTION false, SBOM_POD_EVENTS none",
            values.get("SBOM_CACHE_TTL") == "0" and values.get("SBOM_LEADER_ELECTION") == "false"
            and values.get("SBOM_POD_EVENTS") == "none", values)
    aggregate(c, docs, "off", expect=False)
    crds_upgrade(c, docs, "off", expect=False)
    c.check("off: no imagerecords, imagesources or leases rule",
            not any(set(r["resources"]) & {"imagerecords", "imagerecords/status", "imagesources",
                                           "imagesources/status", "trustpolicies", "leases"}
                    for r in cluster_role["rules"] + role["rules"]))


def check_full(c, docs, values, settings_json=None, helpers=None):
    deploy, container, env, cluster_role, role = common(c, docs, "full")
    rendered = {e["name"]: e.get("value") for e in env if "value" in e}
    expand = {k: kubelet_expand(v) for k, v in rendered.items()}

    def num(v):
        return str(int(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)

    job = values["job"]
    expected = {
        "SBOM_JOB_IMAGE": values["jobImage"],
        "SBOM_JOB_IMAGE_PULL_SECRET": values["jobImagePullSecret"],
        "SBOM_JOB_IMAGE_PULL_POLICY": values["jobImagePullPolicy"],
        "SBOM_JOB_TIMEOUT": num(values["jobTimeout"]),
        "SBOM_JOB_TTL": num(values["jobTTL"]),
        "SBOM_CRON": values["cron"],
        "SBOM_POD_LABEL_SELECTOR": values["podLabelSelector"],
        "SBOM_NAMESPACE_LABEL_SELECTOR": values["namespaceLabelSelector"],
        "SBOM_KUBERNETES_CLUSTER_ID": values["clusterId"],
        "SBOM_ANNOTATION_PREFIX": values["annotationPrefix"],
        "SBOM_FALLBACK_PULL_SECRET": values["fallbackPullSecret"],
        "SBOM_IGNORE_ANNOTATIONS": "true",
        "SBOM_POD_EVENTS": values["podEvents"],
        "SBOM_JOB_PRIORITY_CLASS": job["priorityClassName"],
        "SBOM_JOB_SERVICE_ACCOUNT": job["serviceAccountName"],
        "SBOM_JOB_PRIVILEGED": "true",
        "SBOM_JOB_MAX_IMAGES": num(job["maxImages"]),
        "SBOM_JOB_MAX_PARALLEL": num(job["maxParallel"]),
        "SBOM_JOB_TMP_SIZE": num(job["tmpSize"]),
        "SBOM_LOG_FORMAT": values["logging"]["format"],
        "RUST_LOG": values["logging"]["level"],
        "SBOM_DEBOUNCE": num(values["debounce"]),
        "SBOM_RETRY_BACKOFF": num(values["retryBackoff"]),
        "SBOM_RETRY_BACKOFF_MAX": num(values["retryBackoffMax"]),
        "SBOM_MAX_JOBS_PER_CYCLE": num(values["maxJobsPerCycle"]),
        "SBOM_MAX_CREDENTIAL_SIZE": num(values["maxCredentialSize"]),
        "SBOM_CACHE_TTL": num(values["cache"]["ttl"]),
        "SBOM_CACHE_GRACE": num(values["cache"]["grace"]),
        "SBOM_LEADER_ELECTION": str(values["leaderElection"]["enabled"]).lower(),
        "SBOM_LEASE_NAME": values["leaderElection"]["leaseName"],
        "SBOM_LEASE_DURATION": num(values["leaderElection"]["leaseDuration"]),
        "SBOM_ADMIN_ADDR": f"0.0.0.0:{values['admin']['port']}",
    }
    for name, want in expected.items():
        c.check(f"full: {name} = {want!r}", expand.get(name) == want, expand.get(name))
    for name, key in (
        ("SBOM_JOB_RESOURCES", "resources"),
        ("SBOM_JOB_NODE_SELECTOR", "nodeSelector"),
        ("SBOM_JOB_TOLERATIONS", "tolerations"),
        ("SBOM_JOB_AFFINITY", "affinity"),
    ):
        try:
            parsed = json.loads(expand.get(name, ""))
        except ValueError as e:
            parsed = e
        c.check(f"full: {name} is job.{key} as JSON", parsed == job[key], parsed)
    for e in values["jobEnv"]:
        if "secretKeyRef" in e:
            ref = e["secretKeyRef"]
            var = "SBOM_JOBSECRET_" + e["name"]
            c.check(f"full: jobEnv {e['name']} -> {var}", expand.get(var) == f"{ref['name']}/{ref['key']}",
                    expand.get(var))
            c.check(f"full: no literal SBOM_JOB_{e['name']}", "SBOM_JOB_" + e["name"] not in expand)
        else:
            var = "SBOM_JOB_" + e["name"]
            want = str(e["value"]).lower() if isinstance(e["value"], bool) else num(e["value"])
            c.check(f"full: jobEnv {e['name']} -> {var} verbatim", expand.get(var) == want, expand.get(var))
    c.check("full: $ doubled so the kubelet keeps $(...) literal",
            "$$(" in rendered.get("SBOM_JOB_URL_WITH_SPECIALS", ""), rendered.get("SBOM_JOB_URL_WITH_SPECIALS"))
    extra = [e["name"] for e in values["extraEnv"]]
    names = [e["name"] for e in env]
    c.check("full: extraEnv appended last", names[-len(extra):] == extra, names)
    c.check(
        "full: namespaces list/watch with namespaceLabelSelector",
        any(r["resources"] == ["namespaces"] and sorted(r["verbs"]) == ["list", "watch"]
            for r in cluster_role["rules"]),
    )
    pod = deploy["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        c.check(f"full: operator pod {key}", pod.get(key) == values[key], pod.get(key))
    c.check("full: podLabels and podAnnotations",
            values["podLabels"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
            and deploy["spec"]["template"]["metadata"]["annotations"] == values["podAnnotations"])
    c.check("full: imagePullSecrets", pod.get("imagePullSecrets") == values["imagePullSecrets"])
    c.check("full: fullnameOverride", deploy["metadata"]["name"] == values["fullnameOverride"])
    c.check(f"full: replicaCount {values['replicaCount']}, RollingUpdate",
            deploy["spec"]["replicas"] == values["replicaCount"] > 1
            and deploy["spec"]["strategy"]["type"] == "RollingUpdate", deploy["spec"].get("strategy"))
    c.check("full: container port admin = admin.port",
            container["ports"][0]["containerPort"] == values["admin"]["port"], container["ports"])
    for probe in ("livenessProbe", "readinessProbe"):
        timings = {k: v for k, v in container[probe].items() if k != "httpGet"}
        c.check(f"full: {probe} timings from values", timings == values[probe], timings)
    svc = metrics_objects(c, docs, deploy, container, "full", service_monitor=True)
    if svc:
        c.check("full: metrics.service.annotations",
                svc["metadata"].get("annotations") == values["metrics"]["service"]["annotations"],
                svc["metadata"].get("annotations"))
        monitors = by_kind(docs, "ServiceMonitor")
        if monitors:
            (sm,) = monitors
            sm_values = values["metrics"]["serviceMonitor"]
            c.check("full: ServiceMonitor selects the metrics Service, port metrics, /metrics",
                    sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
                    and sm["spec"]["namespaceSelector"] == {"matchNames": [svc["metadata"]["namespace"]]}
                    and [(e["port"], e["path"]) for e in sm["spec"]["endpoints"]]
                    == [(svc["spec"]["ports"][0]["name"], "/metrics")], sm["spec"])
            c.check("full: ServiceMonitor interval, scrapeTimeout, labels",
                    sm["spec"]["endpoints"][0].get("interval") == sm_values["interval"]
                    and sm["spec"]["endpoints"][0].get("scrapeTimeout") == sm_values["scrapeTimeout"]
                    and sm_values["labels"].items() <= sm["metadata"]["labels"].items(), sm)
    crds = by_kind(docs, "CustomResourceDefinition")
    c.check("full: crds/ holds the CRDs imagerecords, imagesources and trustpolicies (sbomjob.io)",
            sorted(d["metadata"]["name"] for d in crds)
            == ["imagerecords.sbomjob.io", "imagesources.sbomjob.io", "trustpolicies.sbomjob.io"],
            [d["metadata"]["name"] for d in crds])
    for doc in crds:
        crd = doc["spec"]
        plural = crd["names"]["plural"]
        scope = {"imagerecords": "Cluster", "imagesources": "Namespaced", "trustpolicies": "Cluster"}.get(plural)
        rule = [r for r in cluster_role["rules"] if plural in r["resources"]]
        c.check(f"full: {plural} is {scope}; the ClusterRole names its group and plural",
                crd["scope"] == scope and rule
                and rule[0]["apiGroups"] == [crd["group"]] and rule[0]["resources"] == [plural],
                (crd["scope"], crd["group"], plural, rule))
    admission_policy(c, docs, "full", expect=values["admissionPolicy"]["enabled"] is True)
    image = values["image"]
    c.check("full: image <global.imageRegistry>/<repository>:<tag>@<digest>",
            container["image"] == f"{values['global']['imageRegistry']}/{image['repository']}:{image['tag']}@{image['digest']}",
            container["image"])
    spread = deploy["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
    selector = deploy["spec"]["selector"]["matchLabels"]
    c.check("full: topologySpreadConstraints, an empty labelSelector filled with the selector labels",
            [(s["topologyKey"], s["labelSelector"]["matchLabels"]) for s in spread]
            == [("topology.kubernetes.io/zone", selector), ("kubernetes.io/hostname", {"team": "platform"})], spread)
    pdbs = by_kind(docs, "PodDisruptionBudget")
    c.check("full: PodDisruptionBudget minAvailable 50%",
            [p["spec"]["minAvailable"] for p in pdbs] == ["50%"], [p["spec"] for p in pdbs])
    aggregate(c, docs, "full", expect=True)
    helm_test(c, docs, "full")
    rule_values = values["metrics"]["prometheusRule"]
    rules_ = by_kind(docs, "PrometheusRule")
    c.check("full: one PrometheusRule in its namespace with its labels", len(rules_) == 1
            and rules_[0]["metadata"]["namespace"] == rule_values["namespace"]
            and rule_values["labels"].items() <= rules_[0]["metadata"]["labels"].items(),
            [r["metadata"] for r in rules_])
    if rules_:
        alerts = {r["alert"]: r for g in rules_[0]["spec"]["groups"] for r in g["rules"]}
        service = f'service="{deploy["metadata"]["name"]}-metrics"'
        c.check("full: alerts SbomjobResultsStale, SbomjobJobsFailing, SbomjobNoLeader on the metrics Service's series",
                sorted(alerts) == ["SbomjobJobsFailing", "SbomjobNoLeader", "SbomjobResultsStale"]
                and all(service in a["expr"] for a in alerts.values()), alerts)
        c.check("full: the thresholds of the values",
                alerts.get("SbomjobResultsStale", {}).get("expr", "").endswith(f"> {rule_values['staleAfterSeconds']}")
                and alerts.get("SbomjobJobsFailing", {}).get("expr", "").endswith(f"> {rule_values['failedJobsPerHour']}"),
                alerts)
    chart_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    grafana_dashboard(c, docs, "full", values["metrics"]["grafanaDashboard"], chart_dir)
    sm_values = values["metrics"]["serviceMonitor"]
    for sm in by_kind(docs, "ServiceMonitor"):
        c.check("full: ServiceMonitor namespace, annotations, relabelings, metricRelabelings",
                sm["metadata"]["namespace"] == sm_values["namespace"]
                and sm["metadata"]["annotations"] == sm_values["annotations"]
                and sm["spec"]["endpoints"][0]["relabelings"] == sm_values["relabelings"]
                and sm["spec"]["endpoints"][0]["metricRelabelings"] == sm_values["metricRelabelings"]
                and sm["spec"]["namespaceSelector"] == {"matchNames": [deploy["metadata"]["namespace"]]},
                sm)
    network_policy(c, docs, "full", values if values["networkPolicy"]["enabled"] else None)
    operator_network_policy(c, docs, "full", values if values["networkPolicy"]["operator"]["enabled"] else None)
    crds_upgrade(c, docs, "full", values["crds"]["upgrade"]["enabled"], values)
    (sa,) = by_kind(docs, "ServiceAccount")
    c.check("full: serviceAccount name and annotations",
            sa["metadata"]["name"] == values["serviceAccount"]["name"]
            and sa["metadata"]["annotations"] == values["serviceAccount"]["annotations"])

    if settings_json:
        # The operator's own list of what it reads (`--print-settings`) is the source of truth.
        settings = load_settings(settings_json)
        known = {n for n in settings if n.startswith("SBOM_")}
        c.check("--print-settings: the ops settings are among them",
                {"SBOM_CACHE_TTL", "SBOM_CACHE_GRACE", "SBOM_ADMIN_ADDR", "SBOM_LEADER_ELECTION",
                 "SBOM_LEASE_NAME", "SBOM_LEASE_DURATION", "SBOM_DEBOUNCE", "SBOM_RETRY_BACKOFF",
                 "SBOM_RETRY_BACKOFF_MAX"} <= known, sorted(known))
        own = {n for n, st in settings.items() if st["own_job_setting"]}
        chart_settings = {
            n for n in names
            if n.startswith("SBOM_") and not n.startswith("SBOM_JOBSECRET_")
            and not (n.startswith("SBOM_JOB_") and n not in own)
        }
        c.check("--print-settings: every SBOM_ variable the chart sets is a setting the operator reads",
                chart_settings <= known, sorted(chart_settings - known))
        # SBOM_INTERVAL is exclusive with SBOM_CRON, so the full values cannot set both.
        c.check("--print-settings: every setting the operator reads has a chart value",
                known - {"SBOM_INTERVAL"} <= chart_settings, sorted(known - chart_settings))
        lease = settings["SBOM_LEASE_NAME"]["default_doc"]
        c.check(f"--print-settings: the default Lease name is <release>{DEFAULT_LEASE_SUFFIX}, as the chart assumes",
                lease == f"`<release>{DEFAULT_LEASE_SUFFIX}`" and settings["SBOM_RELEASE"]["default"]
                and settings["SBOM_LEASE_NAME"]["default"] is None, lease)
        prefix = settings["SBOM_ANNOTATION_PREFIX"]["default"]
        c.check(f"--print-settings: SBOM_ANNOTATION_PREFIX defaults to {DEFAULT_ANNOTATION_PREFIX!r}, as the chart"
                " and these checks assume", prefix == DEFAULT_ANNOTATION_PREFIX, prefix)
        if helpers:
            with open(helpers) as f:
                tpl = f.read()
            for want in ('default (printf "%s' + DEFAULT_LEASE_SUFFIX + '" .Release.Name)',
                         f'default "{DEFAULT_ANNOTATION_PREFIX}"'):
                c.check(f"_helpers.tpl: {want} as the operator does", want in tpl)
            reserved = re.search(r'define "sbomjob.reservedJobEnv" -\}\}\s*(.*?)\s*\{\{', tpl, re.S).group(1).split()
            c.check("--print-settings: the chart's reserved jobEnv names are the operator's own SBOM_JOB_ settings",
                    {"SBOM_JOB_" + r for r in reserved} == own, sorted(own ^ {"SBOM_JOB_" + r for r in reserved}))


def main():
    mode, rendered = sys.argv[1], sys.argv[2]
    c = Checks()
    docs = load(rendered)
    if mode == "default":
        check_default(c, docs, *sys.argv[3:4])
    elif mode in ("policy", "policyoff"):
        check_policy(c, docs, mode == "policy")
    elif mode == "names":
        check_names(c, docs, load(sys.argv[3]), load(sys.argv[4]))
    elif mode == "ha":
        check_ha(c, docs)
    elif mode == "off":
        check_off(c, docs)
    else:
        with open(sys.argv[3]) as f:
            values = yaml.safe_load(f)
        check_full(c, docs, values, *sys.argv[4:6])
    sys.exit(1 if c.failed else 0)


if __name__ == "__main__":
    main()
