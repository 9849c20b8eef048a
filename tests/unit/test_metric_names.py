"""Every service's metrics share one naming scheme: carbon_<service>_<what>[_<unit>], with one spelling
per unit (Prometheus' base units; g/kWh as grams_per_kwh), so dashboards and alerts read alike."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry

from carbon_feed.metrics import FeedMetrics
from deferral.metrics import DeferralMetrics
from extender.fixed_nodes import MappingNodeLookup
from extender.metrics import ExtenderMetrics
from extender.view import CarbonState
from rebalancer.metrics import RebalancerMetrics

# Spellings the scheme refuses, with the one to use instead.
FORBIDDEN = {
    "gco2": "grams_per_kwh",
    "gco2eq": "grams_per_kwh",
    "milliseconds": "seconds",
    "_ms": "seconds",
    "kilobytes": "bytes",
    "megabytes": "bytes",
    "percentage": "percent",
}


def _registries() -> dict[str, CollectorRegistry]:
    return {
        "extender": ExtenderMetrics(MappingNodeLookup({"a": "DE"}), CarbonState()).registry,
        "feed": FeedMetrics().registry,
        "deferral": DeferralMetrics().registry,
        "rebalancer": RebalancerMetrics().registry,
    }


def names(registry: CollectorRegistry) -> list[str]:
    return [metric.name for metric in registry.collect()]


def problems(service: str, metric_names: list[str]) -> list[str]:
    found = []
    for name in metric_names:
        if not name.startswith(f"carbon_{service}_"):
            found.append(f"{name}: does not start with carbon_{service}_")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            found.append(f"{name}: not lower snake case")
        found += [f"{name}: spell {bad!r} as {good!r}" for bad, good in FORBIDDEN.items() if bad in name]
    return found


@pytest.mark.parametrize("service", ["extender", "feed", "deferral", "rebalancer"])
def test_metric_names_follow_the_scheme(service: str) -> None:
    metric_names = names(_registries()[service])
    assert metric_names, f"{service} registers no metrics"
    assert problems(service, metric_names) == []


def test_the_check_catches_a_wrong_prefix_and_unit() -> None:
    assert problems("deferral", ["deferral_releases", "carbon_deferral_avoided_gco2eq_per_kwh"]) == [
        "deferral_releases: does not start with carbon_deferral_",
        "carbon_deferral_avoided_gco2eq_per_kwh: spell 'gco2' as 'grams_per_kwh'",
        "carbon_deferral_avoided_gco2eq_per_kwh: spell 'gco2eq' as 'grams_per_kwh'",
    ]
