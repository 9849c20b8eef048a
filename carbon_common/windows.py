"""Best execution windows over a forecast: pure functions, no I/O.

The method is the GSF Carbon Aware SDK's: slide a window of the job's duration over the forecast, score
each position by the *time-weighted* average intensity of the points it overlaps (a point counts in
proportion to the seconds it shares with the window), and return every position with the minimum score
(ties are all returned, earliest first). Candidate starts are the requested start and every forecast
point start after it, so a window never needs data the forecast does not have: a window that is not
fully covered by forecast points, or that ends after the deadline, is not a candidate.

Checked against the SDK's source (CarbonAware EmissionsDataExtensions.RollingAverage and the forecast
aggregator): it filters points overlapping [dataStartAt, dataEndAt], slides from the first point's own
time by one point duration, averages by overlap / window length and returns all minimum windows. Two
deliberate differences: we start at the requested start itself (the SDK may start at the beginning of
the point that contains it, i.e. in the past), and a window must end by the deadline (the SDK lets it
run to the end of the last overlapping point). For data aligned to the start they agree.

Points and windows are carbon_common.interval.Interval. Points of several zones are handled zone by
zone (a window never mixes zones) and every window carries its zone: the feed passes one zone's series,
the deferral controller and the bench pass every zone's at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from carbon_common.interval import Interval

# Averages are sums of float products; two windows whose averages differ by less than this are a tie.
TIE_TOLERANCE = 1e-9


def fits(duration: timedelta, start: datetime, deadline: datetime) -> bool:
    """True when a run of `duration` (positive) can start at `start` and end by `deadline`."""
    return duration > timedelta(0) and deadline - duration >= start


def _gap(points: Sequence[Interval], start: datetime, end: datetime) -> timedelta:
    """Time in [start, end) that no point covers (points sorted by start)."""
    cursor, gap = start, timedelta(0)
    for point in points:
        if point.end <= cursor:
            continue
        if point.start >= end:
            break
        if point.start > cursor:
            gap += point.start - cursor
        cursor = point.end
        if cursor >= end:
            return gap
    return gap + (end - cursor)


def weighted_average(points: Sequence[Interval], start: datetime, end: datetime) -> float:
    """Time-weighted average of the points over [start, end); the caller checks coverage."""
    total = 0.0
    seconds = 0.0
    for point in points:
        overlap = (min(point.end, end) - max(point.start, start)).total_seconds()
        if overlap > 0:
            total += point.intensity * overlap
            seconds += overlap
    if seconds <= 0:
        raise ValueError("no forecast point overlaps the window")
    return total / seconds


def _zone_windows(
    points: Sequence[Interval],
    zone: str,
    duration: timedelta,
    start: datetime,
    deadline: datetime,
    max_gap: timedelta,
) -> list[Interval]:
    ordered = sorted(points, key=lambda p: p.start)
    candidates = {start} | {p.start for p in ordered if start < p.start}
    windows: list[Interval] = []
    for begin in sorted(candidates):
        end = begin + duration
        if end > deadline:
            break
        if _gap(ordered, begin, end) > max_gap:
            continue
        windows.append(Interval(begin, end, weighted_average(ordered, begin, end), zone=zone))
    return windows


def rolling_windows(
    points: Sequence[Interval],
    duration: timedelta,
    start: datetime,
    deadline: datetime,
    *,
    max_gap: timedelta = timedelta(0),
) -> list[Interval]:
    """Every candidate window of `duration` starting at or after `start` and ending by `deadline`, for
    each zone of the points (zones in the order they first appear, each zone's windows earliest first).

    A window with more than `max_gap` of its time not covered by its zone's points is not a candidate.
    Raises ValueError for a non-positive duration or a deadline not after start.
    """
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    if deadline <= start:
        raise ValueError("deadline must be after start")
    by_zone: dict[str, list[Interval]] = {}
    for point in points:
        by_zone.setdefault(point.zone, []).append(point)
    return [
        window
        for zone, series in by_zone.items()
        for window in _zone_windows(series, zone, duration, start, deadline, max_gap)
    ]


def best_windows(
    points: Sequence[Interval],
    duration: timedelta,
    start: datetime,
    deadline: datetime,
    *,
    max_gap: timedelta = timedelta(0),
    rel_tol: float = TIE_TOLERANCE,
    abs_tol: float = TIE_TOLERANCE,
) -> list[Interval]:
    """All windows (of any zone) with the minimum time-weighted average: ties included, earliest
    first, then by zone. Two averages are a tie when `math.isclose(a, b, rel_tol, abs_tol)`.

    Returns [] when no window of `duration` between `start` and `deadline` is covered by the forecast.
    Raises ValueError for a non-positive duration or a deadline not after start.
    """
    windows = rolling_windows(points, duration, start, deadline, max_gap=max_gap)
    if not windows:
        return []
    best = min(w.intensity for w in windows)
    ties = [w for w in windows if math.isclose(w.intensity, best, rel_tol=rel_tol, abs_tol=abs_tol)]
    return sorted(ties, key=lambda w: (w.start, w.zone))
