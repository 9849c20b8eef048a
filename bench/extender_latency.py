"""Extender latency: filter and prioritize at 100, 1,000 and 5,000 nodes, both nodeCacheCapable modes.

`python -m bench.extender_latency [--quick]`. For each case it reports p50/p99 of
- handler: the aiohttp handler in-process (body already read: parse, policy, encode), and
- http: a full POST over loopback HTTP (client time, includes aiohttp and the socket),
next to the floor: a bare orjson decode + encode of the same request payload. Targets: NodeNames at
5,000 nodes p50 within 2x of the floor; full Nodes at 1,000 within 1.5x.
Writes bench/results/extender_latency.json. Never run as a test: timings are not asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bench.outputs import add_out_argument
from carbon_common.snapshot import Snapshot, ZoneReading
from extender.app import STATE, create_app, filter_handler, prioritize_handler
from extender.fixed_nodes import MappingNodeLookup
from extender.memo import CandidateMemo
from extender.settings import ExtenderSettings
from extender.view import CarbonState, CarbonView

ZONES = {"SE-SE3": 32.0, "FR": 58.0, "ES": 142.0, "GB": 221.0, "DE": 412.0, "PL": 712.0}


def make_node(name: str, zone: str | None, rng: random.Random) -> dict[str, Any]:
    """A Node as kube-scheduler sends it: labels, capacity, conditions and an image list."""
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "m6i.2xlarge",
        "topology.kubernetes.io/zone": "eu-central-1a",
    }
    if zone is not None:
        labels["carbon-aware.io/zone"] = zone
    images = [
        {
            "names": [f"registry.example/team/app-{i}@sha256:{rng.getrandbits(256):064x}"],
            "sizeBytes": rng.randint(1, 9) * 10**8,
        }
        for i in range(10)
    ]
    return {
        "metadata": {
            "name": name,
            "uid": f"{rng.getrandbits(128):032x}",
            "resourceVersion": str(rng.randint(1, 10**7)),
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": "10.0.0.0/24",
            "providerID": f"aws:///eu-central-1a/i-{rng.getrandbits(64):016x}",
        },
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "7910m", "memory": "31Gi", "pods": "110", "ephemeral-storage": "95Gi"},
            "conditions": [
                {
                    "type": t,
                    "status": "False" if t != "Ready" else "True",
                    "reason": "KubeletHasSufficient" + t,
                    "lastHeartbeatTime": "2026-11-22T09:59:00Z",
                    "lastTransitionTime": "2026-11-01T00:00:00Z",
                }
                for t in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
            ],
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.35.7",
                "containerRuntimeVersion": "containerd://1.7.24",
                "osImage": "Debian GNU/Linux 12",
            },
            "images": images,
        },
    }


POD = {
    "metadata": {
        "name": "web-0",
        "namespace": "shop",
        "uid": "0b7c7e1e-1111-4f0e-9a58-7d0c1b2d3e4f",
        "labels": {"app": "web"},
        "annotations": {"carbon-aware.io/max-intensity": "500"},
    },
    "spec": {
        "schedulerName": "carbon-aware-scheduler",
        "containers": [
            {
                "name": "web",
                "image": "nginx:1.27",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
        ],
    },
    "status": {"phase": "Pending"},
}


class _Request:
    """Just enough of web.Request for the verb handlers: the app and the body (which the extender
    reads from `content`, in chunks, since carbon_common.serving.read_body with max_bytes)."""

    def __init__(self, app: web.Application, body: bytes) -> None:
        self.app = app
        self._body = body
        self.content = self

    async def read(self) -> bytes:
        return self._body

    async def iter_any(self) -> AsyncIterator[bytes]:
        yield self._body


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


def _time_floor(payload: bytes) -> float:
    t = time.perf_counter()
    orjson.dumps(orjson.loads(payload))
    return time.perf_counter() - t


async def _interleaved(
    app: web.Application,
    handler: Callable[[Any], Awaitable[web.Response]],
    payload: bytes,
    iterations: int,
) -> tuple[list[float], list[float], list[float]]:
    """Floor, warm and cold samples taken in turn, so load from other processes on a shared machine
    hits all three alike. Warm: the same node list as the previous call (kube-scheduler's steady
    state: a memo hit). Cold: the memo emptied first, as for a node list seen for the first time."""
    request = _Request(app, payload)
    floor, warm, cold = [], [], []
    await handler(request)
    for _ in range(iterations):
        floor.append(_time_floor(payload))
        t = time.perf_counter()
        resp = await handler(request)
        warm.append(time.perf_counter() - t)
        assert resp.status == 200, resp.body
        app[STATE].memo = CandidateMemo()
        t = time.perf_counter()
        await handler(request)
        cold.append(time.perf_counter() - t)
    return floor, warm, cold


async def _http_times(
    session: aiohttp.ClientSession, url: str, payload: bytes, iterations: int
) -> list[float]:
    out = []
    headers = {"Content-Type": "application/json"}
    for _ in range(iterations):
        t = time.perf_counter()
        async with session.post(url, data=payload, headers=headers) as resp:
            await resp.read()
            assert resp.status == 200
        out.append(time.perf_counter() - t)
    return out


async def run(quick: bool) -> dict[str, Any]:
    rng = random.Random(1)
    sizes = (100, 1000, 5000)
    now = datetime.now(UTC)
    zone_names = [*ZONES, None]
    names = [f"node-{i:05d}" for i in range(max(sizes))]
    zone_of = {n: zone_names[rng.randrange(len(zone_names))] for n in names}
    nodes = [make_node(n, zone_of[n], rng) for n in names]
    readings = {z: ZoneReading(z, i, now - timedelta(minutes=10), "bench") for z, i in ZONES.items()}
    carbon = CarbonState(CarbonView(Snapshot(now, readings), now))
    app = create_app(ExtenderSettings(), MappingNodeLookup(zone_of), carbon, None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rows: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as session:
            for size in sizes:
                for mode in ("NodeNames", "Nodes"):
                    if mode == "NodeNames":
                        body = {"Pod": POD, "Nodes": None, "NodeNames": names[:size]}
                    else:
                        body = {
                            "Pod": POD,
                            "Nodes": {
                                "kind": "NodeList",
                                "apiVersion": "v1",
                                "metadata": {},
                                "items": nodes[:size],
                            },
                            "NodeNames": None,
                        }
                    payload = orjson.dumps(body)
                    big = size * (20 if mode == "Nodes" else 1)
                    iterations = max(20, min(2000, 400_000 // big)) // (5 if quick else 1)
                    for verb, handler in (("filter", filter_handler), ("prioritize", prioritize_handler)):
                        gc.collect()
                        floor, handler_t, cold_t = await _interleaved(app, handler, payload, iterations)
                        http_t = await _http_times(
                            session, f"http://127.0.0.1:{port}/{verb}", payload, max(10, iterations // 4)
                        )
                        row: dict[str, Any] = {
                            "verb": verb,
                            "mode": mode,
                            "nodes": size,
                            "payload_bytes": len(payload),
                            "iterations": iterations,
                            "floor_p50_ms": _pct(floor, 0.5),
                            "floor_p99_ms": _pct(floor, 0.99),
                            "handler_p50_ms": _pct(handler_t, 0.5),
                            "handler_p99_ms": _pct(handler_t, 0.99),
                            "cold_p50_ms": _pct(cold_t, 0.5),
                            "cold_p99_ms": _pct(cold_t, 0.99),
                            "http_p50_ms": _pct(http_t, 0.5),
                            "http_p99_ms": _pct(http_t, 0.99),
                        }
                        row["handler_vs_floor_p50"] = row["handler_p50_ms"] / row["floor_p50_ms"]
                        rows.append(row)
    finally:
        await runner.cleanup()
    targets = {
        "names_5000_p50_within_2x": all(
            r["handler_vs_floor_p50"] <= 2.0 for r in rows if r["mode"] == "NodeNames" and r["nodes"] == 5000
        ),
        "nodes_1000_p50_within_1_5x": all(
            r["handler_vs_floor_p50"] <= 1.5 for r in rows if r["mode"] == "Nodes" and r["nodes"] == 1000
        ),
    }
    return {
        "generated_at": now.isoformat(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": quick,
        "note": "handler = in-process handler time (parse + policy + encode); http = loopback round trip; "
        "floor = orjson.loads + orjson.dumps of the same request payload",
        "targets_met": targets,
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    cols = ("verb", "mode", "nodes", "KiB", "floor p50", "handler p50", "p99", "x floor", "cold p50")
    cols2 = ("x floor", "http p50", "p99")
    cols_all: tuple[str, ...] = cols + cols2
    widths = (10, 9, 5, 6, 9, 11, 7, 7, 8, 7, 8, 7)
    head = " ".join(
        c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cols_all, widths, strict=True))
    )
    lines = [
        "times in ms; handler = in-process (warm: node list seen before, cold: first time), "
        "http = loopback round trip",
        head,
        "-" * len(head),
    ]
    for r in result["rows"]:
        values: tuple[str, ...] = (
            r["verb"],
            r["mode"],
            str(r["nodes"]),
            f"{r['payload_bytes'] / 1024:.0f}",
            f"{r['floor_p50_ms']:.3f}",
            f"{r['handler_p50_ms']:.3f}",
            f"{r['handler_p99_ms']:.3f}",
            f"{r['handler_vs_floor_p50']:.2f}x",
            f"{r['cold_p50_ms']:.3f}",
            f"{r['cold_p50_ms'] / r['floor_p50_ms']:.2f}x",
            f"{r['http_p50_ms']:.3f}",
            f"{r['http_p99_ms']:.3f}",
        )
        lines.append(
            " ".join(
                v.ljust(w) if i < 2 else v.rjust(w)
                for i, (v, w) in enumerate(zip(values, widths, strict=True))
            )
        )
    lines.append("targets: " + ", ".join(f"{k}={v}" for k, v in result["targets_met"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.extender_latency", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    add_out_argument(parser, "extender_latency")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.quick))
    print(table(result))
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "extender_latency.json"
    target.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
