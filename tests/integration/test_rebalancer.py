"""The rebalancer against the loopback fake API server: caches fed by real list/watch, policy/v1
Evictions (PDB 429s, UID preconditions), Events, metrics, dry-run, and the whole app with its feed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from kubernetes_asyncio import client

from carbon_common.kube import list_watch, load_api_client
from carbon_common.leader import LeaderSettings
from carbon_common.snapshot import Snapshot, ZoneReading, encode_snapshot
from carbon_common.tasks import cancel_and_wait
from rebalancer.app import create_app
from rebalancer.controller import Cache, Options, Rebalancer
from rebalancer.kubeio import KubeApiWriter
from rebalancer.metrics import RebalancerMetrics
from rebalancer.policy import PolicyConfig
from rebalancer.settings import RebalancerSettings

if TYPE_CHECKING:
    from tests.fakes.kube_apiserver import FakeKube

pytest_plugins = ["tests.fakes.kube_apiserver"]
pytestmark = pytest.mark.timeout(60)

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CONFIG = PolicyConfig(
    sustain=timedelta(0), cooldown=timedelta(hours=1), max_per_run=5, max_per_namespace=5, max_per_owner=1
)


def snapshot(intensities: dict[str, float], at: datetime = NOW) -> Snapshot:
    return Snapshot(
        at, {z: ZoneReading(z, v, at - timedelta(minutes=5), "static") for z, v in intensities.items()}
    )


class StaticFeed:
    def __init__(self, intensities: dict[str, float]) -> None:
        self.intensities = intensities

    async def snapshot(self) -> Snapshot | None:
        return snapshot(self.intensities)


def add_cluster(fake: FakeKube, replicas: int = 4, owner: str = "web") -> None:
    fake.add_node("dirty-1", {"carbon-aware.io/zone": "DIRTY"})
    fake.add_node("green-1", {"carbon-aware.io/zone": "GREEN"})
    for i in range(replicas):
        fake.add_object("pods", running_pod(f"{owner}-{i}", owner))


def running_pod(name: str, owner: str, node: str = "dirty-1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": "shop",
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "labels": {"app": owner},
            "annotations": {"carbon-aware.io/rebalance": "true"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": owner, "controller": True}],
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


@contextlib.asynccontextmanager
async def rebalancer(
    fake: FakeKube, dry_run: bool = False, feed: StaticFeed | None = None
) -> AsyncIterator[Rebalancer]:
    api = await load_api_client(fake.kubeconfig)
    core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
    controller = Rebalancer(
        writer=KubeApiWriter(api, "test"),
        feed=feed or StaticFeed({"DIRTY": 400.0, "GREEN": 100.0}),
        metrics=RebalancerMetrics(),
        config=CONFIG,
        options=Options(dry_run=dry_run),
        clock=lambda: NOW,
    )
    pairs: list[tuple[Cache[Any], Any]] = [
        (controller.pods, core.list_pod_for_all_namespaces),
        (controller.nodes, core.list_node),
        (controller.pdbs, policy.list_pod_disruption_budget_for_all_namespaces),
        (controller.namespaces, core.list_namespace),
    ]
    tasks = [
        asyncio.create_task(list_watch(f, c.on_list, c.on_event, c.stats, transform=c.transform))
        for c, f in pairs
    ]
    try:
        await until(lambda: controller.synced)
        yield controller
    finally:
        await cancel_and_wait(*tasks)
        await api.close()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def terminating(fake: FakeKube) -> list[str]:
    return sorted(k[1] for k, p in fake.store["pods"].items() if p["metadata"].get("deletionTimestamp"))


def sample(controller: Rebalancer, name: str, **labels: str) -> float:
    value = controller.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


async def test_evicts_one_pod_per_owner_then_waits_for_it_to_settle(fake_kube: FakeKube) -> None:
    add_cluster(fake_kube)
    fake_kube.add_pdb("shop", "web", {"app": "web"}, disruptions_allowed=2)
    async with rebalancer(fake_kube) as controller:
        report = await controller.run_once()
        assert report is not None
        assert list(report.results.values()) == ["evicted"]
        assert len(terminating(fake_kube)) == 1
        assert sample(controller, "carbon_rebalancer_evictions_total", result="evicted") == 1
        assert sample(controller, "carbon_rebalancer_intensity_avoided_grams_per_kwh_total") == 300
        moved = [e for e in fake_kube.events if e["reason"] == "CarbonRebalanced"]
        assert len(moved) == 1
        assert "DIRTY 400 g/kWh" in moved[0]["message"]
        assert "GREEN 100 g/kWh" in moved[0]["message"]
        # The watch shows the pod terminating: its owner is settling, nothing more is evicted.
        await until(lambda: any(p.terminating for p in controller.pods.items.values()))
        report = await controller.run_once()
        assert report is not None
        assert report.results == {}
        assert {d.reason for d in report.decisions} == {"owner-settling", "not-running"}
        assert len(terminating(fake_kube)) == 1
        assert fake_kube.store["poddisruptionbudgets"][("shop", "web")]["status"]["disruptionsAllowed"] == 1


async def test_a_pdb_refusal_keeps_the_pod_reports_it_and_a_later_run_retries(fake_kube: FakeKube) -> None:
    add_cluster(fake_kube, replicas=1)
    fake_kube.fail_next(
        429, "/eviction", message="Cannot evict pod as it would violate the pod's disruption budget."
    )
    async with rebalancer(fake_kube) as controller:
        report = await controller.run_once()
        assert report is not None
        assert report.results == {"shop/web-0": "pdb-blocked"}
        assert terminating(fake_kube) == []
        assert sample(controller, "carbon_rebalancer_evictions_total", result="pdb-blocked") == 1
        skipped = [e for e in fake_kube.events if e["reason"] == "CarbonRebalanceSkipped"]
        assert len(skipped) == 1
        assert "429" in skipped[0]["message"]
        report = await controller.run_once()
        assert report is not None
        assert report.results == {"shop/web-0": "evicted"}


async def test_the_api_servers_pdb_check_is_the_last_word(fake_kube: FakeKube) -> None:
    # Our cache says 1 disruption allowed; the API server has already used it: 429, no eviction.
    add_cluster(fake_kube, replicas=1)
    fake_kube.add_pdb("shop", "web", {"app": "web"}, disruptions_allowed=1)
    async with rebalancer(fake_kube) as controller:
        fake_kube.store["poddisruptionbudgets"][("shop", "web")]["status"]["disruptionsAllowed"] = 0
        report = await controller.run_once()
        assert report is not None
        assert report.results == {"shop/web-0": "pdb-blocked"}
        assert terminating(fake_kube) == []


async def test_a_replaced_pod_is_never_evicted_by_name(fake_kube: FakeKube) -> None:
    add_cluster(fake_kube, replicas=1)
    async with rebalancer(fake_kube) as controller:
        # Recreated under the same name (a StatefulSet does that) after our cache saw the old one.
        fake_kube.store["pods"][("shop", "web-0")]["metadata"]["uid"] = "uid-new"
        report = await controller.run_once()
        assert report is not None
        assert report.results == {"shop/web-0": "gone"}
        assert terminating(fake_kube) == []


async def test_dry_run_only_reports(fake_kube: FakeKube) -> None:
    add_cluster(fake_kube, replicas=2, owner="a")
    async with rebalancer(fake_kube, dry_run=True) as controller:
        for _ in range(2):
            report = await controller.run_once()
            assert report is not None
            assert list(report.results.values()) == ["dry-run"]
        assert terminating(fake_kube) == []
        assert fake_kube.count("POST", "/eviction") == 0
        assert sample(controller, "carbon_rebalancer_evictions_total", result="dry-run") == 2
        # One Event per pod and decision, not one per run.
        reasons = sorted(e["reason"] for e in fake_kube.events)
        assert reasons == ["CarbonRebalanceDryRun", "CarbonRebalanceSkipped"]


async def test_a_green_zone_whose_node_goes_not_ready_is_no_target(fake_kube: FakeKube) -> None:
    add_cluster(fake_kube, replicas=1)
    async with rebalancer(fake_kube) as controller:
        fake_kube.add_node("green-1", {"carbon-aware.io/zone": "GREEN"}, ready=False)
        await until(lambda: not controller.nodes.items["green-1"].ready)
        report = await controller.run_once()
        assert report is not None
        assert [d.reason for d in report.decisions] == ["no-greener-zone"]
        fake_kube.add_node("green-1", {}, ready=True)  # Ready again but without its zone label
        await until(lambda: controller.nodes.items["green-1"].ready)
        report = await controller.run_once()
        assert report is not None
        assert [d.reason for d in report.decisions] == ["no-greener-zone"]
        assert sample(controller, "carbon_rebalancer_candidates", reason="no-greener-zone") == 1


async def test_a_namespace_label_opts_pods_in(fake_kube: FakeKube) -> None:
    add_cluster(fake_kube, replicas=1)
    pod = running_pod("web-0", "web")
    pod["metadata"]["annotations"] = {}
    fake_kube.add_object("pods", pod)
    async with rebalancer(fake_kube, dry_run=True) as controller:
        report = await controller.run_once()
        assert report is not None
        assert report.decisions == []
        fake_kube.add_namespace("shop", {"carbon-aware.io/rebalance": "true"})
        await until(lambda: bool(controller.namespaces.items))
        report = await controller.run_once()
        assert report is not None
        assert list(report.results.values()) == ["dry-run"]


async def test_a_feed_failure_breaks_the_sustain_streak(fake_kube: FakeKube) -> None:
    add_cluster(fake_kube, replicas=1)

    class Flaky(StaticFeed):
        down = False

        async def snapshot(self) -> Snapshot | None:
            return None if self.down else await super().snapshot()

    feed = Flaky({"DIRTY": 400.0, "GREEN": 100.0})
    async with rebalancer(fake_kube, dry_run=True, feed=feed) as controller:
        feed.down = True
        report = await controller.run_once()
        assert report is not None
        assert [d.reason for d in report.decisions] == ["no-data"]


async def feed_server(body: bytes) -> TestServer:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/snapshot", handler)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_the_app_gets_ready_leads_and_reports_in_dry_run(
    fake_kube: FakeKube, aiohttp_client: ClientFactory
) -> None:
    add_cluster(fake_kube, replicas=1)
    now = datetime.now(UTC)
    feed = await feed_server(encode_snapshot(snapshot({"DIRTY": 400.0, "GREEN": 100.0}, now)))
    try:
        settings = RebalancerSettings(
            kubeconfig=fake_kube.kubeconfig,
            feed_url=str(feed.make_url("")),
            interval=0.05,
            sustain=0.0,
            leader=LeaderSettings(
                lease_name="carbon-rebalancer",
                lease_namespace="kube-system",
                identity="app-test",
                lease_duration=3.0,
                renew_deadline=2.0,
                retry_period=0.1,
            ),
        )
        http = await aiohttp_client(create_app(settings))
        assert (await http.get("/healthz")).status == 200
        for _ in range(400):
            if (await http.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.02)
        ready = await http.get("/readyz")
        assert ready.status == 200
        assert orjson.loads(await ready.read())["dryRun"] is True
        await until(lambda: any(e["reason"] == "CarbonRebalanceDryRun" for e in fake_kube.events))
        text = await (await http.get("/metrics")).text()
        assert 'carbon_rebalancer_evictions_total{result="dry-run"}' in text
        assert "carbon_rebalancer_leader 1.0" in text
        assert fake_kube.count("POST", "/eviction") == 0
        lease = fake_kube.store["leases"][("kube-system", "carbon-rebalancer")]
        assert lease["spec"]["holderIdentity"] == "app-test"
    finally:
        await feed.close()


async def test_a_failed_eviction_is_counted_and_the_run_goes_on(fake_kube: FakeKube) -> None:
    add_cluster(fake_kube, replicas=1, owner="a")
    fake_kube.add_object("pods", running_pod("b-0", "b"))
    fake_kube.fail_next(500, "/eviction")
    async with rebalancer(fake_kube) as controller:
        report = await controller.run_once()
        assert report is not None
        assert sorted(report.results.values()) == ["error", "evicted"]
        assert sample(controller, "carbon_rebalancer_api_errors_total", operation="evict") == 1
        assert len(terminating(fake_kube)) == 1


async def test_a_restarted_rebalancer_does_not_evict_again(fake_kube: FakeKube) -> None:
    add_cluster(fake_kube, replicas=2)
    async with rebalancer(fake_kube) as first:
        report = await first.run_once()
        assert report is not None
        assert list(report.results.values()) == ["evicted"]
    # A new process: no memory of the eviction, only what the API server shows.
    async with rebalancer(fake_kube) as second:
        report = await second.run_once()
        assert report is not None
        assert report.results == {}
        assert {d.reason for d in report.decisions} == {"owner-settling", "not-running"}
    assert len(terminating(fake_kube)) == 1
