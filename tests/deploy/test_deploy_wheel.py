"""The wheel the Dockerfile installs builds from exactly what the Dockerfile copies, installs into a
clean virtual environment with only its runtime dependencies, and both entry points start.

No Docker engine runs in CI, so this is the check that the image's contents work.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.deploytools import REPO_ROOT, stop_process


# What the Dockerfile's builder stage COPYs (keep in step with it; test_dockerfile_copies_these checks).
def _packages() -> tuple[str, ...]:
    """The top-level packages pyproject.toml ships (`include = ["extender*", ...]`)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    return tuple(p.rstrip("*") for p in patterns)


# What the wheel is built from: a new service must reach the Dockerfile's COPY lines and the
# .dockerignore allow-list too, or the image lacks it.
WHEEL_SOURCES = ("pyproject.toml", "README.md", *_packages())
INSTALL_TIMEOUT = 240.0


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the built wheel and its declared runtime dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in WHEEL_SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    wheels = root / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(src)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        env=_pip_env(),
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("carbon_aware_scheduler-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        env=_pip_env(),
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def test_dockerfile_copies_these() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    copied = {
        part.rstrip("/")
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for part in line.split()[1:-1]
    }
    assert copied == set(WHEEL_SOURCES)


def test_dockerignore_lets_these_through() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert set(WHEEL_SOURCES) <= allowed


def test_only_runtime_dependencies_are_installed(clean_venv: Path) -> None:
    listed = subprocess.run(
        [str(clean_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {
        "carbon-aware-scheduler",
        "aiohttp",
        "kubernetes-asyncio",
        "orjson",
        "prometheus-client",
        "pyyaml",
    } <= names
    assert not names & {"pytest", "mypy", "ruff", "pandas", "pyarrow", "matplotlib", "trustme"}


@pytest.mark.parametrize("entry_point", ["carbon-extender", "carbon-feed"])
def test_entry_point_help(clean_venv: Path, entry_point: str) -> None:
    proc = subprocess.run(
        [str(clean_venv / "bin" / entry_point), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--port" in proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve_and_probe(
    argv: list[str], cwd: Path, *, path: str = "/healthz", env: dict[str, str] | None = None
) -> bytes:
    """Start a server, wait up to 30 s for 200 on ``path``, stop it by PID; the 200's body."""
    port = _free_port()
    log = cwd / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*argv, "--host=127.0.0.1", f"--port={port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        status = None
        body = b""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                    status = response.status
                    body = response.read()
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert status == 200, f"{path}: exit={proc.poll()} log:\n{log.read_text()}"
        return body
    finally:
        stop_process(proc)


def test_extender_serves_healthz(clean_venv: Path, tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.json"
    node = {"metadata": {"name": "node-a", "labels": {"carbon-aware.io/zone": "FR"}}}
    nodes.write_text(json.dumps({"apiVersion": "v1", "kind": "NodeList", "items": [node]}))
    _serve_and_probe([str(clean_venv / "bin" / "carbon-extender"), f"--nodes-file={nodes}"], tmp_path)


def test_feed_serves_zones_with_the_charts_default_config(clean_venv: Path, tmp_path: Path) -> None:
    """The chart's default feed config is empty (the feed's embedded replay): it must serve real
    zones with the runtime dependencies alone, as in the image, and with an empty home: a trace
    cached under ~/.cache by an earlier demo must not be what makes it pass."""
    config = tmp_path / "feed.yaml"
    config.write_text("{}\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {**_pip_env(), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    argv = [str(clean_venv / "bin" / "carbon-feed"), f"--config={config}", f"--db={tmp_path / 'history.db'}"]
    argv.append(f"--snapshot-file={tmp_path / 'snapshot.json'}")
    # /readyz is 200 only while the feed serves fresh (or restored) data.
    _serve_and_probe(argv, tmp_path, path="/readyz", env=env)
    zones = json.loads(_serve_and_probe(argv, tmp_path, path="/v1/zones", env=env))
    names = {z["zone"] for z in zones["zones"]}
    assert {"DE", "FR", "PL"} <= names, zones
    assert not any(home.rglob("*")), "the feed wrote to the home folder"
