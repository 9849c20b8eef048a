"""The kind guide (manifests/kind) checked without a kind cluster, which cannot run on CI's machines
(no privileged containers, no bridge networks). Every file a kind user applies is checked by the
code that will read it:

- kind-config.yaml: the pinned kind release's own code (hack/build-kindcheck.sh's `render`) writes
  each node's kubeadm config from it, and `kubeadm config validate` built at the control plane's
  Kubernetes pin accepts every one; the scheduler patch really reaches kubeadm.
- values.yaml: the chart renders with it and kubeconform (strict, offline schemas) accepts the result.
- scheduler-config.yaml: the real kube-scheduler loads it (config loading only, as in
  test_deploy_kube_scheduler).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploytools import REPO_ROOT, helm_template, render, run
from tests.deploy.kubeschemas import kubeconform_argv
from tests.deploy.test_deploy_kube_scheduler import _kubeconfig, _load, _tail
from tests.e2e.kubeharness.controlplane import BinariesUnavailable, cache_dir, locate_binaries

KIND_DIR = REPO_ROOT / "manifests" / "kind"
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-kindcheck.sh"
# The node image kind v0.31.0 (hack/kindcheck/go.mod) was released with, for Kubernetes v1.35.0.
NODE_IMAGE = "kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f"
KIND_VERSION = "v0.31.0"
SCHEDULER_CONFIG_IN_NODE = "/etc/kubernetes/carbon-scheduler/config.yaml"
BUILD_TIMEOUT = 3600.0

# The patch as it was before the fix: v1beta4's list-form extraArgs, no apiVersion (so kind applies it
# to the v1beta3 ClusterConfiguration it renders for a v1.35 node).
OLD_LIST_FORM_PATCH = """\
kind: ClusterConfiguration
scheduler:
  extraArgs:
    - name: config
      value: /etc/kubernetes/carbon-scheduler/config.yaml
"""


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def kindcheck() -> Path:
    """hack/build-kindcheck.sh's folder (render, kubeadm): a cache hit answers at once."""
    if shutil.which("go") is None:
        _unavailable("`go` is not on PATH: hack/build-kindcheck.sh needs Go 1.25+")
    env = {**os.environ, "CARBON_E2E_CACHE": str(cache_dir())}
    proc = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kube_scheduler() -> Path:
    try:
        return locate_binaries().kube_scheduler
    except BinariesUnavailable as exc:
        _unavailable(str(exc))
        raise


def _kind_config() -> dict[str, Any]:
    config = yaml.safe_load((KIND_DIR / "kind-config.yaml").read_text())
    assert isinstance(config, dict)
    return config


def _kind_render(kindcheck: Path, config: dict[str, Any], tmp_path: Path) -> dict[str, Path]:
    """Each node's kubeadm config file as the pinned kind writes it, by node name (kind's naming)."""
    config_file = tmp_path / "kind-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    version = NODE_IMAGE.split(":")[1].split("@")[0]  # what the node image's /kind/version says
    out = tmp_path / "kubeadm"
    proc = run([kindcheck / "render", "-config", config_file, "-kubernetes-version", version, "-out", out])
    assert proc.returncode == 0, proc.stderr
    return {path.stem: path for path in sorted(out.glob("*.yaml"))}


def _kubeadm_validate(kindcheck: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return run([kindcheck / "kubeadm", "config", "validate", "--config", path])


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _doc(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def _with_patch(patch: str) -> dict[str, Any]:
    config = _kind_config()
    config["nodes"][0]["kubeadmConfigPatches"] = [patch]
    return config


# --- pins ------------------------------------------------------------------------------------------


def test_every_node_and_the_guide_use_the_pinned_kind_and_image() -> None:
    nodes = _kind_config()["nodes"]
    assert [n.get("image") for n in nodes] == [NODE_IMAGE] * len(nodes)
    go_mod = (REPO_ROOT / "hack" / "kindcheck" / "go.mod").read_text()
    assert re.search(rf"^\s*sigs\.k8s\.io/kind {re.escape(KIND_VERSION)}\b", go_mod, re.MULTILINE)
    guide = (KIND_DIR / "README.md").read_text()
    assert NODE_IMAGE in guide
    assert f"kind {KIND_VERSION}" in guide


# --- kind-config.yaml: rendered by kind, validated by kubeadm --------------------------------------


def test_kubeadm_accepts_what_kind_renders_for_every_node(kindcheck: Path, tmp_path: Path) -> None:
    rendered = _kind_render(kindcheck, _kind_config(), tmp_path)
    assert sorted(rendered) == [
        "carbon-aware-control-plane",
        "carbon-aware-worker",
        "carbon-aware-worker2",
        "carbon-aware-worker3",
    ]
    for node, path in rendered.items():
        # kind renders v1beta3 for a v1.35 node: the version the patches are pinned to.
        assert _doc(_docs(path), "ClusterConfiguration")["apiVersion"] == "kubeadm.k8s.io/v1beta3", node
        proc = _kubeadm_validate(kindcheck, path)
        assert proc.returncode == 0, f"{node}: {proc.stdout}{proc.stderr}"
        assert proc.stdout.strip() == "ok", node


def test_the_scheduler_patch_and_the_zones_reach_kubeadm(kindcheck: Path, tmp_path: Path) -> None:
    config = _kind_config()
    rendered = _kind_render(kindcheck, config, tmp_path)
    control_plane = config["nodes"][0]
    assert {
        "containerPath": SCHEDULER_CONFIG_IN_NODE,
        "hostPath": "manifests/kind/scheduler-config.yaml",
    }.items() <= (control_plane["extraMounts"][0].items())
    scheduler = _doc(_docs(rendered["carbon-aware-control-plane"]), "ClusterConfiguration")["scheduler"]
    assert scheduler["extraArgs"] == {"config": SCHEDULER_CONFIG_IN_NODE}
    (volume,) = scheduler["extraVolumes"]
    assert (volume["hostPath"], volume["mountPath"]) == (SCHEDULER_CONFIG_IN_NODE, SCHEDULER_CONFIG_IN_NODE)
    labels = {
        _doc(_docs(path), "JoinConfiguration")["nodeRegistration"]["kubeletExtraArgs"]["node-labels"]
        for name, path in rendered.items()
        if "worker" in name
    }
    assert labels == {f"carbon-aware.io/zone={zone}" for zone in ("FR", "DE", "PL")}


def test_the_old_list_form_patch_is_rejected_under_v1beta3(kindcheck: Path, tmp_path: Path) -> None:
    """The check can fail: kind applies the old patch (no apiVersion) and kubeadm refuses the result."""
    rendered = _kind_render(kindcheck, _with_patch(OLD_LIST_FORM_PATCH), tmp_path)
    proc = _kubeadm_validate(kindcheck, rendered["carbon-aware-control-plane"])
    assert proc.returncode != 0
    assert (
        "cannot unmarshal array into Go struct field ControlPlaneComponent.scheduler.extraArgs" in proc.stderr
    )


def test_a_patch_for_another_kubeadm_version_is_skipped(kindcheck: Path, tmp_path: Path) -> None:
    """kind matches patches by kind and apiVersion: a v1beta4 patch never reaches a v1.35 node, which
    test_the_scheduler_patch_and_the_zones_reach_kubeadm would notice."""
    patch = (
        "kind: ClusterConfiguration\napiVersion: kubeadm.k8s.io/v1beta4\n"
        + OLD_LIST_FORM_PATCH.split("\n", 1)[1]
    )
    rendered = _kind_render(kindcheck, _with_patch(patch), tmp_path)
    scheduler = _doc(_docs(rendered["carbon-aware-control-plane"]), "ClusterConfiguration").get(
        "scheduler", {}
    )
    assert "config" not in json.dumps(scheduler)


# --- values.yaml and scheduler-config.yaml ----------------------------------------------------------


def _values() -> dict[str, Any]:
    values = yaml.safe_load((KIND_DIR / "values.yaml").read_text())
    assert isinstance(values, dict)
    return values


def test_the_chart_with_the_kind_values_passes_kubeconform(tmp_path: Path) -> None:
    proc = helm_template(_values(), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = run([*kubeconform_argv(), "-"], stdin=proc.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert (summary["invalid"], summary["errors"]) == (0, 0), summary


def test_the_extender_service_ip_is_in_the_kind_service_range(tmp_path: Path) -> None:
    """kind's scheduler (host network, no cluster DNS) calls the Service on this fixed IP."""
    docs = render(_values(), tmp_path=tmp_path)
    (service,) = [d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP")]
    subnet = ipaddress.ip_network(_kind_config()["networking"]["serviceSubnet"])
    assert ipaddress.ip_address(service["spec"]["clusterIP"]) in subnet
    scheduler_config = yaml.safe_load((KIND_DIR / "scheduler-config.yaml").read_text())
    assert scheduler_config["extenders"][0]["urlPrefix"].startswith(f"http://{service['spec']['clusterIP']}:")


def test_kube_scheduler_loads_the_mounted_config(kube_scheduler: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((KIND_DIR / "scheduler-config.yaml").read_text())
    # kubeadm's /etc/kubernetes/scheduler.conf exists only inside the node: point at a stand-in.
    assert config["clientConnection"]["kubeconfig"] == "/etc/kubernetes/scheduler.conf"
    config["clientConnection"]["kubeconfig"] = str(_kubeconfig(tmp_path))
    accepted, log = _load(kube_scheduler, config, tmp_path)
    assert accepted, _tail(log)
    assert '"Creating extender"' in log
