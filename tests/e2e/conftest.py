"""Fixtures of the end-to-end suite: one real control plane per session, a fresh world per test.

Each test gets its own namespace, its own node set (pods select it with a nodeSelector, so tests never
see each other's nodes) and its own scheduler processes with their own schedulerName. When a test
fails, the report shows where its logs are, the tails of its schedulers' and extenders' logs, and the
events and placement of its pods.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from .kubeharness import (
    REPO_ROOT,
    Binaries,
    BinariesUnavailable,
    ChartUnavailable,
    ControlPlane,
    HttpService,
    KubeApi,
    Scheduler,
    free_port,
    locate_binaries,
    render_scheduler_config,
    scheduler_values,
    start_extender,
    wait_until,
    write_snapshot,
)
from .kubeharness.kubeapi import JSON

ZONE_LABEL = "carbon-aware.io/zone"
SET_LABEL = "e2e.carbon-aware.io/node-set"
IN_CI = os.environ.get("CI", "").lower() == "true"
ARTIFACTS = REPO_ROOT / "tests" / ".artifacts"


def unavailable(reason: str) -> None:
    """A missing prerequisite: a hard failure in CI (never a silent skip there), a skip on a laptop."""
    if IN_CI:
        pytest.fail(f"e2e prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Remember each phase's outcome on the item so fixtures can print diagnostics only on failure.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    folder = ARTIFACTS / f"e2e-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    try:
        return locate_binaries()
    except BinariesUnavailable as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable() always raises


@pytest.fixture(scope="session")
def control_plane(binaries: Binaries, artifacts_dir: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(binaries, artifacts_dir / "controlplane")
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def _slug(text: str, limit: int = 30) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


class E2EWorld:
    """Everything one test arranges: namespace, nodes, snapshot file, extenders and schedulers."""

    def __init__(
        self, plane: ControlPlane, binaries: Binaries, workdir: Path, test_id: str, seq: int
    ) -> None:
        self.plane = plane
        self.binaries = binaries
        self.api: KubeApi = plane.api
        self.workdir = workdir
        self.set_id = f"t{seq}-{_slug(test_id, 20)}"
        self.namespace = self.set_id
        workdir.mkdir(parents=True, exist_ok=True)
        self.snapshot_file = workdir / "snapshot.json"
        self.extenders: list[HttpService] = []
        self.schedulers: list[Scheduler] = []
        self.node_names: list[str] = []
        self.api.create_namespace(self.namespace)

    # --- arranging ---

    @property
    def selector(self) -> dict[str, str]:
        return {SET_LABEL: self.set_id}

    def add_nodes(self, zones: Mapping[str, int], *, cpu: str = "4", memory: str = "16Gi") -> dict[str, str]:
        """``{zone: count}`` nodes labelled with their zone; returns {node name: zone}."""
        created: dict[str, str] = {}
        for zone, count in zones.items():
            for i in range(count):
                name = f"{self.set_id}-{_slug(zone, 12)}-{i}"
                self.api.create_node(name, {ZONE_LABEL: zone, **self.selector}, cpu=cpu, memory=memory)
                created[name] = zone
        self.node_names.extend(created)
        return created

    def snapshot(self, intensities: Mapping[str, float], *, age: timedelta = timedelta(minutes=5)) -> None:
        write_snapshot(self.snapshot_file, intensities, age=age)

    def extender(self, extra_args: Sequence[str] = (), **kwargs: Any) -> HttpService:
        service = start_extender(
            kubeconfig=kwargs.pop("kubeconfig", self.plane.kubeconfig),
            snapshot_file=kwargs.pop("snapshot_file", self.snapshot_file),
            log_dir=self.workdir / "logs",
            extra_args=extra_args,
            **kwargs,
        )
        self.extenders.append(service)
        return service

    def feed(self, provider: Mapping[str, Any]) -> HttpService:
        """The real carbon-feed with one provider, refreshing every second and writing the snapshot
        file this world's extenders read; stopped and described with the test's other services."""
        port = free_port()
        config = self.workdir / "feed.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "host": "127.0.0.1",
                    "port": port,
                    "snapshot_file": str(self.snapshot_file),
                    "db": str(self.workdir / "feed.sqlite"),
                    # Every second, so a changed source reaches the snapshot within a test's wait.
                    "refresh_interval_seconds": 1.0,
                    "providers": [dict(provider)],
                }
            )
        )
        service = HttpService(
            f"carbon-feed:{port}",
            "carbon_feed",
            ["--config", str(config)],
            self.workdir / "logs" / "feed.log",
            port,
        )
        self.extenders.append(service)
        return service

    def scheduler(
        self,
        suffix: str,
        extender_url: str,
        *,
        kubeconfig: Path | None = None,
        **values: Any,
    ) -> Scheduler:
        """A kube-scheduler configured by the chart (see kubeharness.scheduler) for this test.

        The chart is rendered for the test's namespace (where a leader-election Lease goes).
        """
        name = f"cas-{self.set_id}-{suffix}"[:63]
        try:
            config = render_scheduler_config(
                scheduler_values(name, extender_url=extender_url, **values),
                self.workdir,
                namespace=self.namespace,
            )
        except ChartUnavailable as exc:
            unavailable(str(exc))
            raise
        return self.scheduler_from_config(config, kubeconfig=kubeconfig)

    def with_extender(
        self, suffix: str = "s", extra_args: Sequence[str] = (), **values: Any
    ) -> tuple[HttpService, Scheduler]:
        """An extender on the test's snapshot file, and a chart-configured scheduler pointing at it."""
        ext = self.extender(extra_args)
        return ext, self.scheduler(suffix, ext.base_url, **values)

    def scheduler_from_config(
        self, config: Mapping[str, Any], *, kubeconfig: Path | None = None
    ) -> Scheduler:
        sched = Scheduler(self.binaries, config, kubeconfig or self.plane.kubeconfig, self.workdir)
        self.schedulers.append(sched)
        return sched

    def pod(self, name: str, scheduler: Scheduler, **kwargs: Any) -> JSON:
        return self.api.create_pod(
            self.namespace, name, scheduler_name=scheduler.name, node_selector=self.selector, **kwargs
        )

    # --- observing ---

    def placement(self) -> dict[str, str]:
        """{pod name: node name or ""} for every pod of the test."""
        return {p["metadata"]["name"]: p["spec"].get("nodeName") or "" for p in self.api.pods(self.namespace)}

    def wait_bound(self, names: Sequence[str], timeout: float = 60.0) -> dict[str, str]:
        def probe() -> dict[str, str] | None:
            placed = self.placement()
            return {n: placed[n] for n in names} if all(placed.get(n) for n in names) else None

        return wait_until(
            probe,
            timeout=timeout,
            what=f"pods {', '.join(names)} bound",
            watch=[s.process for s in self.schedulers],
            interval=0.2,
            context=self.diagnostics,
        )

    def wait_event(self, pod: str, reason: str, pattern: str = "", timeout: float = 60.0) -> JSON:
        regex = re.compile(pattern)

        def probe() -> JSON | None:
            for event in self.api.events(self.namespace, pod):
                if event.get("reason") == reason and regex.search(str(event.get("message", ""))):
                    return event
            return None

        return wait_until(
            probe,
            timeout=timeout,
            what=f"event {reason} /{pattern}/ on pod {pod}",
            watch=[s.process for s in self.schedulers],
            interval=0.25,
            context=self.diagnostics,
        )

    def zones_of(self, placement: Mapping[str, str]) -> dict[str, str]:
        """{pod: zone} from {pod: node}, by the zone label of this test's nodes."""
        zones = {}
        for pod, node in placement.items():
            labels = self.api.request("GET", f"/api/v1/nodes/{node}")["metadata"]["labels"]
            zones[pod] = labels.get(ZONE_LABEL, "")
        return zones

    def diagnostics(self) -> str:
        parts = [f"test folder: {self.workdir}", "pods:"]
        try:
            parts += [f"  {name}: {node or '<pending>'}" for name, node in sorted(self.placement().items())]
            parts += ["events:", self.api.describe_events(self.namespace)]
        except Exception as exc:  # the apiserver itself may be what broke
            parts.append(f"  <could not read pods/events: {exc}>")
        parts += [s.process.describe(30) for s in self.schedulers]
        parts += [e.process.describe(30) for e in self.extenders]
        return "\n".join(parts)

    def close(self) -> None:
        for sched in self.schedulers:
            sched.stop()
        for ext in self.extenders:
            ext.stop()
        # Nodes are cluster-scoped: remove them so later tests' schedulers and extenders see fewer.
        for name in self.node_names:
            self.api.delete_node(name)


_seq = iter(range(1, 1_000_000))


@pytest.fixture
def world(
    request: pytest.FixtureRequest, control_plane: ControlPlane, binaries: Binaries, artifacts_dir: Path
) -> Iterator[E2EWorld]:
    seq = next(_seq)
    # The sequence number keeps parametrized variants (same name prefix) in separate folders.
    workdir = artifacts_dir / f"{seq:02d}-{_slug(request.node.name, 60)}"
    env = E2EWorld(control_plane, binaries, workdir, request.node.name, seq)
    try:
        yield env
    finally:
        if _failed(request):
            print(f"\n===== e2e diagnostics for {request.node.nodeid} =====\n{env.diagnostics()}")
            print(control_plane.describe())
        env.close()


@pytest.fixture(scope="session", autouse=True)
def _keep_artifacts_only_on_failure(request: pytest.FixtureRequest, artifacts_dir: Path) -> Iterator[None]:
    yield
    if request.session.testsfailed == 0 and not os.environ.get("CARBON_E2E_KEEP"):
        shutil.rmtree(artifacts_dir, ignore_errors=True)
    else:
        # Logs, configs and certs stay for reading; etcd's preallocated WAL (~60 MB) explains nothing.
        shutil.rmtree(artifacts_dir / "controlplane" / "etcd", ignore_errors=True)
        print(f"\ne2e logs kept in {artifacts_dir}")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when there are none)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
