"""Planner and annotation rules of deferrable pods: pure functions, fixed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.evaluation.forecasts import planner_best_windows as best_windows
from carbon_common.interval import Interval
from deferral.annotations import (
    DeferralSpec,
    InvalidDeferral,
    parse_spec,
    wants_deferral,
)
from deferral.planner import (
    Forecast,
    Plan,
    candidate_windows,
    plan_start,
    release_reason,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
P = "carbon-aware.io/"


def spec(earliest: datetime | None = None) -> DeferralSpec:
    """Run 1 h, finish by T0 + 10 h (guard T0 + 9 h), optionally not before ``earliest``."""
    notes = {P + "duration": "1h", P + "deadline": (T0 + 10 * H).isoformat()}
    if earliest is not None:
        notes[P + "earliest-start"] = earliest.isoformat()
    return parse_spec(notes, created=T0)


def test_opt_in_needs_duration_and_a_limit() -> None:
    assert wants_deferral({P + "duration": "1h", P + "max-delay": "2h"})
    assert wants_deferral({P + "duration": "x", P + "deadline": "y"})
    assert not wants_deferral({P + "duration": "1h"})
    assert not wants_deferral({P + "deadline": "2026-01-01T00:00:00Z"})
    assert not wants_deferral(None)


def test_max_delay_bounds_the_start_not_the_finish() -> None:
    parsed = parse_spec({P + "duration": "1h", P + "max-delay": "6h"}, created=T0)
    assert parsed.latest_start == T0 + 6 * H
    assert parsed.deadline == T0 + 7 * H
    assert parsed.earliest_start == T0


def test_guard_margin_moves_the_guard_earlier_but_never_before_the_earliest_start() -> None:
    notes = {P + "duration": "1h", P + "max-delay": "6h"}
    parsed = parse_spec(notes, created=T0, margin=timedelta(minutes=10))
    assert parsed.latest_start == T0 + 6 * H - timedelta(minutes=10)
    assert parsed.deadline == T0 + 7 * H  # the pod's own deadline is unchanged
    notes = {P + "duration": "1h", P + "max-delay": "5m"}
    tight = parse_spec(notes, created=T0, margin=timedelta(minutes=10))
    assert tight.latest_start == T0


def test_earliest_start_before_creation_is_creation() -> None:
    parsed = spec(T0 - 5 * H)
    assert parsed.earliest_start == T0


@pytest.mark.parametrize(
    ("notes", "message"),
    [
        ({P + "duration": "1h"}, "deadline or"),
        ({P + "duration": "soon", P + "max-delay": "1h"}, "duration"),
        ({P + "duration": "1h", P + "deadline": "tomorrow"}, "deadline"),
        ({P + "duration": "1h", P + "deadline": "2026-11-23T20:00:00"}, "no UTC offset"),
        ({P + "duration": "1h", P + "deadline": "2026-11-23T20:00:00Z", P + "max-delay": "1h"}, "not both"),
        ({P + "duration": "3h", P + "deadline": "2026-11-23T14:00:00Z"}, "cannot finish"),
        ({P + "duration": "1h", P + "deadline": "2026-11-23T10:00:00Z"}, "cannot finish"),
        (
            {
                P + "duration": "1h",
                P + "deadline": "2026-11-23T20:00:00Z",
                P + "earliest-start": "2026-11-23T19:30:00Z",
            },
            "cannot finish",
        ),
        ({P + "duration": "1h", P + "deadline": "x", P + "earliest-start": "later"}, "earliest-start"),
    ],
)
def test_invalid_annotations_say_what_is_wrong(notes: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidDeferral, match=message):
        parse_spec(notes, created=T0)


def w(hours: float, intensity: float, zone: str = "DE") -> Interval:
    start = T0 + timedelta(hours=hours)
    return Interval(start, start + H, intensity, zone=zone)


def test_greenest_window_is_chosen_with_intensities_then_and_now() -> None:
    forecast = Forecast([w(3, 120.0), w(5, 90.0, "FR")], current={"DE": 300.0, "FR": 250.0})
    plan = plan_start(spec(), T0, forecast)
    assert plan.start == T0 + 5 * H
    assert plan.basis == "forecast"
    assert plan.zone == "FR"
    assert plan.intensity_then == 90.0
    assert plan.intensity_now == 250.0
    assert plan.avoided == 160.0
    assert plan.guard == T0 + 9 * H


def test_ties_go_to_the_earliest_start() -> None:
    forecast = Forecast([w(6, 100.0), w(2, 100.0, "FR"), w(4, 100.0)])
    assert plan_start(spec(), T0, forecast).start == T0 + 2 * H


def test_a_window_that_already_began_means_now() -> None:
    now = T0 + timedelta(minutes=20)
    plan = plan_start(spec(), now, Forecast([w(0, 50.0)]))
    assert plan.start == now
    assert release_reason(spec(), plan, now) == "window_reached"


def test_earliest_start_is_respected() -> None:
    parsed = spec(T0 + 4 * H)
    plan = plan_start(parsed, T0, Forecast([w(1, 50.0)]))
    assert plan.start == T0 + 4 * H


def test_window_past_the_guard_is_ignored() -> None:
    plan = plan_start(spec(), T0, Forecast([w(9.5, 10.0), w(2, 200.0)]))
    assert plan.start == T0 + 2 * H


def test_missing_forecast_waits_for_the_guard() -> None:
    plan = plan_start(spec(), T0, None)
    assert (plan.start, plan.basis) == (T0 + 9 * H, "no_forecast")
    assert release_reason(spec(), plan, T0 + 8 * H) is None
    assert release_reason(spec(), plan, T0 + 9 * H) == "deadline_guard"
    assert plan_start(spec(), T0, Forecast([])).basis == "no_forecast"


def test_missing_forecast_keeps_an_earlier_forecast_plan() -> None:
    earlier = plan_start(spec(), T0, Forecast([w(3, 80.0)]))
    kept = plan_start(spec(), T0 + H, None, previous=earlier)
    assert kept == earlier


def test_guard_wins_over_any_plan() -> None:
    late = Plan(T0 + 20 * H, "forecast", T0 + 20 * H)
    assert release_reason(spec(), late, T0 + 9 * H) == "deadline_guard"
    assert plan_start(spec(), T0 + 9 * H + timedelta(seconds=1), Forecast([w(10, 1.0)])).basis == "guard"


def test_plan_annotation_round_trips_and_rejects_garbage() -> None:
    plan = plan_start(spec(), T0, Forecast([w(3, 80.0)], current={"DE": 200.0}))
    assert Plan.from_annotation(plan.to_annotation()) == plan
    for bad in ["{", "[]", '{"basis": "magic"}', '{"basis": "forecast", "start": "x", "guard": "y"}']:
        with pytest.raises(ValueError, match=r"plan|RFC 3339"):
            Plan.from_annotation(bad)


def test_best_windows_time_weighted_rolling_average_with_ties() -> None:
    hourly = [100.0, 50.0, 150.0, 50.0, 50.0, 300.0]
    points = [Interval(T0 + i * H, T0 + (i + 1) * H, v, zone="DE") for i, v in enumerate(hourly)]
    two_hours = best_windows(points, 2 * H, T0, T0 + 6 * H)
    assert [(x.start, x.intensity) for x in two_hours] == [(T0 + 3 * H, 50.0)]
    # A 30-minute run fits in either 50 g/kWh hour: both ties come back, earliest first.
    half = best_windows(points, H / 2, T0, T0 + 6 * H)
    assert [x.start for x in half] == [T0 + H, T0 + 3 * H, T0 + 4 * H]
    # A mid-hour start is weighted by time: 30 min at 100 + 30 min at 50.
    mid = best_windows(points, H, T0 + H / 2, T0 + 2 * H + H / 2)
    assert mid[0].intensity == 50.0
    assert best_windows(points, H, T0 + H / 2, T0 + H + H / 2)[0].intensity == 75.0


def test_best_windows_skips_spans_without_data() -> None:
    points = [Interval(T0, T0 + H, 10.0, zone="DE")]
    assert best_windows(points, 2 * H, T0, T0 + 5 * H) == []


def test_candidate_windows_of_every_zone_and_none_when_the_run_cannot_fit() -> None:
    points = [
        Interval(T0, T0 + H, 10.0, zone="DE"),
        Interval(T0 + H, T0 + 2 * H, 30.0, zone="DE"),
        Interval(T0, T0 + 2 * H, 20.0, zone="FR"),
    ]
    found = candidate_windows(points, H, T0, T0 + 2 * H)
    assert [(x.zone, x.start, x.intensity) for x in found] == [
        ("DE", T0, 10.0),
        ("DE", T0 + H, 30.0),
        ("FR", T0, 20.0),  # candidate starts are the start and each of the zone's point starts
    ]
    # A deadline already passed, or too close for the run, is no window (not an error) for the planner.
    assert candidate_windows(points, 2 * H, T0 + H, T0 + 2 * H) == []
    assert candidate_windows(points, H, T0 + 3 * H, T0 + 2 * H) == []


# docs/fuzz.md finding 4: a list or an object (not a string) raised AttributeError, not InvalidDeferral.
@pytest.mark.parametrize("key", ["duration", "max-delay", "deadline", "earliest-start"])
@pytest.mark.parametrize("value", [["1h"], {"h": 1}, 3600, None, True])
def test_an_annotation_value_that_is_not_a_string_is_invalid(key: str, value: object) -> None:
    notes: dict[str, object] = {P + "duration": "1h", P + "max-delay": "6h", P + key: value}
    with pytest.raises(InvalidDeferral, match=f"{P}{key}: an annotation value must be a string"):
        parse_spec(notes, created=T0)  # type: ignore[arg-type]  # what a direct caller can send
