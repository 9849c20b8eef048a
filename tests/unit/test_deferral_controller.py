"""Controller policy without an API server: an in-memory writer, a scripted feed and a hand-moved clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from carbon_common.interval import Interval
from carbon_common.kube import ApiStatusError
from carbon_common.timeutil import format_rfc3339
from deferral.annotations import DeferralSpec
from deferral.controller import ControllerOptions, GreenWindowController, gated_pod, release_ops
from deferral.metrics import DeferralMetrics
from deferral.planner import Forecast
from deferral.usage import NodeRoom

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
GATE = "carbon-aware.io/green-window"


class Writer:
    def __init__(self) -> None:
        self.patches: list[tuple[str, list[dict[str, Any]]]] = []
        self.annotations: list[tuple[str, dict[str, str]]] = []
        self.events: list[tuple[str, str, str, bool]] = []
        self.fail_patch: ApiStatusError | None = None

    async def patch_json(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        if self.fail_patch is not None:
            raise self.fail_patch
        self.patches.append((name, ops))

    async def merge_annotations(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self.annotations.append((name, dict(annotations)))

    async def event(
        self, pod: Mapping[str, str], reason: str, message: str, warning: bool, now: datetime
    ) -> None:
        self.events.append((pod["name"], reason, message, warning))


class Feed:
    def __init__(self) -> None:
        self.forecast: Forecast | None = None
        self.calls = 0
        self.explode = False

    async def best(self, spec: DeferralSpec, now: datetime) -> tuple[Forecast | None, str]:
        self.calls += 1
        if self.explode:
            raise RuntimeError("boom")
        return self.forecast, "ok" if self.forecast else "feed down"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def pod(name: str, annotations: dict[str, str], gates: list[str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "batch",
            "uid": f"uid-{name}",
            "creationTimestamp": format_rfc3339(T0),
            "annotations": annotations,
        },
        "spec": {"schedulingGates": [{"name": g} for g in (gates or [GATE])]},
    }


def deferrable(deadline: datetime = T0 + 10 * H) -> dict[str, str]:
    return {"carbon-aware.io/duration": "1h", "carbon-aware.io/deadline": format_rfc3339(deadline)}


def build(leader: bool = True) -> tuple[GreenWindowController, Writer, Feed, Clock]:
    writer, feed, clock = Writer(), Feed(), Clock()
    controller = GreenWindowController(
        writer=writer,
        feed=feed,
        metrics=DeferralMetrics(),
        is_leader=lambda: leader,
        options=ControllerOptions(replan_interval=0.0),
        now=clock,
    )
    return controller, writer, feed, clock


def released(controller: GreenWindowController, reason: str) -> float:
    return (
        controller.metrics.registry.get_sample_value("carbon_deferral_releases_total", {"reason": reason})
        or 0.0
    )


async def test_plans_then_releases_at_the_window_exactly_once() -> None:
    controller, writer, feed, clock = build()
    feed.forecast = Forecast([Interval(T0 + 3 * H, T0 + 4 * H, 50.0, zone="FR")], current={"FR": 250.0})
    controller.on_list([controller.transform(pod("a", deferrable()))])
    assert controller.metrics.registry.get_sample_value("carbon_deferral_pods_waiting") == 1

    assert await controller.plan_pending() == 1
    await controller.flush_events()
    assert [e[1] for e in writer.events] == ["CarbonPlanned"]
    assert "carbon-aware.io/plan" in writer.annotations[0][1]
    # Re-planning to the same window writes nothing new.
    await controller.plan_pending()
    assert len(writer.annotations) == 1

    clock.now = T0 + 3 * H - timedelta(seconds=1)
    assert await controller.release_due() == 0
    clock.now = T0 + 3 * H
    assert await controller.release_due() == 1
    assert writer.patches == [("a", release_ops(controller.pods["uid-a"]))]
    assert await controller.release_due() == 0
    assert released(controller, "window_reached") == 1
    assert controller.metrics.registry.get_sample_value("carbon_deferral_pods_waiting") == 0


async def test_follower_neither_plans_nor_releases() -> None:
    controller, writer, feed, clock = build(leader=False)
    controller.on_list([controller.transform(pod("a", deferrable()))])
    clock.now = T0 + 20 * H
    assert await controller.plan_pending() == 0
    assert await controller.release_due() == 0
    assert feed.calls == 0
    assert writer.patches == []


async def test_guard_releases_without_any_plan_or_feed() -> None:
    controller, _writer, _, clock = build()
    controller.on_list([controller.transform(pod("a", deferrable()))])
    clock.now = T0 + 9 * H
    assert await controller.release_due() == 1
    assert released(controller, "deadline_guard") == 1


async def test_a_planning_bug_releases_the_pod_with_reason_error() -> None:
    controller, writer, feed, _ = build()
    feed.explode = True
    controller.on_list([controller.transform(pod("a", deferrable()))])
    await controller.plan_pending()
    assert released(controller, "error") == 1
    await controller.flush_events()
    assert writer.events[-1][1:2] == ("CarbonReleased",)
    assert writer.events[-1][3] is True  # a Warning


async def test_stale_gate_index_is_retried_until_the_watch_says_gone() -> None:
    controller, writer, _, clock = build()
    controller.on_list([controller.transform(pod("a", deferrable()))])
    writer.fail_patch = ApiStatusError(422, "test failed")
    clock.now = T0 + 9 * H
    assert await controller.release_due() == 0
    assert await controller.release_due() == 0  # retried, never marked done on a guess
    # Another replica had removed the gate: the watch says so and the pod is forgotten, uncounted.
    controller.on_event("MODIFIED", pod("a", deferrable(), gates=["x.io/other"]))
    writer.fail_patch = None
    assert await controller.release_due() == 0
    assert released(controller, "deadline_guard") == 0
    assert writer.events == []


async def test_gate_that_moved_is_released_at_its_new_index() -> None:
    controller, writer, _, clock = build()
    controller.on_list([controller.transform(pod("a", deferrable(), gates=["x.io/other", GATE]))])
    writer.fail_patch = ApiStatusError(422, "test failed")  # "x.io/other" was removed meanwhile
    clock.now = T0 + 9 * H
    assert await controller.release_due() == 0
    controller.on_event("MODIFIED", pod("a", deferrable(), gates=[GATE]))
    writer.fail_patch = None
    assert await controller.release_due() == 1
    assert writer.patches[-1][1][0] == {"op": "test", "path": "/spec/schedulingGates/0/name", "value": GATE}


async def test_transient_api_error_is_retried_next_tick() -> None:
    controller, writer, _, clock = build()
    controller.on_list([controller.transform(pod("a", deferrable()))])
    writer.fail_patch = ApiStatusError(503, "unavailable")
    clock.now = T0 + 9 * H
    assert await controller.release_due() == 0
    writer.fail_patch = None
    assert await controller.release_due() == 1
    assert (
        controller.metrics.registry.get_sample_value(
            "carbon_deferral_api_errors_total", {"operation": "release"}
        )
        == 1
    )


def test_watch_events_track_and_forget_pods() -> None:
    controller, _, _, _ = build()
    controller.on_event("ADDED", pod("a", deferrable()))
    assert "uid-a" in controller.pods
    ungated = pod("a", deferrable(), gates=["other.io/x"])
    controller.on_event("MODIFIED", ungated)
    assert "uid-a" not in controller.pods
    controller.on_event("ADDED", pod("b", deferrable()))
    controller.on_event("DELETED", pod("b", deferrable()))
    assert controller.pods == {}


def test_gated_pod_reads_the_gate_index_and_skips_bad_objects() -> None:
    found = gated_pod(pod("a", {}, gates=["x.io/one", GATE]))
    assert found is not None
    assert found.gate_index == 1
    assert gated_pod(pod("a", {}, gates=["x.io/one"])) is None
    assert gated_pod({"metadata": "x"}) is None
    terminating = pod("a", {})
    terminating["metadata"]["deletionTimestamp"] = format_rfc3339(T0)
    assert gated_pod(terminating) is None
    no_time = pod("a", {})
    no_time["metadata"]["creationTimestamp"] = "yesterday"
    assert gated_pod(no_time) is None


async def test_edited_annotations_move_the_guard() -> None:
    controller, _, _, clock = build()
    controller.on_event("ADDED", pod("a", deferrable(T0 + 10 * H)))
    clock.now = T0 + 5 * H
    assert await controller.release_due() == 0
    # The user pulls the deadline in: the guard (deadline - 1 h) is now in the past.
    controller.on_event("MODIFIED", pod("a", deferrable(T0 + 5 * H + H / 2)))
    assert await controller.release_due() == 1
    assert released(controller, "deadline_guard") == 1


async def test_follower_tracks_the_leaders_latest_plan_from_the_annotation() -> None:
    leader, leader_writer, feed, clock = build()
    follower, _, _, _ = build(leader=False)
    follower.now = clock
    feed.forecast = Forecast([Interval(T0 + 3 * H, T0 + 4 * H, 50.0, zone="FR")])
    leader.on_list([leader.transform(pod("a", deferrable()))])
    await leader.plan_pending()
    feed.forecast = Forecast([Interval(T0 + 2 * H, T0 + 3 * H, 40.0, zone="FR")])
    await leader.plan_pending()
    assert len(leader_writer.annotations) == 2
    for _, written in leader_writer.annotations:  # the watch brings each write to the follower
        follower.on_event("MODIFIED", pod("a", {**deferrable(), **written}))
    # The follower becomes leader with the feed down: it must act on the newest plan (T0 + 2 h).
    follower.is_leader = lambda: True
    clock.now = T0 + 2 * H
    assert await follower.release_due() == 1
    assert released(follower, "window_reached") == 1


async def test_out_of_range_times_release_the_pod_at_once_as_invalid() -> None:
    controller, writer, _, _ = build()
    notes = {
        "carbon-aware.io/duration": "1h",
        "carbon-aware.io/earliest-start": "9999-12-31T23:30:00Z",
        "carbon-aware.io/deadline": "9999-12-31T23:59:59Z",
    }
    controller.on_list([controller.transform(pod("edge", notes))])
    assert await controller.release_due() == 1
    assert released(controller, "invalid") == 1
    await controller.flush_events()
    assert any(e[1] == "CarbonInvalid" and "out of range" in e[2] for e in writer.events)


class SlowWriter(Writer):
    """Patches and Events that wait until the test lets them go; records how many run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.peak = 0
        self.cancelled: list[str] = []
        self.go = asyncio.Event()
        self.events_go = asyncio.Event()
        self.fail_events = False

    async def patch_json(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.go.wait()
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        finally:
            self.in_flight -= 1
        await super().patch_json(namespace, name, ops)

    async def event(
        self, pod: Mapping[str, str], reason: str, message: str, warning: bool, now: datetime
    ) -> None:
        try:
            await self.events_go.wait()
        except asyncio.CancelledError:
            self.cancelled.append("event:" + pod["name"])
            raise
        if self.fail_events:
            raise RuntimeError("events API down")
        await super().event(pod, reason, message, warning, now)


def build_slow(max_releases: int = 16) -> tuple[GreenWindowController, SlowWriter, Clock]:
    writer, clock = SlowWriter(), Clock()
    controller = GreenWindowController(
        writer=writer,
        feed=Feed(),
        metrics=DeferralMetrics(),
        is_leader=lambda: True,
        options=ControllerOptions(max_concurrent_releases=max_releases),
        now=clock,
    )
    names = ("a", "b", "c")
    controller.on_list([controller.transform(pod(n, deferrable(T0 + 2 * H))) for n in names])
    clock.now = T0 + 3 * H / 2  # every guard (deadline - 1h) passed, no deadline: all three are due
    return controller, writer, clock


async def until(check: Callable[[], bool]) -> None:
    """Let the loop run until ``check()``; bounded so a regression fails instead of hanging."""
    for _ in range(10_000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_releases_run_concurrently_up_to_the_limit() -> None:
    controller, writer, _ = build_slow(max_releases=2)
    releasing = asyncio.create_task(controller.release_due())
    await until(lambda: writer.in_flight == 2)
    for _ in range(20):  # the third waits for a slot however long we let it try
        await asyncio.sleep(0)
    assert writer.in_flight == 2
    writer.go.set()
    writer.events_go.set()
    assert await releasing == 3
    assert writer.peak == 2
    assert released(controller, "deadline_guard") == 3


async def test_releases_do_not_wait_for_their_events_and_close_cancels_stuck_ones() -> None:
    controller, writer, _ = build_slow()
    writer.go.set()
    async with asyncio.timeout(5.0):
        assert await controller.release_due() == 3
    assert writer.events == []
    await controller.close(grace=0.05)
    assert sorted(writer.cancelled) == ["event:a", "event:b", "event:c"]


async def test_failed_events_are_logged_and_counted() -> None:
    controller, writer, _ = build_slow()
    writer.go.set()
    writer.events_go.set()
    writer.fail_events = True
    assert await controller.release_due() == 3
    await controller.flush_events()
    errors = controller.metrics.registry.get_sample_value(
        "carbon_deferral_api_errors_total", {"operation": "event"}
    )
    assert errors == 3


async def test_losing_the_lease_cancels_releases_in_flight() -> None:
    controller, writer, _ = build_slow()
    releasing = asyncio.create_task(controller.release_due())
    await until(lambda: writer.in_flight == 3)
    controller.leadership_changed(False)
    async with asyncio.timeout(5.0):
        assert await releasing == 0
    assert sorted(writer.cancelled) == ["a", "b", "c"]
    assert writer.patches == []
    assert released(controller, "deadline_guard") == 0


class HangingFeed(Feed):
    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()

    async def best(self, spec: DeferralSpec, now: datetime) -> tuple[Forecast | None, str]:
        self.calls += 1
        await self.go.wait()
        return None, "feed down"


async def test_losing_the_lease_cancels_plans_in_flight_and_they_are_redone_later() -> None:
    feed, writer = HangingFeed(), Writer()
    controller = GreenWindowController(
        writer=writer,
        feed=feed,
        metrics=DeferralMetrics(),
        is_leader=lambda: True,
        options=ControllerOptions(replan_interval=900.0),
        now=Clock(),
    )
    controller.on_list([controller.transform(pod("a", deferrable()))])
    planning = asyncio.create_task(controller.plan_pending())
    await until(lambda: feed.calls == 1)
    controller.leadership_changed(False)
    async with asyncio.timeout(5.0):
        assert await planning == 1
    assert writer.annotations == []
    # The abandoned plan is not taken for a recent one: the next round asks the feed again.
    feed.go.set()
    assert await controller.plan_pending() == 1
    assert feed.calls == 2


def _cpu_pod(name: str) -> dict[str, Any]:
    obj = pod(name, deferrable())
    obj["spec"]["containers"] = [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]
    return obj


async def test_planning_waits_for_the_first_node_list_when_told() -> None:
    writer, feed, clock = Writer(), Feed(), Clock()
    controller = GreenWindowController(
        writer=writer,
        feed=feed,
        metrics=DeferralMetrics(),
        is_leader=lambda: True,
        options=ControllerOptions(replan_interval=0.0, wait_for_nodes=True),
        now=clock,
    )
    feed.forecast = Forecast([Interval(T0 + 3 * H, T0 + 4 * H, 50.0, zone="FR")], current={"FR": 250.0})
    controller.on_list([controller.transform(pod("a", deferrable()))])
    assert await controller.plan_pending() == 0  # no node list yet: a plan now would ignore capacity
    assert feed.calls == 0
    controller.on_node_list([NodeRoom("n1", "FR", 4000)])
    assert await controller.plan_pending() == 1


async def test_a_released_pod_keeps_its_room_until_it_is_bound() -> None:
    """Between the release and the bind a pod is neither waiting nor running: its booking must hold,
    or the next plans crowd into the room it is about to take (the e2e spread test caught this)."""
    controller, writer, feed, clock = build()
    controller.on_node_list([NodeRoom("green-1", "FR", 1000), NodeRoom("dirty-1", "PL", 8000)])
    feed.forecast = Forecast(
        [Interval(T0 + 3 * H, T0 + 4 * H, 50.0, zone="FR")],
        current={"FR": 250.0, "PL": 600.0},
        candidates=[
            Interval(T0 + 3 * H, T0 + 4 * H, 50.0, zone="FR"),
            Interval(T0 + 5 * H, T0 + 6 * H, 60.0, zone="FR"),
        ],
    )
    controller.on_list([controller.transform(_cpu_pod("a"))])
    await controller.plan_pending()
    clock.now = T0 + 3 * H
    assert await controller.release_due() == 1
    # The watch shows "a" ungated but not yet bound; then "b" arrives and is planned.
    ungated = _cpu_pod("a")
    ungated["spec"]["schedulingGates"] = []
    controller.on_event("MODIFIED", ungated)
    controller.on_event("ADDED", _cpu_pod("b"))
    await controller.plan_pending()
    await controller.flush_events()
    plan_b = [a for name, a in writer.annotations if name == "b"][-1]["carbon-aware.io/plan"]
    assert '"start":"' + format_rfc3339(T0 + 5 * H) in plan_b.replace(" ", ""), plan_b


async def test_a_pod_whose_window_has_come_is_released_not_planned_again() -> None:
    """Re-planned a moment into its window, a run overlaps the releases booked right after it and
    looks as if it no longer fits: the e2e saw such a pod moved to the dirty zone. Its start has come:
    it is the releaser's."""
    controller, _writer, feed, clock = build()
    feed.forecast = Forecast([Interval(T0 + 3 * H, T0 + 4 * H, 50.0, zone="FR")], current={"FR": 250.0})
    controller.on_list([controller.transform(pod("a", deferrable()))])
    assert await controller.plan_pending() == 1
    calls = feed.calls
    clock.now = T0 + 3 * H + timedelta(seconds=1)
    assert await controller.plan_pending() == 0
    assert feed.calls == calls
    assert await controller.release_due() == 1
