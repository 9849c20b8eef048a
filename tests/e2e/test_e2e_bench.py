"""The throughput benchmark runs end to end (--quick); its figures are reported, never asserted here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .kubeharness import REPO_ROOT

pytestmark = pytest.mark.e2e
_KLOG = re.compile(r"^[IWEF]\d{4} |^\{\"level\"")


def test_scheduler_throughput_quick_run_binds_every_pod_in_both_arms(tmp_path: Path) -> None:
    output = tmp_path / "scheduler_throughput.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scheduler_throughput", "--quick", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    # Control-plane log tails (klog lines) crowd out the benchmark's own words: show those first.
    ours = [line for line in proc.stderr.splitlines() if not _KLOG.match(line)]
    assert proc.returncode == 0, "\n".join(ours)[-6000:] + "\n--- stderr tail ---\n" + proc.stderr[-2000:]

    result = json.loads(output.read_text())
    for arm in ("baseline", "extender", "floor"):
        assert [r["pods"] for r in result[arm]] == [100]
        assert result[arm][0]["pods_per_second"] > 0
    assert result["ratio"] > 0
    assert result["floor_ratio"] > 0
