"""The control plane alone: upstream kube-scheduler binds pods to API-object nodes, no extender involved.

If this fails, nothing else in tests/e2e can pass: read this test's diagnostics first.
"""

from __future__ import annotations

import pytest

from .conftest import E2EWorld
from .kubeharness import plain_scheduler_config

pytestmark = pytest.mark.e2e


def test_plain_scheduler_binds_pods_to_api_nodes(world: E2EWorld) -> None:
    nodes = world.add_nodes({"ZONE-A": 2})
    sched = world.scheduler_from_config(plain_scheduler_config(f"plain-{world.set_id}"))
    for i in range(3):
        world.pod(f"p{i}", sched)

    placed = world.wait_bound([f"p{i}" for i in range(3)])

    assert set(placed.values()) <= set(nodes)
    event = world.wait_event("p0", "Scheduled", r"Successfully assigned")
    assert placed["p0"] in event["message"]


def test_pods_for_another_scheduler_name_stay_pending(world: E2EWorld) -> None:
    world.add_nodes({"ZONE-A": 1})
    sched = world.scheduler_from_config(plain_scheduler_config(f"plain-{world.set_id}"))
    world.api.create_pod(world.namespace, "orphan", scheduler_name="nobody", node_selector=world.selector)
    world.pod("mine", sched)

    world.wait_bound(["mine"])

    assert world.placement()["orphan"] == ""
