"""The capacity-aware optimum the cluster policies are measured against: a linear program, offline.

A per-pod greedy oracle that knows the future is not an optimum once capacity binds: sending every
deferred pod to the greenest zone's greenest hours overflows that zone and pushes later pods into
dirty ones. This module computes a *lower bound on the emissions of any schedule of the workload* on
the cluster's capacity, as a transportation problem over zone-hours solved with SciPy's HiGHS:

- supplies: the CPU-hours of the pods. A pod that must start at once brings its CPU-hours to the hours
  it runs in (its zone is free). Deferrable pods are grouped by (first hour, last hour) of the span
  they may run in, ``[arrival, arrival + slack + duration)``; a group's CPU-hours may go to any zone in
  any hour of that span, at most the group's total CPU request per hour (no pod runs faster than its
  request allows);
- sinks: every zone-hour, holding at most the zone's allocatable cores for one hour;
- cost: the zone's actual intensity in that hour, times the energy (``WATTS_PER_CORE`` per core).

Why it is a bound: every schedule the simulation can produce in which pods start within their slack
(each pod in one zone, on one node, contiguous, memory fitting) is a feasible point of this program
and costs the same there (the simulation charges energy times the hourly trace's mean over the run,
which is the sum of the per-hour products). The program drops bin packing, memory, contiguity and the
one-zone rule, so its optimum is at most the best real schedule: a policy's share of the bound's
reduction is a lower estimate of its share of the true optimum's. A pod the simulation queued past its
latest start (capacity full) left that set; the simulation reports how many were queued.
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

    fixed = np.zeros(hours)  # core-hours per hour of the pods that start at once
    groups: dict[tuple[int, int], list[float]] = {}  # (first, end hour) -> [core-hours, cores]
    for pod in pods:
        cores = pod.cpu_m / 1000
        end = pod.arrival + pod.slack + pod.duration
        if math.ceil(end) > hours:
            raise ValueError(f"{pod.name} runs until hour {end:.1f}, past the {hours} h of intensity")
        if pod.slack <= 0:
            first, share = _overlaps(pod.arrival, end)
            fixed[first : first + share.size] += cores * share
        else:
            group = groups.setdefault((math.floor(pod.arrival), math.ceil(end)), [0.0, 0.0])
            group[0] += cores * pod.duration
            group[1] += cores

    # Columns: one per (supply, zone, hour). Supplies: each busy hour of fixed work, then each group.
    busy = np.flatnonzero(fixed > 0)
    col_zone: list[npt.NDArray[np.intp]] = []
    col_hour: list[npt.NDArray[np.intp]] = []
    eq_rows: list[npt.NDArray[np.intp]] = []
    eq_rhs: list[float] = []
    ub_rows: list[npt.NDArray[np.intp]] = []  # rate rows of the groups
    ub_rhs: list[float] = []
    zone_idx = np.arange(nz)
    # Fixed work: every zone of its own hour, all of it placed.
    if busy.size:
        col_zone.append(np.tile(zone_idx, busy.size))
        col_hour.append(np.repeat(busy, nz))
        eq_rows.append(np.repeat(np.arange(busy.size), nz))
        eq_rhs.extend(fixed[busy].tolist())
    for (first, last), (work, cores) in groups.items():
        span = np.arange(first, last)
        col_zone.append(np.tile(zone_idx, span.size))
        col_hour.append(np.repeat(span, nz))
        eq_rows.append(np.full(span.size * nz, len(eq_rhs)))
        eq_rhs.append(work)
        ub_rows.append(np.repeat(np.arange(len(ub_rhs), len(ub_rhs) + span.size), nz))
        ub_rhs.extend([cores] * span.size)
    if not col_zone:
        return Bound(0.0, 0.0, {z: 0.0 for z in zones})
    zone_of = np.concatenate(col_zone)
    hour_of = np.concatenate(col_hour)
    n = zone_of.size
    fixed_cols = busy.size * nz
    cols = np.arange(n)

    a_eq = coo_matrix((np.ones(n), (np.concatenate(eq_rows), cols)), shape=(len(eq_rhs), n)).tocsr()
    # Capacity rows (zone, hour) for every column, then the groups' rate rows (group columns only).
    cap_rows = zone_of * hours + hour_of
    used, cap_row_index = np.unique(cap_rows, return_inverse=True)
    rate_rows = np.concatenate(ub_rows) + used.size if ub_rows else np.zeros(0, dtype=np.intp)
    a_ub = coo_matrix(
        (
            np.ones(n + rate_rows.size),
            (np.concatenate([cap_row_index, rate_rows]), np.concatenate([cols, cols[fixed_cols:]])),
        ),
        shape=(used.size + len(ub_rhs), n),
    ).tocsr()
    b_ub = np.concatenate([cap[used // hours], np.asarray(ub_rhs, dtype=np.float64)])
    cost = values[zone_of, hour_of] * kwh_per_core_hour
    solved = linprog(
        cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.asarray(eq_rhs), bounds=(0, None), method="highs"
    )
    if solved.status != 0:
        raise BoundError(f"capacity bound: HiGHS status {solved.status}: {solved.message}")
    x = np.asarray(solved.x, dtype=np.float64)
    energy = float(x.sum()) * kwh_per_core_hour
    by_zone = np.bincount(zone_of, weights=x, minlength=nz) * kwh_per_core_hour
    shares = {z: float(by_zone[i] / energy) if energy > 0 else 0.0 for i, z in enumerate(zones)}
    return Bound(float(solved.fun), energy, shares, n, a_eq.shape[0] + a_ub.shape[0])
