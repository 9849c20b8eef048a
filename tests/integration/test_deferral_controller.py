"""The green-window controller against the loopback fake API server and a loopback fake feed.

Real HTTP end to end on 127.0.0.1: kubernetes-asyncio → FakeKube for pods, events and leases, aiohttp →
a fake /v1/best. Times are a few seconds ahead of the real clock so every test stays short.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio import client

from carbon_common.kube import ApiStatusError, WatchStats, list_watch, load_api_client
from carbon_common.leader import LeaderElector, LeaseConfig
from carbon_common.timeutil import format_rfc3339, utcnow
from deferral.controller import ControllerOptions, GreenWindowController
from deferral.feed import FeedClient
from deferral.kubeio import KubePodWriter
from deferral.metrics import DeferralMetrics
from deferral.planner import Plan

if TYPE_CHECKING:
    from tests.fakes.kube_apiserver import FakeKube

pytest_plugins = ["tests.fakes.kube_apiserver"]
pytestmark = pytest.mark.timeout(60)

GATE = "carbon-aware.io/green-window"
P = "carbon-aware.io/"


class FakeFeed:
    """/v1/best with windows chosen by the test; records the queries it got."""

    def __init__(self) -> None:
        self.windows: list[dict[str, Any]] = []
        self.current: dict[str, float] = {"DE": 400.0, "FR": 300.0}
        self.status = 200
        self.queries: list[dict[str, str]] = []
        self.forecasts: dict[str, list[dict[str, Any]]] = {}
        """/v1/forecast/{zone} points per zone; a zone not here answers 404."""

    async def forecast(self, request: web.Request) -> web.Response:
        zone = request.match_info["zone"]
        if zone not in self.forecasts:
            return web.json_response({"error": f"unknown zone {zone!r}"}, status=404)
        return web.json_response({"zone": zone, "forecast": self.forecasts[zone]})

    async def best(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        if self.status != 200:
            return web.json_response({"error": "down"}, status=self.status)
        body: dict[str, Any] = {"generatedAt": format_rfc3339(utcnow()), "windows": self.windows}
        body["current"] = self.current
        if not self.windows:
            body["reason"] = "no forecast covers the span"
        return web.json_response(body)

    def window_at(self, start: datetime, zone: str = "FR", intensity: float = 80.0) -> None:
        self.windows = [
            {
                "zone": zone,
                "start": start.isoformat(),
                "end": (start + timedelta(hours=1)).isoformat(),
                "intensity": intensity,
            }
        ]


ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@pytest.fixture
async def feed(aiohttp_server: ServerFactory) -> tuple[FakeFeed, str]:
    fake = FakeFeed()
    app = web.Application()
    app.router.add_get("/v1/best", fake.best)
    app.router.add_get("/v1/forecast/{zone}", fake.forecast)
    server = await aiohttp_server(app)
    return fake, str(server.make_url("/"))


class Running:
    """One controller replica (pod cache + planner + releaser, optional leader election)."""

    def __init__(self, controller: GreenWindowController, tasks: list[asyncio.Task[None]]) -> None:
        self.controller = controller
        self.tasks = tasks

    @property
    def metrics(self) -> DeferralMetrics:
        return self.controller.metrics

    def releases(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value("carbon_deferral_releases_total", {"reason": reason})
        return value or 0.0

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def start(fake_kube: FakeKube) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    session = aiohttp.ClientSession()
    apis: list[client.ApiClient] = []
    running: list[Running] = []

    async def start_one(
        feed_url: str,
        identity: str | None = None,
        replan: float = 900.0,
        lease_duration: float = 3.0,
        guard_margin: float = 0.0,
        nodes: bool = False,
    ) -> Running:
        api = await load_api_client(fake_kube.kubeconfig)
        apis.append(api)
        metrics = DeferralMetrics()
        elector: LeaderElector | None = None
        if identity is not None:
            elector = LeaderElector(
                api,
                LeaseConfig(
                    namespace="kube-system",
                    identity=identity,
                    lease_duration=lease_duration,
                    renew_deadline=lease_duration * 2 / 3,
                    retry_period=0.2,
                ),
            )
        controller = GreenWindowController(
            writer=KubePodWriter(api, identity or "solo"),
            feed=FeedClient(session, feed_url, metrics, timeout=2.0),
            metrics=metrics,
            is_leader=(lambda: elector.is_leader) if elector else (lambda: True),
            options=ControllerOptions(tick=0.05, replan_interval=replan, guard_margin=guard_margin),
        )
        core = client.CoreV1Api(api)
        tasks = [
            asyncio.create_task(
                list_watch(
                    functools.partial(core.list_pod_for_all_namespaces),
                    controller.on_list,
                    controller.on_event,
                    WatchStats(),
                    transform=controller.transform,
                )
            ),
            asyncio.create_task(controller.run_planner()),
            asyncio.create_task(controller.run_releaser()),
        ]
        if nodes:  # capacity-aware planning, as the app runs it
            node_watch = list_watch(
                functools.partial(core.list_node),
                controller.on_node_list,
                controller.on_node_event,
                WatchStats(),
                transform=controller.node_transform,
            )
            tasks.append(asyncio.create_task(node_watch))
        if elector is not None:
            tasks.append(asyncio.create_task(elector.run()))
        replica = Running(controller, tasks)
        running.append(replica)
        return replica

    yield start_one
    for replica in running:
        await replica.stop()
    for api in apis:
        await api.close()
    await session.close()


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    """Poll until ``check()``. Release counters too: the fake API server applies a PATCH (the gate is
    gone) before the controller has read the response and counted the release."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def gates(fake: FakeKube, name: str) -> list[str]:
    pod = fake.pod("batch", name)
    assert pod is not None
    return [g["name"] for g in pod["spec"].get("schedulingGates") or []]


def deferral_notes(deadline: datetime, duration: str = "1s") -> dict[str, str]:
    return {P + "duration": duration, P + "deadline": format_rfc3339(deadline)}


def events(fake: FakeKube, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in fake.events if e["involvedObject"]["name"] == name and e["reason"] == reason]


async def test_pod_waits_for_its_window_then_is_released_once(
    fake_kube: FakeKube, feed: tuple[FakeFeed, str], start: Callable[..., Awaitable[Running]]
) -> None:
    fake_feed, url = feed
    now = utcnow()
    fake_feed.window_at(now + timedelta(seconds=5))
    fake_kube.add_pod(
        "batch",
        "job-1",
        annotations=deferral_notes(now + timedelta(hours=1)),
        scheduling_gates=["x.io/other", GATE],
    )
    replica = await start(url)

    await eventually(lambda: bool(events(fake_kube, "job-1", "CarbonPlanned")))
    pod = fake_kube.pod("batch", "job-1")
    assert pod is not None
    plan = Plan.from_annotation(pod["metadata"]["annotations"][P + "plan"])
    assert plan.basis == "forecast"
    assert plan.zone == "FR"
    assert (plan.intensity_then, plan.intensity_now) == (80.0, 300.0)
    assert "FR" in events(fake_kube, "job-1", "CarbonPlanned")[0]["message"]
    query = fake_feed.queries[0]
    assert query["duration"] == "1"
    assert query["deadline"] == format_rfc3339(now + timedelta(hours=1))
    assert GATE in gates(fake_kube, "job-1")

    await eventually(lambda: GATE not in gates(fake_kube, "job-1"))
    assert utcnow() >= plan.start
    # Only our gate is removed; someone else's gate stays.
    assert gates(fake_kube, "job-1") == ["x.io/other"]
    await eventually(lambda: replica.releases("window_reached") == 1)
    await eventually(lambda: len(events(fake_kube, "job-1", "CarbonReleased")) == 1)
    avoided = replica.metrics.registry.get_sample_value("carbon_deferral_intensity_avoided_grams_per_kwh_sum")
    assert avoided == 220.0
    await asyncio.sleep(0.3)
    assert replica.releases("window_reached") == 1
    assert fake_kube.count("PATCH", "/pods/job-1") == 2  # the plan annotation, then the release


async def test_feed_down_releases_at_the_deadline_guard(
    fake_kube: FakeKube, feed: tuple[FakeFeed, str], start: Callable[..., Awaitable[Running]]
) -> None:
    fake_feed, url = feed
    fake_feed.status = 503
    now = utcnow().replace(microsecond=0)  # annotations carry whole seconds
    # duration 1 s, deadline in 3 s: the guard is 2 s from now.
    fake_kube.add_pod(
        "batch", "job-2", annotations=deferral_notes(now + timedelta(seconds=3)), scheduling_gates=[GATE]
    )
    replica = await start(url)
    await eventually(lambda: bool(events(fake_kube, "job-2", "CarbonPlanned")))
    assert "no forecast" in events(fake_kube, "job-2", "CarbonPlanned")[0]["message"]
    assert gates(fake_kube, "job-2") == [GATE]
    await eventually(lambda: gates(fake_kube, "job-2") == [])
    assert utcnow() >= now + timedelta(seconds=2)
    await eventually(lambda: replica.releases("deadline_guard") == 1)


async def test_guard_margin_releases_that_much_before_deadline_minus_duration(
    fake_kube: FakeKube, feed: tuple[FakeFeed, str], start: Callable[..., Awaitable[Running]]
) -> None:
    fake_feed, url = feed
    now = utcnow().replace(microsecond=0)
    # A window at +3 s, duration 1 s, deadline at +5 s: without a margin the guard (+4 s) would allow
    # the window; a 2 s margin puts the guard at +2 s, before it, and the guard wins.
    fake_feed.window_at(now + timedelta(seconds=3))
    fake_kube.add_pod(
        "batch", "job-m", annotations=deferral_notes(now + timedelta(seconds=5)), scheduling_gates=[GATE]
    )
    replica = await start(url, guard_margin=2.0)
    await eventually(lambda: gates(fake_kube, "job-m") == [])
    await eventually(lambda: replica.releases("deadline_guard") == 1)
    assert replica.releases("window_reached") == 0
    pod = fake_kube.pod("batch", "job-m")
    assert pod is not None
    plan = Plan.from_annotation(pod["metadata"]["annotations"][P + "plan"])
    assert plan.guard == now + timedelta(seconds=2)


async def test_forecast_vanishing_after_planning_keeps_the_plan_but_never_passes_the_guard(
    fake_kube: FakeKube, feed: tuple[FakeFeed, str], start: Callable[..., Awaitable[Running]]
) -> None:
    fake_feed, url = feed
    now = utcnow()
    # The window lies past the guard (deadline in 3 s, duration 1 s): the guard wins.
    fake_feed.window_at(now + timedelta(seconds=30))
    fake_kube.add_pod(
        "batch", "job-3", annotations=deferral_notes(now + timedelta(seconds=3)), scheduling_gates=[GATE]
    )
    replica = await start(url, replan=0.2)
    await eventually(lambda: bool(fake_feed.queries))
    fake_feed.windows = []
    await eventually(lambda: gates(fake_kube, "job-3") == [])
    await eventually(lambda: replica.releases("deadline_guard") == 1)
    assert replica.releases("window_reached") == 0


async def test_invalid_annotations_release_at_once_with_a_warning(
    fake_kube: FakeKube, feed: tuple[FakeFeed, str], start: Callable[..., Awaitable[Running]]
) -> None:
    _, url = feed
    fake_kube.add_pod(
        "batch",
        "typo",
        annotations={P + "duration": "an hour", P + "max-delay": "6h"},
        scheduling_gates=[GATE],
    )
    # A user-added gate without any annotations must not strand the pod either.
    fake_kube.add_pod("batch", "bare", scheduling_gates=[GATE])
    past = utcnow() - timedelta(minutes=1)
    fake_kube.add_pod("batch", "late", annotations=deferral_notes(past), scheduling_gates=[GATE])
    replica = await start(url)
    await eventually(lambda: all(gates(fake_kube, n) == [] for n in ("typo", "bare", "late")))
    await eventually(lambda: replica.releases("invalid") == 3)
    await eventually(lambda: len(events(fake_kube, "typo", "CarbonInvalid")) == 1)
    warning = events(fake_kube, "typo", "CarbonInvalid")[0]
    assert warning["type"] == "Warning"
    assert "duration" in warning["message"]
    await eventually(lambda: len(events(fake_kube, "late", "CarbonInvalid")) == 1)
    assert "already passed" in events(fake_kube, "late", "CarbonInvalid")[0]["message"]


async def test_restart_keeps_the_persisted_plan_and_releases_once(
    fake_kube: FakeKube, feed: tuple[FakeFeed, str], start: Callable[..., Awaitable[Running]]
) -> None:
    fake_feed, url = feed
    now = utcnow()
    planned = now + timedelta(seconds=6)
    fake_feed.window_at(planned)
    fake_kube.add_pod(
        "batch", "job-4", annotations=deferral_notes(now + timedelta(hours=1)), scheduling_gates=[GATE]
    )
    first = await start(url)
    await eventually(lambda: bool(events(fake_kube, "job-4", "CarbonPlanned")))
    await first.stop()  # "killed" before the window

    # The new instance has no memory and no feed; it must still release at the persisted time,
    # not wait for the guard an hour away.
    fake_feed.status = 503
    second = await start(url)
    await eventually(lambda: gates(fake_kube, "job-4") == [])
    assert utcnow() >= planned - timedelta(seconds=1)
    await eventually(lambda: second.releases("window_reached") == 1)
    assert first.releases("window_reached") == 0
    await eventually(lambda: len(events(fake_kube, "job-4", "CarbonReleased")) == 1)
    assert len(events(fake_kube, "job-4", "CarbonPlanned")) == 1


async def test_two_replicas_release_each_pod_exactly_once(
    fake_kube: FakeKube, feed: tuple[FakeFeed, str], start: Callable[..., Awaitable[Running]]
) -> None:
    fake_feed, url = feed
    now = utcnow()
    fake_feed.window_at(now + timedelta(seconds=2))
    names = [f"job-{i}" for i in range(5)]
    for name in names:
        fake_kube.add_pod(
            "batch", name, annotations=deferral_notes(now + timedelta(hours=1)), scheduling_gates=[GATE]
        )
    a = await start(url, identity="replica-a")
    b = await start(url, identity="replica-b")
    await eventually(lambda: all(gates(fake_kube, n) == [] for n in names))
    await eventually(lambda: all(len(events(fake_kube, n, "CarbonReleased")) == 1 for n in names))
    await asyncio.sleep(0.3)
    total = a.releases("window_reached") + b.releases("window_reached")
    assert total == len(names)
    for name in names:
        assert len(events(fake_kube, name, "CarbonReleased")) == 1
    lease = fake_kube.store["leases"][("kube-system", "carbon-deferral")]
    assert lease["spec"]["holderIdentity"] in ("replica-a", "replica-b")


async def test_stale_release_is_refused_by_the_test_op(fake_kube: FakeKube) -> None:
    """A replica acting on a stale cache cannot remove another gate that moved into our index."""
    fake_kube.add_pod("batch", "job-5", scheduling_gates=[GATE, "x.io/other"])
    api = await load_api_client(fake_kube.kubeconfig)
    try:
        writer = KubePodWriter(api, "t")
        ops = [{"op": "test", "path": "/spec/schedulingGates/0/name", "value": GATE}]
        ops.append({"op": "remove", "path": "/spec/schedulingGates/0"})
        await writer.patch_json("batch", "job-5", ops)
        assert gates(fake_kube, "job-5") == ["x.io/other"]
        with pytest.raises(ApiStatusError) as caught:
            await writer.patch_json("batch", "job-5", ops)
        assert caught.value.status == 422
        assert gates(fake_kube, "job-5") == ["x.io/other"]
    finally:
        await api.close()


async def test_leadership_moves_when_the_leader_steps_down(fake_kube: FakeKube) -> None:
    api = await load_api_client(fake_kube.kubeconfig)
    try:
        config = {
            "namespace": "kube-system",
            "lease_duration": 1.5,
            "renew_deadline": 1.0,
            "retry_period": 0.1,
        }
        a = LeaderElector(api, LeaseConfig(identity="a", **config))  # type: ignore[arg-type]
        b = LeaderElector(api, LeaseConfig(identity="b", **config))  # type: ignore[arg-type]
        task_a = asyncio.create_task(a.run())
        await eventually(lambda: a.is_leader)
        task_b = asyncio.create_task(b.run())
        await asyncio.sleep(0.5)
        assert a.is_leader
        assert not b.is_leader
        task_a.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task_a
        await a.release()
        assert not a.is_leader
        await eventually(lambda: b.is_leader, within=5.0)
        lease = fake_kube.store["leases"][("kube-system", "carbon-deferral")]
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] >= 1
        task_b.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task_b
    finally:
        await api.close()


async def test_leader_that_is_not_renewed_hands_over_after_the_lease_duration(fake_kube: FakeKube) -> None:
    api = await load_api_client(fake_kube.kubeconfig)
    try:
        a = LeaderElector(
            api,
            LeaseConfig(
                "kube-system", identity="a", lease_duration=1.0, renew_deadline=0.6, retry_period=0.1
            ),
        )
        b = LeaderElector(
            api,
            LeaseConfig(
                "kube-system", identity="b", lease_duration=1.0, renew_deadline=0.6, retry_period=0.1
            ),
        )
        assert await a.try_acquire_or_renew()
        # "a" dies without releasing; "b" must wait a full lease duration of unchanged Lease first.
        started = asyncio.get_running_loop().time()
        assert not await b.try_acquire_or_renew()
        task_b = asyncio.create_task(b.run())
        await eventually(lambda: b.is_leader, within=5.0)
        assert asyncio.get_running_loop().time() - started >= 1.0
        task_b.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task_b
    finally:
        await api.close()


async def test_leader_whose_lease_calls_hang_steps_down_before_another_leads(fake_kube: FakeKube) -> None:
    api_a = await load_api_client(fake_kube.kubeconfig)
    api_b = await load_api_client(fake_kube.kubeconfig)
    api_a.set_default_header("X-Replica", "a")
    changes: list[tuple[str, bool]] = []
    config = {"namespace": "kube-system", "lease_duration": 1.5, "renew_deadline": 1.0, "retry_period": 0.1}
    a = LeaderElector(
        api_a,
        LeaseConfig(identity="a", **config),  # type: ignore[arg-type]
        on_change=lambda leading: changes.append(("a", leading)),
    )
    b = LeaderElector(
        api_b,
        LeaseConfig(identity="b", **config),  # type: ignore[arg-type]
        on_change=lambda leading: changes.append(("b", leading)),
    )
    tasks = [asyncio.create_task(a.run())]
    try:
        await eventually(lambda: a.is_leader)
        tasks.append(asyncio.create_task(b.run()))
        # From now on the API server never answers "a" (hung connection, partition): "a" must notice
        # on its own, and before "b" may take over.
        fake_kube.stall(lambda request: request.headers.get("X-Replica") == "a")
        await eventually(lambda: fake_kube.stalled > 0)
        await eventually(lambda: b.is_leader, within=10.0)
        assert not a.is_leader
        assert changes.index(("a", False)) < changes.index(("b", True))
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await api_a.close()
        await api_b.close()


async def test_lease_errors_are_counted_and_a_failing_hook_does_not_stop_the_elector(
    fake_kube: FakeKube,
) -> None:
    api = await load_api_client(fake_kube.kubeconfig)
    errors: list[None] = []

    def broken_hook(_: bool) -> None:
        raise RuntimeError("hook bug")

    elector = LeaderElector(
        api,
        # A generous renew deadline: no attempt times out on a loaded machine, so the count is exact.
        LeaseConfig("kube-system", identity="a", lease_duration=15.0, renew_deadline=10.0, retry_period=0.1),
        on_change=broken_hook,
        on_error=lambda: errors.append(None),
    )
    fake_kube.fail_next(500, "/leases", times=2)
    task = asyncio.create_task(elector.run())
    try:
        await eventually(lambda: elector.is_leader)
        key = ("kube-system", "carbon-deferral")
        first = fake_kube.store["leases"][key]["spec"]["renewTime"]
        # Still renewing after the hook raised: the loop is alive.
        await eventually(lambda: fake_kube.store["leases"][key]["spec"]["renewTime"] != first)
        assert len(errors) == 3  # two API failures, one hook failure
        assert elector.is_leader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.close()


def _windows(start: datetime, **intensities: float) -> list[dict[str, Any]]:
    end = start + timedelta(hours=1)
    return [
        {"zone": zone, "start": start.isoformat(), "end": end.isoformat(), "intensity": value}
        for zone, value in intensities.items()
    ]


def plan_of(fake: FakeKube, name: str) -> Plan | None:
    pod = fake.pod("batch", name)
    raw = (pod or {}).get("metadata", {}).get("annotations", {}).get(P + "plan")
    return Plan.from_annotation(raw) if raw else None


async def test_more_pods_due_in_the_green_zone_than_it_holds_are_spread_to_the_next_greenest(
    fake_kube: FakeKube, feed: tuple[FakeFeed, str], start: Callable[..., Awaitable[Running]]
) -> None:
    fake_feed, url = feed
    now = utcnow()
    # FR (80 g/kWh later) has 2 cores, DE (200 later) 8; both are dirtier now (FR 300, DE 400).
    fake_feed.windows = _windows(now + timedelta(seconds=60), FR=80.0, DE=200.0)
    fake_kube.add_node("fr-1", labels={P + "zone": "FR"}, status={"allocatable": {"cpu": "2"}})
    fake_kube.add_node("de-1", labels={P + "zone": "DE"}, status={"allocatable": {"cpu": "8"}})
    fake_kube.add_node("unlabelled", status={"allocatable": {"cpu": "64"}})
    for i in range(3):
        fake_kube.add_pod(
            "batch",
            f"job-{i}",
            annotations=deferral_notes(now + timedelta(hours=1), "10m"),
            scheduling_gates=[GATE],
            cpu="1",
        )
    replica = await start(url, nodes=True)
    await eventually(lambda: all(plan_of(fake_kube, f"job-{i}") is not None for i in range(3)))
    plans = [plan_of(fake_kube, f"job-{i}") for i in range(3)]
    assert sorted(p.zone or "" for p in plans if p is not None) == ["DE", "FR", "FR"]
    spread = next(p for p in plans if p is not None and p.zone == "DE")
    assert spread.intensity_then == 200.0
    assert spread.capacity is not None
    assert "FR full" in spread.capacity
    assert replica.controller.usage.nodes.keys() == {"fr-1", "de-1"}


async def test_a_running_pod_fills_the_green_zone_and_waiting_would_be_dirtier_than_now(
    fake_kube: FakeKube, feed: tuple[FakeFeed, str], start: Callable[..., Awaitable[Running]]
) -> None:
    fake_feed, url = feed
    now = utcnow()
    # FR is full for good (a running pod without a known run time); the only other window (DE at 350)
    # is dirtier than DE now (300 here): release now instead of waiting.
    fake_feed.windows = _windows(now + timedelta(seconds=60), FR=80.0, DE=350.0)
    fake_feed.current = {"DE": 300.0, "FR": 250.0}
    fake_kube.add_node("fr-1", labels={P + "zone": "FR"}, status={"allocatable": {"cpu": "2"}})
    fake_kube.add_node("de-1", labels={P + "zone": "DE"}, status={"allocatable": {"cpu": "8"}})
    fake_kube.add_pod("web", "server", node_name="fr-1", cpu="1500m")
    fake_kube.add_pod(
        "batch",
        "job-1",
        annotations=deferral_notes(now + timedelta(hours=1), "10m"),
        scheduling_gates=[GATE],
        cpu="1",
    )
    replica = await start(url, nodes=True)
    await eventually(lambda: GATE not in gates(fake_kube, "job-1"))
    await eventually(lambda: replica.releases("window_reached") == 1)
    plan = plan_of(fake_kube, "job-1")
    assert plan is not None
    assert plan.zone == "DE"
    assert plan.capacity is not None
    assert "beats DE now" in plan.capacity


async def test_a_full_green_hour_sends_the_pod_to_the_zones_next_green_hour_from_its_forecast(
    fake_kube: FakeKube, feed: tuple[FakeFeed, str], start: Callable[..., Awaitable[Running]]
) -> None:
    fake_feed, url = feed
    now = utcnow().replace(microsecond=0)
    best = now + timedelta(minutes=10)
    # /v1/best: FR's best window (80) in 10 min. FR's forecast also has 90 in 70 min; DE is at 200.
    fake_feed.windows = _windows(best, FR=80.0, DE=200.0)
    fake_feed.current = {"DE": 400.0, "FR": 300.0}
    fake_feed.forecasts["FR"] = [
        {
            "start": (best + timedelta(hours=h)).isoformat(),
            "end": (best + timedelta(hours=h + 1)).isoformat(),
            "intensity": value,
        }
        for h, value in enumerate([80.0, 90.0, 300.0])
    ]
    fake_kube.add_node("fr-1", labels={P + "zone": "FR"}, status={"allocatable": {"cpu": "1"}})
    fake_kube.add_node("de-1", labels={P + "zone": "DE"}, status={"allocatable": {"cpu": "8"}})
    for i in range(2):
        fake_kube.add_pod(
            "batch",
            f"job-{i}",
            annotations=deferral_notes(now + timedelta(hours=6), "1h"),
            scheduling_gates=[GATE],
            cpu="1",
        )
    await start(url, nodes=True)
    await eventually(lambda: all(plan_of(fake_kube, f"job-{i}") is not None for i in range(2)))
    plans = sorted(
        ((p.start, p.zone, p.intensity_then) for i in range(2) if (p := plan_of(fake_kube, f"job-{i}"))),
        key=lambda t: t[0],
    )
    # One gets FR's best hour; FR has one core, so the other takes FR's next hour (90), not DE (200).
    assert plans == [(best, "FR", 80.0), (best + timedelta(hours=1), "FR", 90.0)]
