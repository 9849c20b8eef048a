"""Issue 3, test 8: a real Prometheus scrapes the extender during a run; read the metrics back via PromQL."""

from __future__ import annotations

import math

import pytest

from .conftest import E2EWorld, unavailable
from .kubeharness import Prometheus, wait_until
from .kubeharness.services import PROMETHEUS

pytestmark = pytest.mark.e2e


@pytest.fixture
def prometheus_binary() -> None:
    if not PROMETHEUS.exists():
        unavailable(f"{PROMETHEUS} missing: hack/install-tools.sh installs Debian's prometheus")


@pytest.mark.usefixtures("prometheus_binary")
def test_prometheus_reads_the_decision_and_latency_metrics(world: E2EWorld) -> None:
    world.add_nodes({"SE": 2, "PL": 2})
    world.snapshot({"SE": 30.0, "PL": 690.0})
    ext, sched = world.with_extender()
    prom = Prometheus({"extender": [f"127.0.0.1:{ext.port}"]}, world.workdir / "prometheus")
    try:
        names = [f"p{i}" for i in range(5)]
        for name in names:
            world.pod(name, sched)
        world.wait_bound(names)

        def value(promql: str) -> float | None:
            result = prom.query(promql)
            return float(result[0]["value"][1]) if result else None

        binds = wait_until(
            lambda: (
                (v := value('sum(carbon_extender_binds_total{result="success"})')) and v >= len(names) and v
            ),
            timeout=30,
            what="Prometheus to scrape the extender's bind count",
            watch=[prom.process, ext.process],
            interval=0.5,
            context=lambda: f"targets: {prom.targets_up()}",
        )
        assert binds == len(names)
        filters = value('sum(carbon_extender_request_duration_seconds_count{verb="filter"})')
        assert filters is not None
        assert filters >= len(names)
        p99 = value(
            "histogram_quantile(0.99, sum by (le) (carbon_extender_request_duration_seconds_bucket"
            '{verb="prioritize"}))'
        )
        # A real latency was recorded (NaN when the histogram is empty). Its size is the benchmarks'
        # business, not a test's.
        assert p99 is not None
        assert math.isfinite(p99)
        assert p99 > 0
        assert prom.targets_up() == {f"http://127.0.0.1:{ext.port}/metrics": "up"}
    finally:
        prom.stop()
