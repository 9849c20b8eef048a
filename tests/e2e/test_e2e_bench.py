"""The throughput benchmark runs end to end (--quick); its figures are reported, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .kubeharness import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_scheduler_throughput_quick_run_binds_every_pod_in_both_arms(tmp_path: Path) -> None:
    output = tmp_path / "throughput.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scheduler_throughput", "--quick", "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    result = json.loads(output.read_text())
    for arm in ("baseline", "extender"):
        assert [r["pods"] for r in result[arm]] == [100]
        assert result[arm][0]["pods_per_second"] > 0
    assert result["ratio"] > 0
