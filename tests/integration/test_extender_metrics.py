"""/metrics passes `promtool check metrics` after traffic on every verb."""

from __future__ import annotations

import asyncio
import os
import shutil
from asyncio.subprocess import PIPE
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from carbon_common.snapshot import Snapshot, ZoneReading
from extender.app import create_app
from extender.metrics import ExtenderMetrics
from extender.nodes import StaticNodeCache
from extender.settings import ExtenderSettings
from extender.view import CarbonState, CarbonView
from extender.zones import ZoneResolver

Client = TestClient[web.Request, web.Application]
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required on CI (hack/install-tools.sh installs Debian's prometheus)")
        pytest.skip("promtool not installed (run hack/install-tools.sh)")
    return found


class Lookup:
    def __init__(self) -> None:
        self.zones = {"a": "SE", "b": "PL"}
        self.synced = True
        self.version = 0

    def zone_of(self, node_name: str) -> str | None:
        return self.zones.get(node_name)

    def zones_of(self, node_names: list[str]) -> list[str | None]:
        return [self.zones.get(name) for name in node_names]

    def __contains__(self, node_name: object) -> bool:
        return node_name in self.zones

    def __len__(self) -> int:
        return len(self.zones)


class Binder:
    async def bind(
        self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str] | None
    ) -> None:
        return None

    async def close(self) -> None:
        pass


async def test_promtool_accepts_metrics(aiohttp_client: Callable[..., Awaitable[Client]]) -> None:
    tool = promtool()
    readings = {"SE": ZoneReading("SE", 20.0, NOW, "t"), "PL": ZoneReading("PL", 800.0, NOW, "t")}
    app = create_app(
        ExtenderSettings(),
        Lookup(),
        CarbonState(CarbonView(Snapshot(NOW, readings), NOW)),
        Binder(),
        clock=lambda: NOW,
    )
    client = await aiohttp_client(app)
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "n",
            "uid": "u",
            "annotations": {"carbon-aware.io/max-intensity": "x"},
        }
    }
    h = {"Content-Type": "application/json"}
    await client.post("/filter", data=orjson.dumps({"Pod": pod, "NodeNames": ["a", "b"]}), headers=h)
    await client.post("/prioritize", data=orjson.dumps({"Pod": pod, "NodeNames": ["a", "b", "c"]}), headers=h)
    bind = {"PodName": "p", "PodNamespace": "n", "PodUID": "u", "Node": "a"}
    await client.post("/bind", data=orjson.dumps(bind), headers=h)
    await client.post("/preempt", data=b"{", headers=h)
    text = await (await client.get("/metrics")).read()
    assert b"carbon_extender_intensity_avoided_grams_per_kwh_count 1.0" in text
    proc = await asyncio.create_subprocess_exec(
        tool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(text), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode() + err.decode()
    assert out.decode().strip() == "", out.decode()  # promtool prints lint problems on stdout


async def test_node_cache_counters_are_exported(
    aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path
) -> None:
    nodes_file = tmp_path / "nodes.json"
    node = {"metadata": {"name": "a", "labels": {"carbon-aware.io/zone": "SE"}}}
    nodes_file.write_bytes(orjson.dumps({"kind": "NodeList", "items": [node]}))
    cache = StaticNodeCache(nodes_file, ZoneResolver("carbon-aware.io/zone", "r", {}).zone_of_labels, 0.02)
    await cache.start()
    nodes_file.write_bytes(b"{not json")  # the poll sees the change, fails to load, keeps the old nodes
    async with asyncio.timeout(5):
        while cache.stats.errors == 0:  # noqa: ASYNC110 - the cache has no event for this
            await asyncio.sleep(0.02)
    client = await aiohttp_client(create_app(ExtenderSettings(), cache, CarbonState(None)))
    text = (await (await client.get("/metrics")).read()).decode()
    assert "carbon_extender_node_cache_lists_total 1.0" in text
    assert "carbon_extender_node_cache_errors_total 1.0" in text
    assert "carbon_extender_node_cache_relists_410_total 0.0" in text
    await cache.stop()


def test_child_is_the_labelled_series_and_is_reused() -> None:
    metrics = ExtenderMetrics(Lookup(), CarbonState())
    first = metrics.child(metrics.binds, "success")
    assert first is metrics.child(metrics.binds, "success")
    assert first is not metrics.child(metrics.binds, "error")
    first.inc()
    first.inc()
    assert metrics.registry.get_sample_value("carbon_extender_binds_total", {"result": "success"}) == 2.0
    assert metrics.registry.get_sample_value("carbon_extender_binds_total", {"result": "error"}) == 0.0
