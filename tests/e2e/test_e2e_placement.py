"""Issue 3, tests 1-4: the real kube-scheduler places pods through the extender by carbon intensity."""

from __future__ import annotations

import itertools
import json

import pytest

from .conftest import E2EWorld, metric
from .kubeharness import wait_until

pytestmark = pytest.mark.e2e

# Far apart on purpose: the extender's weight (5 x 10 x score) must dominate the in-tree scores,
# which differ only slightly between empty, identical nodes.
GRID = {"SE": 30.0, "DE": 380.0, "PL": 690.0}


def test_pods_land_in_the_greenest_zone_and_the_extender_binds_them(world: E2EWorld) -> None:
    world.add_nodes({"SE": 2, "DE": 2, "PL": 2})
    world.snapshot(GRID)
    ext, sched = world.with_extender()
    names = [f"web-{i}" for i in range(4)]
    for name in names:
        world.pod(name, sched)

    placed = world.wait_bound(names)

    assert set(world.zones_of(placed).values()) == {"SE"}, world.diagnostics()
    # The extender did the bind (bindVerb): its own counter says so, and it annotated the pod.
    assert metric(ext.metrics(), "carbon_extender_binds_total", result="success") >= len(names)
    decision = json.loads(
        world.api.pod(world.namespace, "web-0")["metadata"]["annotations"]["carbon-aware.io/decision"]
    )
    assert decision["zone"] == "SE"
    assert decision["intensity"] == pytest.approx(30.0)
    world.wait_event(
        "web-0", "Scheduled", f"Successfully assigned {world.namespace}/web-0 to {placed['web-0']}"
    )


def test_new_pods_follow_the_greenest_zone_when_the_data_changes(world: E2EWorld) -> None:
    world.add_nodes({"SE": 2, "PL": 2})
    world.snapshot(GRID)
    _, sched = world.with_extender()
    world.pod("before", sched)
    assert world.zones_of(world.wait_bound(["before"])) == {"before": "SE"}

    # The feed rewrites its file (atomically): now PL is the green one.
    world.snapshot({"SE": 690.0, "PL": 30.0})

    probes = itertools.count()

    def follows() -> bool:
        # The extender reloads the file on its own schedule; each probe pod shows what it believes.
        name = f"after-{next(probes)}"
        world.pod(name, sched)
        return world.zones_of(world.wait_bound([name], timeout=20))[name] == "PL"

    wait_until(follows, timeout=30, what="new pods placed in PL after the data change", interval=0.5)
    world.pod("settled", sched)
    assert world.zones_of(world.wait_bound(["settled"])) == {"settled": "PL"}


def test_resources_still_matter_when_the_greenest_nodes_are_full(world: E2EWorld) -> None:
    # One 2-CPU node per zone; each pod asks for 1.5 CPU, so one pod fills a node.
    world.add_nodes({"SE": 1, "DE": 1, "PL": 1}, cpu="2")
    world.snapshot(GRID)
    _, sched = world.with_extender()
    zones = []
    for i in range(3):
        world.pod(f"big-{i}", sched, cpu="1500m")
        # One at a time so the order of placement is the order of greenness.
        zones.append(world.zones_of(world.wait_bound([f"big-{i}"]))[f"big-{i}"])

    assert zones == ["SE", "DE", "PL"]
    world.pod("no-room", sched, cpu="1500m")
    world.wait_event("no-room", "FailedScheduling", "Insufficient cpu")


def test_hard_cap_keeps_a_pod_pending_until_the_cap_is_lifted(world: E2EWorld) -> None:
    world.add_nodes({"DE": 1, "PL": 1})
    world.snapshot(GRID)
    _, sched = world.with_extender()
    world.pod("capped", sched, annotations={"carbon-aware.io/max-intensity": "100"})

    event = world.wait_event("capped", "FailedScheduling", "max-intensity")

    assert "380" in event["message"] or "690" in event["message"], event["message"]
    assert world.placement()["capped"] == ""
    # Lifting the cap is an update of the pod itself, an event that requeues it.
    world.api.patch_pod_annotations(world.namespace, "capped", {"carbon-aware.io/max-intensity": None})
    placed = world.wait_bound(["capped"], timeout=60)
    assert world.zones_of(placed) == {"capped": "DE"}
