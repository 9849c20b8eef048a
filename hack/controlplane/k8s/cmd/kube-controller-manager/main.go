// Command kube-controller-manager is the upstream controller manager, built from k8s.io/kubernetes
// for the deploy harness: ReplicaSets, ServiceAccounts, kube-root-ca.crt, taints and PDB status.
package main

import (
	"os"

	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
