"""The fake API server the team tests against: checked with the real client (kubernetes-asyncio).

Also exercises `carbon_common.kube.list_watch` on pods with a selector, as the deferral controller
uses it. Loopback HTTP only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from carbon_common.kube import Backoff, ListWatchOptions, WatchStats, list_watch

if TYPE_CHECKING:
    from tests.fakes.kube_apiserver import FakeKube

pytest_plugins = ["tests.fakes.kube_apiserver"]


async def eventually(cond: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110 (state lives in another object; polling is simplest)
            await asyncio.sleep(0.01)


async def test_pod_list_watch_with_selectors(fake_kube: FakeKube, api: client.ApiClient) -> None:
    fake_kube.add_pod("a", "gated", labels={"app": "x"}, scheduling_gates=["carbon-aware.io/wait"])
    fake_kube.add_pod("a", "other", labels={"app": "y"})
    fake_kube.add_pod("b", "gated2", labels={"app": "x"})
    pods: dict[str, str] = {}

    def on_list(items: list[dict[str, Any]]) -> None:
        pods.clear()
        pods.update({p["metadata"]["name"]: p["metadata"]["namespace"] for p in items})

    def on_event(etype: str, obj: dict[str, Any]) -> None:
        if etype == "DELETED":
            pods.pop(obj["metadata"]["name"], None)
        else:
            pods[obj["metadata"]["name"]] = obj["metadata"]["namespace"]

    stats = WatchStats()
    core: Any = client.CoreV1Api(api)  # dict bodies and _content_type: the typed stubs say otherwise
    task = asyncio.create_task(
        list_watch(
            core.list_pod_for_all_namespaces,
            on_list,
            on_event,
            stats,
            ListWatchOptions(backoff=Backoff(0.01, 0.05)),
            extra={"label_selector": "app=x"},
        )
    )
    try:
        await eventually(lambda: stats.synced and fake_kube.open_watches == 1)
        assert pods == {"gated": "a", "gated2": "b"}
        fake_kube.add_pod("c", "new", labels={"app": "x"})
        fake_kube.add_pod("c", "ignored", labels={"app": "z"})
        fake_kube.delete_pod("a", "gated")
        await eventually(lambda: "new" in pods and "gated" not in pods)
        assert "ignored" not in pods
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_pod_patches_all_three_types(fake_kube: FakeKube, api: client.ApiClient) -> None:
    fake_kube.add_pod("ns", "p", scheduling_gates=["g1", "g2"], annotations={"keep": "1"})
    core: Any = client.CoreV1Api(api)  # dict bodies and _content_type: the typed stubs say otherwise
    # Strategic merge (kubernetes-asyncio's default for a dict body): gate removal with $patch.
    await core.patch_namespaced_pod(
        "p",
        "ns",
        {
            "metadata": {"annotations": {"a": "1"}},
            "spec": {"schedulingGates": [{"$patch": "delete", "name": "g1"}]},
        },
        _content_type="application/strategic-merge-patch+json",
    )
    pod = fake_kube.pod("ns", "p")
    assert pod is not None
    assert pod["spec"]["schedulingGates"] == [{"name": "g2"}]
    assert pod["metadata"]["annotations"] == {"keep": "1", "a": "1"}
    # Merge patch: null deletes a key.
    await core.patch_namespaced_pod(
        "p",
        "ns",
        {"metadata": {"annotations": {"a": None, "b": "2"}}},
        _content_type="application/merge-patch+json",
    )
    pod = fake_kube.pod("ns", "p")
    assert pod is not None
    assert pod["metadata"]["annotations"] == {"keep": "1", "b": "2"}
    # JSON patch with a test guard (the safe way to drop the last gate).
    await core.patch_namespaced_pod(
        "p",
        "ns",
        [
            {"op": "test", "path": "/spec/schedulingGates", "value": [{"name": "g2"}]},
            {"op": "remove", "path": "/spec/schedulingGates"},
            {"op": "add", "path": "/metadata/annotations/carbon-aware.io~1released", "value": "now"},
        ],
        _content_type="application/json-patch+json",
    )
    pod = fake_kube.pod("ns", "p")
    assert pod is not None
    assert "schedulingGates" not in pod["spec"]
    assert pod["metadata"]["annotations"]["carbon-aware.io/released"] == "now"
    # A failing test op changes nothing and answers 422.
    with pytest.raises(ApiException) as exc:
        await core.patch_namespaced_pod(
            "p",
            "ns",
            [{"op": "test", "path": "/metadata/annotations/b", "value": "nope"}],
            _content_type="application/json-patch+json",
        )
    assert exc.value.status == 422
    # Gates cannot be added after creation, as on the real API server.
    with pytest.raises(ApiException) as exc:
        await core.patch_namespaced_pod(
            "p",
            "ns",
            {"spec": {"schedulingGates": [{"name": "new"}]}},
            _content_type="application/merge-patch+json",
        )
    assert exc.value.status == 422


async def test_pod_get_update_conflict_and_404(fake_kube: FakeKube, api: client.ApiClient) -> None:
    fake_kube.add_pod("ns", "p", scheduling_gates=["g"])
    core: Any = client.CoreV1Api(api)  # dict bodies and _content_type: the typed stubs say otherwise
    pod = await core.read_namespaced_pod("p", "ns")
    assert pod.spec.scheduling_gates[0].name == "g"
    pod.spec.scheduling_gates = None
    stale_rv = pod.metadata.resource_version
    await core.replace_namespaced_pod("p", "ns", pod)
    pod.metadata.resource_version = stale_rv
    with pytest.raises(ApiException) as exc:
        await core.replace_namespaced_pod("p", "ns", pod)
    assert exc.value.status == 409
    with pytest.raises(ApiException) as exc:
        await core.read_namespaced_pod("missing", "ns")
    assert exc.value.status == 404


async def test_events_both_apis(fake_kube: FakeKube, api: client.ApiClient) -> None:
    ref = {"kind": "Pod", "namespace": "ns", "name": "p", "apiVersion": "v1"}
    core: Any = client.CoreV1Api(api)
    events: Any = client.EventsV1Api(api)
    await core.create_namespaced_event(
        "ns",
        {
            "metadata": {"generateName": "p."},
            "involvedObject": ref,
            "reason": "Deferred",
            "message": "m1",
            "type": "Normal",
        },
    )
    await events.create_namespaced_event(
        "ns",
        {
            "metadata": {"name": "p.2"},
            "regarding": ref,
            "reason": "Released",
            "note": "m2",
            "type": "Normal",
            "action": "Release",
            "reportingController": "carbon-aware.io/deferral",
            "reportingInstance": "x",
            "eventTime": "2026-11-22T10:00:00.000000Z",
        },
    )
    assert [e["reason"] for e in fake_kube.events] == ["Deferred", "Released"]
    assert fake_kube.events[0]["metadata"]["name"].startswith("p.")
    assert fake_kube.events[1]["_apiPath"].startswith("/apis/events.k8s.io/v1/")


async def test_lease_optimistic_concurrency(fake_kube: FakeKube, api: client.ApiClient) -> None:
    coord: Any = client.CoordinationV1Api(api)
    body = {"metadata": {"name": "deferral"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    with pytest.raises(ApiException) as exc:
        await coord.read_namespaced_lease("deferral", "ns")
    assert exc.value.status == 404
    await coord.create_namespaced_lease("ns", body)
    with pytest.raises(ApiException) as exc:
        await coord.create_namespaced_lease("ns", body)
    assert exc.value.status == 409
    lease = await coord.read_namespaced_lease("deferral", "ns")
    assert lease.spec.holder_identity == "a"
    lease.spec.holder_identity = "b"
    updated = await coord.replace_namespaced_lease("deferral", "ns", lease)
    assert updated.spec.holder_identity == "b"
    # A second writer with the old resourceVersion loses.
    lease.spec.holder_identity = "c"
    with pytest.raises(ApiException) as exc:
        await coord.replace_namespaced_lease("deferral", "ns", lease)
    assert exc.value.status == 409
    assert (await coord.read_namespaced_lease("deferral", "ns")).spec.holder_identity == "b"
    # An update without resourceVersion is refused (422), as kube-apiserver does for leases.
    lease.metadata.resource_version = None
    with pytest.raises(ApiException) as exc:
        await coord.replace_namespaced_lease("deferral", "ns", lease)
    assert exc.value.status == 422


async def test_fault_injection_and_bad_bodies(fake_kube: FakeKube, api: client.ApiClient) -> None:
    fake_kube.add_node("n1")
    core: Any = client.CoreV1Api(api)  # dict bodies and _content_type: the typed stubs say otherwise
    fake_kube.fail_next(500, "/api/v1/nodes", method="GET", times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            await core.list_node()
        assert exc.value.status == 500
    assert len((await core.list_node()).items) == 1
    # Paginated list with an expired continue token answers 410.
    page = await core.list_node(limit=1)
    assert page.metadata._continue is None  # one node: no continue
    fake_kube.add_node("n2")
    page = await core.list_node(limit=1)
    assert page.metadata._continue
    fake_kube.expire()
    with pytest.raises(ApiException) as exc:
        await core.list_node(limit=1, _continue=page.metadata._continue)
    assert exc.value.status == 410
