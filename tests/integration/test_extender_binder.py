"""Binder against the loopback fake API server: the Binding it creates and every 409 path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from kubernetes_asyncio import client

from extender.binder import Binder, check_annotations

if TYPE_CHECKING:
    from tests.fakes.kube_apiserver import FakeKube

pytest_plugins = ["tests.fakes.kube_apiserver"]

DECISION = {"carbon-aware.io/decision": orjson.dumps({"zone": "FR", "intensity": 32.0}).decode()}


@pytest.fixture
async def binder(api: client.ApiClient) -> AsyncIterator[Binder]:
    b = Binder(api, timeout=2.0)
    yield b
    await b.close()


async def test_bind_creates_binding_with_uid_and_annotations(fake_kube: FakeKube, binder: Binder) -> None:
    fake_kube.add_pod("ns1", "web", uid="uid-1")
    assert await binder.bind("ns1", "web", "uid-1", "node-a", DECISION) is None
    assert len(fake_kube.bindings) == 1
    binding = fake_kube.bindings[0]
    assert binding["metadata"]["uid"] == "uid-1"
    assert binding["target"] == {"apiVersion": "v1", "kind": "Node", "name": "node-a"}
    pod = fake_kube.pod("ns1", "web")
    assert pod is not None
    assert pod["spec"]["nodeName"] == "node-a"
    assert pod["metadata"]["annotations"] == DECISION
    assert binder.results["bound"] == 1


async def test_already_bound_to_same_node_is_success(fake_kube: FakeKube, binder: Binder) -> None:
    fake_kube.add_pod("ns1", "web", uid="uid-1", node_name="node-a")
    assert await binder.bind("ns1", "web", "uid-1", "node-a") is None
    assert binder.results["already_bound"] == 1
    assert fake_kube.bindings == []


async def test_bound_elsewhere_is_conflict(fake_kube: FakeKube, binder: Binder) -> None:
    fake_kube.add_pod("ns1", "web", uid="uid-1", node_name="node-b")
    err = await binder.bind("ns1", "web", "uid-1", "node-a")
    assert err is not None
    assert "already bound to node node-b" in err
    assert binder.results["conflict"] == 1


async def test_missing_pod_is_clear_error(fake_kube: FakeKube, binder: Binder) -> None:
    err = await binder.bind("ns1", "ghost", "uid-1", "node-a")
    assert err is not None
    assert "ns1/ghost not found" in err
    assert binder.results["error"] == 1


async def test_uid_mismatch_is_refused(fake_kube: FakeKube, binder: Binder) -> None:
    fake_kube.add_pod("ns1", "web", uid="uid-new")
    err = await binder.bind("ns1", "web", "uid-old", "node-a")
    assert err is not None
    assert "recreated" in err
    assert "uid-new" in err
    pod = fake_kube.pod("ns1", "web")
    assert pod is not None
    assert "nodeName" not in pod["spec"]
    assert binder.results["conflict"] == 1


async def test_concurrent_binds_create_exactly_one_binding(fake_kube: FakeKube, binder: Binder) -> None:
    fake_kube.add_pod("ns1", "web", uid="uid-1")
    fake_kube.binding_delay = 0.05  # keep the first bind in flight while the others arrive
    results = await asyncio.gather(*(binder.bind("ns1", "web", "uid-1", "node-a") for _ in range(8)))
    assert results == [None] * 8
    assert len(fake_kube.bindings) == 1
    assert binder.results["bound"] == 1
    assert binder.results["already_bound"] == 7
    assert binder._locks == {}  # no per-pod state left behind


async def test_concurrent_binds_to_different_nodes_one_wins(fake_kube: FakeKube, binder: Binder) -> None:
    fake_kube.add_pod("ns1", "web", uid="uid-1")
    fake_kube.binding_delay = 0.02
    a, b = await asyncio.gather(
        binder.bind("ns1", "web", "uid-1", "node-a"), binder.bind("ns1", "web", "uid-1", "node-b")
    )
    assert a is None
    assert b is not None
    assert "already bound to node node-a" in b
    assert len(fake_kube.bindings) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"carbon-aware.io/decision": "x" * (300 * 1024)},
        {"not a key!": "v"},
        {"-bad.prefix/decision": "v"},
        {"carbon-aware.io/" + "x" * 64: "v"},
    ],
)
async def test_invalid_annotations_are_dropped_not_bound(
    fake_kube: FakeKube, binder: Binder, bad: dict[str, str]
) -> None:
    # The real API server copies Binding annotations unvalidated; the binder must not send bad ones.
    fake_kube.add_pod("ns1", "web", uid="uid-1")
    assert await binder.bind("ns1", "web", "uid-1", "node-a", bad) is None
    pod = fake_kube.pod("ns1", "web")
    assert pod is not None
    assert pod["spec"]["nodeName"] == "node-a"
    assert pod["metadata"]["annotations"] == {}
    assert "annotations" not in fake_kube.bindings[0]["metadata"]
    assert binder.annotation_failures == 1
    assert binder.results["bound"] == 1


async def test_refused_annotations_do_not_fail_the_bind(fake_kube: FakeKube, binder: Binder) -> None:
    fake_kube.add_pod("ns1", "web", uid="uid-1")
    fake_kube.reject_binding_annotations = True  # a stricter API server than 1.35
    assert await binder.bind("ns1", "web", "uid-1", "node-a", DECISION) is None
    pod = fake_kube.pod("ns1", "web")
    assert pod is not None
    assert pod["spec"]["nodeName"] == "node-a"
    assert pod["metadata"]["annotations"] == {}
    assert binder.annotation_failures == 1
    assert len(fake_kube.bindings) == 1


def test_check_annotations_accepts_valid_keys() -> None:
    assert check_annotations(DECISION) is None
    assert check_annotations({"plain": "v", "a.b-c_d": "", "example.com/x": "y" * 1000}) is None


async def test_server_error_is_reported(fake_kube: FakeKube, binder: Binder) -> None:
    fake_kube.add_pod("ns1", "web", uid="uid-1")
    fake_kube.fail_next(500, "/binding", message="etcd unavailable")
    err = await binder.bind("ns1", "web", "uid-1", "node-a")
    assert err is not None
    assert "HTTP 500" in err
    assert "etcd unavailable" in err
    # The service keeps working: the next bind goes through.
    assert await binder.bind("ns1", "web", "uid-1", "node-a") is None


async def test_timeout_is_bounded(fake_kube: FakeKube, api: client.ApiClient) -> None:
    fake_kube.add_pod("ns1", "web", uid="uid-1")
    fake_kube.binding_delay = 1.0
    binder = Binder(api, timeout=0.1)
    try:
        err = await binder.bind("ns1", "web", "uid-1", "node-a")
    finally:
        await binder.close()
    assert err is not None
    assert "timed out" in err
    assert binder.results["error"] == 1


async def test_unreachable_api_server_is_an_error(fake_kube: FakeKube, api: client.ApiClient) -> None:
    await fake_kube.stop()
    binder = Binder(api, timeout=2.0)
    try:
        err = await binder.bind("ns1", "web", "uid-1", "node-a")
    finally:
        await binder.close()
    assert err is not None
    assert "ns1/web" in err


async def test_closed_binder_refuses(binder: Binder) -> None:
    await binder.close()
    assert await binder.bind("ns1", "web", "uid-1", "node-a") == "binder is shutting down"


async def test_on_result_callback(fake_kube: FakeKube, api: client.ApiClient) -> None:
    seen: list[str] = []
    fake_kube.add_pod("ns1", "web", uid="uid-1")
    binder = Binder(api, on_result=seen.append)
    try:
        await binder.bind("ns1", "web", "uid-1", "node-a")
        await binder.bind("ns1", "web", "uid-1", "node-b")
    finally:
        await binder.close()
    assert seen == ["bound", "conflict"]


async def test_garbage_answer_is_an_error_not_an_exception(fake_kube: FakeKube, binder: Binder) -> None:
    fake_kube.add_pod("ns1", "web", uid="uid-1", node_name="node-b")
    # The 409 makes the binder read the pod; that read answers 200 with a body that is not JSON.
    fake_kube.fail_next(200, "/pods/web", method="GET", body=b"<html>gateway</html>")
    err = await binder.bind("ns1", "web", "uid-1", "node-a")
    assert err is not None
    assert "ns1/web" in err
    assert binder.results["error"] == 1


def test_env_proxy_follows_the_environment_like_trust_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The direct Binding POST resolves the proxy once; it must pick what aiohttp's trust_env would.
    from yarl import URL

    from extender.binder import _env_proxy

    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert _env_proxy(URL("https://10.0.0.1:6443")) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert _env_proxy(URL("https://10.0.0.1:6443")) == "http://127.0.0.1:3128"
    monkeypatch.setenv("NO_PROXY", "10.0.0.1")
    assert _env_proxy(URL("https://10.0.0.1:6443")) is None


async def test_a_bind_timeout_through_the_app_reaches_the_binders_metrics(
    fake_kube: FakeKube, api: client.ApiClient, aiohttp_client: Any
) -> None:
    # issue 12 item 8: the app and the Binder both applied --bind-timeout and the app's, outside,
    # always fired first, so bind_outcomes_total{result="error"} never counted a timeout.
    from extender.app import create_app
    from extender.metrics import ExtenderMetrics
    from extender.settings import ExtenderSettings
    from extender.view import CarbonState

    fake_kube.add_pod("ns1", "web", uid="uid-1")
    fake_kube.binding_delay = 1.0
    settings = ExtenderSettings(bind_timeout=0.1)
    carbon = CarbonState()
    nodes_lookup: Any = _NoNodes()  # /bind only asks the node cache for a zone
    metrics = ExtenderMetrics(nodes_lookup, carbon)
    binder = Binder(
        api, settings.bind_timeout, on_result=lambda r: metrics.child(metrics.bind_outcomes, r).inc()
    )
    app = create_app(settings, nodes_lookup, carbon, binder, metrics=metrics)
    http = await aiohttp_client(app)
    try:
        body = {"PodName": "web", "PodNamespace": "ns1", "PodUID": "uid-1", "Node": "node-a"}
        resp = await http.post("/bind", data=orjson.dumps(body), headers={"Content-Type": "application/json"})
        assert resp.status == 200
        assert "timed out" in orjson.loads(await resp.read())["Error"]
        registry = metrics.registry
        assert registry.get_sample_value("carbon_extender_bind_outcomes_total", {"result": "error"}) == 1.0
        assert registry.get_sample_value("carbon_extender_binds_total", {"result": "error"}) == 1.0
    finally:
        await binder.close()


class _NoNodes:
    synced = True

    version = 0

    def zone_of(self, node_name: str) -> str | None:
        return None

    def zones_of(self, node_names: list[str]) -> list[str | None]:
        return [None] * len(node_names)

    def __contains__(self, node_name: object) -> bool:
        return False

    def __len__(self) -> int:
        return 0
