"""Temporal shifting alone: how much a deferrable job saves by waiting, per zone, vs perfect knowledge.

This is the setting of the published bound (docs/evaluation.md: a 1-hour job with 24 h slack saves
~17.5% on average with perfect knowledge). For every sampled arrival hour `a` of every zone:

- run now: the job's mean intensity over [a, a + duration);
- ours: what the product's green-window controller (deferral/controller.py) does with the pod, driven
  through the product's own planner functions (`plan_start`,
  `release_reason`). The controller re-plans a waiting pod every ``replan_interval`` with a fresh
  forecast from the feed, and releases it as soon as the current plan's start is reached. On an hourly
  trace that is: at every hour h from the arrival on, plan from a forecast issued at h with data up to
  hour h-1 only (never the future), and release at the first hour whose plan says "start now" (forced
  at the deadline guard). The job is charged the *actual* intensity of the hour it was released.
  ``replan=False`` keeps the older one-shot model (plan once at arrival, release at that plan's start)
  for comparison: it understates the product, which never stops revising its plan.
- oracle: the minimum actual mean over every start in [a, a + slack].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from bench.evaluation.forecasts import HISTORY_HOURS, FloatArray, Forecaster, planner_best_windows
from bench.evaluation.trace import HOUR, Trace
from carbon_common.interval import Interval
from deferral.annotations import DeferralSpec
from deferral.planner import Forecast, Plan, plan_start, release_reason

IntArray = npt.NDArray[np.intp]


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


@dataclass(frozen=True, slots=True)
class ZoneOutcomes:
    """Per-arrival results of one zone, so that any subset of arrivals (a half year) can be summarised."""

    zone: str
    arrivals: IntArray
    """Arrival hour index into the trace."""
    run_now: FloatArray
    ours: FloatArray
    oracle: FloatArray
    waited: IntArray
    """Hours between arrival and release."""

    def shift(self, mask: npt.NDArray[np.bool_] | None = None) -> ZoneShift:
        """Mean intensities over the arrivals selected by `mask` (all when None)."""
        keep = np.ones(self.arrivals.size, dtype=bool) if mask is None else mask
        jobs = int(keep.sum())
        if jobs == 0:
            raise ValueError(f"zone {self.zone}: no arrival selected")
        return ZoneShift(
            self.zone,
            jobs,
            float(self.run_now[keep].mean()),
            float(self.ours[keep].mean()),
            float(self.oracle[keep].mean()),
        )

    def before(self, trace: Trace, moment: datetime) -> npt.NDArray[np.bool_]:
        """Mask of the arrivals strictly before `moment` (e.g. a train / held-out split)."""
        cut = (moment - trace.start) / HOUR
        return np.asarray(self.arrivals < cut, dtype=bool)


def window_means(series: FloatArray, duration: int) -> FloatArray:
    """means[s] = mean(series[s : s + duration]) for every full window."""
    cum = np.concatenate(([0.0], np.cumsum(series)))
    return np.asarray((cum[duration:] - cum[:-duration]) / duration, dtype=np.float64)


class ForecastIssues:
    """The forecasts of one zone issued at each hour, as planner points; each issue is computed once.

    Every issue has the same horizon (the longest span any pod can still plan), so an issue does not
    depend on which pod asked for it, just as the feed's forecast does not. Issues older than the
    oldest pod still waiting are dropped (`forget_before`) to bound memory over a year.
    """

    def __init__(self, trace: Trace, zone_row: int, horizon: int, forecaster: Forecaster) -> None:
        self.trace, self.row, self.horizon, self.forecaster = trace, zone_row, horizon, forecaster
        self.zone = trace.zones[zone_row]
        self._issued: dict[int, tuple[list[Interval], float]] = {}

    def at(self, hour: int) -> tuple[list[Interval], float]:
        """(points from `hour` on, the forecast of hour `hour` itself) from data up to hour-1 only."""
        cached = self._issued.get(hour)
        if cached is None:
            history = self.trace.values[self.row, max(0, hour - HISTORY_HOURS) : hour]
            origin = self.trace.time_of(hour)
            predicted = self.forecaster(self.row, history, origin, self.horizon)
            points = [
                Interval(origin + i * HOUR, origin + (i + 1) * HOUR, float(v), zone=self.zone)
                for i, v in enumerate(predicted)
            ]
            cached = (points, float(predicted[0]))
            self._issued[hour] = cached
        return cached

    def forget_before(self, hour: int) -> None:
        for old in [h for h in self._issued if h < hour]:
            del self._issued[old]


def plan_at(issues: ForecastIssues, spec: DeferralSpec, hour: int, previous: Plan | None) -> Plan:
    """The plan the controller makes at `hour` from the forecast the feed issues then."""
    points, current = issues.at(hour)
    now = issues.trace.time_of(hour)
    # Points past the deadline cannot be part of any window: skip them (finding windows is quadratic).
    span = [p for p in points if p.start < spec.deadline]
    windows = planner_best_windows(span, spec.duration, now, spec.deadline)
    return plan_start(spec, now, Forecast(windows, current={issues.zone: current}), previous)


def controller_release(
    spec: DeferralSpec, plan_for: Callable[[datetime, Plan | None], Plan], *, replan: bool = True
) -> datetime:
    """When the controller releases a pod, checked on the hour grid from its earliest start: plan at
    every hour before the guard (only once with replan=False), like plan_pending, and release at the
    first hour the product's `release_reason` says so (at the latest, the guard)."""
    plan: Plan | None = None
    now = spec.earliest_start
    while True:
        # Like plan_pending: no plan is made at or past the guard; the releaser takes the pod as it is.
        if plan is None or (replan and now < spec.latest_start):
            plan = plan_for(now, plan)
        if release_reason(spec, plan, now) is not None:
            return now
        now += HOUR


def release_hour(
    issues: ForecastIssues, arrival: int, duration_h: int, slack_h: int, *, replan: bool = True
) -> int:
    """Hour at which the controller releases a job arriving at `arrival` (see the module docstring).

    Planning and release use the product's `plan_start` and `release_reason`; re-planning happens at
    every hour before the guard (the trace's resolution: the controller's default replan_interval of
    15 min re-plans more often, but the hourly data it would see changes once an hour).
    """
    arrived = issues.trace.time_of(arrival)
    duration = timedelta(hours=duration_h)
    spec = DeferralSpec(
        duration=duration, deadline=arrived + timedelta(hours=slack_h) + duration, earliest_start=arrived
    )
    released = controller_release(
        spec,
        lambda now, previous: plan_at(issues, spec, arrival + int((now - arrived) / HOUR), previous),
        replan=replan,
    )
    return arrival + int((released - arrived) / HOUR)


def zone_outcomes(
    trace: Trace,
    zone_row: int,
    duration_h: int,
    slack_h: int,
    forecaster: Forecaster,
    stride: int = 1,
    first_arrival: int = HISTORY_HOURS,
    *,
    replan: bool = True,
) -> ZoneOutcomes:
    if duration_h < 1 or slack_h < 0 or stride < 1:
        raise ValueError(
            f"need duration >= 1 h, slack >= 0 h, stride >= 1; got {duration_h}, {slack_h}, {stride}"
        )
    series = trace.values[zone_row]
    means = window_means(series, duration_h)
    last = trace.hours - duration_h - slack_h
    arrivals = np.arange(first_arrival, last + 1, stride, dtype=np.intp)
    if arrivals.size == 0:
        raise ValueError(
            f"trace of {trace.hours} h too short for {first_arrival} h history + slack {slack_h} h"
        )
    issues = ForecastIssues(trace, zone_row, slack_h + duration_h, forecaster)
    starts = np.empty_like(arrivals)
    oracle = np.empty(arrivals.size, dtype=np.float64)
    for i, a in enumerate(arrivals.tolist()):
        issues.forget_before(a)
        start = release_hour(issues, a, duration_h, slack_h, replan=replan)
        starts[i] = min(max(start, a), a + slack_h)
        oracle[i] = float(means[a : a + slack_h + 1].min())
    return ZoneOutcomes(
        trace.zones[zone_row], arrivals, means[arrivals], means[starts], oracle, starts - arrivals
    )


def evaluate_outcomes(
    trace: Trace,
    duration_h: int,
    slack_h: int,
    forecaster: Forecaster,
    stride: int = 1,
    zones: Sequence[str] | None = None,
    tick: Callable[[], None] | None = None,
    *,
    replan: bool = True,
) -> list[ZoneOutcomes]:
    results = []
    for zone in zones or trace.zones:
        row = trace.zones.index(zone)
        results.append(zone_outcomes(trace, row, duration_h, slack_h, forecaster, stride, replan=replan))
        if tick:
            tick()
    return results


def evaluate(
    trace: Trace,
    duration_h: int,
    slack_h: int,
    forecaster: Forecaster,
    stride: int = 1,
    zones: Sequence[str] | None = None,
    tick: Callable[[], None] | None = None,
    *,
    replan: bool = True,
) -> list[ZoneShift]:
    outcomes = evaluate_outcomes(trace, duration_h, slack_h, forecaster, stride, zones, tick, replan=replan)
    return [o.shift() for o in outcomes]


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
