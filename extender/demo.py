"""`make demo` / `python -m extender.demo`: the extender placing a realistic stream of pods, no cluster.

Starts the real extender app on a free loopback port with bundled demo nodes (DE, FR, PL, SE, GB, ES
and one node without a zone) and a bundled snapshot, then plays kube-scheduler: for each pod it sends
filter → prioritize → bind exactly as the scheduler would (alternating nodeCacheCapable true/false),
adds the extender's score x weight x 10 to a simulated in-tree score, binds the winner through a fake
binder, and prints where each pod went and the intensity saved against the candidates' mean.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from carbon_common.interval import Interval
from carbon_common.jsonlog import setup_logging
from carbon_common.snapshot import Snapshot, ZoneReading, parse_snapshot
from carbon_common.timeutil import utcnow
from extender.app import create_app
from extender.fixed_nodes import MappingNodeLookup
from extender.settings import ExtenderSettings
from extender.view import CarbonState, CarbonView
from extender.zones import ZoneResolver, load_region_map

P = "carbon-aware.io/"


class RecordingBinder:
    """Accepts every bind and remembers it (the demo has no API server)."""

    def __init__(self) -> None:
        self.bound: dict[str, tuple[str, Mapping[str, str] | None]] = {}

    async def bind(
        self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str] | None
    ) -> str | None:
        self.bound[uid] = (node, annotations)
        return None

    async def close(self) -> None:
        pass


def _data(name: str) -> bytes:
    return resources.files("extender").joinpath(f"data/{name}").read_bytes()


def load_demo_snapshot(data: bytes | None, now: datetime) -> Snapshot:
    """The snapshot, with every time shifted so the newest observation is 15 minutes old: a bundled
    file would otherwise be stale (and scored neutrally) a few hours after it was written."""
    snapshot = parse_snapshot(data if data is not None else _data("demo-snapshot.json"))
    if not snapshot.zones:
        return snapshot
    newest = max(z.observed_at for z in snapshot.zones.values())
    shift = now.replace(microsecond=0) - timedelta(minutes=15) - newest
    zones = {
        name: ZoneReading(
            z.zone,
            z.intensity,
            z.observed_at + shift,
            z.source,
            z.estimated,
            z.signal,
            tuple(Interval(p.start + shift, p.end + shift, p.intensity) for p in z.forecast),
        )
        for name, z in snapshot.zones.items()
    }
    return Snapshot(snapshot.generated_at + shift, zones)


@dataclass(frozen=True, slots=True)
class DemoPod:
    name: str
    kind: str
    annotations: Mapping[str, str]


def pod_stream(count: int, rng: random.Random) -> list[DemoPod]:
    kinds = [
        ("web", {}),
        ("api", {}),
        ("batch", {P + "max-intensity": "250"}),
        ("train", {P + "max-intensity": "100"}),
        ("cron", {P + "opt-out": "true"}),
        ("etl", {P + "max-intensity": "about 200"}),  # malformed: logged, ignored, still placed
    ]
    weights = [30, 20, 20, 10, 10, 10]
    pods = []
    for i in range(count):
        kind, annotations = rng.choices(kinds, weights)[0]
        pods.append(DemoPod(f"{kind}-{i:03d}", kind, annotations))
    return pods


def _pod_json(pod: DemoPod) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "namespace": "demo",
            "uid": f"uid-{pod.name}",
            "annotations": dict(pod.annotations),
            "labels": {"app": pod.kind},
        },
        "spec": {
            "schedulerName": "carbon-aware-scheduler",
            "containers": [{"name": pod.kind, "image": f"registry.example/{pod.kind}:1.0", "resources": {}}],
        },
        "status": {"phase": "Pending"},
    }


@dataclass(slots=True)
class Placement:
    pod: DemoPod
    mode: str
    node: str | None
    zone: str | None
    intensity: float | None
    mean: float | None
    filtered: int
    note: str


async def _post(session: aiohttp.ClientSession, url: str, body: Any) -> Any:
    async with session.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as r:
        payload = orjson.loads(await r.read())
        if r.status != 200:
            raise RuntimeError(f"{url} answered {r.status}: {payload}")
        return payload


async def schedule(
    session: aiohttp.ClientSession,
    base: str,
    pod: DemoPod,
    nodes: Sequence[dict[str, Any]],
    cache_capable: bool,
    weight: int,
    rng: random.Random,
    zones: Mapping[str, str | None],
    intensity: Mapping[str, float],
) -> Placement:
    """One scheduling cycle the way kube-scheduler runs it."""
    mode = "NodeNames" if cache_capable else "Nodes"
    # In-tree filters already removed some nodes (resources, taints...): keep a random ~80%.
    feasible = [n for n in nodes if rng.random() < 0.8] or list(nodes)
    names = [n["metadata"]["name"] for n in feasible]
    args: dict[str, Any] = {"Pod": _pod_json(pod), "Nodes": None, "NodeNames": None}
    if cache_capable:
        args["NodeNames"] = names
    else:
        args["Nodes"] = {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": feasible}
    result = await _post(session, f"{base}/filter", args)
    if result["Error"]:
        return Placement(pod, mode, None, None, None, None, 0, f"filter error: {result['Error']}")
    if cache_capable:
        passed = result["NodeNames"] or []
    else:
        passed = [n["metadata"]["name"] for n in (result["Nodes"] or {}).get("items") or []]
    filtered = len(result["FailedNodes"]) + len(result["FailedAndUnresolvableNodes"])
    if not passed:
        return Placement(
            pod, mode, None, None, None, None, filtered, "unschedulable: every node over its cap"
        )
    # In-tree scoring plugins (weights sum to ~12, up to ~1,200 points); nodes differ by a few hundred.
    total = {name: rng.uniform(700.0, 900.0) for name in passed}
    if len(passed) > 1:  # kube-scheduler skips prioritize with a single feasible node
        if cache_capable:
            args["NodeNames"] = passed
        else:
            args["Nodes"] = {
                **args["Nodes"],
                "items": [n for n in feasible if n["metadata"]["name"] in set(passed)],
            }
        for host in await _post(session, f"{base}/prioritize", args):
            total[host["Host"]] += host["Score"] * weight * 10
    chosen = max(total, key=lambda name: total[name])
    bind = {"PodName": pod.name, "PodNamespace": "demo", "PodUID": f"uid-{pod.name}", "Node": chosen}
    error = (await _post(session, f"{base}/bind", bind))["Error"]
    zone = zones.get(chosen)
    known = [intensity[z] for n in passed if (z := zones.get(n)) is not None and z in intensity]
    mean = sum(known) / len(known) if known else None
    note = ""
    if error:
        note = f"bind error: {error}"
    elif pod.annotations.get(P + "opt-out") == "true":
        note = "opted out"
    elif filtered:
        note = f"{filtered} nodes over the cap"
    elif P + "max-intensity" in pod.annotations:
        note = "malformed annotation ignored" if "about" in pod.annotations[P + "max-intensity"] else ""
    return Placement(pod, mode, chosen, zone, intensity.get(zone) if zone else None, mean, filtered, note)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


async def run(args: argparse.Namespace) -> int:
    now = utcnow()
    settings = ExtenderSettings(host="127.0.0.1", port=0)
    resolver = ZoneResolver(settings.zone_label, settings.region_label, load_region_map(None))
    nodes: list[dict[str, Any]] = args.node_list["items"]
    zones = {n["metadata"]["name"]: resolver.zone_of_labels(n["metadata"].get("labels") or {}) for n in nodes}
    snapshot = load_demo_snapshot(args.snapshot_bytes, now)
    intensity = {z: r.intensity for z, r in snapshot.zones.items()}
    binder = RecordingBinder()
    app = create_app(
        settings,
        MappingNodeLookup(zones),
        CarbonState(CarbonView(snapshot, now, "demo")),
        binder,
        resolver=resolver,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(args.seed)
    print(
        f"carbon extender on {base}: {len(nodes)} nodes, zones (gCO2eq/kWh): "
        + ", ".join(f"{z} {i:.0f}" for z, i in sorted(intensity.items(), key=lambda kv: kv[1]))
    )
    print(
        f"extender weight {args.weight}: adds up to {args.weight * 100} points "
        "vs ~1,200 from in-tree plugins\n"
    )
    header = (
        f"{'pod':<12} {'mode':<9} {'node':<14} {'zone':<7} {'g/kWh':>6} {'cand. mean':>10} {'saved':>6}  note"
    )
    print(header)
    print("-" * len(header))
    placements: list[Placement] = []
    try:
        async with aiohttp.ClientSession() as session:
            for i, pod in enumerate(pod_stream(args.pods, rng)):
                p = await schedule(session, base, pod, nodes, i % 2 == 0, args.weight, rng, zones, intensity)
                placements.append(p)
                saved = None if p.intensity is None or p.mean is None else p.mean - p.intensity
                print(
                    f"{pod.name:<12} {p.mode:<9} {p.node or '-':<14} {p.zone or '-':<7} "
                    f"{_fmt(p.intensity):>6} {_fmt(p.mean):>10} {_fmt(saved):>6}  {p.note}"
                )
            async with session.get(f"{base}/metrics") as r:
                metrics = await r.text()
    finally:
        await runner.cleanup()
    placed = [p for p in placements if p.intensity is not None and p.mean is not None]
    chosen = sum(p.intensity for p in placed if p.intensity is not None)
    baseline = sum(p.mean for p in placed if p.mean is not None)
    print()
    print(
        f"{len(placements)} pods, {len(binder.bound)} bound, "
        f"{len(placements) - len(binder.bound)} unschedulable"
    )
    if placed and baseline:
        print(
            f"mean intensity of chosen nodes {chosen / len(placed):.0f} g/kWh vs "
            f"{baseline / len(placed):.0f} for a carbon-blind choice among the same candidates: "
            f"{100 * (baseline - chosen) / baseline:.0f}% lower"
        )
    avoided = [line for line in metrics.splitlines() if line.startswith("carbon_extender_intensity_avoided")]
    print("metrics: " + "; ".join(line for line in avoided if "_sum" in line or "_count" in line))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extender.demo", description=__doc__)
    parser.add_argument(
        "--snapshot", help="snapshot JSON to use instead of the bundled one (times are shifted)"
    )
    parser.add_argument("--nodes", help="v1 NodeList JSON to use instead of the bundled demo nodes")
    parser.add_argument("--pods", type=int, default=24, help="number of pods to schedule")
    parser.add_argument("--weight", type=int, default=5, help="extender weight in the scheduler config")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--log-level", default="error", help="extender log level (JSON lines on stderr)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        args.node_list = orjson.loads(
            Path(args.nodes).read_bytes() if args.nodes else _data("demo-nodes.json")
        )
        args.snapshot_bytes = Path(args.snapshot).read_bytes() if args.snapshot else None
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"demo: cannot read input: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
