"""End-to-end suite: the real etcd, kube-apiserver and kube-scheduler (see docs/e2e.md)."""
