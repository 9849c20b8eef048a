"""kube-scheduler processes configured from the chart's KubeSchedulerConfiguration.

The chart is the one source of truth for the configuration users deploy: the harness renders
``templates/scheduler-config.yaml`` with ``helm template`` and only sets ``clientConnection.kubeconfig``
(in-cluster in production, a file here). Any other knob a test needs is a chart value.
"""

from __future__ import annotations

import copy
import os
import shutil
import ssl
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .controlplane import REPO_ROOT, Binaries
from .procs import ManagedProcess, free_port, http_get, wait_until

CHART_DIR = REPO_ROOT / "manifests" / "chart" / "carbon-aware-scheduler"
SCHEDULER_CONFIG_TEMPLATE = "templates/scheduler-config.yaml"


class ChartUnavailable(RuntimeError):
    """helm or the chart is missing, or the chart does not render the agreed ConfigMap."""


def helm_binary() -> Path:
    """helm from hack/install-tools.sh: $CARBON_TOOLS_BIN, the Makefile's cache, the repo cache, then PATH."""
    candidates = [
        os.environ.get("CARBON_TOOLS_BIN", ""),
        str(Path.home() / ".cache/carbon-aware-scheduler/tools/bin"),
        str(REPO_ROOT / ".cache/tools/bin"),
    ]
    for folder in filter(None, candidates):
        path = Path(folder) / "helm"
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("helm")
    if found:
        return Path(found)
    raise ChartUnavailable("helm not found: run hack/install-tools.sh (or `make tools`)")


def pinned_kube_version() -> str:
    """The Kubernetes version the harness builds (hack/controlplane/k8s/go.mod), e.g. v1.35.8."""
    for line in (REPO_ROOT / "hack/controlplane/k8s/go.mod").read_text().splitlines():
        # Either `require k8s.io/kubernetes vX` or the module line inside a `require (...)` block.
        parts = line.split("//")[0].split()
        if parts[:1] == ["require"]:
            parts = parts[1:]
        if len(parts) == 2 and parts[0] == "k8s.io/kubernetes":
            return parts[1]
    raise ChartUnavailable("no k8s.io/kubernetes requirement in hack/controlplane/k8s/go.mod")


def render_chart(
    values: Mapping[str, Any],
    workdir: Path,
    *,
    release: str = "e2e",
    namespace: str = "e2e-chart",
    show_only: str | None = None,
) -> list[dict[str, Any]]:
    """``helm template`` the chart with ``values`` (a values file, so no --set escaping); YAML documents."""
    if not (CHART_DIR / "Chart.yaml").is_file():
        raise ChartUnavailable(f"no chart at {CHART_DIR}")
    workdir.mkdir(parents=True, exist_ok=True)
    values_file = workdir / f"values-{release}.yaml"
    values_file.write_text(yaml.safe_dump(dict(values)))
    argv = [
        str(helm_binary()),
        "template",
        release,
        str(CHART_DIR),
        "--namespace",
        namespace,
        "-f",
        str(values_file),
        # helm template has no cluster to ask: render for the version these tests run against.
        "--kube-version",
        pinned_kube_version(),
    ]
    if show_only:
        argv += ["--show-only", show_only]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise ChartUnavailable(f"{' '.join(argv)} failed:\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_scheduler_config(
    values: Mapping[str, Any], workdir: Path, *, release: str = "e2e", namespace: str = "e2e-chart"
) -> dict[str, Any]:
    """The KubeSchedulerConfiguration exactly as the chart renders it for ``values``."""
    docs = render_chart(
        values, workdir, release=release, namespace=namespace, show_only=SCHEDULER_CONFIG_TEMPLATE
    )
    configmaps = [d for d in docs if d.get("kind") == "ConfigMap" and "config.yaml" in d.get("data", {})]
    if len(configmaps) != 1:
        raise ChartUnavailable(
            f"{SCHEDULER_CONFIG_TEMPLATE} rendered {len(configmaps)} ConfigMaps with config.yaml"
        )
    config = yaml.safe_load(configmaps[0]["data"]["config.yaml"])
    if not isinstance(config, dict) or config.get("kind") != "KubeSchedulerConfiguration":
        raise ChartUnavailable("config.yaml is not a KubeSchedulerConfiguration")
    return config


def scheduler_values(
    name: str,
    *,
    extender_url: str,
    node_cache_capable: bool = True,
    ignorable: bool = True,
    bind: bool = True,
    weight: int = 5,
    http_timeout: str = "5s",
    tls: Mapping[str, Any] | None = None,
    leader_election: bool = False,
) -> dict[str, Any]:
    """Chart values for one test scheduler. Leader election is off unless asked for: one replica, and
    no lease to wait for (the RBAC test turns it on, as deployed)."""
    extender: dict[str, Any] = {
        "urlPrefix": extender_url,
        "nodeCacheCapable": node_cache_capable,
        "ignorable": ignorable,
        "bind": bind,
        "weight": weight,
        "httpTimeout": http_timeout,
    }
    if tls:
        # The chart insists the extender's serving certificate has a source (a Secret here); it only
        # shapes the Deployment, which the harness does not run: the test process serves its own cert.
        extender["tls"] = {"enabled": True, "secretName": "e2e-extender-tls", **tls}
    return {
        "scheduler": {
            "name": name,
            "percentageOfNodesToScore": 100,
            "leaderElection": {"enabled": leader_election},
        },
        "extender": extender,
    }


def plain_scheduler_config(name: str) -> dict[str, Any]:
    """The control arm of the benchmark and the smoke test: the same scheduler with no extender at all."""
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "leaderElection": {"leaderElect": False},
        "percentageOfNodesToScore": 100,
        "profiles": [{"schedulerName": name}],
    }


def _scheduler_ready(port: int) -> bool:
    context = ssl.create_default_context()
    # The scheduler serves a self-signed certificate it made at start; /readyz carries no secrets.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    status = http_get(f"https://127.0.0.1:{port}/readyz", context=context, timeout=2)[0]
    if status == 404:  # an older scheduler without /readyz
        status = http_get(f"https://127.0.0.1:{port}/healthz", context=context, timeout=2)[0]
    return status == 200


class Scheduler:
    """One kube-scheduler process with its own schedulerName and configuration file."""

    def __init__(
        self,
        binaries: Binaries,
        config: Mapping[str, Any],
        kubeconfig: Path,
        workdir: Path,
        *,
        verbosity: int = 2,
        die_with_parent: bool = True,
        timeout: float = 60.0,
    ) -> None:
        rendered = copy.deepcopy(dict(config))
        # The single change the harness makes to the chart's output (see the module docstring).
        rendered["clientConnection"] = {**rendered.get("clientConnection", {}), "kubeconfig": str(kubeconfig)}
        self.config = rendered
        self.name = str(rendered["profiles"][0]["schedulerName"])
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_file = workdir / f"scheduler-{self.name}.yaml"
        self.config_file.write_text(yaml.safe_dump(rendered))
        self.port = free_port()
        self.process = ManagedProcess(
            f"kube-scheduler[{self.name}]",
            [
                str(binaries.kube_scheduler),
                f"--config={self.config_file}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--v={verbosity}",
            ],
            workdir / "logs" / f"kube-scheduler-{self.name}.log",
            die_with_parent=die_with_parent,
        )
        try:
            wait_until(
                lambda: _scheduler_ready(self.port),
                timeout=timeout,
                what=f"kube-scheduler {self.name} /readyz",
                watch=[self.process],
                interval=0.2,
            )
        except BaseException:
            self.process.stop()
            raise

    def stop(self) -> None:
        self.process.stop()
