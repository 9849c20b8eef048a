// Command pause is the pod sandbox's process for the deploy harness's containerd: it holds the pod's
// namespaces open and exits on SIGTERM or SIGINT. Built static, packed into a FROM-scratch image, so
// the harness needs no registry (the upstream pause image lives on registry.k8s.io).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
