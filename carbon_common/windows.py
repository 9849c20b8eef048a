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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

# Averages are sums of float products; two windows whose averages differ by less than this are a tie.
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Point:
    """One forecast point: intensity over [start, end)."""

    start: datetime
    end: datetime
    intensity: float


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    intensity: float
    """Time-weighted average intensity over [start, end)."""


def _gap(points: Sequence[Point], start: datetime, end: datetime) -> timedelta:
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


def weighted_average(points: Sequence[Point], start: datetime, end: datetime) -> float:
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


def rolling_windows(
    points: Sequence[Point],
    duration: timedelta,
    start: datetime,
    deadline: datetime,
    *,
    max_gap: timedelta = timedelta(0),
) -> list[Window]:
    """Every candidate window of `duration` starting at or after `start` and ending by `deadline`.

    A window with more than `max_gap` of its time not covered by points is not a candidate.
    """
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    if deadline <= start:
        raise ValueError("deadline must be after start")
    ordered = sorted(points, key=lambda p: p.start)
    candidates = {start} | {p.start for p in ordered if start < p.start}
    windows: list[Window] = []
    for begin in sorted(candidates):
        end = begin + duration
        if end > deadline:
            break
        if _gap(ordered, begin, end) > max_gap:
            continue
        windows.append(Window(begin, end, weighted_average(ordered, begin, end)))
    return windows


def best_windows(
    points: Sequence[Point], duration: timedelta, start: datetime, deadline: datetime
) -> list[Window]:
    """All windows with the minimum time-weighted average (ties included, earliest first).

    Returns [] when no window of `duration` between `start` and `deadline` is covered by the forecast.
    Raises ValueError for a non-positive duration or a deadline not after start.
    """
    windows = rolling_windows(points, duration, start, deadline)
    if not windows:
        return []
    best = min(w.intensity for w in windows)
    tol = TIE_TOLERANCE
    return [w for w in windows if math.isclose(w.intensity, best, rel_tol=tol, abs_tol=tol)]
