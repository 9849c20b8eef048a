"""Kubernetes objects to the rebalancer's views, and resource quantities."""

from __future__ import annotations

from typing import Any

import pytest

from carbon_common.quantity import millicores, quantity, whole
from rebalancer.objects import node_view, pdb_view, pod_view


def raw_pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "shop",
            "name": "web-1",
            "uid": "u1",
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "annotations": {"carbon-aware.io/rebalance": "true"},
            "labels": {"app": "web"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "controller": True}],
        },
        "spec": {
            "nodeName": "n1",
            "containers": [{"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}],
            **spec,
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", 0.5), ("2", 2.0), ("128Mi", 128 * 2**20), ("1G", 1e9), ("1e3", 1000.0), (4, 4.0)],
)
def test_quantities(text: object, value: float) -> None:
    assert quantity(text) == value


@pytest.mark.parametrize("bad", ["", "abc", "1Xi", "-1", True, None])
def test_bad_quantities_are_value_errors(bad: object) -> None:
    with pytest.raises(ValueError, match="quantity"):
        quantity(bad)


def test_rounding_up() -> None:
    assert millicores("0.0001") == 1
    assert millicores("1.5") == 1500
    assert whole("1.5") == 2


def test_a_replicaset_pod_opted_in_by_annotation() -> None:
    view = pod_view(raw_pod())
    assert view is not None
    assert (view.opted_in, view.exclusion, view.owner_kind, view.ready, view.running) == (
        True,
        None,
        "ReplicaSet",
        True,
        True,
    )
    assert (view.requests.cpu_m, view.requests.memory) == (250, 64 * 2**20)


def test_opt_in_by_namespace() -> None:
    obj = raw_pod()
    obj["metadata"]["annotations"] = {}
    assert pod_view(obj).opted_in is False  # type: ignore[union-attr]
    assert pod_view(obj, frozenset({"shop"})).opted_in is True  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ownerReferences": []}, "bare-pod"),
        ({"ownerReferences": [{"kind": "DaemonSet", "name": "d", "controller": True}]}, "daemonset"),
        ({"ownerReferences": [{"kind": "Job", "name": "j", "controller": True}]}, "job-without-restart"),
        ({"ownerReferences": [{"kind": "Foo", "name": "f", "controller": True}]}, "unsupported-owner"),
        ({"annotations": {"kubernetes.io/config.mirror": "x"}}, "mirror-pod"),
    ],
)
def test_exclusions(change: dict[str, Any], reason: str) -> None:
    obj = raw_pod()
    obj["metadata"].update(change)
    assert pod_view(obj).exclusion == reason  # type: ignore[union-attr]


def test_local_storage_unless_allowed_and_job_with_restart() -> None:
    obj = raw_pod(volumes=[{"name": "tmp", "emptyDir": {}}])
    assert pod_view(obj).exclusion == "local-storage"  # type: ignore[union-attr]
    assert pod_view(obj, allow_local_storage=True).exclusion is None  # type: ignore[union-attr]
    job = raw_pod(restartPolicy="OnFailure")
    job["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "j", "controller": True}]
    assert pod_view(job).exclusion is None  # type: ignore[union-attr]


def test_unbound_finished_or_malformed_pods_are_left_out() -> None:
    assert pod_view(raw_pod(nodeName=None)) is None
    done = raw_pod()
    done["status"]["phase"] = "Succeeded"
    assert pod_view(done) is None
    assert pod_view({"metadata": "x"}) is None


def test_requests_limits_and_init_containers() -> None:
    obj = raw_pod(
        containers=[{"resources": {"limits": {"cpu": "1"}}}, {"resources": {"requests": {"cpu": "bad"}}}],
        initContainers=[{"resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}],
    )
    view = pod_view(obj)
    assert view is not None
    assert (view.requests.cpu_m, view.requests.memory) == (2000, 2**30)


def test_nodes() -> None:
    obj = {
        "metadata": {"name": "n1", "labels": {"carbon-aware.io/zone": "GREEN"}},
        "spec": {"unschedulable": True},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi"},
            "conditions": [{"type": "Ready", "status": "False"}],
        },
    }
    view = node_view(obj)
    assert view is not None
    assert (view.zone, view.ready, view.schedulable, view.allocatable.cpu_m) == ("GREEN", False, False, 4000)
    obj["status"]["allocatable"] = {"cpu": "oops"}
    obj["metadata"]["labels"] = {}
    view = node_view(obj)
    assert view is not None
    assert view.zone is None
    assert view.allocatable.cpu_m == 0


def test_pdbs() -> None:
    obj = {
        "metadata": {"namespace": "shop", "name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
        "status": {"disruptionsAllowed": 2},
    }
    view = pdb_view(obj)
    assert view is not None
    assert view.match_labels == {"app": "web"}
    assert view.disruptions_allowed == 2
    del obj["status"]
    assert pdb_view(obj).disruptions_allowed == 0  # type: ignore[union-attr]
    obj["spec"] = {"selector": {"matchExpressions": ["bad"]}}
    assert pdb_view(obj).match_labels is None  # type: ignore[union-attr]
