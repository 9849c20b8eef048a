"""A Docker engine of the harness's own, and the images the deploy tests run.

dockerd is Debian's `docker.io`, started with bridge networking and iptables off (the only networks
are `host` and `none`), on its own socket, and stopped by its PID. Its data root lives in the cache
folder, so a second run reuses the base image and the build's layers. Docker Hub cannot be reached
here: the base image is imported from a Debian root filesystem (hack/image/build-base.sh) and passed
to the Dockerfile as PYTHON_IMAGE; the pause image is a static Go binary in a FROM-scratch image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .controlplane import REPO_ROOT, cache_dir
from .node import unmount_below
from .procs import ManagedProcess, wait_until

BASE_SCRIPT = REPO_ROOT / "hack" / "image" / "build-base.sh"
PAUSE_SOURCE = REPO_ROOT / "hack" / "node" / "pause"
# Names containerd resolves without a registry: images are imported under their normalised names.
IMAGE = "docker.io/carbon-aware-scheduler/carbon-aware-scheduler:e2e"
PAUSE_IMAGE = "docker.io/library/carbon-pause:e2e"
KUBE_SCHEDULER_IMAGE_REPO = "registry.k8s.io/kube-scheduler"


class DockerUnavailable(RuntimeError):
    """dockerd or mmdebstrap is missing, or the engine did not start; the message says which."""


def _log(message: str) -> None:
    # pytest captures stdout; stderr with -s or in the CI log shows a long build is moving.
    print(f"[docker {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Dockerd:
    """dockerd on ``<run_dir>/docker.sock``; a context manager, or call stop()."""

    def __init__(self, run_dir: Path, *, data_root: Path | None = None, timeout: float = 60.0) -> None:
        for tool in ("dockerd", "docker"):
            if shutil.which(tool) is None:
                raise DockerUnavailable(f"`{tool}` not found: apt-get install docker.io")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.data_root = data_root or cache_dir().parent / "docker"
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.socket = run_dir / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0"}
        self.process = ManagedProcess(
            "dockerd",
            [
                "dockerd",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                f"--host=unix://{self.socket}",
                f"--data-root={self.data_root}",
                f"--exec-root={run_dir / 'exec'}",
                f"--pidfile={run_dir / 'docker.pid'}",
            ],
            run_dir / "dockerd.log",
        )
        try:
            wait_until(
                self._ping, timeout=timeout, what="dockerd to answer", watch=[self.process], interval=0.5
            )
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> Dockerd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ping(self) -> bool:
        probe = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=self.env,
            capture_output=True,
            timeout=10,
            check=False,
        )
        return probe.returncode == 0

    def docker(self, *args: str, timeout: float = 900.0, cwd: Path | None = None) -> str:
        """Run the docker client against this engine; its output, or an error naming the command."""
        proc = subprocess.run(
            ["docker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc.stdout

    def has_image(self, name: str) -> bool:
        probe = subprocess.run(
            ["docker", "image", "inspect", name], env=self.env, capture_output=True, timeout=30, check=False
        )
        return probe.returncode == 0

    def build(
        self, tag: str, context: Path, *, build_args: Sequence[str] = (), dockerfile: Path | None = None
    ) -> float:
        """``docker build --network host``; returns the seconds it took (streamed to the log)."""
        start = time.monotonic()
        argv = ["build", "--network", "host", "-t", tag]
        for arg in build_args:
            argv += ["--build-arg", arg]
        if dockerfile is not None:
            argv += ["-f", str(dockerfile)]
        argv.append(str(context))
        _log(f"docker {' '.join(argv)}")
        self.docker(*argv)
        return time.monotonic() - start

    def save(self, names: Sequence[str], out: Path) -> Path:
        self.docker("save", "-o", str(out), *names)
        return out

    def stop(self) -> None:
        self.process.stop(grace=20.0)
        # dockerd leaves its default network namespace mounted under the exec root.
        unmount_below(self.run_dir)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def base_image(engine: Dockerd) -> str:
    """The Debian bookworm + python3 base, imported once per base tarball (keyed by its file name)."""
    if shutil.which("mmdebstrap") is None:
        raise DockerUnavailable("`mmdebstrap` not found: apt-get install mmdebstrap")
    proc = subprocess.run([str(BASE_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise DockerUnavailable(f"{BASE_SCRIPT} failed:\n{proc.stderr[-4000:]}")
    tarball = Path(proc.stdout.strip().splitlines()[-1])
    tag = f"carbon-base:{tarball.stem}"
    if not engine.has_image(tag):
        _log(f"docker import {tarball} {tag}")
        engine.docker("import", str(tarball), tag)
    return tag


def build_product_image(engine: Dockerd, base: str) -> float:
    """Our image from the repository's Dockerfile, on the Debian base; returns the build's seconds."""
    return engine.build(IMAGE, REPO_ROOT, build_args=[f"PYTHON_IMAGE={base}"])


def build_pause_image(engine: Dockerd) -> None:
    with tempfile.TemporaryDirectory(prefix="pause-") as tmp:
        folder = Path(tmp)
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(folder / "pause"), "."],
            cwd=PAUSE_SOURCE,
            env={**os.environ, "CGO_ENABLED": "0"},
            check=True,
            capture_output=True,
            timeout=300,
        )
        (folder / "Dockerfile").write_text('FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n')
        engine.build(PAUSE_IMAGE, folder)


def build_kube_scheduler_image(engine: Dockerd, base: str, binary: Path, version: str) -> str:
    """The harness's kube-scheduler binary under the chart's default image name, on the Debian base
    (the binary links glibc dynamically)."""
    tag = f"{KUBE_SCHEDULER_IMAGE_REPO}:{version}"
    with tempfile.TemporaryDirectory(prefix="kube-scheduler-") as tmp:
        folder = Path(tmp)
        shutil.copy2(binary, folder / "kube-scheduler")
        (folder / "Dockerfile").write_text(
            f"FROM {base}\nCOPY kube-scheduler /usr/local/bin/kube-scheduler\n"
            'USER 65532:65532\nENTRYPOINT ["/usr/local/bin/kube-scheduler"]\n'
        )
        engine.build(tag, folder)
    return tag
