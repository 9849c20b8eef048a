"""The load harness: bounded request loops against loopback servers, and a real extender process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.evaluation.load import (
    LoadConfig,
    extender_process,
    node_list,
    read_status_kib,
    request_body,
    run,
    run_load,
)


def test_node_list_and_request_body_follow_the_wire_shapes() -> None:
    nodes = node_list(20, zones=("DE", "FR"))
    assert nodes["kind"] == "NodeList"
    assert len(nodes["items"]) == 20
    assert {n["metadata"]["labels"]["carbon-aware.io/zone"] for n in nodes["items"]} == {"DE", "FR"}
    body = orjson.loads(request_body(["node-00000", "node-00001"]))
    assert body["Nodes"] is None
    assert body["NodeNames"] == ["node-00000", "node-00001"]
    assert body["Pod"]["metadata"]["name"] == "bench-pod"


def test_read_status_reports_this_process_rss() -> None:
    status = read_status_kib(os.getpid())
    assert status["VmRSS"] > 1000
    assert status["VmHWM"] >= status["VmRSS"]


async def test_run_load_stops_at_the_request_bound_and_counts_errors() -> None:
    seen = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal seen
        seen += 1
        await request.read()
        return web.json_response([], status=500 if seen % 5 == 0 else 200)

    app = web.Application()
    app.router.add_post("/prioritize", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        ok, errors, seconds, latencies = await run_load(
            str(server.make_url("/prioritize")), b"{}", 4, 50, 30.0
        )
    assert seen == 50
    assert ok + errors == 50
    assert errors == 10
    assert len(latencies) == ok
    assert seconds > 0
    assert all(v > 0 for v in latencies)


async def test_run_load_stops_at_the_time_bound() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response([])

    app = web.Application()
    app.router.add_post("/filter", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        ok, errors, seconds, _ = await run_load(str(server.make_url("/filter")), b"{}", 2, 10**9, 0.3)
    assert errors == 0
    assert 0 < ok < 10**9
    assert seconds < 10


async def test_real_extender_process_serves_then_is_stopped_by_pid(tmp_path: Path) -> None:
    async with extender_process(tmp_path, 30) as (base, pid):
        assert base.startswith("http://127.0.0.1:")
        assert read_status_kib(pid)["VmRSS"] > 0
        ok, errors, _, _ = await run_load(
            base + "/prioritize", request_body(["node-00000", "node-00001"]), 1, 5, 30
        )
        assert (ok, errors) == (5, 0)
    # Stopped and reaped: the PID no longer names a process of ours.
    assert not await asyncio.to_thread(Path(f"/proc/{pid}").exists)


async def test_small_run_has_one_row_per_point_and_memory_per_size(tmp_path: Path) -> None:
    cfg = LoadConfig(
        sizes=(10,), concurrency=(1, 2), max_requests=5, max_seconds=5.0, rss_nodes=50, rss_requests=2
    )
    doc = await run(cfg, tmp_path)
    points = {(r["verb"], r["nodes"], r["concurrency"]) for r in doc["results"]}
    assert points == {
        ("filter", 10, 1),
        ("filter", 10, 2),
        ("prioritize", 10, 1),
        ("prioritize", 10, 2),
        ("filter", 50, 1),
        ("prioritize", 50, 1),
    }
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in doc["results"])
    assert [m["nodes"] for m in doc["memory"]] == [10, 50]
    assert all(m["rss_after_load_mib"] > 10 for m in doc["memory"])
