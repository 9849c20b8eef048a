"""Temporal shifting alone: how much a deferrable job saves by waiting, per zone, vs perfect knowledge.

This is the setting of the published bound (REFERENCE §9: a 1-hour job with 24 h slack saves ~17.5%
on average with perfect knowledge). For every sampled arrival hour `a` of every zone:

- run now: the job's mean intensity over [a, a + duration);
- ours: the product's planner (`deferral.planner.best_windows` + `plan_start`) chooses the start from a
  forecast made with data up to hour a-1 only, and the job is charged the *actual* intensity then;
- oracle: the minimum actual mean over every start in [a, a + slack].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from bench.evaluation.forecasts import HISTORY_HOURS, FloatArray, Forecaster
from bench.evaluation.trace import HOUR, Trace
from deferral.annotations import DeferralSpec
from deferral.planner import Forecast, Point, best_windows, plan_start


@dataclass(frozen=True, slots=True)
class ZoneShift:
    zone: str
    jobs: int
    run_now: float
    ours: float
    oracle: float

    @property
    def reduction(self) -> float:
        return 1.0 - self.ours / self.run_now

    @property
    def oracle_reduction(self) -> float:
        return 1.0 - self.oracle / self.run_now

    @property
    def fraction_of_oracle(self) -> float | None:
        gap = self.run_now - self.oracle
        return None if gap <= 1e-9 else (self.run_now - self.ours) / gap


def window_means(series: FloatArray, duration: int) -> FloatArray:
    """means[s] = mean(series[s : s + duration]) for every full window."""
    cum = np.concatenate(([0.0], np.cumsum(series)))
    return np.asarray((cum[duration:] - cum[:-duration]) / duration, dtype=np.float64)


def plan_with_product(
    trace: Trace, zone_row: int, arrival: int, duration_h: int, slack_h: int, forecaster: Forecaster
) -> int:
    """Start hour the product's planner picks at `arrival` from a forecast (no future data)."""
    history = trace.values[zone_row, max(0, arrival - HISTORY_HOURS) : arrival]
    horizon = slack_h + duration_h
    now = trace.time_of(arrival)
    predicted = forecaster(zone_row, history, now, horizon)
    zone = trace.zones[zone_row]
    points = [Point(zone, now + i * HOUR, now + (i + 1) * HOUR, float(v)) for i, v in enumerate(predicted)]
    duration = timedelta(hours=duration_h)
    deadline = now + timedelta(hours=slack_h) + duration
    windows = best_windows(points, duration, now, deadline)
    spec = DeferralSpec(duration=duration, deadline=deadline, earliest_start=now)
    plan = plan_start(spec, now, Forecast(windows, current={zone: float(predicted[0])}))
    # The controller releases on the hour grid the trace has; a plan inside an hour runs from that hour.
    return arrival + int((plan.start - now) / HOUR)


def evaluate_zone(
    trace: Trace,
    zone_row: int,
    duration_h: int,
    slack_h: int,
    forecaster: Forecaster,
    stride: int = 1,
    first_arrival: int = HISTORY_HOURS,
) -> ZoneShift:
    series = trace.values[zone_row]
    means = window_means(series, duration_h)
    last = trace.hours - duration_h - slack_h
    arrivals = range(first_arrival, last + 1, stride)
    if len(arrivals) == 0:
        raise ValueError(
            f"trace of {trace.hours} h too short for {first_arrival} h history + slack {slack_h} h"
        )
    now_sum = ours_sum = oracle_sum = 0.0
    for a in arrivals:
        start = plan_with_product(trace, zone_row, a, duration_h, slack_h, forecaster)
        start = min(max(start, a), a + slack_h)
        now_sum += means[a]
        ours_sum += means[start]
        oracle_sum += float(means[a : a + slack_h + 1].min())
    n = len(arrivals)
    return ZoneShift(trace.zones[zone_row], n, now_sum / n, ours_sum / n, oracle_sum / n)


def evaluate(
    trace: Trace,
    duration_h: int,
    slack_h: int,
    forecaster: Forecaster,
    stride: int = 1,
    zones: Sequence[str] | None = None,
    tick: Callable[[], None] | None = None,
) -> list[ZoneShift]:
    results = []
    for zone in zones or trace.zones:
        results.append(evaluate_zone(trace, trace.zones.index(zone), duration_h, slack_h, forecaster, stride))
        if tick:
            tick()
    return results


def summarize(results: Sequence[ZoneShift]) -> dict[str, float | None]:
    """Averages over zones (each zone weighs the same, as in the published per-region averages)."""
    reductions = [r.reduction for r in results]
    oracle = [r.oracle_reduction for r in results]
    mean_red = float(np.mean(reductions))
    mean_oracle = float(np.mean(oracle))
    return {
        "reduction": mean_red,
        "oracle_reduction": mean_oracle,
        "fraction_of_oracle": mean_red / mean_oracle if mean_oracle > 1e-9 else None,
    }
