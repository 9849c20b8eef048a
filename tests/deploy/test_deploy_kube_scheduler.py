"""The real kube-scheduler (the version the chart deploys, built by hack/build-controlplane.sh)
accepts the KubeSchedulerConfiguration the chart renders for every value set, and rejects a broken
one, so the chart's render-time checks and kube-scheduler's validation agree.

Only config loading is exercised: the kubeconfig points at a closed loopback port and serving is off
(--secure-port=0); the e2e suite runs the scheduler against a real API server.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.deploy.deploytools import render, scheduler_config, stop_process
from tests.deploy.valuesets import VALUE_SETS
from tests.e2e.kubeharness.controlplane import BinariesUnavailable, locate_binaries

ACCEPTED = '"Using component config"'
LOAD_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def kube_scheduler() -> Path:
    try:
        return locate_binaries().kube_scheduler
    except BinariesUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _kubeconfig(tmp_path: Path) -> Path:
    # Port 9 (discard) on loopback: nothing answers, and nothing leaves the machine.
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "unused"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


def _files_of_the_pod(config: dict[str, Any], tmp_path: Path) -> None:
    """Point tlsConfig file paths (mounted from Secrets in the pod) at real PEM files: kube-scheduler
    reads them at start."""
    ca = trustme.CA()
    client = ca.issue_cert("kube-scheduler")
    pem = {"caFile": ca.cert_pem, "certFile": client.cert_chain_pems[0], "keyFile": client.private_key_pem}
    for extender in config.get("extenders", []):
        tls = extender.get("tlsConfig", {})
        for key, blob in pem.items():
            if key in tls:
                path = tmp_path / key
                blob.write_to_path(str(path))
                tls[key] = str(path)


def _load(kube_scheduler: Path, config: dict[str, Any], tmp_path: Path) -> tuple[bool, str]:
    """Start kube-scheduler on `config`; (accepted, log). Stopped by PID as soon as it has decided."""
    config_file = tmp_path / "scheduler-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log_file = tmp_path / "kube-scheduler.log"
    with log_file.open("w") as log:
        proc = subprocess.Popen(
            [str(kube_scheduler), f"--config={config_file}", "--secure-port=0", "--v=2"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + LOAD_TIMEOUT
        while time.monotonic() < deadline:
            text = log_file.read_text()
            if ACCEPTED in text:
                return True, text
            if proc.poll() is not None:
                return False, log_file.read_text()
            time.sleep(0.1)
        return False, log_file.read_text() + f"\n(no decision within {LOAD_TIMEOUT} s)"
    finally:
        stop_process(proc)


def _tail(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "flags.go" not in line)[-3000:]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_kube_scheduler_accepts_the_rendered_config(kube_scheduler: Path, tmp_path: Path, name: str) -> None:
    values = {**VALUE_SETS[name], "scheduler": {**VALUE_SETS[name].get("scheduler", {})}}
    values["scheduler"]["kubeconfig"] = str(_kubeconfig(tmp_path))
    config = scheduler_config(render(values, tmp_path=tmp_path))
    _files_of_the_pod(config, tmp_path)
    accepted, log = _load(kube_scheduler, config, tmp_path)
    assert accepted, _tail(log)
    assert '"Creating extender"' in log


def test_kube_scheduler_rejects_what_the_chart_refuses(kube_scheduler: Path, tmp_path: Path) -> None:
    """A zero weight (the chart fails on it at render time) is also fatal to kube-scheduler."""
    values = {"scheduler": {"kubeconfig": str(_kubeconfig(tmp_path))}}
    config = scheduler_config(render(values, tmp_path=tmp_path))
    config["extenders"][0]["weight"] = 0
    accepted, log = _load(kube_scheduler, config, tmp_path)
    assert not accepted
    assert "weight" in log


def test_kube_scheduler_accepts_ca_data_and_managed_resources(kube_scheduler: Path, tmp_path: Path) -> None:
    values = {
        "scheduler": {
            "name": "green",
            "kubeconfig": str(_kubeconfig(tmp_path)),
            "leaderElection": {"enabled": False},
        },
        "extender": {
            "filter": False,
            "bind": False,
            "nodeCacheCapable": False,
            "httpTimeout": "1500ms",
            "managedResources": [{"name": "carbon-aware.io/opt-in", "ignoredByScheduler": True}],
            "tls": {
                "enabled": True,
                "secretName": "s",
                "serverName": "ext",
                "caData": trustme.CA().cert_pem.bytes().decode(),
            },
        },
    }
    accepted, log = _load(kube_scheduler, scheduler_config(render(values, tmp_path=tmp_path)), tmp_path)
    assert accepted, _tail(log)
    assert '"ManagedResources":[{"Name":"carbon-aware.io/opt-in","IgnoredByScheduler":true}]' in log
