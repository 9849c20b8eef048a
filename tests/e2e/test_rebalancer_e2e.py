"""Issue 16 on the real control plane, with kube-controller-manager and kwok.

A Deployment of 6 replicas with a PodDisruptionBudget (minAvailable 4) runs in zone A, green at first.
Then the data flips: A is dirty, B green. The rebalancer (``python -m rebalancer``, not in dry-run)
evicts through the Eviction API; the ReplicaSet controller recreates the pods, the real kube-scheduler
places them through our extender, which (the pods' max-intensity cap) only admits the green zone; the
disruption controller keeps the PDB's status; kwok keeps the fake nodes Ready and runs the pods on
paper. The Deployment ends with 6 ready replicas, all in B, and never had fewer than 4 ready.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.node.clusterops import KWOK_ANNOTATION, Kwok

from .conftest import ZONE_LABEL, E2EWorld, metric, unavailable
from .kubeharness import ApiError, HttpService, free_port, wait_until
from .kubeharness.node import start_controller_manager

pytestmark = pytest.mark.e2e

REPLICAS = 6
MIN_AVAILABLE = 4


class SnapshotServer:
    """GET /v1/snapshot serving the world's snapshot file (the one the extender reads), in a thread."""

    def __init__(self, path: Path) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path == "/v1/snapshot" and path.exists()
                body = path.read_bytes() if found else b'{"error": "not found"}'
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def controllers(world: E2EWorld) -> Iterator[None]:
    """kube-controller-manager and kwok for this test only, stopped by handle afterwards."""
    binary = world.binaries.kube_controller_manager
    if not binary.exists():
        unavailable(f"{binary} not built (hack/build-controlplane.sh)")
    tools = Path(
        os.environ.get("CARBON_TOOLS_BIN") or Path.home() / ".cache/carbon-aware-scheduler/tools/bin"
    )
    if not (tools / "kwok").exists():
        unavailable("kwok not installed (hack/install-tools.sh)")
    kcm = start_controller_manager(world.plane, binary, world.workdir)
    kwok = None
    try:
        kwok = Kwok.start(world.plane.kubeconfig, world.workdir / "kwok")
        yield
    finally:
        if kwok is not None:
            kwok.stop()
        kcm.stop()


def add_kwok_node(world: E2EWorld, name: str, zone: str) -> None:
    resources = {"cpu": "32", "memory": "128Gi", "pods": "110"}
    world.api.request(
        "POST",
        "/api/v1/nodes",
        {
            "metadata": {
                "name": name,
                "labels": {ZONE_LABEL: zone, "kubernetes.io/hostname": name, **world.selector},
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "status": {"capacity": resources, "allocatable": resources},
        },
    )
    world.node_names.append(name)

    def ready_untainted() -> bool:
        node = world.api.request("GET", f"/api/v1/nodes/{name}")
        conditions = node.get("status", {}).get("conditions", [])
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return ready and not node.get("spec", {}).get("taints")

    wait_until(ready_untainted, timeout=90, what=f"kwok node {name} Ready without taints", interval=0.5)


def deployment(world: E2EWorld, scheduler_name: str) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "carbon-aware.io/rebalance": "true",
                        # The extender's filter admits only zones at or below this: the green one.
                        "carbon-aware.io/max-intensity": "300",
                    },
                },
                "spec": {
                    "schedulerName": scheduler_name,
                    "nodeSelector": world.selector,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }


def web_pods(world: E2EWorld) -> list[dict[str, Any]]:
    return [p for p in world.api.pods(world.namespace) if p["metadata"].get("labels", {}).get("app") == "web"]


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    alive = not pod["metadata"].get("deletionTimestamp")
    return alive and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_rebalancer_moves_a_deployment_to_the_green_zone_within_its_pdb(
    world: E2EWorld, controllers: None
) -> None:
    world.snapshot({"ZA": 100.0, "ZB": 500.0})
    add_kwok_node(world, f"{world.set_id}-a", "ZA")
    add_kwok_node(world, f"{world.set_id}-b", "ZB")
    _, sched = world.with_extender()
    ns = world.namespace
    # The ServiceAccount admission needs the namespace's default ServiceAccount (kube-controller-manager).
    wait_until(
        lambda: _exists(world, f"/api/v1/namespaces/{ns}/serviceaccounts/default"),
        timeout=60,
        what="default ServiceAccount",
    )
    world.api.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deployment(world, sched.name))
    world.api.request(
        "POST",
        f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": MIN_AVAILABLE, "selector": {"matchLabels": {"app": "web"}}},
        },
    )

    def all_ready_in(zone: str) -> bool:
        pods = web_pods(world)
        placed = world.zones_of({p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods if ready(p)})
        return len(pods) == REPLICAS and len(placed) == REPLICAS and set(placed.values()) == {zone}

    wait_until(lambda: all_ready_in("ZA"), timeout=120, what="6 ready replicas in ZA", interval=0.5)
    wait_until(
        lambda: _pdb_allowed(world) == REPLICAS - MIN_AVAILABLE,
        timeout=60,
        what="the disruption controller's PDB status",
        interval=0.5,
    )

    feed = SnapshotServer(world.snapshot_file)
    port = free_port()
    rebalancer = HttpService(
        f"carbon-rebalancer:{port}",
        "rebalancer",
        [
            f"--kubeconfig={world.plane.kubeconfig}",
            f"--feed-url={feed.url}",
            "--host=127.0.0.1",
            f"--port={port}",
            "--no-dry-run",
            "--no-leader-elect",
            "--interval=1",
            "--sustain=3",
            "--cooldown=0",
            # Generous limits: the PodDisruptionBudget and the owner's settling are what pace it.
            "--max-per-run=10",
            "--max-per-namespace=10",
            "--max-per-owner=10",
        ],
        world.workdir / "logs" / "rebalancer.log",
        port,
        timeout=60,
    )
    world.extenders.append(rebalancer)  # stopped and described with the test's other services
    try:
        # Nothing to gain yet: ZA is the green zone.
        wait_until(
            lambda: metric(rebalancer.metrics(), "carbon_rebalancer_runs_total") >= 3,
            timeout=30,
            what="three rebalancer runs",
        )
        assert metric(rebalancer.metrics(), "carbon_rebalancer_evictions_total", result="evicted") == 0

        world.snapshot({"ZA": 500.0, "ZB": 100.0})
        fewest_ready = REPLICAS

        def moved() -> bool:
            nonlocal fewest_ready
            pods = web_pods(world)
            fewest_ready = min(fewest_ready, sum(ready(p) for p in pods))
            return all_ready_in("ZB")

        wait_until(moved, timeout=180, what="6 ready replicas in ZB", interval=0.2, context=world.diagnostics)
        assert fewest_ready >= MIN_AVAILABLE
        text = rebalancer.metrics()
        evicted = metric(text, "carbon_rebalancer_evictions_total", result="evicted")
        assert evicted == REPLICAS
        assert metric(text, "carbon_rebalancer_intensity_avoided_grams_per_kwh_total") == 400.0 * REPLICAS
        deployment_status = world.api.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")[
            "status"
        ]
        assert deployment_status.get("readyReplicas") == REPLICAS
        moved_events = [e for e in world.api.events(ns) if e.get("reason") == "CarbonRebalanced"]
        assert len(moved_events) == REPLICAS
        assert "zone ZA 500 g/kWh, target ZB 100 g/kWh" in moved_events[0]["message"]
    finally:
        feed.stop()


def _exists(world: E2EWorld, path: str) -> bool:
    try:
        world.api.request("GET", path)
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _pdb_allowed(world: E2EWorld) -> int:
    pdb = world.api.request("GET", f"/apis/policy/v1/namespaces/{world.namespace}/poddisruptionbudgets/web")
    return int(pdb.get("status", {}).get("disruptionsAllowed") or 0)
