"""Locating and running the deployment checkers (helm, kubeconform, checkov, hadolint, yamllint).

A missing tool skips its test on a developer machine but fails under CI (``CI=true``): a check that
silently does not run is worse than no check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "manifests" / "chart" / "carbon-aware-scheduler"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
# The Kubernetes version the manifests target (the e2e control plane and the kube-scheduler image).
KUBE_VERSION = "v1.35.8"
TOOL_TIMEOUT = 240.0


def _tool_dirs() -> list[Path]:
    """hack/install-tools.sh's folders: $CARBON_TOOLS_BIN, the Makefile's cache, the repo cache."""
    dirs = [os.environ.get("CARBON_TOOLS_BIN", "")]
    dirs += [
        str(Path.home() / ".cache/carbon-aware-scheduler/tools/bin"),
        str(REPO_ROOT / ".cache/tools/bin"),
    ]
    return [Path(d) for d in dirs if d]


def python_tools_bin() -> Path:
    """The separate venv install-tools.sh makes for checkov and kubernetes-validate (their pins clash
    with the project's own dependencies, so they do not go into .venv)."""
    return _tool_dirs()[0].parent / "pyvenv" / "bin"


def find_tool(name: str) -> Path:
    """The tool's path, or skip (locally) / fail (CI) with how to install it."""
    candidates = [d / name for d in _tool_dirs()]
    candidates += [d.parent / "pyvenv" / "bin" / name for d in _tool_dirs()]
    candidates.append(VENV_BIN / name)
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return Path(found)
    message = f"{name} not found: run hack/install-tools.sh (or `make tools`)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def run(
    argv: Sequence[str | Path], *, stdin: str | None = None, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        cwd=cwd,
        check=False,
    )


def helm_template(
    values: Mapping[str, Any] | None = None,
    *,
    tmp_path: Path,
    release: str = "carbon",
    namespace: str = "carbon-aware",
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``helm template`` with a values file (no --set escaping); the caller checks the return code."""
    values_file = tmp_path / f"values-{release}-{len(list(tmp_path.iterdir()))}.yaml"
    values_file.write_text(yaml.safe_dump(dict(values or {})))
    argv: list[str | Path] = [find_tool("helm"), "template", release, CHART_DIR, "--namespace", namespace]
    argv += ["--kube-version", KUBE_VERSION, "-f", values_file, *extra]
    return run(argv)


def render(values: Mapping[str, Any] | None = None, *, tmp_path: Path, **kw: Any) -> list[dict[str, Any]]:
    """Rendered documents; a failed render fails the test with helm's message."""
    proc = helm_template(values, tmp_path=tmp_path, **kw)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: Sequence[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, (
        f"expected one {kind} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def scheduler_config(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    cm = one(docs, "ConfigMap", "-scheduler-config")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert isinstance(config, dict)
    return config


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process we started (by its handle), SIGKILL it after 10 s, and reap it."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
