"""Prometheus metrics of the extender, in a registry of its own so tests can build many apps.

Per-zone gauges (data age, intensity) and node-cache state are read at scrape time by a collector
instead of being pushed on every change: the request path never pays for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from carbon_common.kube import WatchStats
from carbon_common.snapshot import reading_age
from carbon_common.timeutil import utcnow
from extender.nodes import NodeLookup
from extender.view import CarbonState

NS = "carbon_extender"
_M = TypeVar("_M", bound=MetricWrapperBase)
# kube-scheduler gives an extender 5 s; typical answers take well under a millisecond.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# No negative bounds: prometheus-client drops _sum from a histogram with negative buckets, and the sum
# (total gCO2eq/kWh avoided) is the figure users want. A placement dirtier than the candidates' mean
# (other plugins outweighed ours) lands in le="0" and lowers the sum.
AVOIDED_BUCKETS = (0.0, 10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0)


class ScoreTally:
    """A histogram of integer scores fed in bulk: prioritize at 5,000 nodes would spend milliseconds in
    5,000 Histogram.observe calls, while a zone's nodes all share one score."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * 11
        self.total = 0

    def add(self, score: int, count: int = 1) -> None:
        self.counts[score] += count
        self.total += score * count

    def family(self) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        running = 0
        for score, count in enumerate(self.counts):
            running += count
            buckets.append((f"{float(score)}", float(running)))
        buckets.append(("+Inf", float(running)))
        return HistogramMetricFamily(
            f"{NS}_scores",
            "Scores (0-10) given by prioritize, one per node.",
            buckets=buckets,
            sum_value=float(self.total),
        )


class _StateCollector(Collector):
    def __init__(self, nodes: NodeLookup, carbon: CarbonState, scores: ScoreTally) -> None:
        self.scores = scores
        self.nodes = nodes
        self.carbon = carbon

    def collect(self) -> Iterator[Metric]:
        yield self.scores.family()
        size = GaugeMetricFamily(f"{NS}_node_cache_nodes", "Nodes currently in the node cache.")
        size.add_metric([], float(len(self.nodes)))
        yield size
        synced = GaugeMetricFamily(
            f"{NS}_node_cache_synced", "1 once the node cache completed its first list."
        )
        synced.add_metric([], 1.0 if self.nodes.synced else 0.0)
        yield synced
        stats = getattr(self.nodes, "stats", None)  # both caches keep WatchStats; test doubles may not
        if isinstance(stats, WatchStats):
            for name, value, text in (
                ("lists", stats.lists, "Full node lists loaded (first sync, relists, file reloads)."),
                ("relists_410", stats.relists_410, "Relists forced by 410 Gone (watch fell too far behind)."),
                ("errors", stats.errors, "Node list/watch or nodes-file errors (retried with backoff)."),
            ):
                family = CounterMetricFamily(f"{NS}_node_cache_{name}", text)
                family.add_metric([], float(value))
                yield family
        age = GaugeMetricFamily(
            f"{NS}_carbon_data_age_seconds",
            "Seconds since the end of the period of the zone's current reading (observedAt + periodSeconds).",
            labels=["zone"],
        )
        intensity = GaugeMetricFamily(
            f"{NS}_zone_intensity_grams_per_kwh",
            "Current grid carbon intensity per zone (gCO2eq/kWh) in the extender's view.",
            labels=["zone"],
        )
        view = self.carbon.view
        if view is not None:
            now = utcnow()
            for zone, reading in sorted(view.snapshot.zones.items()):
                age.add_metric([zone], reading_age(reading, now))
                intensity.add_metric([zone], reading.intensity)
        yield age
        yield intensity
        errors = CounterMetricFamily(
            f"{NS}_carbon_source_errors",
            "Carbon data updates rejected (bad file, feed errors); last good data kept.",
        )
        errors.add_metric([], float(self.carbon.errors))
        yield errors
        failing = GaugeMetricFamily(
            f"{NS}_carbon_source_failing",
            "1 while the carbon source's last attempt failed (file missing or bad, feed error), else 0.",
        )
        failing.add_metric([], 1.0 if self.carbon.failing else 0.0)
        yield failing
        loaded = GaugeMetricFamily(f"{NS}_carbon_data_loaded", "1 when the extender holds any carbon data.")
        loaded.add_metric([], 0.0 if view is None else 1.0)
        yield loaded


class ExtenderMetrics:
    def __init__(self, nodes: NodeLookup, carbon: CarbonState) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_duration = Histogram(
            f"{NS}_request_duration_seconds",
            "Server time per extender request, body read to response built.",
            ["verb"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            f"{NS}_requests", "Extender requests per verb and outcome.", ["verb", "outcome"], registry=r
        )
        self.nodes_filtered = Counter(
            f"{NS}_nodes_filtered", "Nodes rejected by the filter, per reason.", ["reason"], registry=r
        )
        self.scores = ScoreTally()
        self.neutral = Counter(
            f"{NS}_neutral_scores",
            "Nodes scored neutrally, per reason (stale, missing, unknown_zone, opt_out).",
            ["reason"],
            registry=r,
        )
        self.binds = Counter(
            f"{NS}_binds", "Bind calls per result (success, error, disabled).", ["result"], registry=r
        )
        self.bind_outcomes = Counter(
            f"{NS}_bind_outcomes",
            "Binder outcomes against the API server (bound, already_bound, conflict, error).",
            ["result"],
            registry=r,
        )
        self.avoided = Histogram(
            f"{NS}_intensity_avoided_grams_per_kwh",
            "Per bound pod: candidates' mean intensity minus the chosen node's (gCO2eq/kWh); "
            "_sum is the total avoided.",
            buckets=AVOIDED_BUCKETS,
            registry=r,
        )
        self.annotation_problems = Counter(
            f"{NS}_annotation_problems",
            "Pods with a malformed carbon-aware annotation (ignored).",
            registry=r,
        )
        r.register(_StateCollector(nodes, carbon, self.scores))
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: _M, *values: str) -> _M:
        """`metric.labels(*values)`, memoized: labels() re-validates and takes a lock on every call,
        which at several calls per scheduled pod showed up in the profile. Label sets are small and
        fixed (verbs, outcomes, reasons), so the memo stays small."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return cast(_M, found)
