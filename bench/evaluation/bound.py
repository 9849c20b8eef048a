"""The capacity-aware optimum the cluster policies are measured against: a linear program, offline.

A per-pod greedy oracle that knows the future is not an optimum once capacity binds: sending every
deferred pod to the greenest zone's greenest hours overflows that zone and pushes later pods into
dirty ones. This module computes a *lower bound on the emissions of any schedule of the workload* on
the cluster's capacity, as a transportation problem over zone-hours solved with SciPy's HiGHS:

- supplies: the pods. A pod runs contiguously for its duration in one zone, starting at any time in
  ``[arrival, arrival + slack]``; the program takes one column per (pod, candidate start, zone) and
  lets a pod be split over columns (a fractional schedule). The candidate starts are the hour
  boundaries its start or end can cross (`candidate_starts`), so that every real start is a mixture of
  two of them with the same per-hour core-hours and cost: real start times are all covered;
  with more deferrable pods than `MAX_EXACT_COLUMNS` allows, those are grouped by the first and
  last hour of their span and their CPU-hours may go to any zone-hour of it, at most the group's total
  request per hour (no contiguity: a looser bound, recorded in `Bound.formulation`);
- sinks: every zone-hour, holding at most the zone's allocatable cores for one hour;
- cost: the zone's actual intensity in that hour, times the energy (``WATTS_PER_CORE`` per core).

Why it is a bound: every schedule the simulation can produce in which pods start within their slack
(each pod in one zone, on one node, contiguous, memory fitting) is a feasible point of this program
and costs the same there (the simulation charges energy times the hourly trace's mean over the run,
which is the sum of the per-hour products). The program drops bin packing, memory and integrality
(a pod may be split over zones and starts), so its optimum is at most the best real schedule: a
policy's share of the bound's reduction is a lower estimate of its share of the true optimum's. A
pod the simulation queued past its latest start (capacity full) left that set; the simulation
reports how many were queued.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from bench.evaluation.workload import Node, Pod

FloatArray = npt.NDArray[np.float64]


MAX_EXACT_COLUMNS = 5_000_000
"""Above this many columns for the deferrable pods' starts, they are grouped instead (a looser bound
that HiGHS solves in seconds). The full evaluation (8 weeks, about 8,000 deferrable pods, 9 zones)
needs about 3.8 million: HiGHS solved such a program in about 7 minutes and 3.3 GiB."""


class BoundError(RuntimeError):
    """The program has no solution (the workload does not fit the cluster) or HiGHS failed."""


@dataclass(frozen=True, slots=True)
class Bound:
    grams: float
    energy_kwh: float
    zone_share: dict[str, float] = field(default_factory=dict)
    """Share of the energy per zone in the optimal solution."""
    variables: int = 0
    constraints: int = 0
    formulation: str = "per-pod starts"
    """"per-pod starts", or "deferrable pods grouped" when that would need too many columns."""

    @property
    def mean_intensity(self) -> float:
        return self.grams / self.energy_kwh if self.energy_kwh > 0 else math.nan


def _overlaps(start: float, end: float) -> tuple[int, FloatArray]:
    """First hour and the hours of [start, end) falling in each hour from it."""
    first, last = math.floor(start), math.ceil(end)
    edges = np.arange(first, last + 1, dtype=np.float64)
    lo = np.maximum(edges[:-1], start)
    hi = np.minimum(edges[1:], end)
    return first, np.maximum(hi - lo, 0.0)


def capacity_bound(
    values: FloatArray,
    zones: Sequence[str],
    nodes: Sequence[Node],
    pods: Sequence[Pod],
    watts_per_core: float,
    max_exact_columns: int = MAX_EXACT_COLUMNS,
) -> Bound:
    """Minimum grams of any schedule of `pods` on `nodes` (see the module docstring).

    `values[z, h]` is zone `zones[z]`'s actual intensity in hour `h` (hours since the pods' time origin);
    it must cover every pod's span. Raises BoundError when no schedule fits.
    """
    nz, hours = values.shape
    if nz != len(zones):
        raise ValueError(f"{nz} rows of intensity for {len(zones)} zones")
    row_of = {zone: i for i, zone in enumerate(zones)}
    cap = np.zeros(nz)
    for node in nodes:
        cap[row_of[node.zone]] += node.cpu_m / 1000
    kwh_per_core_hour = watts_per_core / 1000

    # Sparse triplets: each column is one pod run from one start in one zone, with its core-hours per
    # hour in the capacity rows (zone, hour) and its grams as cost.
    cap_r: list[npt.NDArray[np.intp]] = []  # capacity row key: zone * hours + hour
    cap_c: list[npt.NDArray[np.intp]] = []
    cap_v: list[FloatArray] = []
    cost: list[FloatArray] = []
    eq_rows: list[npt.NDArray[np.intp]] = []
    eq_rhs: list[float] = []
    rate_c: list[npt.NDArray[np.intp]] = []  # grouped form: one rate row per (group, hour), nz columns
    zone_idx = np.arange(nz)
    columns = 0
    deferrable = [pod for pod in pods if pod.slack > 0]
    exact = sum(len(candidate_starts(pod)) for pod in deferrable) * nz <= max_exact_columns
    groups: dict[tuple[int, int], list[float]] = {}  # grouped form: (first, end hour) -> [core-hours, cores]
    for pod in pods:
        cores = pod.cpu_m / 1000
        end = pod.arrival + pod.slack + pod.duration
        if math.ceil(end) > hours:
            raise ValueError(f"{pod.name} runs until hour {end:.1f}, past the {hours} h of intensity")
        if pod.slack > 0 and not exact:
            group = groups.setdefault((math.floor(pod.arrival), math.ceil(end)), [0.0, 0.0])
            group[0] += cores * pod.duration
            group[1] += cores
            continue
        for start in candidate_starts(pod):
            first, share = _overlaps(start, start + pod.duration)
            span = first + np.arange(share.size)
            cap_r.append(np.repeat(zone_idx, share.size) * hours + np.tile(span, nz))
            cap_c.append(columns + np.repeat(zone_idx, share.size))
            cap_v.append(np.tile(cores * share, nz))
            cost.append(values[:, span] @ (cores * share))
            eq_rows.append(np.full(nz, len(eq_rhs)))
            columns += nz
        eq_rhs.append(1.0)
    for (first, last), (work, _) in groups.items():
        # Too many pods for one column per start: the group's core-hours may go to any zone-hour of
        # its span (no contiguity), at most its total request per hour. Looser, still a bound.
        span = np.arange(first, last)
        ids = columns + np.arange(span.size * nz)
        cap_r.append(np.tile(zone_idx, span.size) * hours + np.repeat(span, nz))
        cap_c.append(ids)
        cap_v.append(np.ones(ids.size))
        cost.append(values[np.tile(zone_idx, span.size), np.repeat(span, nz)])
        eq_rows.append(np.full(ids.size, len(eq_rhs)))
        eq_rhs.append(work)  # a group's columns are core-hours
        rate_c.append(ids)
        columns += ids.size
    if columns == 0:
        return Bound(0.0, 0.0, {z: 0.0 for z in zones})

    a_eq = coo_matrix(
        (np.ones(columns), (np.concatenate(eq_rows), np.arange(columns))), shape=(len(eq_rhs), columns)
    ).tocsr()
    used, cap_rows = np.unique(np.concatenate(cap_r), return_inverse=True)
    cols = np.concatenate(cap_c)
    amounts = np.concatenate(cap_v)
    group_cols = np.concatenate(rate_c) if rate_c else np.zeros(0, dtype=np.intp)
    rate_rows = used.size + np.arange(group_cols.size) // nz  # group columns come hour-major, nz each
    a_ub = coo_matrix(
        (
            np.concatenate([amounts, np.ones(group_cols.size)]),
            (np.concatenate([cap_rows, rate_rows]), np.concatenate([cols, group_cols])),
        ),
        shape=(used.size + group_cols.size // nz, columns),
    ).tocsr()
    rate_rhs = np.concatenate(
        [np.full(last - first, g[1]) for (first, last), g in groups.items()] or [np.zeros(0)]
    )
    c = np.concatenate(cost) * kwh_per_core_hour
    solved = linprog(
        c,
        A_ub=a_ub,
        b_ub=np.concatenate([cap[used // hours], rate_rhs]),
        A_eq=a_eq,
        b_eq=np.asarray(eq_rhs),
        bounds=(0, None),
        method="highs",
    )
    if solved.status != 0:
        raise BoundError(f"capacity bound: HiGHS status {solved.status}: {solved.message}")
    x = np.asarray(solved.x, dtype=np.float64)
    core_hours = np.bincount(cols, weights=amounts, minlength=columns) * x
    by_zone = core_hours.reshape(-1, nz).sum(axis=0) * kwh_per_core_hour  # columns come nz at a time
    energy = float(by_zone.sum())
    shares = {z: float(by_zone[i] / energy) if energy > 0 else 0.0 for i, z in enumerate(zones)}
    form = "per-pod starts" if exact else "deferrable pods grouped"
    return Bound(float(solved.fun), energy, shares, columns, a_eq.shape[0] + a_ub.shape[0], form)


def candidate_starts(pod: Pod) -> list[float]:
    """Starts whose mixtures give every start in [arrival, arrival + slack]: the ends of that range and
    every start at which the run's start or end crosses an hour boundary. Between two of these, the
    core-hours a run puts in each hour, and so its cost, are linear in the start, so any start is a
    convex combination of its two neighbours: the program stays a relaxation of real start times."""
    lo, hi = pod.arrival, pod.arrival + pod.slack
    if hi <= lo:
        return [lo]
    frac = pod.duration - math.floor(pod.duration)
    inner = {float(k) for k in range(math.ceil(lo), math.floor(hi) + 1)}
    inner |= {k - frac for k in range(math.ceil(lo + frac), math.floor(hi + frac) + 1)}
    return sorted({lo, hi} | {t for t in inner if lo < t < hi})
