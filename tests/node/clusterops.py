"""What the deploy tests do to their cluster: Helm, kwok's zone nodes, waits with deadlines."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.kubeharness import ApiError, ControlPlane, ManagedProcess, wait_until
from tests.e2e.kubeharness.controlplane import REPO_ROOT
from tests.e2e.kubeharness.node import Node
from tests.e2e.kubeharness.procs import free_port, http_get

CHART = REPO_ROOT / "manifests" / "chart" / "carbon-aware-scheduler"
HOSTNET = Path(__file__).with_name("hostnet.py")
KWOK_STAGES = REPO_ROOT / "hack" / "node" / "kwok-stages.yaml"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
ZONE_LABEL = "carbon-aware.io/zone"
JSON = dict[str, Any]


def _tools_bin() -> Path:
    return Path(os.environ.get("CARBON_TOOLS_BIN") or Path.home() / ".cache/carbon-aware-scheduler/tools/bin")


class Kwok:
    @staticmethod
    def start(kubeconfig: Path, workdir: Path) -> ManagedProcess:
        """kwok keeps the annotated zone nodes Ready (heartbeats) and runs their pods on paper."""
        return ManagedProcess(
            "kwok",
            [
                str(_tools_bin() / "kwok"),
                f"--kubeconfig={kubeconfig}",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                f"--server-address=127.0.0.1:{free_port()}",
                f"--config={KWOK_STAGES}",
            ],
            workdir / "kwok.log",
        )


@dataclass
class Cluster:
    control: ControlPlane
    node: Node
    helm: Path
    workdir: Path
    timings: dict[str, float] = field(default_factory=dict)

    # --- Helm -------------------------------------------------------------------------------------

    def _post_renderer(self) -> Path:
        script = self.workdir / "hostnet.sh"
        if not script.exists():
            script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HOSTNET}" "$@"\n')
            script.chmod(0o755)
        return script

    def helm_run(self, *args: str, timeout: float = 300.0) -> str:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.control.kubeconfig),
            "CARBON_NODE_APISERVER_PORT": str(self.control.apiserver_port),
            "HELM_CACHE_HOME": str(self.workdir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.workdir / "helm" / "data"),
        }
        proc = subprocess.run(
            [str(self.helm), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n"
                f"{self.describe_namespace(_namespace_of(args))}"
            )
        return proc.stdout

    def helm_install(self, verb: str, release: str, namespace: str, values: Mapping[str, Any]) -> str:
        values_file = self.workdir / f"values-{release}-{verb}.yaml"
        values_file.write_text(yaml.safe_dump(dict(values)))
        return self.helm_run(
            verb,
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--values",
            str(values_file),
            "--post-renderer",
            str(self._post_renderer()),
            "--wait",
            "--timeout",
            "240s",
            timeout=300.0,
        )

    # --- objects ----------------------------------------------------------------------------------

    @property
    def api(self) -> Any:
        return self.control.api

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        self.api.request(
            "POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": dict(labels or {})}}
        )

        def has_default_sa() -> bool:
            try:
                self.api.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
            except ApiError:
                return False
            return True

        # kube-controller-manager creates the default ServiceAccount every pod needs.
        wait_until(has_default_sa, timeout=60, what=f"ServiceAccount default in {name}")

    def create_tls_secret(self, namespace: str, name: str, cert: Path, key: Path, ca: bytes) -> None:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        self.api.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/secrets",
            {
                "metadata": {"name": name},
                "type": "kubernetes.io/tls",
                "data": {
                    "tls.crt": b64(cert.read_bytes()),
                    "tls.key": b64(key.read_bytes()),
                    "ca.crt": b64(ca),
                },
            },
        )

    def create_zone_node(self, name: str, zone: str) -> None:
        """A kwok node in ``zone``, tainted so only pods that say so land there (the chart's own pods and
        `helm test` go to the real node)."""
        resources = {"cpu": "32", "memory": "128Gi", "pods": "110"}
        self.api.request(
            "POST",
            "/api/v1/nodes",
            {
                "metadata": {
                    "name": name,
                    "labels": {ZONE_LABEL: zone, "kubernetes.io/hostname": name, "type": "kwok"},
                    "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                },
                "spec": {"taints": [{"key": KWOK_ANNOTATION, "value": "fake", "effect": "NoSchedule"}]},
                "status": {"capacity": resources, "allocatable": resources},
            },
        )

        def ready() -> bool:
            node = self.api.request("GET", f"/api/v1/nodes/{name}")
            conditions = node.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_until(ready, timeout=60, what=f"kwok node {name} Ready")

    def create_workload_pod(
        self,
        namespace: str,
        name: str,
        *,
        scheduler_name: str,
        annotations: Mapping[str, str] | None = None,
    ) -> JSON:
        pod: JSON = {
            "metadata": {"name": name, "annotations": dict(annotations or {})},
            "spec": {
                "schedulerName": scheduler_name,
                "tolerations": [{"key": KWOK_ANNOTATION, "operator": "Exists", "effect": "NoSchedule"}],
                "nodeSelector": {"type": "kwok"},
                "containers": [
                    {
                        "name": "app",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                    }
                ],
                "terminationGracePeriodSeconds": 0,
            },
        }
        result: JSON = self.api.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
        return result

    def pod(self, namespace: str, name: str) -> JSON:
        result: JSON = self.api.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        return result

    def wait_pod(
        self, namespace: str, name: str, check: Callable[[JSON], bool], what: str, timeout: float = 120
    ) -> JSON:
        found: list[JSON] = []

        def ok() -> bool:
            pod = self.pod(namespace, name)
            if check(pod):
                found.append(pod)
                return True
            return False

        wait_until(ok, timeout=timeout, what=what, context=lambda: self.describe_namespace(namespace))
        return found[-1]

    def pods(self, namespace: str, selector: str = "") -> list[JSON]:
        query = {"labelSelector": selector} if selector else None
        items: list[JSON] = self.api.request("GET", f"/api/v1/namespaces/{namespace}/pods", query=query)[
            "items"
        ]
        return items

    def describe_namespace(self, namespace: str | None) -> str:
        """Pods, their conditions and container states, and recent events: what a failure needs."""
        if not namespace:
            return ""
        lines = []
        try:
            for pod in self.pods(namespace):
                status = pod.get("status", {})
                states = {c["name"]: c.get("state") for c in status.get("containerStatuses", [])}
                conditions = [(c["type"], c["status"]) for c in status.get("conditions", [])]
                lines.append(
                    f"pod {pod['metadata']['name']}: phase={status.get('phase')} "
                    f"node={pod['spec'].get('nodeName')} conditions={conditions} "
                    f"states={json.dumps(states)[:600]}"
                )
            events = self.api.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
            for event in events[-25:]:
                involved = event["involvedObject"].get("name")
                lines.append(f"event {involved}: {event.get('reason')}: {event.get('message')}")
        except Exception as exc:
            lines.append(f"<could not describe {namespace}: {exc}>")
        return "\n".join(lines) + "\n" + self.node.describe()

    def get_url(self, url: str) -> tuple[int, bytes]:
        return http_get(url, timeout=5.0)

    def object_exists(self, path: str) -> bool:
        try:
            self.api.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _namespace_of(args: Sequence[str]) -> str | None:
    args = list(args)
    if "--namespace" in args:
        return args[args.index("--namespace") + 1]
    return None


def api_path(doc: Mapping[str, Any], namespace: str) -> str:
    """The REST path of a rendered manifest object (the kinds this chart renders)."""
    api_version = str(doc["apiVersion"])
    kind = str(doc["kind"])
    name = doc["metadata"]["name"]
    plural = {
        "NetworkPolicy": "networkpolicies",
        "PodDisruptionBudget": "poddisruptionbudgets",
        "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
    }.get(kind, kind.lower() + "s")
    cluster_scoped = kind in (
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    )
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if cluster_scoped:
        return f"{prefix}/{plural}/{name}"
    # Some objects name their own namespace (the authentication-reader RoleBinding lives in kube-system).
    return f"{prefix}/namespaces/{doc['metadata'].get('namespace', namespace)}/{plural}/{name}"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    wait_until(check, timeout=timeout, what=what)


def now() -> float:
    return time.time()
