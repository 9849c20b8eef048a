"""Nodes and running pods as capacity (deferral.usage): parsing the watched objects, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deferral.usage import ClusterUsage, NodeRoom, cpu_millis, node_room, pod_cpu_m, running_pod

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
Z = "carbon-aware.io/zone"


@pytest.mark.parametrize(
    ("quantity", "millis"),
    [
        ("2", 2000),
        ("500m", 500),
        ("1.5", 1500),
        (4, 4000),
        ("0.0001", 1),
        ("1k", 1_000_000),
        (".5", 500),
        # Valid Kubernetes quantities the API server accepts for CPU too.
        ("1e3", 1_000_000),
        ("1Ki", 1_024_000),
    ],
)
def test_cpu_quantities(quantity: object, millis: int) -> None:
    assert cpu_millis(quantity) == millis


@pytest.mark.parametrize("bad", ["", "two", "-1", "1Xi", None, True, "1e"])
def test_bad_cpu_quantities_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="CPU quantity"):
        cpu_millis(bad)


def test_pod_request_sums_containers_and_covers_the_largest_init_container() -> None:
    def c(**resources: Any) -> dict[str, Any]:
        return {"name": "x", "resources": resources}

    spec = {"containers": [c(requests={"cpu": "500m"}), c(limits={"cpu": "1"}), c(), {"bad": 1}]}
    assert pod_cpu_m(spec) == 1500
    assert pod_cpu_m({**spec, "initContainers": [c(requests={"cpu": "3"})]}) == 3000
    assert pod_cpu_m({"containers": [c(requests={"cpu": "lots"})]}) == 0
    assert pod_cpu_m({}) == 0


def node(labels: dict[str, str], cpu: object = "4", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "n1", "labels": labels},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu}},
    }


def test_a_node_counts_in_its_labelled_zone_unless_cordoned_or_unreadable() -> None:
    assert node_room(node({Z: "FR"})) == NodeRoom("n1", "FR", 4000)
    assert node_room(node({})) is None
    assert node_room(node({Z: "FR"}, unschedulable=True)) is None
    assert node_room(node({Z: "FR"}, cpu="many")) is None
    assert node_room(node({"my/zone": "DE"}), zone_label="my/zone") == NodeRoom("n1", "DE", 4000)
    assert node_room({"metadata": "x"}) is None


def pod(phase: str = "Running", node_name: str | None = "n1", **notes: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"resources": {"requests": {"cpu": "2"}}}]}
    if node_name:
        spec["nodeName"] = node_name
    return {
        "metadata": {"uid": "u1", "annotations": notes, "creationTimestamp": "2026-11-23T11:00:00Z"},
        "spec": spec,
        "status": {"phase": phase, "startTime": "2026-11-23T12:00:00Z"},
    }


def test_a_bound_unfinished_pod_holds_its_request_until_its_expected_end() -> None:
    running = running_pod(pod(**{"carbon-aware.io/duration": "2h"}))
    assert running is not None
    assert (running.node, running.cpu_m, running.start, running.end) == (
        "n1",
        2000,
        T0,
        T0 + timedelta(hours=2),
    )
    unknown = running_pod(pod(**{"carbon-aware.io/duration": "soon"}))
    assert unknown is not None
    assert unknown.end is None
    assert running_pod(pod(phase="Succeeded")) is None
    assert running_pod(pod(node_name=None)) is None


def test_capacity_sums_zones_and_lets_an_overrunning_pod_hold_its_room() -> None:
    usage = ClusterUsage()
    assert usage.capacity(T0) is None  # no labelled node yet: plan as before, capacity-blind
    usage.on_node_list([NodeRoom("a", "FR", 2000), None, NodeRoom("b", "FR", 2000)])
    usage.on_node("c", NodeRoom("c", "DE", 8000))
    done = running_pod(pod(**{"carbon-aware.io/duration": "1h"}))
    assert done is not None
    usage.running = {"u1": done}
    usage.on_node_list([NodeRoom("n1", "FR", 4000), NodeRoom("c", "DE", 8000)])
    later = T0 + timedelta(hours=3)  # past the pod's expected end, and it is still running
    capacity = usage.capacity(later)
    assert capacity is not None
    assert capacity.free("FR", later, later + timedelta(hours=1)) == 2000
    assert capacity.free("DE", later, later + timedelta(hours=1)) == 8000
    usage.on_node("n1", None)
    remaining = usage.capacity(later)
    assert remaining is not None
    assert remaining.free("FR", later, later + timedelta(hours=1)) == 0
