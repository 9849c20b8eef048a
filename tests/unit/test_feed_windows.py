"""best_windows against windows computed by hand (the Carbon Aware SDK's time-weighted rolling average)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carbon_common.interval import Interval
from carbon_common.windows import best_windows, rolling_windows, weighted_average

T0 = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)


def hourly(values: list[float], start: datetime = T0) -> list[Interval]:
    return [Interval(start + i * H, start + (i + 1) * H, v) for i, v in enumerate(values)]


def test_minimum_two_hour_window() -> None:
    # 2 h windows: 00-02 15, 01-03 25, 02-04 17.5, 03-05 5, 04-06 22.5
    points = hourly([10, 20, 30, 5, 5, 40])
    all_windows = rolling_windows(points, 2 * H, T0, T0 + 6 * H)
    assert [w.intensity for w in all_windows] == [15, 25, 17.5, 5, 22.5]
    best = best_windows(points, 2 * H, T0, T0 + 6 * H)
    assert [(w.start, w.end, w.intensity) for w in best] == [(T0 + 3 * H, T0 + 5 * H, 5.0)]


def test_ties_are_all_returned_earliest_first() -> None:
    # 2 h windows: 7.5, 5, 7.5, 7.5, 5 -> ties at 01:00 and 04:00
    best = best_windows(hourly([10, 5, 5, 10, 5, 5]), 2 * H, T0, T0 + 6 * H)
    assert [w.start for w in best] == [T0 + H, T0 + 4 * H]
    assert all(w.intensity == 5 for w in best)


def test_start_inside_a_point_is_time_weighted() -> None:
    # 00:30-01:30 takes half of 10 and half of 20 -> 15; 01:00-02:00 -> 20
    best = best_windows(hourly([10, 20]), H, T0 + H / 2, T0 + 2 * H)
    assert [(w.start, w.intensity) for w in best] == [(T0 + H / 2, 15.0)]


def test_points_of_different_lengths_weigh_by_overlap() -> None:
    points = [
        Interval(T0, T0 + H / 2, 100),
        Interval(T0 + H / 2, T0 + 1.5 * H, 10),
        Interval(T0 + 1.5 * H, T0 + 2.5 * H, 40),
    ]
    windows = rolling_windows(points, H, T0, T0 + 2.5 * H)
    # 00:00 -> (0.5*100 + 0.5*10) = 55; 00:30 -> 10; 01:30 -> 40
    assert [(w.start, w.intensity) for w in windows] == [(T0, 55.0), (T0 + H / 2, 10.0), (T0 + 1.5 * H, 40.0)]
    assert weighted_average(points, T0 + H, T0 + 2 * H) == pytest.approx(25.0)


def test_window_must_fit_before_deadline() -> None:
    # the cheapest hour (03:00) cannot host a 2 h job ending by 04:00
    best = best_windows(hourly([50, 40, 30, 1, 1]), 2 * H, T0, T0 + 4 * H)
    assert [(w.start, w.intensity) for w in best] == [(T0 + 2 * H, 15.5)]


def test_gaps_in_the_forecast_are_not_bridged() -> None:
    points = [*hourly([10]), *hourly([1, 1], T0 + 2 * H)]  # no data for 01:00-02:00
    windows = rolling_windows(points, 2 * H, T0, T0 + 4 * H)
    assert [w.start for w in windows] == [T0 + 2 * H]


def test_no_coverage_gives_no_window() -> None:
    assert best_windows(hourly([10, 20]), 3 * H, T0, T0 + 5 * H) == []
    assert best_windows([], H, T0, T0 + 5 * H) == []


@pytest.mark.parametrize(
    ("duration", "deadline", "message"),
    [(timedelta(0), T0 + H, "duration"), (-H, T0 + H, "duration"), (H, T0, "deadline")],
)
def test_bad_arguments_raise(duration: timedelta, deadline: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        best_windows(hourly([1]), duration, T0, deadline)


def test_zones_are_windowed_apart_and_each_window_carries_its_zone() -> None:
    # Interleaved zones: a window of A never averages B's points (A alone: 10 then 30; B: 20, 20).
    points = [
        Interval(T0, T0 + H, 10.0, zone="A"),
        Interval(T0, T0 + 2 * H, 20.0, zone="B"),
        Interval(T0 + H, T0 + 2 * H, 30.0, zone="A"),
    ]
    windows = rolling_windows(points, H, T0, T0 + 2 * H)
    assert [(w.zone, w.start, w.intensity) for w in windows] == [
        ("A", T0, 10.0),
        ("A", T0 + H, 30.0),
        ("B", T0, 20.0),
    ]
    tied = best_windows([*points, Interval(T0, T0 + H, 10.0, zone="C")], H, T0, T0 + 2 * H)
    assert [(w.zone, w.start) for w in tied] == [("A", T0), ("C", T0)]  # earliest first, then by zone
