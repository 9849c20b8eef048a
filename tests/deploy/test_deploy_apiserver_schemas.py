"""hack/gen-kube-schemas.py --apiserver: schemas generated from a real kube-apiserver's OpenAPI (the
e2e harness's etcd + kube-apiserver on loopback) validate the chart's rendering with kubeconform and
still reject an unknown field. The offline set (kubernetes-validate) is what CI uses; this keeps the
second source honest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.deploytools import REPO_ROOT, find_tool, helm_template, run
from tests.deploy.kubeschemas import CRD_KINDS, SCHEMA_VERSION
from tests.e2e.kubeharness.controlplane import BinariesUnavailable, ControlPlane, locate_binaries


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    try:
        binaries = locate_binaries()
    except BinariesUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    with ControlPlane(binaries, tmp_path_factory.mktemp("apiserver")) as plane:
        yield plane


@pytest.fixture(scope="module")
def schemas(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("schemas")
    token = out / "token"
    token.write_text(control_plane.token)
    argv = [sys.executable, str(REPO_ROOT / "hack/gen-kube-schemas.py"), "--out", str(out)]
    argv += ["--kube-version", SCHEMA_VERSION, "--apiserver", control_plane.server]
    argv += ["--token-file", str(token), "--ca-file", str(control_plane.pki.ca_file)]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def _kubeconform(schemas: Path, manifest: str) -> subprocess.CompletedProcess[str]:
    location = f"{schemas}/{{{{ .NormalizedKubernetesVersion }}}}-standalone{{{{ .StrictSuffix }}}}/"
    location += "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    argv: list[str | Path] = [find_tool("kubeconform"), "-strict", "-summary", "-output", "json"]
    argv += ["-kubernetes-version"]
    argv += [SCHEMA_VERSION, "-schema-location", location, "-skip", ",".join(CRD_KINDS), "-"]
    return run(argv, stdin=manifest)


def test_apiserver_schemas_validate_the_chart(schemas: Path, tmp_path: Path) -> None:
    proc = helm_template({"replicaCount": 2, "mode": "second-scheduler"}, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = _kubeconform(schemas, proc.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert (summary["invalid"], summary["errors"]) == (0, 0), summary
    assert summary["valid"] >= 10, summary


def test_apiserver_schemas_are_strict(schemas: Path) -> None:
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndatta: {}\n"
    result = _kubeconform(schemas, bad)
    assert result.returncode != 0
    assert "datta" in result.stdout
