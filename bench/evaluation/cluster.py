"""Discrete-event simulation of one cluster under one scheduling policy, charged against a real trace.

What it models, and why:

- Feasibility and the default scores are kube-scheduler's own resource plugins at their default weight
  1: NodeResourcesFit (LeastAllocated: mean free fraction of CPU and memory after placing, x100) and
  NodeResourcesBalancedAllocation ((1 - std of the two fractions) x100). The other default plugins score
  every node of a homogeneous cluster alike, so they cannot change a decision and are left out.
- An extender's score s in 0..10 is added as ``s * weight * 10`` (docs/evaluation.md); the highest total wins
  and ties are broken at random, as kube-scheduler does (seeded here).
- A pod that fits nowhere waits in a FIFO queue and is retried whenever capacity frees up.
- Deferred pods hold no capacity while they wait (they are gated), then go through the same scheduler.
  Like the product's controller, a waiting pod is re-planned from a fresh forecast at every hour (the
  trace's resolution) and released as soon as its current plan says "start now" or its guard is due.
  Capacity-aware planning sees what the controller sees: each zone's allocatable CPU, the running pods
  (until their end when their run time is annotated, i.e. deferrable pods; on and on otherwise) and
  the other waiting pods' plans.
- Energy is proportional to requested CPU (``WATTS_PER_CORE``); a pod's emissions are that energy times
  the zone's actual mean intensity over its run. Only ratios between policies matter, so the power
  constant cancels out of every reduction reported.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from bench.evaluation.forecasts import HISTORY_HOURS, FloatArray, Forecaster, planner_best_windows
from bench.evaluation.trace import HOUR, Trace
from bench.evaluation.workload import Node, Pod
from carbon_common.interval import Interval
from deferral.annotations import DeferralSpec
from deferral.capacity import Booking, Capacity
from deferral.planner import (
    Forecast,
    Plan,
    candidate_windows,
    plan_start,
    plan_with_capacity,
    release_reason,
)

WATTS_PER_CORE = 10.0
"""Average server power attributed per requested core (W); cancels out of every reduction."""
PAD_HOURS = 24 * 7
"""Runs that outlast the trace (a long queue at the end) are charged the last day's profile."""

IntArray = npt.NDArray[np.intp]
Placement = Literal["plugins", "extender", "oracle"]
Deferral = Literal["none", "forecast", "capacity", "oracle"]
"""none; forecast: the planner alone (capacity-blind); capacity: the planner knowing free CPU per zone
(deferral.planner.plan_with_capacity, as the controller runs it); oracle: the per-pod greedy oracle."""
Runtimes = Literal["annotated", "all"]
"""Whose run time capacity-aware planning knows: only deferrable pods' (they carry the duration
annotation; what the controller sees), or every pod's."""


class CarbonScorer(Protocol):
    """The extender's policy as the simulation needs it (adapter over extender.policy)."""

    def scores(self, pod: Pod, nodes: Sequence[Node], hour: int) -> Sequence[int]:
        """Extender scores 0..10 for `nodes`, from the carbon data known at the start of `hour`."""
        ...


@dataclass(frozen=True, slots=True)
class PolicySpec:
    name: str
    placement: Placement = "plugins"
    scorer: CarbonScorer | None = None
    weight: int = 0
    deferral: Deferral = "none"
    forecaster: Forecaster | None = None
    label: str = ""
    runtimes: Runtimes = "annotated"
    best_only: bool = False
    """Capacity-aware planning on the /v1/best answer alone (the global ties and each zone's best), without
    the per-zone forecasts the controller reads for its other candidates: an ablation."""


@dataclass(slots=True)
class SimResult:
    policy: str
    pods: int = 0
    energy_kwh: float = 0.0
    grams: float = 0.0
    wait_h: float = 0.0
    deferred: int = 0
    queued: int = 0
    zone_share: dict[str, float] = field(default_factory=dict)

    @property
    def mean_intensity(self) -> float:
        return self.grams / self.energy_kwh if self.energy_kwh > 0 else math.nan


class Cluster:
    """Free capacity per node as arrays, so feasibility and scores are vectorised."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = list(nodes)
        self.cap_cpu = np.array([n.cpu_m for n in nodes], dtype=np.float64)
        self.cap_mem = np.array([n.mem_mi for n in nodes], dtype=np.float64)
        self.free_cpu = self.cap_cpu.copy()
        self.free_mem = self.cap_mem.copy()

    def feasible(self, pod: Pod) -> IntArray:
        return np.flatnonzero((self.free_cpu >= pod.cpu_m) & (self.free_mem >= pod.mem_mi))

    def plugin_scores(self, pod: Pod, idx: IntArray) -> FloatArray:
        cpu_after = (self.free_cpu[idx] - pod.cpu_m) / self.cap_cpu[idx]
        mem_after = (self.free_mem[idx] - pod.mem_mi) / self.cap_mem[idx]
        least = np.floor((cpu_after + mem_after) / 2 * 100)
        balanced = np.floor((1 - np.abs(cpu_after - mem_after) / 2) * 100)
        return np.asarray(least + balanced, dtype=np.float64)

    def take(self, i: int, pod: Pod) -> None:
        self.free_cpu[i] -= pod.cpu_m
        self.free_mem[i] -= pod.mem_mi

    def release(self, i: int, pod: Pod) -> None:
        self.free_cpu[i] += pod.cpu_m
        self.free_mem[i] += pod.mem_mi


class Integrals:
    """Mean actual intensity of a zone over any [t0, t1), from hourly cumulative sums."""

    def __init__(self, trace: Trace) -> None:
        padded = np.concatenate([trace.values, trace.values[:, -24:].repeat(PAD_HOURS // 24, axis=1)], axis=1)
        self.values = padded
        self.cum = np.concatenate([np.zeros((padded.shape[0], 1)), np.cumsum(padded, axis=1)], axis=1)
        self.hours = padded.shape[1]

    def _F(self, rows: IntArray | int, t: float) -> FloatArray:
        t = min(max(t, 0.0), self.hours - 1e-9)
        h = int(t)
        return np.asarray(self.cum[rows, h] + (t - h) * self.values[rows, h], dtype=np.float64)

    def mean(self, rows: IntArray | int, t0: float, t1: float) -> FloatArray:
        return (self._F(rows, t1) - self._F(rows, t0)) / (t1 - t0)


class ForecastCache:
    """Forecast points of every zone per origin hour: all pods arriving in one hour share them."""

    def __init__(self, trace: Trace, forecaster: Forecaster, horizon: int) -> None:
        self.trace, self.forecaster, self.horizon = trace, forecaster, horizon
        self._origin = -1
        self._points: list[Interval] = []
        self._current: dict[str, float] = {}

    def at(self, origin: int) -> tuple[list[Interval], dict[str, float]]:
        if origin != self._origin:
            t0 = self.trace.time_of(origin)
            self._points, self._current = [], {}
            for z, zone in enumerate(self.trace.zones):
                history = self.trace.values[z, max(0, origin - HISTORY_HOURS) : origin]
                values = self.forecaster(z, history, t0, self.horizon)
                self._current[zone] = float(values[0])
                self._points.extend(
                    Interval(t0 + i * HOUR, t0 + (i + 1) * HOUR, float(v), zone=zone)
                    for i, v in enumerate(values)
                )
            self._origin = origin
        return self._points, self._current


def deferral_spec(pod: Pod, trace: Trace) -> DeferralSpec:
    """The pod's deferral annotations as the controller reads them: fixed at arrival."""
    arrived = trace.time_of(0) + timedelta(hours=pod.arrival)
    duration = timedelta(hours=pod.duration)
    return DeferralSpec(
        duration=duration, deadline=arrived + timedelta(hours=pod.slack) + duration, earliest_start=arrived
    )


def plan_deferral(
    pod: Pod,
    now: float,
    trace: Trace,
    integrals: Integrals,
    mode: Deferral,
    forecasts: ForecastCache | None,
    previous: Plan | None = None,
    capacity: Capacity | None = None,
    best_only: bool = False,
) -> Plan | float:
    """The oracle's start (hours), or the plan the product's planner makes at `now` from a forecast."""
    latest = pod.arrival + pod.slack
    if mode == "oracle":
        # Candidate starts: now and every hour boundary up to the latest start (the trace's resolution).
        starts = [now, *range(math.ceil(now), math.floor(latest) + 1)]
        rows = np.arange(len(trace.zones))
        best = min(starts, key=lambda s: float(integrals.mean(rows, s, s + pod.duration).min()))
        return float(best)
    if forecasts is None:
        raise ValueError("forecast deferral needs a forecaster")
    origin = int(now)  # the current hour is forecast too: its reading is not complete yet
    all_points, current = forecasts.at(origin)
    moment = trace.time_of(0) + timedelta(hours=now)
    spec = deferral_spec(pod, trace)
    points = [p for p in all_points if p.start < spec.deadline]
    if capacity is None:
        windows = planner_best_windows(points, spec.duration, moment, spec.deadline)
        return plan_start(spec, moment, Forecast(windows, current=current), previous)
    windows = feed_windows(points, spec.duration, moment, spec.deadline)
    # As deferral.feed: the /v1/best windows, plus every window of every zone's forecast as candidates.
    others = [] if best_only else candidate_windows(points, spec.duration, moment, spec.deadline)
    forecast = Forecast(windows, current=current, candidates=others)
    return plan_with_capacity(spec, moment, forecast, pod.cpu_m, capacity, previous)


def feed_windows(
    points: Sequence[Interval], duration: timedelta, start: datetime, deadline: datetime
) -> list[Interval]:
    """What the feed's /v1/best hands the controller: the global ties plus each zone's best window."""
    by_zone: dict[str, list[Interval]] = {}
    for point in points:
        by_zone.setdefault(point.zone, []).append(point)
    best = [
        found[0]
        for zone_points in by_zone.values()
        if (found := planner_best_windows(zone_points, duration, start, deadline))
    ]
    if not best:
        return []
    lowest = min(w.intensity for w in best)
    return best + [
        w
        for w in planner_best_windows(points, duration, start, deadline)
        if w not in best and w.intensity <= lowest
    ]


def simulate(
    trace: Trace,
    nodes: Sequence[Node],
    pods: Sequence[Pod],
    policy: PolicySpec,
    seed: int = 7,
    tick: Callable[[int], None] | None = None,
) -> SimResult:
    rng = random.Random(seed)
    cluster = Cluster(nodes)
    integrals = Integrals(trace)
    zone_rows = {zone: i for i, zone in enumerate(trace.zones)}
    node_rows = np.array([zone_rows[n.zone] for n in nodes])
    result = SimResult(policy.name, zone_share={z: 0.0 for z in trace.zones})
    events: list[tuple[float, int, int, int, int]] = []  # (time, order, seq, pod, node); order 0 = finish
    seq = 0
    for i, pod in enumerate(pods):
        heapq.heappush(events, (pod.arrival, 1, seq, i, -1))
        seq += 1
    released: set[int] = set()
    deferred: set[int] = set()
    plans: dict[int, Plan] = {}
    forecasts = None
    origin = trace.time_of(0)
    allocatable: dict[str, int] = {}
    for n in nodes:
        allocatable[n.zone] = allocatable.get(n.zone, 0) + n.cpu_m
    running: dict[int, tuple[int, float]] = {}  # pod -> (zone row, start hour), while it runs
    waiting_plans: dict[int, Plan] = {}  # the plans of deferred pods not yet released

    def at(hours: float) -> datetime:
        return origin + timedelta(hours=hours)

    def capacity_view(planning: int) -> Capacity:
        """What the controller knows: running pods (until their end when their run time is known) and
        the releases planned for the other waiting pods."""
        bookings = []
        for j, (row, started) in running.items():
            known = policy.runtimes == "all" or pods[j].slack > 0
            end = at(started + pods[j].duration) if known else None
            bookings.append(Booking(trace.zones[row], pods[j].cpu_m, at(started), end))
        for j, plan in waiting_plans.items():
            if j != planning and plan.basis == "forecast" and plan.zone is not None:
                duration = timedelta(hours=pods[j].duration)
                bookings.append(Booking(plan.zone, pods[j].cpu_m, plan.start, plan.start + duration))
        return Capacity(allocatable, bookings)

    if policy.deferral in ("forecast", "capacity") and policy.forecaster is not None:
        longest = max((p.slack + p.duration for p in pods if p.slack > 0), default=1.0)
        forecasts = ForecastCache(trace, policy.forecaster, math.ceil(longest) + 2)
    queue: list[int] = []

    def gate(i: int, now: float) -> float | None:
        """None: release pod i now; else when to look at it again (its oracle start, or the next
        re-plan: the next hour, or its guard if that comes first)."""
        pod = pods[i]
        guard = pod.arrival + pod.slack
        if now >= guard - 1e-9:  # float hours vs the spec's microseconds: never re-plan at the guard
            return None
        capacity = capacity_view(i) if policy.deferral == "capacity" else None
        decided = plan_deferral(
            pod,
            now,
            trace,
            integrals,
            policy.deferral,
            forecasts,
            plans.get(i),
            capacity,
            policy.best_only,
        )
        if not isinstance(decided, Plan):  # the oracle knows the future: one plan, kept
            if decided <= now + 1e-9:
                return None
            released.add(i)
            return decided
        plans[i] = waiting_plans[i] = decided
        spec = deferral_spec(pod, trace)
        if release_reason(spec, decided, trace.time_of(0) + timedelta(hours=now)) is not None:
            return None
        return min(math.floor(now) + 1.0, guard)

    def place(i: int, now: float) -> bool:
        nonlocal seq
        pod = pods[i]
        idx = cluster.feasible(pod)
        if idx.size == 0:
            return False
        total = cluster.plugin_scores(pod, idx)
        if policy.placement == "extender" and policy.scorer is not None and idx.size > 1:
            # kube-scheduler skips prioritize when only one node is feasible.
            extra = policy.scorer.scores(pod, [nodes[j] for j in idx], min(int(now), trace.hours - 1))
            total = total + np.asarray(extra, dtype=np.float64) * policy.weight * 10
        elif policy.placement == "oracle":
            means = integrals.mean(node_rows[idx], now, now + pod.duration)
            green = means <= means.min() + 1e-9
            idx, total = idx[green], total[green]
        winners = np.flatnonzero(total >= total.max())
        chosen = int(idx[winners[rng.randrange(winners.size)]])
        cluster.take(chosen, pod)
        row = int(node_rows[chosen])
        energy = pod.cpu_m / 1000 * WATTS_PER_CORE * pod.duration / 1000
        result.pods += 1
        result.energy_kwh += energy
        result.grams += energy * float(integrals.mean(row, now, now + pod.duration))
        result.wait_h += now - pod.arrival
        result.zone_share[trace.zones[row]] += energy
        running[i] = (row, now)
        heapq.heappush(events, (now + pod.duration, 0, seq, i, chosen))
        seq += 1
        return True

    done = 0
    while events:
        now, order, _, i, node = heapq.heappop(events)
        if order == 0:
            cluster.release(node, pods[i])
            running.pop(i, None)
            done += 1
            if tick and done % 500 == 0:
                tick(500)
            still: list[int] = []
            for waiting in queue:
                if not place(waiting, now):
                    still.append(waiting)
            queue = still
            continue
        pod = pods[i]
        if pod.slack > 0 and policy.deferral != "none" and i not in released:
            wake = gate(i, now)
            if wake is not None:
                if i not in deferred:
                    deferred.add(i)
                    result.deferred += 1
                heapq.heappush(events, (wake, 1, seq, i, -1))
                seq += 1
                continue
            released.add(i)
            waiting_plans.pop(i, None)
        if not place(i, now):
            result.queued += 1
            queue.append(i)
    if tick:
        tick(done % 500)
    total_energy = sum(result.zone_share.values()) or 1.0
    result.zone_share = {z: e / total_energy for z, e in result.zone_share.items()}
    return result
