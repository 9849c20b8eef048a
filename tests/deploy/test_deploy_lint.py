"""Real linters on the deployment files: hadolint (Dockerfile), yamllint (plain YAML), checkov
(security scan of every chart rendering), and the rendered manifests are up to date."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

from tests.deploy.deploytools import REPO_ROOT, find_tool, helm_template, run
from tests.deploy.valuesets import VALUE_SETS

PLAIN_YAML = [
    "manifests/rendered",
    "manifests/kind",
    "manifests/chart/carbon-aware-scheduler/Chart.yaml",
    "manifests/chart/carbon-aware-scheduler/values.yaml",
    ".yamllint.yaml",
    ".hadolint.yaml",
]
RENDERED = [
    "manifests/rendered/second-scheduler.yaml",
    "manifests/rendered/extender-service.yaml",
    "manifests/kind/scheduler-config.yaml",
]


def test_hadolint() -> None:
    proc = run([find_tool("hadolint"), "--config", REPO_ROOT / ".hadolint.yaml", REPO_ROOT / "Dockerfile"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """hadolint really runs with our config: an unpinned base image and `cd` are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install requests\n")
    proc = run([find_tool("hadolint"), "--config", REPO_ROOT / ".hadolint.yaml", bad])
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout


def test_yamllint() -> None:
    proc = run([find_tool("yamllint"), "--strict", "-c", REPO_ROOT / ".yamllint.yaml", *PLAIN_YAML])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rendered_manifests_are_up_to_date(tmp_path: Path) -> None:
    find_tool("helm")  # skip or fail with the install hint before running the script
    proc = run(["bash", REPO_ROOT / "hack/render-manifests.sh", tmp_path])
    assert proc.returncode == 0, proc.stderr
    stale = [rel for rel in RENDERED if not filecmp.cmp(REPO_ROOT / rel, tmp_path / rel, shallow=False)]
    assert not stale, f"out of date: {stale}; run hack/render-manifests.sh and commit the result"


def test_checkov_security_scan(tmp_path: Path) -> None:
    """No failed checks on any value set; deliberate exceptions are checkov.io/skip annotations on the
    resources themselves. One checkov run over all renderings (it takes ~15 s to start)."""
    renderings = tmp_path / "rendered"
    renderings.mkdir()
    for name, values in VALUE_SETS.items():
        proc = helm_template(values, tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stderr
        (renderings / f"{name}.yaml").write_text(proc.stdout)
    scan = run(
        [
            find_tool("checkov"),
            "--skip-download",
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "-d",
            renderings,
        ],
        cwd=tmp_path,
    )
    report = json.loads(scan.stdout)
    failed = [(c["file_path"], c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    scanned = {c["file_path"].rsplit("/", 1)[-1] for c in report["results"]["passed_checks"]}
    assert scanned == {f"{name}.yaml" for name in VALUE_SETS}
    assert scan.returncode == 0, scan.stderr


def test_checkov_catches_a_privileged_pod(tmp_path: Path) -> None:
    """The scan is live: a privileged container fails CKV_K8S_16."""
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: x}\n"
        "spec: {containers: [{name: c, image: busybox, securityContext: {privileged: true}}]}\n"
    )
    scan = run(
        [find_tool("checkov"), "--skip-download", "--framework", "kubernetes", "--output", "json", "-f", pod]
    )
    failed = {c["check_id"] for c in json.loads(scan.stdout)["results"]["failed_checks"]}
    assert "CKV_K8S_16" in failed
    assert scan.returncode != 0
