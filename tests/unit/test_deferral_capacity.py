"""Capacity-aware planning (deferral.capacity, deferral.planner.plan_with_capacity): pure, fixed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carbon_common.interval import Interval
from deferral.annotations import parse_spec
from deferral.capacity import Booking, Capacity
from deferral.planner import Forecast, Plan, plan_start, plan_with_capacity

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
P = "carbon-aware.io/"
SPEC = parse_spec({P + "duration": "1h", P + "deadline": (T0 + 10 * H).isoformat()}, created=T0)
"""Run 1 h, finish by T0 + 10 h: the guard is T0 + 9 h."""

# GREEN is greenest at T0 + 3 h, GREEN-2 a little less green at T0 + 5 h; DIRTY is dirty throughout.
WINDOWS = [
    Interval(T0 + 3 * H, T0 + 4 * H, 50.0, zone="GREEN"),
    Interval(T0 + 5 * H, T0 + 6 * H, 80.0, zone="GREEN-2"),
    Interval(T0 + 1 * H, T0 + 2 * H, 400.0, zone="DIRTY"),
]
FORECAST = Forecast(WINDOWS, current={"GREEN": 200.0, "GREEN-2": 150.0, "DIRTY": 500.0})
ROOMY = {"GREEN": 8000, "GREEN-2": 8000, "DIRTY": 8000}


def test_free_is_allocatable_minus_the_peak_booked_in_the_span() -> None:
    capacity = Capacity(
        {"Z": 4000},
        [
            Booking("Z", 1000, T0, T0 + 2 * H),  # ends inside the span
            Booking("Z", 2000, T0 + H, T0 + 3 * H),  # starts inside: peak 3000 at T0 + 1 h
            Booking("Z", 500, T0 + 2 * H, None),  # starts as the first ends: no higher peak
            Booking("OTHER", 4000, T0, None),
        ],
    )
    assert capacity.free("Z", T0, T0 + 3 * H) == 1000
    assert capacity.free("Z", T0 + 2 * H, T0 + 3 * H) == 1500
    assert capacity.free("Z", T0 + 3 * H, T0 + 4 * H) == 3500  # only the open-ended one is left
    assert capacity.free("UNKNOWN", T0, T0 + H) == 0


def test_room_in_the_greenest_window_keeps_the_capacity_blind_plan() -> None:
    plan = plan_with_capacity(SPEC, T0, FORECAST, 1000, Capacity(ROOMY))
    blind = plan_start(SPEC, T0, FORECAST)
    assert (plan.start, plan.zone, plan.intensity_then) == (blind.start, blind.zone, blind.intensity_then)
    assert plan.capacity == "GREEN: 8000m CPU free for 1000m"


def test_a_full_green_zone_moves_the_plan_to_the_next_greenest_window_with_room() -> None:
    # GREEN is full at its green hour (a running pod until T0 + 4 h); GREEN-2 still beats now.
    busy = Capacity(ROOMY, [Booking("GREEN", 7500, T0, T0 + 4 * H)])
    plan = plan_with_capacity(SPEC, T0, FORECAST, 1000, busy)
    assert (plan.start, plan.zone, plan.intensity_then) == (T0 + 5 * H, "GREEN-2", 80.0)
    assert plan.basis == "forecast"
    assert plan.capacity is not None
    assert "GREEN full" in plan.capacity
    assert Plan.from_annotation(plan.to_annotation()) == plan


def test_planned_releases_of_other_pods_fill_a_zone_like_running_pods() -> None:
    # Eight 1-core pods already planned into GREEN's green hour: the ninth goes elsewhere.
    planned = [Booking("GREEN", 1000, T0 + 3 * H, T0 + 4 * H) for _ in range(8)]
    plan = plan_with_capacity(SPEC, T0, FORECAST, 1000, Capacity(ROOMY, planned))
    assert plan.zone == "GREEN-2"


def test_a_window_with_room_that_is_dirtier_than_a_zone_now_is_no_plan_start_now() -> None:
    # GREEN and GREEN-2 are full in their windows; DIRTY has room later at 400, but GREEN-2 has room
    # now at 150: waiting would push the pod into a dirtier zone than running now.
    full = Capacity(
        ROOMY,
        [Booking("GREEN", 8000, T0 + 2 * H, T0 + 7 * H), Booking("GREEN-2", 8000, T0 + 4 * H, T0 + 7 * H)],
    )
    plan = plan_with_capacity(SPEC, T0, FORECAST, 1000, full)
    assert (plan.start, plan.zone, plan.intensity_then) == (T0, "GREEN-2", 150.0)
    assert plan.capacity is not None
    assert "beats GREEN-2 now" in plan.capacity


def test_an_empty_cluster_has_room_everywhere_and_a_full_one_keeps_the_blind_plan() -> None:
    empty = plan_with_capacity(SPEC, T0, FORECAST, 4000, Capacity(ROOMY))
    assert empty.zone == "GREEN"
    assert empty.start == T0 + 3 * H
    # Nothing fits anywhere, ever: the pod would queue wherever it went, so the green plan stands.
    nowhere = Capacity({"GREEN": 500, "GREEN-2": 500, "DIRTY": 500})
    plan = plan_with_capacity(SPEC, T0, FORECAST, 1000, nowhere)
    assert (plan.start, plan.zone) == (T0 + 3 * H, "GREEN")
    assert plan.capacity == "no zone has 1000m CPU free in any window or now"


def test_ties_with_room_go_to_the_earliest_start_then_the_zone_name() -> None:
    tied = Forecast(
        [
            Interval(T0 + 2 * H, T0 + 3 * H, 60.0, zone="B"),
            Interval(T0 + 2 * H, T0 + 3 * H, 60.0, zone="A"),
            Interval(T0 + 1 * H, T0 + 2 * H, 60.0, zone="C"),
            Interval(T0 + 1 * H, T0 + 2 * H, 50.0, zone="D"),
        ],
        current={"A": 300.0, "B": 300.0, "C": 300.0, "D": 300.0},
    )
    capacity = Capacity({"A": 2000, "B": 2000, "C": 2000, "D": 2000}, [Booking("D", 2000, T0, None)])
    assert plan_with_capacity(SPEC, T0, tied, 1000, capacity).zone == "C"  # earliest of the 60s
    capacity = capacity.plus([Booking("C", 2000, T0, None)])
    assert plan_with_capacity(SPEC, T0, tied, 1000, capacity).zone == "A"  # same start: by name


def test_the_deadline_guard_stays_absolute() -> None:
    late = [
        Interval(T0 + 12 * H, T0 + 13 * H, 10.0, zone="GREEN"),
        Interval(T0 + H, T0 + 2 * H, 400.0, zone="DIRTY"),
    ]
    forecast = Forecast(late, current={"GREEN": 200.0, "DIRTY": 500.0})
    # The only green window is past the guard; DIRTY has no room now: never later than the guard.
    capacity = Capacity({"GREEN": 0, "DIRTY": 8000}, [Booking("DIRTY", 8000, T0, T0 + H)])
    plan = plan_with_capacity(SPEC, T0, forecast, 1000, capacity)
    assert plan.start <= SPEC.latest_start
    at_guard = plan_with_capacity(SPEC, SPEC.latest_start, forecast, 1000, capacity)
    assert at_guard.basis == "guard"
    assert at_guard.start == SPEC.latest_start
    assert plan_with_capacity(SPEC, T0, None, 1000, capacity).basis == "no_forecast"
