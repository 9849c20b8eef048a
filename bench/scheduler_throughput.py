"""Scheduling throughput of the real kube-scheduler with our extender configured, against no extender.

    python -m bench.scheduler_throughput [--pods 1000 --nodes 500] [--rounds 1] [--quick] [--no-filter]
        [--no-bind] [--no-floor]

One run starts one control plane (etcd, kube-apiserver), one node set and one extender, then runs
each arm on it in turn with its own kube-scheduler process: "baseline" (no extender) and "extender"
(the chart's KubeSchedulerConfiguration: filter, prioritize and bind through the extender; no filter
with --no-filter, the chart's extender.filter=false; kube-scheduler binds itself with --no-bind,
extender.bind=false). Each arm creates its pods in a fresh namespace
from several client threads, and a watch records when each pod gets its node. Throughput = pods /
(all bound - first create), the figure a user waits on; the bind window (first bind to last bind)
is reported too, as it excludes the client's create rate.

A third arm, "floor", runs the same chart configuration (filter and prioritize; binds by the
scheduler itself) against hack/nullextender, a Go extender that answers without any policy or data:
what the extender protocol alone costs kube-scheduler on this machine, the ceiling for any extender.
Result: ratio = extender / baseline (target >= 0.85) and floor_ratio = floor / baseline, written to
bench/results/scheduler_throughput.json.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shlex
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.outputs import add_out_argument
from tests.e2e.kubeharness import (  # importable as `python -m bench...` runs from the repo root
    Binaries,
    ControlPlane,
    KubeApi,
    ManagedProcess,
    Scheduler,
    cache_dir,
    free_port,
    locate_binaries,
    plain_scheduler_config,
    render_scheduler_config,
    scheduler_values,
    start_extender,
    wait_until,
    write_snapshot,
)

ROOT = Path(__file__).resolve().parents[1]
ZONE_LABEL = "carbon-aware.io/zone"
# Real-world-ish spread (gCO2eq/kWh) so the extender's scores differ between nodes.
ZONES = {"SE": 30.0, "FR": 55.0, "GB": 210.0, "DE": 380.0, "PL": 690.0}
TARGET_RATIO = 0.85
NULL_EXTENDER_SRC = ROOT / "hack" / "nullextender"


@dataclass(frozen=True, slots=True)
class ArmResult:
    arm: str
    pods: int
    seconds: float
    """First create request sent → last pod seen bound."""
    pods_per_second: float
    bind_window_pods_per_second: float
    """(pods - 1) / (last bind - first bind): the scheduler's own pace, independent of the client."""
    create_seconds: float
    cpu_seconds: dict[str, float]
    """CPU time (user + system) each process used during the arm: on a small machine every process
    competes for the same cores, so this shows what the extender arm's extra time is spent on."""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (Linux), in seconds; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields after "(comm)": state is [0], utime [11], stime [12] (man 5 proc, fields 14 and 15).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Conns(threading.local):
    conn: http.client.HTTPSConnection | None = None


class RawClient:
    """Keep-alive HTTPS connections, one per thread: the harness's urllib client reconnects per call,
    and a TLS handshake per pod would make the client, not the scheduler, the bottleneck."""

    def __init__(self, api: KubeApi) -> None:
        self.host, port = api.server.removeprefix("https://").split(":")
        self.port = int(port)
        self.token = api.token
        self.context = ssl.create_default_context(cafile=str(api.ca_file))
        self._local = _Conns()

    def connect(self, timeout: float = 30.0) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout)

    def post(self, path: str, body: dict[str, Any]) -> None:
        for attempt in range(2):
            if self._local.conn is None:
                self._local.conn = self.connect()
            try:
                self._local.conn.request(
                    "POST",
                    path,
                    json.dumps(body),
                    {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
                )
                resp = self._local.conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                self._local.conn.close()
                self._local.conn = None
                if attempt:
                    raise
                continue
            if resp.status >= 300:
                raise RuntimeError(f"POST {path}: HTTP {resp.status}: {data[:500]!r}")
            return


def _pod(name: str, scheduler: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "schedulerName": scheduler,
            "containers": [
                {
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


class BindWatch(threading.Thread):
    """Watches a namespace's pods from a known resourceVersion and timestamps each first binding."""

    def __init__(self, client: RawClient, namespace: str, resource_version: str, expect: int, timeout: float):
        super().__init__(daemon=True)
        self.client, self.namespace, self.rv, self.expect = client, namespace, resource_version, expect
        self.deadline = time.monotonic() + timeout
        self.bound: dict[str, float] = {}
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while len(self.bound) < self.expect and time.monotonic() < self.deadline:
                self._stream()
        except BaseException as exc:  # reported by the caller
            self.error = exc
        finally:
            self.done.set()

    def _stream(self) -> None:
        remaining = max(1, int(self.deadline - time.monotonic()))
        conn = self.client.connect(timeout=remaining + 5)
        try:
            conn.request(
                "GET",
                f"/api/v1/namespaces/{self.namespace}/pods?watch=true&resourceVersion={self.rv}"
                f"&timeoutSeconds={remaining}",
                headers={"Authorization": f"Bearer {self.client.token}"},
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"watch: HTTP {resp.status}: {resp.read()[:300]!r}")
            while len(self.bound) < self.expect:
                line = resp.readline()
                if not line:
                    return  # the server closed the watch (timeoutSeconds): reconnect from self.rv
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {obj}")
                self.rv = obj["metadata"]["resourceVersion"]
                if obj["spec"].get("nodeName") and obj["metadata"]["name"] not in self.bound:
                    self.bound[obj["metadata"]["name"]] = time.monotonic()
        finally:
            conn.close()


def run_arm(
    arm: str,
    api: KubeApi,
    client: RawClient,
    scheduler: Scheduler,
    pods: int,
    workers: int,
    timeout: float,
    processes: Mapping[str, int],
) -> ArmResult:
    namespace = f"bench-{arm}-{int(time.time() * 1000) % 10**8}"
    api.create_namespace(namespace)
    rv = api.request("GET", f"/api/v1/namespaces/{namespace}/pods")["metadata"]["resourceVersion"]
    watch = BindWatch(client, namespace, rv, pods, timeout)
    watch.start()
    path = f"/api/v1/namespaces/{namespace}/pods"
    watched = {**processes, "kube-scheduler": scheduler.process.pid, "bench client": os.getpid()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda i: client.post(path, _pod(f"p{i:05d}", scheduler.name)), range(pods)))
    created = time.monotonic()
    watch.done.wait(timeout + 10)
    if watch.error is not None:
        raise watch.error
    if len(watch.bound) < pods:
        raise RuntimeError(
            f"{arm}: only {len(watch.bound)}/{pods} pods bound within {timeout:g} s;"
            f" scheduler log: {scheduler.process.log_path}\n{scheduler.process.tail(20)}"
        )
    cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in watched.items()}
    times = sorted(watch.bound.values())
    seconds = times[-1] - start
    window = times[-1] - times[0]
    return ArmResult(
        arm=arm,
        pods=pods,
        seconds=round(seconds, 3),
        pods_per_second=round(pods / seconds, 1),
        bind_window_pods_per_second=round((pods - 1) / window, 1) if window > 0 else float("inf"),
        create_seconds=round(created - start, 3),
        cpu_seconds=cpu,
    )


def create_nodes(api: KubeApi, count: int, workers: int) -> None:
    zones = list(ZONES)

    def make(i: int) -> None:
        api.create_node(f"bench-node-{i:04d}", {ZONE_LABEL: zones[i % len(zones)]}, cpu="32", memory="128Gi")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(make, range(count)))


def build_null_extender() -> Path:
    """`go build` hack/nullextender into the control-plane cache, once per source and Go version."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the floor arm needs Go to build hack/nullextender (or pass --no-floor)")
    env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-mod=mod"}
    digest = hashlib.sha256(subprocess.run([go, "version"], capture_output=True, check=True).stdout)
    for path in sorted(NULL_EXTENDER_SRC.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    cache = cache_dir()
    binary = cache / f"nullextender-{digest.hexdigest()[:16]}"
    if not binary.exists():
        print(f"[bench] go build hack/nullextender -> {binary}", file=sys.stderr)
        cache.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        subprocess.run(
            [go, "build", "-trimpath", "-o", str(partial), "."], cwd=NULL_EXTENDER_SRC, env=env, check=True
        )
        partial.rename(binary)
    return binary


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_null_extender(binary: Path, log_dir: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    proc = ManagedProcess(
        "null extender", [str(binary), "-listen", f"127.0.0.1:{port}"], log_dir / "null-extender.log"
    )
    try:
        wait_until(lambda: _accepts(port), timeout=30, what="null extender", watch=[proc], interval=0.1)
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument(
        "--rounds", type=int, default=1, help="arms alternate; the median of each is compared"
    )
    parser.add_argument("--workers", type=int, default=16, help="client threads creating pods")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per arm before giving up")
    parser.add_argument(
        "--extender-args", default="", help="extra extender flags, e.g. '--no-annotate-decision'"
    )
    parser.add_argument(
        "--no-filter",
        dest="filter",
        action="store_false",
        help="render the chart with extender.filter=false (no filterVerb: caps are not enforced)",
    )
    parser.add_argument(
        "--client-qps",
        type=float,
        default=1000.0,
        help="clientConnection.qps (burst = 2x) for BOTH arms' scheduler; 0 keeps kube-scheduler's "
        "defaults (qps 50, burst 100), which cap the baseline's own Binding calls at 50/s while the "
        "extender arm binds through the extender, so the comparison would flatter the extender",
    )
    parser.add_argument(
        "--no-bind",
        dest="bind",
        action="store_false",
        help="render the chart with extender.bind=false (kube-scheduler binds; no decision annotation)",
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the floor arm (the same configuration against hack/nullextender, built with Go)",
    )
    parser.add_argument("--quick", action="store_true", help="100 pods on 50 nodes (smoke run)")
    add_out_argument(parser, "scheduler_throughput")
    args = parser.parse_args(argv)
    if args.quick:
        args.pods, args.nodes = 100, 50
    output: Path = args.out / "scheduler_throughput.json"

    workdir = ROOT / "tests" / ".artifacts" / f"bench-throughput-{time.strftime('%Y%m%d-%H%M%S')}"
    binaries = locate_binaries()
    null_binary = build_null_extender() if args.floor else None
    try:
        measured = _run(args, binaries, null_binary, workdir)
    except BaseException:
        print(f"[bench] failed; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return _report(args, measured, output)


def extender_latency(metrics_text: str) -> dict[str, dict[str, float]]:
    """Per verb: requests served and mean server time (ms), from the extender's own histogram: where
    the extender arm's extra time per pod goes (the rest is HTTP, JSON on the scheduler side, and CPU
    shared with the scheduler on a small machine)."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            verb = sample.labels.get("verb", "")
            if sample.name == "carbon_extender_request_duration_seconds_sum":
                sums[verb] = sums.get(verb, 0.0) + sample.value
            elif sample.name == "carbon_extender_request_duration_seconds_count":
                counts[verb] = counts.get(verb, 0.0) + sample.value
    return {
        verb: {"requests": counts[verb], "mean_ms": round(1000 * sums.get(verb, 0.0) / counts[verb], 3)}
        for verb in sorted(counts)
        if counts[verb]
    }


Results = tuple[dict[str, list[ArmResult]], dict[str, dict[str, float]]]


def _run(args: argparse.Namespace, binaries: Binaries, null_binary: Path | None, workdir: Path) -> Results:
    with ControlPlane(binaries, workdir) as plane:
        api = plane.api
        client = RawClient(api)
        t0 = time.monotonic()
        create_nodes(api, args.nodes, args.workers)
        print(f"[bench] {args.nodes} nodes in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        snapshot = workdir / "snapshot.json"
        write_snapshot(snapshot, ZONES)
        extender = start_extender(
            kubeconfig=plane.kubeconfig,
            snapshot_file=snapshot,
            log_dir=workdir / "logs",
            extra_args=shlex.split(args.extender_args),
        )
        null: ManagedProcess | None = None
        try:
            url = f"http://127.0.0.1:{extender.port}"
            values = scheduler_values("bench-extender", extender_url=url, bind=args.bind)
            # The chart's extender.filter value (default true): --no-filter measures the cheaper setup
            # for clusters without max-intensity caps.
            values["extender"]["filter"] = args.filter
            configs = {
                "baseline": plain_scheduler_config("bench-baseline"),
                "extender": render_scheduler_config(values, workdir),
            }
            if null_binary is not None:
                null, null_url = start_null_extender(null_binary, workdir / "logs")
                # The null extender cannot bind: the scheduler binds itself, as without bindVerb.
                floor_values = scheduler_values("bench-floor", extender_url=null_url, bind=False)
                floor_values["extender"]["filter"] = args.filter
                configs["floor"] = render_scheduler_config(floor_values, workdir)
            if args.client_qps > 0:
                for config in configs.values():
                    connection = config.setdefault("clientConnection", {})
                    connection["qps"] = args.client_qps
                    connection["burst"] = int(2 * args.client_qps)
            arms = list(configs)
            results: dict[str, list[ArmResult]] = {arm: [] for arm in arms}
            processes = {p.name: p.pid for p in plane.processes} | {"extender": extender.process.pid}
            if null is not None:
                processes["null extender"] = null.pid
            for round_ in range(args.rounds):
                # Rotate the order so no arm always runs on the emptiest cluster.
                shift = round_ % len(arms)
                for arm in arms[shift:] + arms[:shift]:
                    sched = Scheduler(binaries, configs[arm], plane.kubeconfig, workdir, verbosity=0)
                    try:
                        res = run_arm(
                            arm, api, client, sched, args.pods, args.workers, args.timeout, processes
                        )
                    finally:
                        sched.stop()
                    print(f"[bench] {asdict(res)}", file=sys.stderr)
                    results[arm].append(res)
            latency = extender_latency(extender.metrics())
            print(f"[bench] extender server time per verb: {latency}", file=sys.stderr)
        finally:
            if null is not None:
                null.stop()
            extender.stop()
    return results, latency


def _report(args: argparse.Namespace, measured: Results, output: Path) -> int:
    results, latency = measured

    def median(arm: str, key: str) -> float:
        return float(statistics.median(getattr(r, key) for r in results[arm]))

    ratio = median("extender", "pods_per_second") / median("baseline", "pods_per_second")
    window_ratio = median("extender", "bind_window_pods_per_second") / median(
        "baseline", "bind_window_pods_per_second"
    )
    floor = results.get("floor")
    floor_ratio = (
        median("floor", "pods_per_second") / median("baseline", "pods_per_second") if floor else None
    )
    summary = {
        "benchmark": "scheduler_throughput",
        "kube_scheduler": "upstream, built by hack/build-controlplane.sh",
        "pods": args.pods,
        "nodes": args.nodes,
        "rounds": args.rounds,
        "client_workers": args.workers,
        "extender_args": args.extender_args,
        "extender_filter_verb": args.filter,
        "extender_bind_verb": args.bind,
        "scheduler_client_qps": args.client_qps or "kube-scheduler default (50, burst 100)",
        "baseline": [asdict(r) for r in results["baseline"]],
        "extender": [asdict(r) for r in results["extender"]],
        "floor": [asdict(r) for r in floor or ()],
        "extender_server_time": latency,
        "ratio": round(ratio, 3),
        "floor_ratio": round(floor_ratio, 3) if floor_ratio is not None else None,
        "bind_window_ratio": round(window_ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"baseline {median('baseline', 'pods_per_second'):.1f} pods/s, "
        f"extender {median('extender', 'pods_per_second'):.1f} pods/s, "
        f"ratio {ratio:.3f} (target >= {TARGET_RATIO}); bind-window ratio {window_ratio:.3f}"
        + (f"; floor (null extender) ratio {floor_ratio:.3f}" if floor_ratio is not None else "")
        + f"; wrote {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
