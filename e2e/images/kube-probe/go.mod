module sbomjob.io/e2e/kube-probe

go 1.22
