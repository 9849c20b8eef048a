"""`python -m bench.fuzz_http`: fuzz every HTTP surface of the real services, as processes.

    python -m bench.fuzz_http [--cases N] [--surface NAME ...] [--seed-start S] [--out DIR]

Surfaces: the extender's verbs (`python -m extender`, static nodes + snapshot file), the feed's API
(`python -m carbon_feed`, replaying a small trace) and the deferral webhook (`python -m deferral
--no-controller`, which needs no cluster). Each case is a malformed-but-plausible request built from one
(surface, seed) pair alone, so any failure is replayed with `--surface NAME --seed-start SEED --cases 1`.

Checked per answer: no 5xx, a JSON object body on every non-2xx, an answer at all (no reset, no
timeout), and for the webhook the request's uid echoed whenever the review carried one. Answers slower
than SLOW_S are counted, not failed. Between batches the process must be alive and answer /healthz;
a dead one counts as a crash and is restarted. Peak RSS is VmHWM from /proc. tests/fuzz runs a few
hundred cases per surface of the same generator; docs/fuzz.md has the numbers of a large run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import string
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import yaml
from yarl import URL

from bench.evaluation.progress import Progress
from bench.outputs import add_out_argument
from carbon_common.snapshot import Snapshot, ZoneReading, write_snapshot_atomic
from carbon_common.timeutil import floor_hour, utcnow
from tests.e2e.kubeharness.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
VALUES = ROOT / "manifests" / "chart" / "carbon-aware-scheduler" / "values.yaml"
SURFACES = ("extender", "feed", "webhook")
SLOW_S = 2.0
TIMEOUT_S = 15.0
HEALTH_EVERY = 50
"""Cases between liveness checks: a crash is pinned to the last batch of this many."""
MAX_FAILURES_KEPT = 20
"""Failing cases kept in the report per kind of problem."""
MAX_LINE = 8190
"""aiohttp's default max_line_size: a longer request line is refused by its parser with a text 400."""
ADMISSION_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
WEBHOOK_MAX_REVIEW_BYTES = 3 * 1024 * 1024
"""deferral.webhook.MAX_REVIEW_BYTES: a larger review is rightly refused without its uid."""

# --- generation (pure: a case depends on (surface, seed) only) ------------------------------------

TIMESTAMPS = (
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-01-01T25:00:00Z",
    "2026-01-01T00:00:00",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00.999999999999Z",
    "now",
    "",
    " ",
    "1e10",
    "-1",
    "\u0662\u0660\u0662\u0666-01-01T00:00:00Z",
    "2026-01-01T00:00:00Z\u0000",
)
DURATIONS = (
    "1h",
    "0",
    "-5",
    "nan",
    "inf",
    "1e309",
    "99999999999h",
    "1h30m",
    "1.5",
    "0.0000001",
    "h",
    "5x",
    "\u00b5s",
    "9" * 400,
    "",
)
STRINGS = (
    "",
    " ",
    "\u0000",
    "\u202e\u00fc\U0001f642",
    "../../etc/passwd",
    "%00%ff",
    "null",
    "' OR 1=1 --",
    "a" * 254,
)


DEEP = "\u0001deep\u0001"
"""Replaced by 20,000 nested arrays once encoded: deeper than json.dumps (or repr) can recurse."""
_DEEP_JSON = json.dumps(DEEP).encode()


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def weird_value(rng: random.Random) -> Any:
    """A value of the wrong type, size or range for whatever field it replaces."""
    choice = rng.randrange(16)
    if choice == 0:
        return rng.choice([None, True, False, [], {}])
    if choice == 1:
        return rng.choice([0, -1, 2**63, -(2**63) - 1, 10**30, 1e308, -1e-308, 0.5])
    if choice == 2:
        return math.nan  # json.dumps writes NaN: invalid JSON
    if choice == 3:
        return "x" * rng.choice([1_000, 70_000, 600_000])
    if choice == 4:
        return rng.choice([_nested(20), _nested(300), DEEP])
    if choice == 5:
        return list(range(rng.choice([100, 20_000])))
    if choice == 6:
        return "\ud800"  # a lone surrogate, escaped by json.dumps
    if choice in (7, 8, 9):
        return rng.choice(TIMESTAMPS)
    if choice == 10:
        return rng.choice(DURATIONS)
    return rng.choice(STRINGS)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value[:20]):
            yield from _paths(child, (*prefix, i))


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return root


def mutate_json(value: Any, rng: random.Random) -> tuple[Any, list[str]]:
    """1-3 structural mutations of a (deep-copied) JSON value, with a note for each."""
    value = json.loads(json.dumps(value))
    notes: list[str] = []
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(value))
        path = rng.choice(paths)
        where = "/".join(map(str, path)) or "<root>"
        op = rng.randrange(5)
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        if op == 0 and path and isinstance(parent, dict):
            del parent[path[-1]]
            notes.append(f"delete {where}")
        elif op == 1 and path and isinstance(parent, dict) and isinstance(path[-1], str):
            parent[path[-1].swapcase()] = parent.pop(path[-1])
            notes.append(f"swapcase key {where}")
        elif op == 2 and isinstance(_get(value, path), dict):
            _get(value, path)[rng.choice(["extra", "", "\u00fc", "Pod", "uid"])] = weird_value(rng)
            notes.append(f"add key under {where}")
        else:
            new = weird_value(rng)
            value = _set(value, path, new)
            notes.append(f"set {where} = {_short(new)}")
    return value, notes


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        root = root[key]
    return root


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def mutate_bytes(body: bytes, rng: random.Random) -> tuple[bytes, str]:
    op = rng.randrange(7)
    if op == 0:
        cut = rng.randrange(len(body) + 1)
        return body[:cut], f"truncate at {cut}"
    if op == 1:
        at = rng.randrange(len(body) + 1)
        junk = bytes([rng.randrange(256)])
        return body[:at] + junk + body[at:], f"insert {junk!r} at {at}"
    if op == 2:
        return b"\xff\xfe" + body, "invalid UTF-8 prefix"
    if op == 3:
        other = rng.choice([b"", b"null", b"[]", b'"s"', b"1e999", b"{", b"{}", b"[" * 5000])
        return other, f"body {other[:20]!r}"
    if op == 4:
        return body + b"garbage", "trailing garbage"
    if op == 5:
        return body.replace(b'"', b"'", 3), "single quotes"
    return body * 2, "body twice"


def encode(value: Any) -> bytes:
    # json, not orjson: it writes NaN and escapes lone surrogates, both of which a fuzz wants to send.
    return json.dumps(value).encode().replace(_DEEP_JSON, b"[" * 20_000 + b"]" * 20_000)


@dataclass(frozen=True, slots=True)
class Case:
    surface: str
    seed: int
    method: str
    path: str
    """Already percent-encoded path and query, sent as is."""
    body: bytes | None
    content_type: str | None
    mutation: str
    headers: tuple[tuple[str, str], ...] = ()
    hangup: bool = False
    """Send the headers and part of the body, then close: only the service's liveness is checked."""
    expect_uid: str | None = None
    """Webhook: the review's request.uid, which the answer must echo..."""
    expect_version: str | None = None
    """...in the apiVersion the review came in."""

    def describe(self) -> dict[str, Any]:
        body = self.body or b""
        return {
            "surface": self.surface,
            "seed": self.seed,
            "method": self.method,
            "path": self.path[:300],
            "contentType": self.content_type,
            "mutation": self.mutation[:500],
            "bodyBytes": len(body),
            "bodyHead": body[:300].decode(errors="replace"),
        }


_DEMO_NODES: list[dict[str, Any]] = orjson.loads(
    resources.files("extender").joinpath("data/demo-nodes.json").read_bytes()
)["items"]
NODE_NAMES = [n["metadata"]["name"] for n in _DEMO_NODES]
ZONES = ("DE", "FR", "PL")


def _pod(rng: random.Random, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"job-{rng.randrange(1000)}",
            "namespace": "batch",
            "uid": f"uid-{rng.randrange(10**9)}",
            "annotations": annotations,
        },
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "schedulerName": "carbon"},
    }


def _extender_valid(rng: random.Random) -> tuple[str, Any]:
    verb = rng.choice(["filter", "prioritize", "bind", "preempt"])
    annotations = rng.choice(
        [{}, {"carbon-aware.io/max-intensity": "300"}, {"carbon-aware.io/opt-out": "true"}]
    )
    pod = _pod(rng, annotations)
    if verb == "bind":
        return verb, {"PodName": "p", "PodNamespace": "n", "PodUID": "u", "Node": rng.choice(NODE_NAMES)}
    if verb == "preempt":
        victims = {name: {"Pods": [{"UID": "v1"}], "NumPDBViolations": 0} for name in NODE_NAMES[:3]}
        return verb, {"Pod": pod, "NodeNameToMetaVictims": victims, "NodeNameToVictims": None}
    if rng.random() < 0.5:
        return verb, {"Pod": pod, "NodeNames": rng.sample(NODE_NAMES, 3), "Nodes": None}
    return verb, {"Pod": pod, "Nodes": {"items": rng.sample(_DEMO_NODES, 2)}, "NodeNames": None}


def _transport(rng: random.Random, path: str, methods: Sequence[str]) -> tuple[str, str, str]:
    """Maybe a wrong method or path: (method, path, note)."""
    roll = rng.random()
    if roll < 0.06:
        method = rng.choice(
            [m for m in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD") if m not in methods]
        )
        return method, path, f"method {method}"
    if roll < 0.12:
        wrong = rng.choice(
            [
                path + "/",
                path.upper(),
                path + "%00",
                "/%2e%2e" + path,
                "/",
                "/nope",
                path + "?x=" + "y" * 3000,
            ]
        )
        return methods[0], wrong, f"path {wrong[:40]}"
    return methods[0], path, ""


def _body_case(
    rng: random.Random, surface: str, seed: int, path: str, value: Any, methods: Sequence[str]
) -> Case:
    notes: list[str] = []
    if rng.random() < 0.8:
        value, notes = mutate_json(value, rng)
    body = encode(value)
    if rng.random() < 0.15:
        body, note = mutate_bytes(body, rng)
        notes.append(note)
    content_type: str | None = "application/json"
    if rng.random() < 0.07:
        content_type = rng.choice(
            [None, "text/plain", "", "application/json; charset=latin-1", "multipart/x"]
        )
        notes.append(f"content-type {content_type!r}")
    method, path, note = _transport(rng, path, methods)
    if note:
        notes.append(note)
    hangup = rng.random() < 0.02
    if hangup:
        notes.append("client hangs up mid-body")
    return Case(surface, seed, method, path, body, content_type, "; ".join(notes), hangup=hangup)


def extender_case(seed: int) -> Case:
    rng = random.Random(f"extender/{seed}")
    verb, value = _extender_valid(rng)
    return _body_case(rng, "extender", seed, "/" + verb, value, ("POST",))


def webhook_case(seed: int, now: datetime | None = None) -> Case:
    rng = random.Random(f"webhook/{seed}")
    base = now or datetime(2026, 6, 1, tzinfo=UTC)
    annotations = {"carbon-aware.io/duration": rng.choice(["1h", "30m", "5400"])}
    if rng.random() < 0.5:
        annotations["carbon-aware.io/deadline"] = (base + timedelta(hours=12)).isoformat()
    else:
        annotations["carbon-aware.io/max-delay"] = rng.choice(["6h", "12h"])
    if rng.random() < 0.3:
        annotations["carbon-aware.io/earliest-start"] = (base + timedelta(hours=1)).isoformat()
    if rng.random() < 0.4:  # the values the annotations parser must refuse without failing the review
        key = rng.choice(["duration", "deadline", "max-delay", "earliest-start"])
        annotations["carbon-aware.io/" + key] = rng.choice(TIMESTAMPS + DURATIONS)
    pod = _pod(rng, annotations)
    review = {
        "apiVersion": rng.choice(ADMISSION_VERSIONS),
        "kind": "AdmissionReview",
        "request": {
            "uid": f"review-{seed}",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": rng.choice(["CREATE", "CREATE", "CREATE", "UPDATE"]),
            "namespace": "batch",
            "object": pod,
            "oldObject": None,
            "dryRun": False,
        },
    }
    case = _body_case(rng, "webhook", seed, "/mutate", review, ("POST",))
    return _with_expected_uid(case)


def _with_expected_uid(case: Case) -> Case:
    """The uid the API server needs back: whenever POST /mutate carries an AdmissionReview (kind, a
    known apiVersion, a request with a non-empty uid). Anything else may rightly get a 400 without one."""
    if case.method != "POST" or case.path != "/mutate" or case.hangup or case.body is None:
        return case
    if len(case.body) > WEBHOOK_MAX_REVIEW_BYTES:
        return case
    try:
        review = orjson.loads(case.body)
    except orjson.JSONDecodeError:
        return case
    if (
        not isinstance(review, dict)
        or review.get("kind") != "AdmissionReview"
        or review.get("apiVersion") not in ADMISSION_VERSIONS
    ):
        return case
    request = review.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    if not isinstance(uid, str) or not uid:
        return case
    return dataclasses.replace(case, expect_uid=uid, expect_version=review["apiVersion"])


def _query_value(rng: random.Random, valid: str) -> str:
    roll = rng.random()
    if roll < 0.45:
        return valid
    if roll < 0.75:
        return rng.choice(TIMESTAMPS + DURATIONS)
    if roll < 0.85:
        return rng.choice(STRINGS)
    return "z" * rng.choice([100, 3_000])


def feed_case(seed: int, now: datetime | None = None) -> Case:
    rng = random.Random(f"feed/{seed}")
    base = now or datetime(2026, 6, 1, tzinfo=UTC)
    zone = rng.choice([*ZONES, "XX", "de", "", "\u00fc", "../v1/zones", "Z" * 500])
    endpoint = rng.choice(["intensity", "forecast", "best", "best", "zones", "all", "snapshot"])
    params: list[tuple[str, str]] = []
    headers: tuple[tuple[str, str], ...] = ()
    if endpoint == "intensity":
        path = "/v1/intensity/" + quote(zone, safe="")
        params = [("from", (base - timedelta(hours=6)).isoformat()), ("to", base.isoformat())]
    elif endpoint == "forecast":
        path = "/v1/forecast/" + quote(zone, safe="")
    elif endpoint == "best":
        path = "/v1/best"
        params = [
            ("duration", rng.choice(["1h", "3600", "30m"])),
            ("start", base.isoformat()),
            ("deadline", (base + timedelta(hours=rng.choice([6, 24, 400]))).isoformat()),
            ("zones", ",".join(rng.sample(ZONES, 2))),
        ]
    elif endpoint == "snapshot":
        path = "/v1/snapshot"
        headers = (("If-None-Match", rng.choice(['"x"', "*", ",,,", "\u00fc".encode().decode("latin-1")])),)
    else:
        path = "/v1/zones" if endpoint == "zones" else "/v1/intensity"
    notes = [f"{endpoint} zone={zone[:20]!r}"]
    mutated = [(key, _query_value(rng, value)) for key, value in params]
    if rng.random() < 0.2:
        mutated = [p for p in mutated if rng.random() < 0.5]
    if rng.random() < 0.1:
        mutated.append((rng.choice(["from", "start", "x", ""]), rng.choice(TIMESTAMPS)))
    # Sometimes unencoded: "%ZZ", "&", "=" and "+" as a careless client sends them (control characters,
    # spaces and non-ASCII still encoded: no HTTP client sends those raw).
    safe = string.punctuation if rng.random() < 0.1 else ""
    query = "&".join(f"{quote(k, safe=safe)}={quote(v, safe=safe)}" for k, v in mutated)
    notes += [f"{k}={v[:40]!r}" for k, v in mutated if (k, v) not in params]
    full = path + ("?" + query if query else "")
    method, full, note = _transport(rng, full, ("GET",))
    if note:
        notes.append(note)
    body = None
    if method != "GET" and rng.random() < 0.5:
        body = encode(mutate_json({"zone": zone}, rng)[0])
    return Case("feed", seed, method, full, body, None, "; ".join(notes), headers)


GENERATORS: dict[str, Callable[[int], Case]] = {
    "extender": extender_case,
    "feed": feed_case,
    "webhook": webhook_case,
}


# --- checks (pure) --------------------------------------------------------------------------------


PARSER = " from the HTTP parser (long line)"


def long_line(case: Case) -> bool:
    """Whether aiohttp's parser refuses the request line itself (over MAX_LINE bytes)."""
    return len(case.method) + len(case.path) + len(" HTTP/1.1") > MAX_LINE


def problems(case: Case, status: int, body: bytes) -> list[str]:
    """What is wrong with this answer to this case; [] when it is fine."""
    found: list[str] = []
    if status >= 500:
        found.append("5xx")
    if status >= 400 and case.method != "HEAD":
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            # aiohttp's HTTP parser answers an over-long request line itself, before any middleware.
            parser = status == 400 and long_line(case)
            found.append(f"non-JSON {status} body" + (PARSER if parser else ""))
    if case.expect_uid is not None:
        try:
            answer = orjson.loads(body)
            uid, version = answer["response"]["uid"], answer["apiVersion"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            uid = version = None
        if status != 200 or uid != case.expect_uid:
            found.append("webhook did not echo the review uid")
        elif version != case.expect_version:
            found.append("webhook answered in another apiVersion")
    return found


# --- the services ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    peak_rss_kib: int = 0
    # Where this run's output starts in the log: restarts append, and an earlier run's lines (the same
    # --work folder) must not be counted as this run's errors.
    log_start: int = -1

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.log_start < 0:
            self.log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(
                self.argv, stdout=handle, stderr=subprocess.STDOUT, env=self.env, cwd=self.log.parent
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sample_rss(self) -> None:
        """VmHWM: the kernel's own peak resident set of the process, so no sample can miss a spike."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 10 s."""
        if self.proc is None:
            return
        self.sample_rss()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def error_log_lines(self) -> int:
        count = 0
        with contextlib.suppress(OSError):
            with self.log.open("rb") as handle:
                handle.seek(max(self.log_start, 0))
                text = handle.read().decode(errors="replace")
            for line in text.splitlines():
                if line.startswith("Traceback"):
                    count += 1
                elif line.startswith("{"):
                    with contextlib.suppress(orjson.JSONDecodeError):
                        record = orjson.loads(line)
                        if isinstance(record, dict) and record.get("level") in ("error", "critical"):
                            count += 1
        return count


def _env(prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def extender_service(workdir: Path) -> Service:
    nodes = workdir / "nodes.json"
    nodes.write_bytes(resources.files("extender").joinpath("data/demo-nodes.json").read_bytes())
    snapshot = workdir / "snapshot.json"
    now = datetime.now(UTC)
    readings = {z: ZoneReading(z, 100.0 + 200 * i, now, "fuzz") for i, z in enumerate(ZONES)}
    write_snapshot_atomic(snapshot, Snapshot(now, readings))
    port = free_port()
    env = _env("CARBON_EXTENDER_")
    env["CARBON_EXTENDER_PORT"] = str(port)
    argv = [sys.executable, "-m", "extender", "--nodes-file", str(nodes), "--snapshot-file", str(snapshot)]
    return Service("extender", argv, env, port, workdir / "extender.log")


def feed_service(workdir: Path) -> Service:
    start = floor_hour(utcnow()) - timedelta(days=2)
    lines = ["datetime,zone,intensity"]
    for hour in range(24 * 5):
        for i, zone in enumerate(ZONES):
            stamp = (start + timedelta(hours=hour)).isoformat().replace("+00:00", "Z")
            lines.append(f"{stamp},{zone},{100 + 50 * i + (hour * 7) % 90}")
    trace = workdir / "trace.csv"
    trace.write_text("\n".join(lines) + "\n")
    port = free_port()
    config = {
        "host": "127.0.0.1",
        "port": port,
        "db": str(workdir / "feed.sqlite"),
        "log_level": "warning",
        "providers": [
            {"kind": "replay", "name": "replay", "options": {"path": str(trace), "horizon_hours": 48}}
        ],
    }
    path = workdir / "feed.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    argv = [sys.executable, "-m", "carbon_feed", "--config", str(path)]
    return Service("feed", argv, _env("CARBON_FEED_"), port, workdir / "feed.log")


def webhook_service(workdir: Path) -> Service:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "deferral",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-controller",
        "--no-leader-elect",
        "--log-level",
        "warning",
    ]
    return Service("webhook", argv, _env("CARBON_DEFERRAL_"), port, workdir / "webhook.log")


SERVICES: dict[str, Callable[[Path], Service]] = {
    "extender": extender_service,
    "feed": feed_service,
    "webhook": webhook_service,
}


@contextlib.contextmanager
def running(surface: str, workdir: Path) -> Iterator[Service]:
    """The surface's service started in `workdir`; stopped (by PID) whatever happens."""
    workdir.mkdir(parents=True, exist_ok=True)
    service = SERVICES[surface](workdir)
    service.start()
    try:
        yield service
    finally:
        service.stop()


# --- the run --------------------------------------------------------------------------------------


@dataclass(slots=True)
class SurfaceReport:
    surface: str
    requests: int = 0
    crashes: int = 0
    server_errors: int = 0
    no_answer: int = 0
    slow: int = 0
    max_latency_s: float = 0.0
    peak_rss_mib: float = 0.0
    memory_limit_mib: float | None = None
    error_log_lines: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def fail(self, case: Case, what: list[str], status: int | None, body: bytes) -> None:
        for item in what:
            self.problems[item] += 1
        # The first few of each kind, so a rare kind is never crowded out by a frequent one.
        if any(self.problems[item] <= MAX_FAILURES_KEPT for item in what):
            self.failures.append(
                {
                    "problems": what,
                    "request": case.describe(),
                    "status": status,
                    "response": body[:500].decode(errors="replace"),
                }
            )

    @property
    def failed_seeds(self) -> list[int]:
        return sorted({f["request"]["seed"] for f in self.failures})

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "requests": self.requests,
            "crashes": self.crashes,
            "5xx": self.server_errors,
            "noAnswer": self.no_answer,
            "slow": self.slow,
            "slowThresholdS": SLOW_S,
            "p50LatencyS": round(lat[len(lat) // 2], 4) if lat else None,
            "p99LatencyS": round(lat[int(len(lat) * 0.99)], 4) if lat else None,
            "maxLatencyS": round(self.max_latency_s, 4),
            "peakRssMiB": round(self.peak_rss_mib, 1),
            "memoryLimitMiB": self.memory_limit_mib,
            "errorLogLines": self.error_log_lines,
            "statuses": dict(sorted(self.statuses.items())),
            "problems": dict(sorted(self.problems.items())),
            "failedSeeds": self.failed_seeds,
            "failures": self.failures,
        }


async def _hangup(service: Service, case: Case) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    body = case.body or b""
    head = (
        f"{case.method} {case.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {case.content_type or 'application/json'}\r\n"
        f"Content-Length: {len(body) + 1000}\r\n\r\n"
    )
    writer.write(head.encode("utf-8", "surrogateescape") + body[: len(body) // 2])
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    del reader


async def send(session: aiohttp.ClientSession, service: Service, case: Case, report: SurfaceReport) -> None:
    report.requests += 1
    started = time.monotonic()
    if case.hangup:
        with contextlib.suppress(OSError):
            await _hangup(service, case)
        report.statuses["hangup"] += 1
        return
    headers = dict(case.headers)
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    try:
        async with session.request(
            case.method,
            URL(service.base + case.path, encoded=True),
            data=case.body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        ) as resp:
            body = await resp.read()
            status = resp.status
    except ValueError as exc:  # the client refused to send it: a generator bug, not the service's
        report.statuses["unsendable"] += 1
        report.fail(case, [f"unsendable: {exc}"], None, b"")
        return
    except (aiohttp.ClientError, TimeoutError) as exc:
        report.no_answer += 1
        report.statuses["no answer"] += 1
        # HEAD with an over-long line: the parser's 400 carries a body, which a HEAD answer must not.
        what = f"no answer: {type(exc).__name__}" + (PARSER if long_line(case) else "")
        report.fail(case, [what], None, str(exc).encode())
        return
    elapsed = time.monotonic() - started
    report.latencies.append(elapsed)
    report.max_latency_s = max(report.max_latency_s, elapsed)
    report.slow += elapsed > SLOW_S
    report.statuses[str(status)] += 1
    report.server_errors += status >= 500
    found = problems(case, status, body)
    if found:
        report.fail(case, found, status, body)


async def wait_healthy(
    session: aiohttp.ClientSession, service: Service, within: float = 30.0, path: str = "/healthz"
) -> bool:
    """True once `path` answers 200; False if the process exits or `within` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not service.alive():
            return False
        try:
            async with session.get(service.base + path, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                if resp.status == 200:
                    return True
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.1)
    return False


def memory_limits(values: Path = VALUES) -> dict[str, float]:
    """The chart's memory limits in MiB, per surface (the webhook runs in the deferral Deployment)."""
    loaded = yaml.safe_load(values.read_text())
    out: dict[str, float] = {}
    for surface, key in (("extender", "extender"), ("feed", "feed"), ("webhook", "deferral")):
        text = str(loaded[key]["resources"]["limits"]["memory"])
        units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
        out[surface] = float(text[:-2]) * units[text[-2:]] if text[-2:] in units else float(text) / 2**20
    return out


async def fuzz_surface(
    surface: str,
    seeds: Sequence[int],
    workdir: Path,
    *,
    concurrency: int = 4,
    on_batch: Callable[[int], None] | None = None,
) -> SurfaceReport:
    """Run `seeds` of `surface` against a fresh process; a crashed process is counted and restarted."""
    report = SurfaceReport(surface)
    generate = GENERATORS[surface]
    # Content-Type only when the case sets one: aiohttp would otherwise add application/octet-stream.
    async with aiohttp.ClientSession(skip_auto_headers=("Content-Type",)) as session:
        with running(surface, workdir) as service:
            if not await wait_healthy(session, service, path="/readyz"):
                raise RuntimeError(f"{surface} did not start; see {service.log}")
            for first in range(0, len(seeds), HEALTH_EVERY):
                batch = [generate(seed) for seed in seeds[first : first + HEALTH_EVERY]]
                gate = asyncio.Semaphore(concurrency)

                async def one(case: Case, gate: asyncio.Semaphore = gate) -> None:
                    async with gate:
                        await send(session, service, case, report)

                await asyncio.gather(*(one(case) for case in batch))
                service.sample_rss()
                if not await wait_healthy(session, service, within=10.0):
                    report.crashes += 1
                    for case in batch:
                        report.fail(case, ["crash: in the batch before the process died"], None, b"")
                    service.stop()
                    service.start()
                    if not await wait_healthy(session, service, path="/readyz"):
                        raise RuntimeError(f"{surface} did not restart; see {service.log}")
                if on_batch is not None:
                    on_batch(len(batch))
            alive = service.alive()
        report.crashes += not alive
        report.peak_rss_mib = service.peak_rss_kib / 1024
        report.error_log_lines = service.error_log_lines()
    report.memory_limit_mib = memory_limits().get(surface)
    return report


def targets(reports: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 12's targets: no crash, no 5xx, no slow answer, peak RSS under the chart's limit."""
    out = []
    for name, key, what in (
        ("crashes", "crashes", "processes that died"),
        ("5xx", "5xx", "answers with status >= 500"),
        ("unanswered", "noAnswer", "resets and timeouts"),
        ("slow", "slow", f"answers slower than {SLOW_S:g} s"),
    ):
        value = sum(r[key] for r in reports.values())
        out.append({"name": name, "target": "0", "value": value, "met": value == 0, "detail": what})
    for surface, r in reports.items():
        limit = r["memoryLimitMiB"]
        out.append(
            {
                "name": f"{surface} peak RSS",
                "target": f"< {limit:g} MiB (chart limit)",
                "value": f"{r['peakRssMiB']:g} MiB",  # a string: the report shows floats as percentages
                "met": limit is None or r["peakRssMiB"] < limit,
            }
        )
    return out


def surface_table(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    columns = ["surface", "requests", "crashes", "5xx", "no answer", "slow", "p99 s", "max s"]
    columns += ["peak RSS MiB", "limit MiB", "ERROR log lines", "other problems"]
    rows = [
        [
            name,
            r["requests"],
            r["crashes"],
            r["5xx"],
            r["noAnswer"],
            r["slow"],
            r["p99LatencyS"],
            r["maxLatencyS"],
            r["peakRssMiB"],
            r["memoryLimitMiB"],
            r["errorLogLines"],
            ", ".join(f"{k}: {v}" for k, v in r["problems"].items()) or "none",
        ]
        for name, r in reports.items()
    ]
    return {"title": "Fuzz run per surface", "columns": columns, "rows": rows}


async def run(
    surfaces: Sequence[str], cases: int, seed_start: int, work: Path, quick: bool = False
) -> dict[str, Any]:
    bar = Progress("fuzz", len(surfaces) * cases)
    reports: dict[str, Any] = {}
    started = time.monotonic()
    for surface in surfaces:
        seeds = range(seed_start, seed_start + cases)
        bar.note(surface)
        report = await fuzz_surface(surface, seeds, work / surface, on_batch=bar.advance)
        reports[surface] = report.to_json()
    bar.close()
    return {
        "benchmark": "fuzz_http",
        "generatedAt": datetime.now(UTC).isoformat(),
        "quick": quick,
        "casesPerSurface": cases,
        "seedStart": seed_start,
        "seconds": round(time.monotonic() - started, 1),
        "cpuCount": os.cpu_count(),
        "targets": targets(reports),
        "tables": [surface_table(reports)],
        "surfaces": reports,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_http", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000, help="cases per surface (default 20000)")
    parser.add_argument("--surface", action="append", choices=SURFACES, default=[], help="repeatable")
    parser.add_argument("--seed-start", type=int, default=0, help="first seed (replay one: --cases 1)")
    parser.add_argument("--quick", action="store_true", help="500 cases per surface")
    add_out_argument(parser, "fuzz_http")
    parser.add_argument(
        "--work", type=Path, default=ROOT / ".cache" / "fuzz-work", help="the services' logs and files"
    )
    args = parser.parse_args(argv)
    cases = 500 if args.quick else args.cases
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    surfaces = args.surface or list(SURFACES)
    result = asyncio.run(run(surfaces, cases, args.seed_start, args.work.resolve(), args.quick))
    target = out / "fuzz_http.json"
    target.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    for name, rep in result["surfaces"].items():
        print(
            f"{name:9} requests {rep['requests']:6}  crashes {rep['crashes']}  5xx {rep['5xx']}"
            f"  no-answer {rep['noAnswer']}  slow {rep['slow']}  max {rep['maxLatencyS']:.3f}s"
            f"  peak RSS {rep['peakRssMiB']:.0f}/{rep['memoryLimitMiB']:.0f} MiB"
            f"  ERROR log lines {rep['errorLogLines']}  problems {rep['problems']}"
        )
        if rep["failedSeeds"]:
            print(f"{'':9} failing seeds (the first {MAX_FAILURES_KEPT} of each kind): {rep['failedSeeds']}")
    print(f"report: {target}; service logs under {args.work}")
    # The exit status follows the targets; other problems are in the report.
    return 0 if all(t["met"] for t in result["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
