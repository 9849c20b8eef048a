"""A seeded synthetic workload and cluster: what the policies are compared on.

Arrivals are a non-homogeneous Poisson process with a daily profile (busier in European working hours),
durations are log-normal (most pods are short, a few run for many hours, as in published cluster
traces), requests come from a small menu of common sizes, and a fraction of pods are deferrable with a
slack (how long they may wait before starting, on top of running).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Final

# (millicores, MiB) sizes and their weights: mostly small pods, a tail of big batch pods.
POD_SIZES: Final = ((250, 512), (500, 1024), (1000, 2048), (2000, 4096), (4000, 8192))
POD_SIZE_WEIGHTS: Final = (0.30, 0.30, 0.20, 0.15, 0.05)


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    arrival: float
    """Hours since the start of the trace."""
    duration: float
    """Hours of running time."""
    cpu_m: int
    mem_mi: int
    slack: float = 0.0
    """Hours the pod may wait before starting; 0 means it must start at once."""


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    zone: str
    cpu_m: int
    mem_mi: int


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    hours: float
    mean_rate_per_hour: float = 20.0
    daily_amplitude: float = 0.5
    """Peak-to-mean ratio minus 1 of the daily arrival profile (0 = flat)."""
    peak_hour_utc: float = 13.0
    duration_median_h: float = 1.0
    duration_sigma: float = 1.0
    """Log-normal sigma of durations: 1.0 puts ~16% of pods above 2.7x the median."""
    min_duration_h: float = 5 / 60
    max_duration_h: float = 24.0
    deferrable_fraction: float = 0.3
    slack_h: float = 24.0
    seed: int = 1


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    zones: tuple[str, ...]
    nodes_per_zone: int = 8
    node_cpu_m: int = 16000
    node_mem_mi: int = 65536
    nodes: tuple[Node, ...] = field(default=(), compare=False)


def arrival_rate(spec: WorkloadSpec, t_hours: float) -> float:
    """Arrivals per hour at time t: a cosine daily profile around the mean."""
    phase = 2 * math.pi * ((t_hours % 24.0) - spec.peak_hour_utc) / 24.0
    return spec.mean_rate_per_hour * (1.0 + spec.daily_amplitude * math.cos(phase))


def generate_pods(spec: WorkloadSpec, start_hour_of_day: float = 0.0) -> list[Pod]:
    """Pods in arrival order. Thinning (Lewis-Shedler) draws the non-homogeneous Poisson process."""
    if spec.hours <= 0 or spec.mean_rate_per_hour <= 0:
        raise ValueError("workload needs a positive duration and arrival rate")
    if not 0 <= spec.daily_amplitude < 1:
        raise ValueError("daily_amplitude must be in [0, 1)")
    rng = random.Random(spec.seed)
    peak = spec.mean_rate_per_hour * (1.0 + spec.daily_amplitude)
    mu = math.log(spec.duration_median_h)
    pods: list[Pod] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= spec.hours:
            return pods
        if rng.random() * peak > arrival_rate(spec, t + start_hour_of_day):
            continue
        duration = min(
            spec.max_duration_h, max(spec.min_duration_h, rng.lognormvariate(mu, spec.duration_sigma))
        )
        cpu, mem = rng.choices(POD_SIZES, POD_SIZE_WEIGHTS)[0]
        slack = spec.slack_h if rng.random() < spec.deferrable_fraction else 0.0
        pods.append(Pod(f"pod-{len(pods):06d}", t, duration, cpu, mem, slack))


def build_cluster(spec: ClusterSpec) -> list[Node]:
    return [
        Node(f"{zone.lower()}-node-{i:03d}", zone, spec.node_cpu_m, spec.node_mem_mi)
        for zone in spec.zones
        for i in range(spec.nodes_per_zone)
    ]


def capacity_for(spec: WorkloadSpec, utilisation: float, zones: int, node_cpu_m: int) -> int:
    """Nodes per zone so that the mean CPU demand fills `utilisation` of the cluster.

    Mean demand = rate * mean duration * mean request; a log-normal's mean is median·exp(σ²/2).
    """
    mean_cpu = sum(c * w for (c, _), w in zip(POD_SIZES, POD_SIZE_WEIGHTS, strict=True))
    mean_duration = spec.duration_median_h * math.exp(spec.duration_sigma**2 / 2)
    demand_m = spec.mean_rate_per_hour * mean_duration * mean_cpu
    return max(1, math.ceil(demand_m / (utilisation * zones * node_cpu_m)))
