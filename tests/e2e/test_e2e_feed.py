"""Issue 3, tests 2 and 8 through the real carbon-feed: static provider → feed → snapshot file → extender.

The feed process writes the snapshot the extender reads (the shared-volume shape of the chart), and
a real Prometheus scrapes both services while pods are scheduled.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import E2EWorld, unavailable
from .kubeharness import HttpService, Prometheus, wait_until
from .kubeharness.services import PROMETHEUS

pytestmark = pytest.mark.e2e


def start_feed(world: E2EWorld, grid: dict[str, float]) -> tuple[HttpService, Path]:
    static = world.workdir / "grid.yaml"
    static.write_text(yaml.safe_dump(grid))
    feed = world.feed(
        {"kind": "static", "name": "static", "options": {"path": str(static), "zones": sorted(grid)}}
    )
    return feed, static


def snapshot_zones(world: E2EWorld) -> dict[str, float] | None:
    try:
        raw = json.loads(world.snapshot_file.read_text())
    except (OSError, ValueError):
        return None
    return {zone: float(z["intensity"]) for zone, z in raw["zones"].items()}


def test_pods_follow_the_real_feed_and_prometheus_scrapes_both_services(world: E2EWorld) -> None:
    if not PROMETHEUS.exists():
        unavailable(f"{PROMETHEUS} missing: hack/install-tools.sh installs Debian's prometheus")
    world.add_nodes({"SE": 2, "PL": 2})
    feed, static = start_feed(world, {"SE": 30.0, "PL": 690.0})
    wait_until(
        lambda: snapshot_zones(world) == {"SE": 30.0, "PL": 690.0},
        timeout=30,
        what="the feed's first snapshot file",
        watch=[feed.process],
    )
    ext, sched = world.with_extender()
    prom = Prometheus(
        {"extender": [f"127.0.0.1:{ext.port}"], "feed": [f"127.0.0.1:{feed.port}"]},
        world.workdir / "prometheus",
    )
    try:
        world.pod("first", sched)
        assert world.zones_of(world.wait_bound(["first"])) == {"first": "SE"}

        # The grid changes at the source: the feed picks it up, rewrites the snapshot, the extender
        # reloads it, and new pods follow.
        static.write_text(yaml.safe_dump({"SE": 690.0, "PL": 30.0}))
        wait_until(
            lambda: snapshot_zones(world) == {"SE": 690.0, "PL": 30.0},
            timeout=30,
            what="the feed to publish the new intensities",
            watch=[feed.process],
        )
        probes = itertools.count()

        def follows() -> bool:
            name = f"after-{next(probes)}"
            world.pod(name, sched)
            return world.zones_of(world.wait_bound([name], timeout=20))[name] == "PL"

        wait_until(follows, timeout=30, what="new pods placed in PL", interval=0.5, context=world.diagnostics)

        def both_up() -> list[dict[str, Any]] | None:
            result = prom.query("up")
            return result if len(result) == 2 and all(r["value"][1] == "1" for r in result) else None

        up = wait_until(
            both_up,
            timeout=30,
            what="Prometheus to scrape the extender and the feed",
            watch=[prom.process],
            interval=0.5,
            context=lambda: f"targets: {prom.targets_up()}",
        )
        assert {s["metric"]["job"] for s in up} == {"extender", "feed"}
        # The feed's own series, not just its `up`, made it into Prometheus.
        feed_series = prom.query('count({job="feed", __name__=~"carbon_feed_.+"})')
        assert feed_series
        assert float(feed_series[0]["value"][1]) > 0
    finally:
        prom.stop()
