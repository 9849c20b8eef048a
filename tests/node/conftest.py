"""The deploy tests' cluster: the real control plane, a real node (containerd + kubelet), our image.

Built once per session, in the order a user's cluster comes to be: the image is built with Docker
from the repository's Dockerfile, moved into the node's containerd, and the chart is installed with
Helm. Everything started here is stopped by PID at the end, also when a step fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.kubeharness import ControlPlane, Scheduler, locate_binaries, plain_scheduler_config
from tests.e2e.kubeharness.docker import (
    IMAGE,
    PAUSE_IMAGE,
    Dockerd,
    base_image,
    build_kube_scheduler_image,
    build_pause_image,
    build_product_image,
)
from tests.e2e.kubeharness.node import Node
from tests.e2e.kubeharness.procs import ManagedProcess
from tests.e2e.kubeharness.scheduler import helm_binary, pinned_kube_version

from .clusterops import Cluster, Kwok


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require_root() -> None:
    # containerd, kubelet and dockerd need root; CI runs as root. A developer without root skips.
    if os.geteuid() != 0:
        message = "the node tests run containerd, kubelet and dockerd: they need root"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Timings:
    """Seconds per phase, printed at the end of the session (docs/e2e.md reports them)."""

    phases: dict[str, float]

    def record(self, name: str, start: float) -> None:
        self.phases[name] = round(time.monotonic() - start, 1)
        print(f"[node] {name}: {self.phases[name]} s", flush=True)


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _require_root()
    timings = Timings({})
    workdir = tmp_path_factory.mktemp("node")
    start = time.monotonic()
    binaries = locate_binaries()
    timings.record("control-plane binaries", start)

    start = time.monotonic()
    run_dir = Path(f"/run/carbon-docker-{os.getpid()}")
    with Dockerd(run_dir) as engine:
        base = base_image(engine)
        timings.record("base image", start)
        start = time.monotonic()
        build_product_image(engine, base)
        timings.record("product image build", start)
        start = time.monotonic()
        build_pause_image(engine)
        scheduler_image = build_kube_scheduler_image(
            engine, base, binaries.kube_scheduler, pinned_kube_version()
        )
        images = engine.save([IMAGE, PAUSE_IMAGE, scheduler_image], workdir / "images.tar")
        # The legacy builder keeps each build's stages as dangling images in the cached data root.
        engine.docker("image", "prune", "--force")
        timings.record("pause and kube-scheduler images, docker save", start)

    start = time.monotonic()
    control = ControlPlane(
        binaries,
        workdir / "control",
        # The webhook is reached through its Service's endpoints (no kube-proxy here), and the node
        # has only an InternalIP.
        apiserver_args=("--enable-aggregator-routing=true", "--kubelet-preferred-address-types=InternalIP"),
    )
    node: Node | None = None
    default_scheduler: Scheduler | None = None
    kwok: ManagedProcess | None = None
    try:
        control.start()
        node = Node(control, workdir / "node")
        node.import_images(images)
        images.unlink()
        node.start_kubernetes(binaries.kubelet, binaries.kube_controller_manager)
        # The chart's own pods are placed by the default scheduler, as in any cluster.
        default_scheduler = Scheduler(
            binaries, plain_scheduler_config("default-scheduler"), control.kubeconfig, workdir / "scheduler"
        )
        kwok = Kwok.start(control.kubeconfig, workdir / "kwok")
        timings.record("cluster up (control plane, node, scheduler, kwok)", start)
        yield Cluster(control=control, node=node, helm=helm_binary(), workdir=workdir, timings=timings.phases)
    finally:
        for process in (kwok, default_scheduler):
            if process is not None:
                process.stop()
        if node is not None:
            node.stop()
        control.stop()
        print(f"[node] timings: {timings.phases}", flush=True)
