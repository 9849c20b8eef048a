"""Prometheus metrics of the rebalancer, in their own registry (tests build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

EVICTION_RESULTS = ("evicted", "dry-run", "pdb-blocked", "gone", "error")


class RebalancerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.evictions = Counter(
            "carbon_rebalancer_evictions",
            "Evictions by result: evicted, dry-run (would have evicted), pdb-blocked (429: a "
            "PodDisruptionBudget forbids it now; retried in a later run), gone (the pod was already "
            "deleted or replaced), error.",
            ["result"],
            registry=r,
        )
        for result in EVICTION_RESULTS:
            self.evictions.labels(result=result)
        self.avoided = Counter(
            "carbon_rebalancer_intensity_avoided_grams_per_kwh",
            "Sum over evicted pods of the estimated g/kWh avoided (the pod's zone minus the target's).",
            registry=r,
        )
        self.candidates = Gauge(
            "carbon_rebalancer_candidates",
            "Opted-in pods in the last run by decision reason (greener-zone: chosen to move; any other "
            "reason: skipped).",
            ["reason"],
            registry=r,
        )
        self.runs = Counter("carbon_rebalancer_runs", "Decision runs made as leader.", registry=r)
        self.feed_requests = Counter(
            "carbon_rebalancer_feed_requests",
            "Calls to the feed's /v1/snapshot by outcome.",
            ["outcome"],
            registry=r,
        )
        self.is_leader = Gauge(
            "carbon_rebalancer_leader", "1 while this replica holds the Lease.", registry=r
        )
        self.errors = Counter(
            "carbon_rebalancer_api_errors",
            "Failed Kubernetes API calls by operation.",
            ["operation"],
            registry=r,
        )
