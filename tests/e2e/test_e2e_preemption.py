"""The preempt verb on the real scheduler: a high-priority pod evicts a low-priority one through the extender.

kube-scheduler's DefaultPreemption picks victims, asks the extender (`preemptVerb`) to confirm them by
UID, deletes them and schedules the preemptor. Pods here have terminationGracePeriodSeconds 0, so
the deletion completes without a kubelet.
"""

from __future__ import annotations

import pytest

from .conftest import E2EWorld, metric
from .kubeharness import ApiError, wait_until

pytestmark = pytest.mark.e2e


def priority_class(world: E2EWorld, name: str, value: int) -> str:
    full = f"{world.set_id}-{name}"[:63]
    try:
        world.api.request(
            "POST", "/apis/scheduling.k8s.io/v1/priorityclasses", {"metadata": {"name": full}, "value": value}
        )
    except ApiError as exc:
        if exc.status != 409:
            raise
    return full


def test_high_priority_pod_preempts_through_the_extender(world: E2EWorld) -> None:
    world.add_nodes({"SE": 1}, cpu="2")
    world.snapshot({"SE": 30.0})
    ext, sched = world.with_extender(ignorable=False)
    low, high = priority_class(world, "low", 10), priority_class(world, "high", 1000)
    world.pod("victim", sched, cpu="1500m", priority_class=low)
    world.wait_bound(["victim"])
    victim_uid = world.api.pod(world.namespace, "victim")["metadata"]["uid"]

    world.pod("preemptor", sched, cpu="1500m", priority_class=high)

    placed = world.wait_bound(["preemptor"], timeout=90)
    assert placed["preemptor"] == world.node_names[0]

    def victim_gone() -> bool:
        try:
            return bool(world.api.pod(world.namespace, "victim")["metadata"]["uid"] != victim_uid)
        except ApiError as exc:
            return exc.status == 404

    wait_until(victim_gone, timeout=30, what="the victim pod deleted", context=world.diagnostics)
    assert metric(ext.metrics(), "carbon_extender_requests_total", verb="preempt") >= 1
