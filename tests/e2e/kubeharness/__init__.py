"""The e2e harness: upstream etcd, kube-apiserver, kube-scheduler, our services and Prometheus on loopback.

Used by tests/e2e (pytest fixtures), hack/cluster.py (a cluster for humans) and bench/.
"""

from .certs import CertPair, Pki
from .controlplane import REPO_ROOT, Binaries, BinariesUnavailable, ControlPlane, cache_dir, locate_binaries
from .kubeapi import ApiError, KubeApi
from .procs import ManagedProcess, WaitTimeout, free_port, wait_until
from .scheduler import (
    CHART_DIR,
    ChartUnavailable,
    Scheduler,
    plain_scheduler_config,
    render_chart,
    render_scheduler_config,
    scheduler_values,
)
from .services import HttpService, Prometheus, start_extender, write_snapshot

__all__ = [
    "CHART_DIR",
    "REPO_ROOT",
    "ApiError",
    "Binaries",
    "BinariesUnavailable",
    "CertPair",
    "ChartUnavailable",
    "ControlPlane",
    "HttpService",
    "KubeApi",
    "ManagedProcess",
    "Pki",
    "Prometheus",
    "Scheduler",
    "WaitTimeout",
    "cache_dir",
    "free_port",
    "locate_binaries",
    "plain_scheduler_config",
    "render_chart",
    "render_scheduler_config",
    "scheduler_values",
    "start_extender",
    "wait_until",
    "write_snapshot",
]
