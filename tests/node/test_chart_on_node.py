"""The chart as users install it: our image, built here, running on a real kubelet.

Both shapes. For the default shape (second scheduler, with deferral on) the tests follow one release
through its life: install, every pod Ready with its real probes, the feed serving real zones with the
chart's defaults, a pod placed into the greenest zone with the decision annotation, a deferred pod
gated and released, Prometheus scraping, `helm test`, `helm upgrade`, `helm uninstall`. The tests in
this module run in order and share the release.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.kubeharness import (
    Prometheus,
    Scheduler,
    free_port,
    render_scheduler_config,
    scheduler_values,
    wait_until,
)
from tests.e2e.kubeharness.docker import IMAGE

from .clusterops import ZONE_LABEL, Cluster, api_path

# The first test also pays for the session's setup: a cold base image (~3 min), the image build, the
# cluster and the install.
pytestmark = [pytest.mark.node, pytest.mark.timeout(1200)]

RELEASE = "carbon"
NAMESPACE = "carbon-aware"
SCHEDULER = "carbon-aware-scheduler"
ZONES = {"zone-a": "FR", "zone-b": "DE", "zone-c": "PL"}
DEFERRED_NS = "batch"
DECISION = "carbon-aware.io/decision"
GATE = "carbon-aware.io/green-window"


def _image_values() -> dict[str, Any]:
    repository, tag = IMAGE.rsplit(":", 1)
    return {"repository": repository, "tag": tag, "pullPolicy": "Never"}


class Ports:
    """Host ports for the release: under hostNetwork every container port is a host port."""

    def __init__(self) -> None:
        self.extender = free_port()
        self.metrics = free_port()
        self.feed = free_port()
        self.scheduler = free_port()
        self.deferral = free_port()


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports()


def _values(cluster: Cluster, ports: Ports, *, weight: int = 5) -> dict[str, Any]:
    return {
        "image": _image_values(),
        "scheduler": {
            "securePort": ports.scheduler,
            "image": {"pullPolicy": "Never"},
            "extraArgs": ["--bind-address=127.0.0.1"],
        },
        "extender": {
            "port": ports.extender,
            "metricsPort": ports.metrics,
            "weight": weight,
            # Under hostNetwork the ops port is a host port: loopback only, here.
            "extraArgs": ["--metrics-host=127.0.0.1"],
        },
        "feed": {"port": ports.feed},
        "deferral": {
            "enabled": True,
            "replicaCount": 1,
            "port": ports.deferral,
            "tls": {"secretName": "deferral-tls", "caBundle": cluster.control.pki.ca_data_b64},
        },
        # The test namespace has no NetworkPolicy controller; the policy renders and is applied all the same.
    }


@pytest.fixture(scope="module")
def release(node_cluster: Cluster, ports: Ports) -> Iterator[Cluster]:
    cluster = node_cluster
    cluster.create_namespace(NAMESPACE)
    webhook = cluster.control.pki.issue(
        "deferral-webhook",
        f"{RELEASE}-carbon-aware-scheduler-deferral.{NAMESPACE}.svc",
        f"{RELEASE}-carbon-aware-scheduler-deferral.{NAMESPACE}.svc.cluster.local",
        "127.0.0.1",  # the API server calls it by address here (tests/node/hostnet.py)
    )
    cluster.create_tls_secret(
        NAMESPACE, "deferral-tls", webhook.cert, webhook.key, cluster.control.pki.ca_pem
    )
    for node, zone in ZONES.items():
        cluster.create_zone_node(node, zone)
    cluster.create_namespace(DEFERRED_NS, {"carbon-aware.io/deferral": "enabled"})
    cluster.helm_install("install", RELEASE, NAMESPACE, _values(cluster, ports))
    _wait_extender_data(cluster, ports)
    return cluster


def _wait_extender_data(cluster: Cluster, ports: Ports, nodes: int = len(ZONES) + 1) -> None:
    """Ready means "serving"; steering also needs the snapshot and every node in the extender's cache
    (until then it scores neutrally, by design)."""

    def steering() -> bool:
        status, body = cluster.get_url(f"http://127.0.0.1:{ports.metrics}/readyz")
        state = json.loads(body)
        return status == 200 and state["carbonData"] and state["nodes"] >= nodes

    wait_until(steering, timeout=60, what="the extender to hold carbon data and every node")


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_every_pod_of_the_chart_is_running_and_ready(release: Cluster) -> None:
    pods = release.pods(NAMESPACE, f"app.kubernetes.io/instance={RELEASE}")
    names = sorted(p["metadata"]["name"] for p in pods)
    assert len(pods) == 2, names  # the scheduler Deployment's pod and the deferral pod
    for pod in pods:
        assert _ready(pod), release.describe_namespace(NAMESPACE)
        assert pod["spec"]["nodeName"] == "carbon-node"
        statuses = pod["status"]["containerStatuses"]
        assert all(s["ready"] and s["restartCount"] == 0 for s in statuses), statuses
    main = _scheduler_pod(release)
    assert sorted(c["name"] for c in main["spec"]["containers"]) == ["extender", "feed", "kube-scheduler"]
    # The security context is the chart's, enforced by the kubelet (runAsNonRoot against the image).
    assert main["spec"]["securityContext"]["runAsNonRoot"] is True


def _feed(release: Cluster, ports: Ports, path: str) -> Any:
    status, body = release.get_url(f"http://127.0.0.1:{ports.feed}{path}")
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


def test_the_feed_serves_real_zones_with_the_default_values(release: Cluster, ports: Ports) -> None:
    zones = _feed(release, ports, "/v1/zones")
    snapshot = _feed(release, ports, "/v1/snapshot")
    assert snapshot["zones"], "the feed in the image serves no zones with the chart's defaults"
    assert set(ZONES.values()) <= set(snapshot["zones"]), (sorted(snapshot["zones"]), zones)
    status, _ = release.get_url(f"http://127.0.0.1:{ports.feed}/readyz")
    assert status == 200


def _greenest(release: Cluster, ports: Ports) -> str:
    snapshot = _feed(release, ports, "/v1/snapshot")
    ours = {zone: snapshot["zones"][zone]["intensity"] for zone in ZONES.values()}
    return min(ours, key=lambda zone: ours[zone])


def test_a_pod_is_placed_in_the_greenest_zone_with_its_decision(release: Cluster, ports: Ports) -> None:
    release.create_namespace("apps")
    greenest = _greenest(release, ports)
    release.create_workload_pod("apps", "first", scheduler_name=SCHEDULER)
    pod = release.wait_pod(
        "apps", "first", lambda p: DECISION in p["metadata"].get("annotations", {}), "decision"
    )
    node = release.api.request("GET", f"/api/v1/nodes/{pod['spec']['nodeName']}")
    decision = json.loads(pod["metadata"]["annotations"][DECISION])
    assert node["metadata"]["labels"][ZONE_LABEL] == greenest, decision
    assert decision["zone"] == greenest, decision


def test_a_deferred_pod_is_gated_by_the_webhook_and_released_by_the_controller(release: Cluster) -> None:
    created = release.create_workload_pod(
        DEFERRED_NS,
        "report",
        scheduler_name=SCHEDULER,
        annotations={"carbon-aware.io/duration": "1m", "carbon-aware.io/max-delay": "90s"},
    )
    # The gate comes from the chart's webhook, through the API server, at admission.
    assert {"name": GATE} in (created["spec"].get("schedulingGates") or []), created["spec"]
    released = release.wait_pod(
        DEFERRED_NS,
        "report",
        lambda p: not p["spec"].get("schedulingGates") and bool(p["spec"].get("nodeName")),
        "the deferral controller to release the pod and the scheduler to place it",
        timeout=180,
    )
    assert "carbon-aware.io/plan" in released["metadata"]["annotations"]


def test_prometheus_scrapes_the_chart_pods(release: Cluster, ports: Ports, tmp_path: Path) -> None:
    targets = {
        "extender": [f"127.0.0.1:{ports.metrics}"],
        "feed": [f"127.0.0.1:{ports.feed}"],
    }
    prometheus = Prometheus(targets, tmp_path / "prometheus")
    try:
        wait_until(
            lambda: set(prometheus.targets_up().values()) == {"up"} and len(prometheus.targets_up()) == 2,
            timeout=60,
            what="Prometheus to scrape the extender's ops port and the feed",
            context=lambda: str(prometheus.targets_up()),
        )
    finally:
        prometheus.stop()


def test_helm_test_passes(release: Cluster) -> None:
    out = release.helm_run("test", RELEASE, "--namespace", NAMESPACE, "--timeout", "180s", timeout=240)
    assert "Succeeded" in out, out


def _scheduler_pod(cluster: Cluster) -> dict[str, Any]:
    """The pod of the scheduler Deployment (kube-scheduler, extender, feed)."""
    pods = cluster.pods(NAMESPACE, f"app.kubernetes.io/instance={RELEASE}")
    deferral = f"{RELEASE}-carbon-aware-scheduler-deferral-"
    (pod,) = [p for p in pods if not p["metadata"]["name"].startswith(deferral)]
    return pod


def test_helm_upgrade_rolls_without_losing_a_decision(release: Cluster, ports: Ports) -> None:
    before = release.pod("apps", "first")["metadata"]["annotations"][DECISION]
    old = _scheduler_pod(release)["metadata"]["uid"]
    # A changed weight changes the scheduler's configuration, which kube-scheduler reads once: the
    # chart's checksum annotation must roll the pod.
    release.helm_install("upgrade", RELEASE, NAMESPACE, _values(release, ports, weight=6))
    _wait_extender_data(release, ports)
    new = _scheduler_pod(release)
    assert new["metadata"]["uid"] != old, "the upgrade did not roll the scheduler's pod"
    assert _ready(new)
    assert release.pod("apps", "first")["metadata"]["annotations"][DECISION] == before
    release.create_workload_pod("apps", "second", scheduler_name=SCHEDULER)
    release.wait_pod("apps", "second", lambda p: DECISION in p["metadata"].get("annotations", {}), "decision")


def test_helm_uninstall_leaves_no_object_behind(release: Cluster) -> None:
    manifest = release.helm_run("get", "manifest", RELEASE, "--namespace", NAMESPACE)
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    paths = [api_path(d, NAMESPACE) for d in docs]
    missing = [p for p in paths if not release.object_exists(p)]
    assert not missing, missing
    release.helm_run("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "120s")
    left = [p for p in paths if release.object_exists(p)]
    assert not left, left
    secrets = release.api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets")["items"]
    assert not [s["metadata"]["name"] for s in secrets if s["metadata"]["name"].startswith("sh.helm.release")]


def test_extender_service_shape_places_pods_for_an_existing_scheduler(
    node_cluster: Cluster, tmp_path: Path
) -> None:
    """The second shape: extender and feed behind a Service; the cluster's own scheduler (here the
    harness's kube-scheduler with the chart's `extenders:` snippet) calls it."""
    cluster = node_cluster
    namespace = "carbon-extender"
    cluster.create_namespace(namespace)
    ports = Ports()
    values = {
        "mode": "extender-service",
        "image": _image_values(),
        "extender": {
            "port": ports.extender,
            "metricsPort": ports.metrics,
            "extraArgs": ["--metrics-host=127.0.0.1"],
        },
        "feed": {"port": ports.feed},
    }
    cluster.helm_install("install", "svc", namespace, values)
    pods = cluster.pods(namespace, "app.kubernetes.io/instance=svc")
    assert len(pods) == 1, cluster.describe_namespace(namespace)
    assert _ready(pods[0]), cluster.describe_namespace(namespace)
    name = "carbon-svc"
    config = render_scheduler_config(
        scheduler_values(name, extender_url=f"http://127.0.0.1:{ports.extender}"), tmp_path
    )
    scheduler = Scheduler(cluster.control.binaries, config, cluster.control.kubeconfig, tmp_path)
    try:
        snapshot = json.loads(cluster.get_url(f"http://127.0.0.1:{ports.feed}/v1/snapshot")[1])
        ours = {zone: snapshot["zones"][zone]["intensity"] for zone in ZONES.values()}
        greenest = min(ours, key=lambda zone: ours[zone])
        cluster.create_workload_pod(namespace, "placed", scheduler_name=name)
        pod = cluster.wait_pod(
            namespace, "placed", lambda p: DECISION in p["metadata"].get("annotations", {}), "decision"
        )
        node = cluster.api.request("GET", f"/api/v1/nodes/{pod['spec']['nodeName']}")
        assert node["metadata"]["labels"][ZONE_LABEL] == greenest
    finally:
        scheduler.stop()
        cluster.helm_run("uninstall", "svc", "--namespace", namespace, "--wait", "--timeout", "120s")
