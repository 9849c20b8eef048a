"""Deferral on real traces: the product's planner vs running at once vs a perfect-knowledge oracle.

    python bench/deferral_eval.py [--trace FILE.csv] [--duration 1h] [--max-delay 24h]
        [--forecast seasonal|perfect] [--once] [--step 5] [--zones DE,FR]
        [--out DIR]

For every zone and every ``step``-th hour ``a`` of the trace (CSV ``datetime,zone,intensity``; default the
embedded ENTSO-E 2019 trace from carbon_feed.traces) a job of ``duration`` arrives with ``max-delay``:

- now: the job starts at ``a``; it is charged the actual mean intensity of [a, a + duration);
- planner: what the controller does. Every hour from ``a`` on (the controller re-plans a waiting pod
  every ``replan_interval``; the trace changes hourly) ``deferral.planner.plan_start`` runs on
  ``best_windows`` of a forecast issued at that hour, and the job is released at the first hour where
  ``release_reason`` says so (the plan's start is reached, or the deadline guard); it is charged the
  *actual* intensity from then. ``--once`` plans only at ``a`` and keeps that plan (the older model).
  ``seasonal`` forecasts each future hour by the same hour of the last observed day before the issue
  time (a classic naive baseline, no look-ahead); ``perfect`` hands it the actual future (then planner ==
  oracle up to ties, a check of the planner itself);
- oracle: the lowest actual mean over every hourly start in [a, a + max-delay].

Temporal shifting only (one zone per job): spatial choice is the extender's and is measured elsewhere.
Savings are relative to "now"; "captured" is planner savings / oracle savings. Also reported: the
planner's cost per decision (best_windows + plan_start), so a controller's CPU budget can be judged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.evaluation.forecasts import planner_best_windows
from bench.evaluation.temporal import controller_release
from bench.outputs import add_out_argument
from carbon_common.interval import Interval
from carbon_common.timeutil import floor_hour, parse_duration
from carbon_common.windows import weighted_average
from carbon_feed.traces import default_trace_path, load_trace
from deferral.annotations import DeferralSpec
from deferral.planner import Forecast, Plan, plan_start

ROOT = Path(__file__).resolve().parents[1]
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class ZoneResult:
    zone: str
    jobs: int
    now: float
    planner: float
    oracle: float

    @property
    def planner_saving(self) -> float:
        return 1.0 - self.planner / self.now

    @property
    def oracle_saving(self) -> float:
        return 1.0 - self.oracle / self.now

    def as_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "jobs": self.jobs,
            "mean_intensity_now": round(self.now, 2),
            "mean_intensity_planner": round(self.planner, 2),
            "mean_intensity_oracle": round(self.oracle, 2),
            "saving_planner_pct": round(100 * self.planner_saving, 2),
            "saving_oracle_pct": round(100 * self.oracle_saving, 2),
        }


def mean_over(series: dict[datetime, float], start: datetime, duration: timedelta) -> float | None:
    """Actual time-weighted mean over [start, start + duration) on hourly data; None if a gap."""
    end = start + duration
    hours: list[Interval] = []
    hour = floor_hour(start)
    while hour < end:
        value = series.get(hour)
        if value is None:
            return None
        hours.append(Interval(hour, hour + HOUR, value))
        hour += HOUR
    return weighted_average(hours, start, end)


def forecast_points(
    zone: str, series: dict[datetime, float], arrival: datetime, horizon: int, kind: str
) -> list[Interval]:
    points = []
    for lead in range(horizon):
        hour = arrival + lead * HOUR
        if kind == "perfect":
            value = series.get(hour)
        else:
            # Seasonal naive: the same hour on the latest day that was fully observed before `arrival`.
            days_back = lead // 24 + 1
            value = series.get(hour - days_back * 24 * HOUR)
        if value is not None:
            points.append(Interval(hour, hour + HOUR, value, zone=zone))
    return points


def evaluate_zone(
    zone: str,
    series: dict[datetime, float],
    duration: timedelta,
    max_delay: timedelta,
    kind: str,
    step: int,
    timings: list[float],
    replan: bool = True,
) -> ZoneResult | None:
    hours = sorted(series)
    horizon = int((max_delay + duration) / HOUR) + 1
    now_sum = planner_sum = oracle_sum = 0.0
    jobs = 0
    for arrival in hours[48::step]:
        spec = DeferralSpec(
            duration=duration, deadline=arrival + max_delay + duration, earliest_start=arrival
        )
        run_now = mean_over(series, arrival, duration)
        candidates = [
            mean_over(series, arrival + i * HOUR, duration) for i in range(int(max_delay / HOUR) + 1)
        ]
        if run_now is None or any(c is None for c in candidates):
            continue  # the trace has a gap here: skip rather than guess
        oracle = min(c for c in candidates if c is not None)
        start = release_time(zone, series, spec, horizon, kind, timings, replan)
        chosen = mean_over(series, start, duration)
        if chosen is None:
            continue
        now_sum, planner_sum, oracle_sum = now_sum + run_now, planner_sum + chosen, oracle_sum + oracle
        jobs += 1
    if jobs == 0:
        return None
    return ZoneResult(zone, jobs, now_sum / jobs, planner_sum / jobs, oracle_sum / jobs)


def release_time(
    zone: str,
    series: dict[datetime, float],
    spec: DeferralSpec,
    horizon: int,
    kind: str,
    timings: list[float],
    replan: bool = True,
) -> datetime:
    """When the controller releases the job: plan at every hour before the guard (or only at arrival
    with replan=False) and release at the first hour `release_reason` says so. Plans start on the
    trace's hours, so checking on the hour grid releases exactly when the controller would."""

    def plan_for(now: datetime, previous: Plan | None) -> Plan:
        points = forecast_points(zone, series, now, horizon, kind)
        started = time.perf_counter()
        windows = planner_best_windows(points, spec.duration, now, spec.deadline)
        previous_hour = series.get(now - HOUR)
        current = {zone: previous_hour} if previous_hour is not None else {}
        plan = plan_start(spec, now, Forecast(windows, current), previous)
        timings.append(time.perf_counter() - started)
        return plan

    return controller_release(spec, plan_for, replan=replan)


class _NullWriter:
    async def patch_json(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        return None

    async def merge_annotations(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        return None

    async def event(
        self, pod: Mapping[str, str], reason: str, message: str, warning: bool, now: datetime
    ) -> None:
        return None


def controller_tick_cost(pods: int, rounds: int = 20) -> dict[str, float]:
    """CPU cost of the controller's in-memory work at `pods` waiting pods (no API, no feed):
    one full relist, and one release check of every pod (what runs every --tick)."""
    import asyncio
    import tracemalloc

    from carbon_common.timeutil import format_rfc3339, utcnow
    from deferral.controller import GreenWindowController
    from deferral.metrics import DeferralMetrics

    now = utcnow()
    objects = [
        {
            "metadata": {
                "name": f"job-{i}",
                "namespace": "batch",
                "uid": f"uid-{i}",
                "creationTimestamp": format_rfc3339(now),
                "annotations": {
                    "carbon-aware.io/duration": "1h",
                    "carbon-aware.io/deadline": format_rfc3339(now + timedelta(hours=12 + i % 12)),
                },
            },
            "spec": {"schedulingGates": [{"name": "carbon-aware.io/green-window"}], "containers": []},
        }
        for i in range(pods)
    ]

    async def feed(spec: DeferralSpec, at: datetime) -> tuple[Forecast | None, str]:
        return None, "none"

    class Feed:
        best = staticmethod(feed)

    tracemalloc.start()
    sized = GreenWindowController(_NullWriter(), Feed(), DeferralMetrics(), is_leader=lambda: True)
    sized.on_list([sized.transform(o) for o in objects])
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del sized
    controller = GreenWindowController(_NullWriter(), Feed(), DeferralMetrics(), is_leader=lambda: True)
    started = time.perf_counter()
    controller.on_list([controller.transform(o) for o in objects])
    relist = time.perf_counter() - started
    ticks = []
    for _ in range(rounds):
        started = time.perf_counter()
        released = asyncio.run(controller.release_due())
        ticks.append(time.perf_counter() - started)
        assert released == 0
    return {
        "pods": pods,
        "relist_ms": round(1000 * relist, 1),
        "tick_ms_median": round(1000 * statistics.median(ticks), 2),
        "state_mib": round(memory / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=None)
    parser.add_argument("--duration", default="1h")
    parser.add_argument("--max-delay", default="24h")
    parser.add_argument("--forecast", choices=("seasonal", "perfect"), default="seasonal")
    parser.add_argument(
        "--once", action="store_true", help="plan once at arrival instead of re-planning every hour"
    )
    parser.add_argument("--step", type=int, default=5, help="evaluate every N-th arrival hour")
    parser.add_argument("--zones", default="", help="comma list (default: every zone in the trace)")
    add_out_argument(parser, "deferral_eval")
    parser.add_argument(
        "--controller-pods",
        type=int,
        default=0,
        help="instead: measure the controller's per-tick CPU and memory at this many waiting pods",
    )
    args = parser.parse_args(argv)
    if args.controller_pods > 0:
        print(json.dumps(controller_tick_cost(args.controller_pods)))
        return 0
    try:
        duration, max_delay = parse_duration(args.duration), parse_duration(args.max_delay)
    except ValueError as error:
        parser.error(str(error))
    if args.step < 1:
        parser.error("--step must be >= 1")
    trace_path = args.trace or default_trace_path()
    trace = load_trace(trace_path)
    wanted = [z.strip() for z in args.zones.split(",") if z.strip()] or sorted(trace)
    unknown = [z for z in wanted if z not in trace]
    if unknown:
        parser.error(f"zones not in the trace: {', '.join(unknown)}")

    timings: list[float] = []
    results = []
    for zone in wanted:
        result = evaluate_zone(
            zone, dict(trace[zone]), duration, max_delay, args.forecast, args.step, timings, not args.once
        )
        if result is not None:
            results.append(result)
    if not results:
        print("no zone had enough data for this duration and delay", file=sys.stderr)
        return 1

    planner_mean = statistics.fmean(r.planner_saving for r in results)
    oracle_mean = statistics.fmean(r.oracle_saving for r in results)
    report = {
        "trace": str(trace_path),
        "duration_seconds": duration.total_seconds(),
        "max_delay_seconds": max_delay.total_seconds(),
        "forecast": args.forecast,
        "replan": "once at arrival" if args.once else "every hour until released (as the controller)",
        "step_hours": args.step,
        "jobs": sum(r.jobs for r in results),
        "saving_planner_pct_mean_over_zones": round(100 * planner_mean, 2),
        "saving_oracle_pct_mean_over_zones": round(100 * oracle_mean, 2),
        "captured_of_oracle_pct": round(100 * planner_mean / oracle_mean, 1) if oracle_mean > 0 else None,
        "planner_decision_ms_median": round(1000 * statistics.median(timings), 3),
        "planner_decision_ms_p99": round(1000 * sorted(timings)[int(0.99 * (len(timings) - 1))], 3),
        "zones": [r.as_dict() for r in results],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "deferral_eval.json"
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'zone':6} {'jobs':>5} {'now':>7} {'planner':>8} {'oracle':>7} {'save%':>6} {'oracle%':>7}")
    for r in results:
        print(
            f"{r.zone:6} {r.jobs:5d} {r.now:7.1f} {r.planner:8.1f} {r.oracle:7.1f} "
            f"{100 * r.planner_saving:6.1f} {100 * r.oracle_saving:7.1f}"
        )
    print(
        f"mean saving: planner {report['saving_planner_pct_mean_over_zones']}% vs oracle "
        f"{report['saving_oracle_pct_mean_over_zones']}% (captured {report['captured_of_oracle_pct']}%); "
        f"planner decision median {report['planner_decision_ms_median']} ms, "
        f"p99 {report['planner_decision_ms_p99']} ms; wrote {target}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
