"""Issue 6 on the real control plane: webhook, green-window controller, extender and kube-scheduler.

The deferral service runs as its own process (``python -m deferral``, HTTPS webhook + controller with
leader election) against the real kube-apiserver, which calls the webhook through a
MutatingWebhookConfiguration. The forecast comes from a loopback fake ``/v1/best`` in this test process,
so window times are exact seconds ahead of the wall clock (a fast clock without replay arithmetic).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from carbon_common.timeutil import format_rfc3339, utcnow

from .conftest import E2EWorld, metric
from .kubeharness import HttpService, free_port, wait_until

pytestmark = pytest.mark.e2e

GATE = "carbon-aware.io/green-window"
P = "carbon-aware.io/"


class FakeBest:
    """GET /v1/best answering the windows the test sets, on 127.0.0.1 in a thread."""

    def __init__(self) -> None:
        self.windows: list[dict[str, Any]] = []
        self.current = {"GREEN": 300.0, "DIRTY": 600.0}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(
                    {
                        "generatedAt": format_rfc3339(utcnow()),
                        "windows": owner.windows,
                        "current": owner.current,
                        **({} if owner.windows else {"reason": "no forecast"}),
                    }
                ).encode()
                self.send_response(200 if self.path.startswith("/v1/best") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def window_at(self, start: datetime, zone: str = "GREEN", intensity: float = 40.0) -> None:
        self.windows = [
            {
                "zone": zone,
                "start": format_rfc3339(start),
                "end": format_rfc3339(start + timedelta(hours=1)),
                "intensity": intensity,
            }
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feed() -> Iterator[FakeBest]:
    fake = FakeBest()
    try:
        yield fake
    finally:
        fake.close()


def start_deferral(world: E2EWorld, feed_url: str) -> HttpService:
    port = free_port()
    pair = world.plane.pki.issue(f"deferral-{port}", "127.0.0.1")
    context = ssl.create_default_context(cafile=str(world.plane.pki.ca_file))
    service = HttpService(
        f"deferral:{port}",
        "deferral",
        [
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--tls-cert",
            str(pair.cert),
            "--tls-key",
            str(pair.key),
            "--kubeconfig",
            str(world.plane.kubeconfig),
            "--feed-url",
            feed_url,
            "--tick",
            "0.2",
            "--replan-interval",
            "1",
            "--lease-namespace",
            world.namespace,
            "--identity",
            f"deferral-{world.set_id}",
            "--lease-duration",
            "6",
            "--renew-deadline",
            "4",
            "--retry-period",
            "0.5",
            # The guard fires this much before deadline - duration (default: tick + lease duration).
            "--guard-margin",
            "2",
        ],
        world.workdir / "logs" / f"deferral-{port}.log",
        port,
        scheme="https",
        ssl_context=context,
    )
    world.extenders.append(service)  # stopped and described with the test's services
    return service


def register_webhook(world: E2EWorld, url: str) -> str:
    """A MutatingWebhookConfiguration for this test's namespace only, failurePolicy Ignore."""
    name = f"deferral-{world.set_id}"[:63]
    world.api.request(
        "PATCH",
        f"/api/v1/namespaces/{world.namespace}",
        {"metadata": {"labels": {"carbon-aware.io/deferral": "enabled"}}},
        content_type="application/merge-patch+json",
    )
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "green-window.carbon-aware.io",
                "clientConfig": {"url": url, "caBundle": world.plane.pki.ca_data_b64},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchLabels": {
                        "carbon-aware.io/deferral": "enabled",
                        "kubernetes.io/metadata.name": world.namespace,
                    }
                },
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
                "reinvocationPolicy": "IfNeeded",
            }
        ],
    }
    world.api.request("POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", body)
    return name


def unregister_webhook(world: E2EWorld, name: str) -> None:
    world.api.request("DELETE", f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}")


def deferrable(duration: str, deadline: datetime) -> dict[str, str]:
    return {P + "duration": duration, P + "deadline": format_rfc3339(deadline)}


def gates(world: E2EWorld, name: str) -> list[str]:
    return [g["name"] for g in world.api.pod(world.namespace, name)["spec"].get("schedulingGates") or []]


def create_gated_pod(world: E2EWorld, name: str, scheduler: str, annotations: dict[str, str]) -> None:
    """A pod that carries the gate itself (users may add it without the webhook)."""
    world.api.request(
        "POST",
        f"/api/v1/namespaces/{world.namespace}/pods",
        {
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "schedulerName": scheduler,
                "nodeSelector": world.selector,
                "schedulingGates": [{"name": GATE}],
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                "terminationGracePeriodSeconds": 0,
            },
        },
    )


def test_webhook_gates_and_controller_releases_in_the_green_window(world: E2EWorld, feed: FakeBest) -> None:
    nodes = world.add_nodes({"GREEN": 1, "DIRTY": 1})
    world.snapshot({"GREEN": 40.0, "DIRTY": 600.0})
    _, sched = world.with_extender()
    deferral = start_deferral(world, feed.url)
    hook = register_webhook(world, deferral.base_url + "/mutate")
    try:
        window = utcnow().replace(microsecond=0) + timedelta(seconds=10)
        feed.window_at(window)
        world.pod("batch", sched, annotations=deferrable("5s", window + timedelta(minutes=5)))
        assert gates(world, "batch") == [GATE]  # added by the webhook at admission

        event = world.wait_event("batch", "CarbonPlanned", r"greenest window", timeout=20)
        assert "GREEN" in event["message"]
        assert world.placement()["batch"] == ""  # waiting, not scheduled
        placed = world.wait_bound(["batch"], timeout=40)
        assert utcnow() >= window - timedelta(seconds=1)
        assert nodes[placed["batch"]] == "GREEN"
        world.wait_event("batch", "CarbonReleased", r"green window reached")
        assert metric(deferral.metrics(), "carbon_deferral_releases_total", reason="window_reached") == 1
    finally:
        unregister_webhook(world, hook)


def test_vanished_forecast_is_released_by_the_deadline_guard(world: E2EWorld, feed: FakeBest) -> None:
    world.add_nodes({"GREEN": 1})
    world.snapshot({"GREEN": 40.0})
    _, sched = world.with_extender()
    deferral = start_deferral(world, feed.url)
    feed.windows = []
    created = utcnow().replace(microsecond=0)
    # Run 5 s, finish by created + 15 s, with the 2 s guard margin: the guard is created + 8 s.
    create_gated_pod(world, "late", sched.name, deferrable("5s", created + timedelta(seconds=15)))
    world.wait_event("late", "CarbonPlanned", r"no forecast", timeout=20)
    world.wait_bound(["late"], timeout=40)
    assert utcnow() >= created + timedelta(seconds=7)
    plan = world.api.pod(world.namespace, "late")["metadata"]["annotations"][P + "plan"]
    assert json.loads(plan)["guard"] == format_rfc3339(created + timedelta(seconds=8))
    world.wait_event("late", "CarbonReleased", r"deadline guard")
    assert metric(deferral.metrics(), "carbon_deferral_releases_total", reason="deadline_guard") == 1


def test_webhook_down_does_not_block_pod_creation(world: E2EWorld) -> None:
    world.add_nodes({"GREEN": 1})
    world.snapshot({"GREEN": 40.0})
    _, sched = world.with_extender()
    hook = register_webhook(world, f"https://127.0.0.1:{free_port()}/mutate")  # nothing listens there
    try:
        started = time.monotonic()
        world.pod("eager", sched, annotations=deferrable("5s", utcnow() + timedelta(hours=1)))
        assert time.monotonic() - started < 10
        assert gates(world, "eager") == []
        world.wait_bound(["eager"], timeout=30)
    finally:
        unregister_webhook(world, hook)


def test_controller_killed_and_restarted_releases_each_pod_once(world: E2EWorld, feed: FakeBest) -> None:
    world.add_nodes({"GREEN": 2})
    world.snapshot({"GREEN": 40.0})
    _, sched = world.with_extender()
    deferral = start_deferral(world, feed.url)
    window = utcnow().replace(microsecond=0) + timedelta(seconds=12)
    feed.window_at(window)
    names = ["job-a", "job-b"]
    for name in names:
        create_gated_pod(world, name, sched.name, deferrable("5s", window + timedelta(minutes=5)))
    for name in names:
        world.wait_event(name, "CarbonPlanned", r"greenest window", timeout=20)

    deferral.kill()  # SIGKILL: no lease hand-back, no cleanup
    feed.windows = []  # and the forecast is gone too: the persisted plan must carry the window
    deferral.restart()

    world.wait_bound(names, timeout=40)
    assert utcnow() >= window - timedelta(seconds=1)
    for name in names:
        world.wait_event(name, "CarbonReleased", r"green window reached")
    time.sleep(2)  # a double release would show up as a second event or a second count
    for name in names:
        released = [e for e in world.api.events(world.namespace, name) if e.get("reason") == "CarbonReleased"]
        assert len(released) == 1
    assert metric(deferral.metrics(), "carbon_deferral_releases_total", reason="window_reached") == 2
    wait_until(
        lambda: metric(deferral.metrics(), "carbon_deferral_pods_waiting") == 0,
        timeout=10,
        what="no pod waiting",
    )


def start_replay_feed(world: E2EWorld, trace: dict[str, list[float]], anchor: datetime) -> HttpService:
    """The real carbon-feed replaying ``trace`` (hourly values per zone) at 3600x: trace hour h plays
    h seconds after ``anchor``. It also writes the snapshot file the extender reads."""
    first = datetime(2026, 1, 1, tzinfo=anchor.tzinfo)
    path = world.workdir / "trace.csv"
    rows = ["datetime,zone,intensity"]
    for zone, values in trace.items():
        rows += [f"{format_rfc3339(first + timedelta(hours=h))},{zone},{v}" for h, v in enumerate(values)]
    path.write_text("\n".join(rows) + "\n")
    return world.feed(
        {
            "kind": "replay",
            "name": "replay",
            "options": {
                "path": str(path),
                "speed": 3600,
                "trace_start": format_rfc3339(first),
                "anchor": format_rfc3339(anchor),
                "horizon_hours": 48,
            },
        }
    )


def test_replayed_trace_with_a_fast_clock_releases_in_the_green_window(world: E2EWorld) -> None:
    nodes = world.add_nodes({"GREEN": 1, "DIRTY": 1})
    anchor = utcnow().replace(microsecond=0)
    # 72 trace hours = 72 s of wall time; GREEN is clean only in trace hours 30-33.
    green = [500.0] * 72
    green[30:34] = [60.0] * 4
    feed = start_replay_feed(world, {"GREEN": green, "DIRTY": [700.0] * 72}, anchor)
    wait_until(
        lambda: world.snapshot_file.exists(), timeout=30, what="the feed's snapshot", watch=[feed.process]
    )
    _, sched = world.with_extender()
    deferral = start_deferral(world, feed.base_url)
    created = utcnow()
    assert created < anchor + timedelta(seconds=26), "the services took too long to start for this trace"
    # Run 2 s (two trace hours), finish within 60 s: the greenest window is trace hours 30-32.
    create_gated_pod(world, "replayed", sched.name, deferrable("2s", created + timedelta(seconds=60)))
    event = world.wait_event("replayed", "CarbonPlanned", r"greenest window", timeout=20)
    assert "GREEN" in event["message"]
    placed = world.wait_bound(["replayed"], timeout=60)
    released_at = utcnow()
    assert anchor + timedelta(seconds=29) <= released_at <= anchor + timedelta(seconds=35)
    assert nodes[placed["replayed"]] == "GREEN"
    assert metric(deferral.metrics(), "carbon_deferral_releases_total", reason="window_reached") == 1


class FakeFeedWithForecasts(FakeBest):
    """FakeBest plus GET /v1/forecast/{zone}: the per-zone candidates capacity-aware planning uses."""

    def __init__(self) -> None:
        super().__init__()
        self.forecasts: dict[str, list[dict[str, Any]]] = {}
        owner = self
        base = self.server.RequestHandlerClass

        class Handler(base):  # type: ignore[valid-type,misc]
            def do_GET(self) -> None:
                if not self.path.startswith("/v1/forecast/"):
                    super().do_GET()
                    return
                zone = self.path.rsplit("/", 1)[-1].split("?")[0]
                body = json.dumps({"zone": zone, "forecast": owner.forecasts.get(zone, [])}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server.RequestHandlerClass = Handler


def test_more_deferred_pods_than_the_green_zone_holds_are_spread(world: E2EWorld) -> None:
    """Issue 13: four 1-CPU pods want the same green hour of a zone with 2 CPUs. Capacity-aware
    planning books two into that hour and the other two into the zone's next green hour, instead of
    releasing all four at once to overflow into the dirty zone."""
    feed = FakeFeedWithForecasts()
    try:
        # Zone names of this test alone: the controller sees every labelled node of the cluster.
        green, dirty = f"G{world.set_id[-6:]}".upper(), f"D{world.set_id[-6:]}".upper()
        nodes = world.add_nodes({green: 1}, cpu="2")
        world.add_nodes({dirty: 1}, cpu="8")
        world.snapshot({green: 40.0, dirty: 600.0})
        _, sched = world.with_extender()
        first = utcnow().replace(microsecond=0) + timedelta(seconds=15)
        second = first + timedelta(hours=1)

        def window(start: datetime, intensity: float) -> dict[str, Any]:
            end = format_rfc3339(start + timedelta(hours=1))
            return {"zone": green, "start": format_rfc3339(start), "end": end, "intensity": intensity}

        feed.windows = [window(first, 40.0)]
        feed.current = {green: 300.0, dirty: 600.0}
        feed.forecasts = {green: [window(first, 40.0), window(second, 50.0)]}
        deferral = start_deferral(world, feed.url)
        names = [f"job-{i}" for i in range(4)]
        for name in names:
            world.api.request(
                "POST",
                f"/api/v1/namespaces/{world.namespace}/pods",
                {
                    "metadata": {"name": name, "annotations": deferrable("1h", first + timedelta(hours=3))},
                    "spec": {
                        "schedulerName": sched.name,
                        "nodeSelector": world.selector,
                        "schedulingGates": [{"name": GATE}],
                        "containers": [
                            {
                                "name": "app",
                                "image": "registry.k8s.io/pause:3.10",
                                "resources": {"requests": {"cpu": "1", "memory": "64Mi"}},
                            }
                        ],
                        "terminationGracePeriodSeconds": 0,
                    },
                },
            )

        def plans() -> dict[str, dict[str, Any]] | None:
            found = {}
            for pod in world.api.pods(world.namespace):
                raw = pod["metadata"].get("annotations", {}).get(P + "plan")
                if raw:
                    found[pod["metadata"]["name"]] = json.loads(raw)
            return found if len(found) == len(names) else None

        planned = wait_until(plans, timeout=30, what="a plan on every pod", context=world.diagnostics)
        starts = sorted(plan["start"] for plan in planned.values())
        assert starts == [format_rfc3339(first)] * 2 + [format_rfc3339(second)] * 2, planned
        assert all(plan["zone"] == green for plan in planned.values()), planned

        # The first two are released into the green hour and placed in the green zone; the others wait.
        early = [n for n, plan in planned.items() if plan["start"] == format_rfc3339(first)]
        placed = world.wait_bound(early, timeout=40)
        assert {nodes.get(node) for node in placed.values()} == {green}
        assert all(gates(world, n) == [GATE] for n in names if n not in early)
        assert metric(deferral.metrics(), "carbon_deferral_releases_total", reason="window_reached") == 2
    finally:
        feed.close()
