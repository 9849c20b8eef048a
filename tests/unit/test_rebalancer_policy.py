"""The rebalancer's decision: margins, hysteresis, forecast, capacity, cool-down, limits and PDBs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from carbon_common.interval import Interval
from rebalancer.policy import (
    Decision,
    Inputs,
    NodeView,
    Observation,
    PdbView,
    PodView,
    PolicyConfig,
    Resources,
    decide,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=1)
CONFIG = PolicyConfig(
    margin_abs=50.0,
    margin_rel=0.2,
    sustain=timedelta(minutes=30),
    horizon=timedelta(hours=2),
    cooldown=timedelta(hours=1),
    max_per_run=10,
    max_per_namespace=10,
    max_per_owner=1,
)
BIG = Resources(8000, 32 * 2**30)


def node(name: str, zone: str | None, ready: bool = True, room: Resources = BIG) -> NodeView:
    return NodeView(name, zone, ready, allocatable=room)


NODES = [node("dirty-1", "DIRTY"), node("green-1", "GREEN")]


def pod(name: str = "web-1", owner: str = "web", node: str = "dirty-1", **kw: object) -> PodView:
    base = PodView(
        namespace="shop",
        name=name,
        uid=f"uid-{name}",
        node=node,
        created=OLD,
        owner_kind="ReplicaSet",
        owner_name=owner,
        labels={"app": owner},
        requests=Resources(500, 2**28),
        opted_in=True,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def history(dirty: float, green: float, minutes: int = 60, step: int = 5) -> list[Observation]:
    """Constant intensities observed every `step` minutes for the last `minutes`."""
    return [
        Observation(NOW - timedelta(minutes=m), {"DIRTY": dirty, "GREEN": green})
        for m in range(minutes, -1, -step)
    ]


def one(inputs: Inputs, config: PolicyConfig = CONFIG) -> Decision:
    (decision,) = decide(inputs, config)
    return decision


def test_a_sustained_greener_zone_with_room_moves_the_pod_with_its_numbers() -> None:
    decision = one(Inputs(NOW, [pod()], NODES, history=history(400, 100)))
    assert decision.action == "evict"
    assert (decision.zone, decision.intensity, decision.target, decision.target_intensity) == (
        "DIRTY",
        400,
        "GREEN",
        100,
    )
    assert decision.avoided == 300


@pytest.mark.parametrize(
    ("dirty", "green", "action"),
    [
        (400, 351, "skip"),  # 49 g/kWh: below the absolute margin of 50
        (400, 350, "evict"),  # 50 g/kWh and 12.5%: both margins met (inclusive)
        (600, 545, "skip"),  # 55 g/kWh but 9.2%: below the relative margin of 10%
    ],
)
def test_margins_absolute_and_relative_both_apply(dirty: float, green: float, action: str) -> None:
    config = replace(CONFIG, margin_rel=0.1)
    decision = one(Inputs(NOW, [pod()], NODES, history=history(dirty, green)), config)
    assert decision.action == action
    if action == "skip":
        assert decision.reason == "no-greener-zone"


def test_relative_margin_alone_blocks_a_small_share_of_a_dirty_zone() -> None:
    # 60 g/kWh is above the absolute margin but only 10% of 600, below the 20% relative margin.
    decision = one(Inputs(NOW, [pod()], NODES, history=history(600, 540)))
    assert (decision.action, decision.reason) == ("skip", "no-greener-zone")


def test_not_sustained_long_enough_is_hysteresis() -> None:
    # Green only in the last 20 minutes; before that the zones were the other way round.
    obs = history(100, 400, minutes=60)
    obs = [
        Observation(o.at, {"DIRTY": 400, "GREEN": 100}) if o.at >= NOW - timedelta(minutes=20) else o
        for o in obs
    ]
    decision = one(Inputs(NOW, [pod()], NODES, history=obs))
    assert (decision.action, decision.reason, decision.target) == ("skip", "not-sustained", "GREEN")
    assert "1200s, need 1800s" in decision.message


def test_a_crossing_back_breaks_the_streak() -> None:
    obs = history(400, 100, minutes=60)
    obs[-3] = Observation(obs[-3].at, {"DIRTY": 100, "GREEN": 400})  # 10 minutes ago
    assert one(Inputs(NOW, [pod()], NODES, history=obs)).reason == "not-sustained"


def test_a_gap_in_the_readings_breaks_the_streak() -> None:
    obs = history(400, 100, minutes=60)
    obs[-3] = Observation(obs[-3].at, {"DIRTY": 400})
    assert one(Inputs(NOW, [pod()], NODES, history=obs)).reason == "not-sustained"


def test_no_history_is_not_sustained_but_sustain_zero_moves_at_once() -> None:
    obs = [Observation(NOW, {"DIRTY": 400, "GREEN": 100})]
    assert one(Inputs(NOW, [pod()], NODES, history=obs)).reason == "not-sustained"
    config = replace(CONFIG, sustain=timedelta(0))
    assert one(Inputs(NOW, [pod()], NODES, history=obs), config).action == "evict"


def test_a_forecast_reversal_within_the_horizon_keeps_the_pod() -> None:
    hour = timedelta(hours=1)
    forecasts = {
        "DIRTY": [Interval(NOW, NOW + hour, 400), Interval(NOW + hour, NOW + 2 * hour, 90)],
        "GREEN": [Interval(NOW, NOW + hour, 100), Interval(NOW + hour, NOW + 2 * hour, 120)],
    }
    decision = one(Inputs(NOW, [pod()], NODES, history=history(400, 100), forecasts=forecasts))
    assert (decision.action, decision.reason) == ("skip", "forecast-reversal")
    assert "120" in decision.message


def test_a_reversal_beyond_the_horizon_does_not_count() -> None:
    far = NOW + timedelta(hours=3)
    forecasts = {
        "DIRTY": [Interval(far, far + timedelta(hours=1), 90)],
        "GREEN": [Interval(far, far + timedelta(hours=1), 120)],
    }
    decision = one(Inputs(NOW, [pod()], NODES, history=history(400, 100), forecasts=forecasts))
    assert decision.action == "evict"


def test_no_room_in_the_green_zone_keeps_the_pod() -> None:
    nodes = [node("dirty-1", "DIRTY"), node("green-1", "GREEN", room=Resources(400, 2**30))]
    decision = one(Inputs(NOW, [pod()], nodes, history=history(400, 100)))
    assert (decision.action, decision.reason) == ("skip", "no-room")


def test_room_counts_the_pods_already_on_the_node() -> None:
    nodes = [node("dirty-1", "DIRTY"), node("green-1", "GREEN", room=Resources(1000, 2**30))]
    squatter = pod("other", owner="other", node="green-1", opted_in=False, requests=Resources(600, 0))
    decisions = decide(Inputs(NOW, [pod(), squatter], nodes, history=history(400, 100)), CONFIG)
    assert [(d.pod.name, d.reason) for d in decisions] == [("web-1", "no-room")]


def test_one_run_does_not_overfill_the_green_zone() -> None:
    nodes = [node("dirty-1", "DIRTY"), node("green-1", "GREEN", room=Resources(1000, 2**30))]
    pods = [pod("a-1", owner="a"), pod("b-1", owner="b"), pod("c-1", owner="c")]
    decisions = decide(Inputs(NOW, pods, nodes, history=history(400, 100)), CONFIG)
    assert sorted(d.reason for d in decisions) == ["greener-zone", "greener-zone", "no-room"]


@pytest.mark.parametrize(
    "green_node",
    [
        node("green-1", "GREEN", ready=False),
        node("green-1", None),
        replace(node("green-1", "GREEN"), schedulable=False),
    ],
    ids=["not-ready", "unlabelled", "cordoned"],
)
def test_a_zone_without_a_ready_labelled_node_is_no_target(green_node: NodeView) -> None:
    decision = one(Inputs(NOW, [pod()], [node("dirty-1", "DIRTY"), green_node], history=history(400, 100)))
    assert (decision.action, decision.reason) == ("skip", "no-greener-zone")


def test_the_node_selector_is_respected_for_room() -> None:
    decision = one(Inputs(NOW, [pod(node_selector={"disk": "ssd"})], NODES, history=history(400, 100)))
    assert decision.reason == "no-room"


def test_a_young_pod_is_in_cool_down() -> None:
    young = pod(created=NOW - timedelta(minutes=10))
    decision = one(Inputs(NOW, [young], NODES, history=history(400, 100)))
    assert (decision.action, decision.reason) == ("skip", "cooldown")


def test_an_owner_with_a_pod_not_ready_or_terminating_is_settling() -> None:
    pods = [pod("web-1"), pod("web-2", terminating=True)]
    decisions = decide(Inputs(NOW, pods, NODES, history=history(400, 100)), CONFIG)
    assert {d.pod.name: d.reason for d in decisions} == {"web-1": "owner-settling", "web-2": "not-running"}


def test_a_pod_already_evicted_is_not_evicted_twice() -> None:
    decision = one(Inputs(NOW, [pod()], NODES, history=history(400, 100), evicted=frozenset({"uid-web-1"})))
    assert decision.reason == "already-evicted"


@pytest.mark.parametrize(
    ("exclusion"),
    ["bare-pod", "daemonset", "mirror-pod", "local-storage", "job-without-restart"],
)
def test_excluded_kinds_are_reported_and_kept(exclusion: str) -> None:
    decision = one(Inputs(NOW, [pod(exclusion=exclusion)], NODES, history=history(400, 100)))
    assert (decision.action, decision.reason) == ("skip", exclusion)


def test_pods_not_opted_in_get_no_decision() -> None:
    assert decide(Inputs(NOW, [pod(opted_in=False)], NODES, history=history(400, 100)), CONFIG) == []


def test_unknown_zone_and_missing_data_are_skips() -> None:
    lost = one(Inputs(NOW, [pod(node="gone")], NODES, history=history(400, 100)))
    assert lost.reason == "no-zone"
    obs = [Observation(o.at, {"GREEN": 100}) for o in history(400, 100)]
    assert one(Inputs(NOW, [pod()], NODES, history=obs)).reason == "no-data"


def test_rate_per_owner() -> None:
    pods = [pod("web-1"), pod("web-2")]
    decisions = decide(Inputs(NOW, pods, NODES, history=history(400, 100)), replace(CONFIG, max_per_owner=1))
    assert {d.pod.name: d.reason for d in decisions} == {"web-1": "greener-zone", "web-2": "rate-owner"}


def test_rate_per_run_keeps_a_stable_order_for_equal_gains() -> None:
    pods = [pod("web-1"), pod("api-1", owner="api"), replace(pod("db-1", owner="db"), namespace="data")]
    decisions = decide(Inputs(NOW, pods, NODES, history=history(400, 100)), replace(CONFIG, max_per_run=2))
    assert {d.pod.name: d.reason for d in decisions} == {
        "db-1": "greener-zone",
        "api-1": "greener-zone",
        "web-1": "rate-run",
    }


def test_rate_namespace() -> None:
    pods = [pod("web-1"), pod("api-1", owner="api")]
    config = replace(CONFIG, max_per_namespace=1)
    reasons = sorted(d.reason for d in decide(Inputs(NOW, pods, NODES, history=history(400, 100)), config))
    assert reasons == ["greener-zone", "rate-namespace"]


def test_the_greatest_gain_goes_first_under_the_run_limit() -> None:
    nodes = [*NODES, node("dirtier-1", "DIRTIER")]
    obs = [Observation(o.at, {**o.intensities, "DIRTIER": 700}) for o in history(400, 100)]
    pods = [pod("web-1"), pod("api-1", owner="api", node="dirtier-1")]
    decisions = decide(Inputs(NOW, pods, nodes, history=obs), replace(CONFIG, max_per_run=1))
    assert {d.pod.name: d.reason for d in decisions} == {"api-1": "greener-zone", "web-1": "rate-run"}


def test_a_pdb_allows_only_its_disruptions_per_run() -> None:
    pods = [pod(f"web-{i}", owner=f"rs-{i}", labels={"app": "web"}) for i in range(4)]
    pdb = PdbView("shop", "web", {"app": "web"}, (), disruptions_allowed=2)
    decisions = decide(Inputs(NOW, pods, NODES, pdbs=[pdb], history=history(400, 100)), CONFIG)
    assert sorted(d.reason for d in decisions) == ["greener-zone", "greener-zone", "pdb", "pdb"]


def test_a_pdb_with_no_disruption_allowed_keeps_the_pod() -> None:
    pdb = PdbView("shop", "web", {"app": "web"}, (("tier", "NotIn", ("db",)),), disruptions_allowed=0)
    decision = one(Inputs(NOW, [pod()], NODES, pdbs=[pdb], history=history(400, 100)))
    assert (decision.action, decision.reason) == ("skip", "pdb")


def test_a_pdb_of_another_selector_or_namespace_does_not_apply() -> None:
    pdbs = [
        PdbView("shop", "api", {"app": "api"}, (), 0),
        PdbView("other", "web", {"app": "web"}, (), 0),
        PdbView("shop", "x", {}, (("app", "In", ("api",)),), 0),
    ]
    assert one(Inputs(NOW, [pod()], NODES, pdbs=pdbs, history=history(400, 100))).action == "evict"


def test_an_unreadable_pdb_selector_counts_against_the_move() -> None:
    pdb = PdbView("shop", "weird", None, (), 0)
    assert one(Inputs(NOW, [pod()], NODES, pdbs=[pdb], history=history(400, 100))).reason == "pdb"


def test_the_greenest_acceptable_zone_wins() -> None:
    nodes = [*NODES, node("greener-1", "GREENER", room=Resources(100, 0))]
    obs = [Observation(o.at, {**o.intensities, "GREENER": 20}) for o in history(400, 100)]
    decision = one(Inputs(NOW, [pod()], nodes, history=obs))
    assert (decision.action, decision.target) == ("evict", "GREEN")  # GREENER has no room
