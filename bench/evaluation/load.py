"""Load on a real extender process over loopback: sustained request rate and memory.

    python -m bench.evaluation.load [--quick] [--out DIR]

For each cluster size it starts ``python -m extender --nodes-file <NodeList> --snapshot-file <snapshot>``
on 127.0.0.1 (static node cache, as without a cluster), waits for /readyz, then drives /filter and
/prioritize (``nodeCacheCapable: true`` bodies: node names, as we recommend) at each concurrency for a
bounded number of requests and seconds, and reads VmRSS/VmHWM from /proc/<pid>/status. The load
generator shares the machine's cores with the extender, so rates are a floor, not a ceiling.
The process is stopped by its PID (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.outputs import add_out_argument
from carbon_common.snapshot import Snapshot, ZoneReading, snapshot_to_dict
from carbon_common.timeutil import format_rfc3339, utcnow

ZONES = ("AT", "BE", "DE", "ES", "FR", "GB", "IT", "NL", "PL")
ZONE_LABEL = "carbon-aware.io/zone"
READY_TIMEOUT = 60.0
STOP_GRACE = 10.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    verb: str
    nodes: int
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def node_list(count: int, zones: Sequence[str] = ZONES) -> dict[str, Any]:
    """A v1 NodeList shaped like `kubectl get nodes -o json` (labels, capacity, conditions)."""
    items = []
    for i in range(count):
        zone = zones[i % len(zones)]
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"node-{i:05d}",
                    "uid": f"00000000-0000-0000-0000-{i:012d}",
                    "labels": {
                        ZONE_LABEL: zone,
                        "kubernetes.io/hostname": f"node-{i:05d}",
                        "kubernetes.io/os": "linux",
                        "topology.kubernetes.io/zone": f"{zone.lower()}-1a",
                    },
                },
                "status": {
                    "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                    "allocatable": {"cpu": "15800m", "memory": "62Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    return {"apiVersion": "v1", "kind": "NodeList", "items": items}


def snapshot(zones: Sequence[str] = ZONES) -> dict[str, Any]:
    now = utcnow()
    readings = {
        z: ZoneReading(z, 50.0 + 80.0 * i, now - timedelta(minutes=5), "bench") for i, z in enumerate(zones)
    }
    return snapshot_to_dict(Snapshot(now, readings))


def request_body(node_names: Sequence[str]) -> bytes:
    pod = {
        "metadata": {"name": "bench-pod", "namespace": "default", "uid": "bench-uid", "annotations": {}},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "500m"}}}]
        },
    }
    return orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": list(node_names)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB from /proc/<pid>/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0])
    return out


ROOT = Path(__file__).resolve().parents[2]


def _spawn(workdir: Path, nodes: int) -> tuple[subprocess.Popen[bytes], int]:
    workdir.mkdir(parents=True, exist_ok=True)
    nodes_file = workdir / f"nodes-{nodes}.json"
    snap_file = workdir / "snapshot.json"
    nodes_file.write_bytes(orjson.dumps(node_list(nodes)))
    snap_file.write_bytes(orjson.dumps(snapshot()))
    port = free_port()
    cmd = [sys.executable, "-m", "extender", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--nodes-file", str(nodes_file), "--snapshot-file", str(snap_file), "--log-level", "warning"]
    with (workdir / f"extender-{nodes}.log").open("wb") as log:
        # The child keeps its own copy of the log descriptor; ours can close at once.
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_GRACE)


@contextlib.asynccontextmanager
async def extender_process(workdir: Path, nodes: int) -> AsyncIterator[tuple[str, int]]:
    """Start `python -m extender` with `nodes` static nodes; yield (base URL, pid); stop it by PID."""
    proc, port = await asyncio.to_thread(_spawn, workdir, nodes)
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(base, proc)
        yield base, proc.pid
    finally:
        await asyncio.to_thread(_stop, proc)


async def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"extender exited with {proc.returncode} before becoming ready")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(base + "/readyz") as resp:
                    if resp.status == 200:
                        body = orjson.loads(await resp.read())
                        if body.get("carbonData"):
                            return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"extender at {base} not ready with carbon data within {READY_TIMEOUT:.0f} s")


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_load(
    url: str, body: bytes, concurrency: int, max_requests: int, max_seconds: float
) -> tuple[int, int, float, list[float]]:
    """(ok, errors, seconds, latencies in s): `concurrency` workers until either bound is reached."""
    latencies: list[float] = []
    errors = 0
    issued = 0
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=5.0)  # kube-scheduler's default extender httpTimeout
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        stop_at = start + max_seconds

        async def worker() -> None:
            nonlocal errors, issued
            while issued < max_requests and time.perf_counter() < stop_at:
                issued += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return len(latencies), errors, seconds, latencies


@dataclass(frozen=True, slots=True)
class LoadConfig:
    sizes: tuple[int, ...] = (100, 1000)
    concurrency: tuple[int, ...] = (1, 8, 64)
    verbs: tuple[str, ...] = ("filter", "prioritize")
    max_requests: int = 3000
    max_seconds: float = 10.0
    rss_nodes: int = 5000
    rss_requests: int = 200
    quick: bool = False


QUICK = LoadConfig(max_requests=200, max_seconds=2.0, rss_requests=20, quick=True)


async def run(cfg: LoadConfig, workdir: Path, tick: Callable[[str], None] | None = None) -> dict[str, Any]:
    results: list[LoadResult] = []
    memory: list[dict[str, Any]] = []
    for size in (*cfg.sizes, cfg.rss_nodes):
        async with extender_process(workdir, size) as (base, pid):
            idle = read_status_kib(pid)
            body = request_body([f"node-{i:05d}" for i in range(size)])
            load_sizes = size in cfg.sizes
            for verb in cfg.verbs:
                for conc in cfg.concurrency if load_sizes else (1,):
                    if tick:
                        tick(f"{verb} {size} nodes c={conc}")
                    limit = cfg.max_requests if load_sizes else cfg.rss_requests
                    ok, errors, seconds, lat = await run_load(
                        f"{base}/{verb}", body, conc, limit, cfg.max_seconds
                    )
                    lat.sort()
                    results.append(
                        LoadResult(
                            verb,
                            size,
                            conc,
                            ok,
                            errors,
                            seconds,
                            ok / seconds if seconds > 0 else 0.0,
                            _percentile(lat, 0.5) * 1000,
                            _percentile(lat, 0.99) * 1000,
                            (lat[-1] if lat else float("nan")) * 1000,
                        )
                    )
            loaded = read_status_kib(pid)
            memory.append(
                {
                    "nodes": size,
                    "rss_idle_mib": idle.get("VmRSS", 0) / 1024,
                    "rss_after_load_mib": loaded.get("VmRSS", 0) / 1024,
                    "peak_rss_mib": loaded.get("VmHWM", 0) / 1024,
                }
            )
    return {
        "config": asdict(cfg),
        "results": [asdict(r) for r in results],
        "memory": memory,
    }


def tables(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = doc["results"]
    return [
        {
            "title": "Extender under sustained load (loopback, real process, nodeCacheCapable bodies)",
            "columns": ["verb", "nodes", "concurrency", "requests", "errors", "req/s", "p50 ms", "p99 ms"],
            "rows": [
                [
                    r["verb"],
                    str(r["nodes"]),
                    str(r["concurrency"]),
                    str(r["requests"]),
                    str(r["errors"]),
                    f"{r['rps']:.0f}",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                ]
                for r in rows
            ],
        },
        {
            "title": "Extender memory (VmRSS from /proc/<pid>/status)",
            "columns": ["nodes in cache", "RSS idle (MiB)", "RSS after load (MiB)", "peak RSS (MiB)"],
            "rows": [
                [
                    str(m["nodes"]),
                    f"{m['rss_idle_mib']:.1f}",
                    f"{m['rss_after_load_mib']:.1f}",
                    f"{m['peak_rss_mib']:.1f}",
                ]
                for m in doc["memory"]
            ],
        },
    ]


def main(argv: Sequence[str] | None = None) -> int:
    from bench.evaluation import plots
    from bench.evaluation.machine import machine_info

    parser = argparse.ArgumentParser(
        prog="python -m bench.evaluation.load", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="a few hundred requests per point")
    add_out_argument(parser, "extender_load")
    parser.add_argument("--workdir", type=Path, default=Path(".cache/bench-load"))
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else LoadConfig()
    started = utcnow()
    try:
        doc = asyncio.run(
            run(cfg, args.workdir, tick=lambda s: print(f"[load] {s}", file=sys.stderr, flush=True))
        )
    except RuntimeError as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 2
    series = {
        f"{verb} p50 (c=1)": [
            (r["nodes"], r["p50_ms"]) for r in doc["results"] if r["verb"] == verb and r["concurrency"] == 1
        ]
        for verb in cfg.verbs
    } | {
        f"{verb} p99 (c=1)": [
            (r["nodes"], r["p99_ms"]) for r in doc["results"] if r["verb"] == verb and r["concurrency"] == 1
        ]
        for verb in cfg.verbs
    }
    args.out.mkdir(parents=True, exist_ok=True)
    png = plots.latency_vs_nodes(
        series,
        args.out / "extender_load_latency.png",
        "Extender latency vs nodes per request (loopback)",
        "latency (ms)",
    )
    doc |= {
        "benchmark": "extender_load",
        "schema": 1,
        "generatedAt": format_rfc3339(started),
        "quick": cfg.quick,
        "machine": machine_info(),
        "plots": [png.name],
    }
    doc["tables"] = tables(doc)
    (args.out / "extender_load.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    for row in doc["tables"][1]["rows"]:
        print(f"RSS with {row[0]} nodes: {row[2]} MiB after load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
