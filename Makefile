# The two commands of the README; everything else is in hack/ and e2e/.
.PHONY: demo test

# Brings up the local cluster, installs sbomjob with Helm and shows what it catalogued.
demo:
	hack/demo.sh

# Every test: lints, unit tests, chart checks, and the end-to-end suite on a local cluster.
test:
	hack/test.sh
