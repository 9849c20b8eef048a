"""Prometheus metrics of the webhook and the controller, in their own registry (tests build many)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from carbon_common.kube import WatchStats

RELEASE_REASONS = ("window_reached", "deadline_guard", "invalid", "error")

# Deferrals range from minutes to a few days.
_DELAY_BUCKETS = (0.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 259200.0)
# No negative bucket: prometheus-client drops _sum for histograms with one, and the sum (total avoided)
# is the number that matters. A plan worse than now (possible at the guard) lands in le="0".
_AVOIDED_BUCKETS = (0.0, 10.0, 25.0, 50.0, 100.0, 200.0, 400.0)


class _WatchCollector(Collector):
    """The pod cache's list/watch counters, read at scrape time (plain ints in WatchStats)."""

    def __init__(self, stats: WatchStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        for name, value, text in (
            ("lists", self.stats.lists, "Full pod lists loaded (first sync and relists)."),
            ("errors", self.stats.errors, "Pod list/watch errors (logged, retried with backoff)."),
        ):
            family = CounterMetricFamily(f"carbon_deferral_pod_watch_{name}", text)
            family.add_metric([], float(value))
            yield family


class DeferralMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.admissions = Counter(
            "carbon_deferral_admissions",
            "Admission reviews by outcome: gated, skipped (not opted in or already gated), error, aborted "
            "(the client hung up mid-body).",
            ["outcome"],
            registry=r,
        )
        self.pods_waiting = Gauge(
            "carbon_deferral_pods_waiting",
            "Pods held by the green-window gate, as this replica sees them.",
            registry=r,
        )
        self.planned_delay = Histogram(
            "carbon_deferral_planned_delay_seconds",
            "Delay from the pod's creation to its planned start, observed when a pod is released.",
            buckets=_DELAY_BUCKETS,
            registry=r,
        )
        self.intensity_avoided = Histogram(
            "carbon_deferral_intensity_avoided_grams_per_kwh",
            "Estimated g/kWh avoided per released pod: forecast now minus forecast at the planned start.",
            buckets=_AVOIDED_BUCKETS,
            registry=r,
        )
        self.releases = Counter(
            "carbon_deferral_releases", "Gates removed, by reason.", ["reason"], registry=r
        )
        for reason in RELEASE_REASONS:
            self.releases.labels(reason=reason)
        self.feed_requests = Counter(
            "carbon_deferral_feed_requests",
            "Calls to the feed's /v1/best by outcome.",
            ["outcome"],
            registry=r,
        )
        self.is_leader = Gauge("carbon_deferral_leader", "1 while this replica holds the Lease.", registry=r)
        self.errors = Counter(
            "carbon_deferral_api_errors",
            "Failed Kubernetes API calls by operation.",
            ["operation"],
            registry=r,
        )
        self._watch: _WatchCollector | None = None

    def watch(self, stats: WatchStats) -> None:
        """Export the pod cache's list/watch counters (the latest stats given win)."""
        if self._watch is None:
            self._watch = _WatchCollector(stats)
            self.registry.register(self._watch)
        else:
            self._watch.stats = stats
