"""`make demo` runs end to end on loopback and reports placements and savings."""

from __future__ import annotations

import subprocess
import sys


def test_demo_places_every_pod_and_reports_savings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "extender.demo", "--pods", "12", "--seed", "3"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "12 pods, 12 bound, 0 unschedulable" in out
    assert "NodeNames" in out
    assert "Nodes " in out
    assert "% lower" in out
    assert "carbon_extender_intensity_avoided_grams_per_kwh_sum" in out
