"""The extender's default body limit and the chart's memory limit agree (issue 12 item 2)."""

from __future__ import annotations

from pathlib import Path

import yaml

from extender.app import MAX_REQUEST_ZONES
from extender.decisions import DecisionStore
from extender.settings import ExtenderSettings

VALUES = Path(__file__).resolve().parents[2] / "manifests/chart/carbon-aware-scheduler/values.yaml"
MiB = 2**20

# Measured (docs/extender.md, "Memory"): 79 MiB idle; a 63 MiB request of full Nodes peaked at 464 MiB,
# 6.2 times its size above idle; requests over 1 MiB are handled one at a time.
IDLE = 80 * MiB
PEAK_PER_BODY_BYTE = 7
# The caches' bounds: the decision store's byte budget and request_zones' measured worst case.
CACHES = DecisionStore().max_bytes + 22 * MiB


def _quantity(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


def test_default_body_limit_fits_5000_full_nodes_with_headroom() -> None:
    # 5,000 full Nodes with kubelet's 50 images each encode to 50 MiB (measured).
    assert ExtenderSettings().max_body_bytes >= 50 * MiB * 1.25


def test_chart_memory_limit_holds_a_request_at_the_body_limit() -> None:
    values = yaml.safe_load(VALUES.read_text())
    limit = _quantity(values["extender"]["resources"]["limits"]["memory"])
    body = ExtenderSettings().max_body_bytes
    assert limit >= IDLE + PEAK_PER_BODY_BYTE * body + CACHES, (
        f"extender memory limit {limit // MiB} MiB is below what a {body // MiB} MiB request needs"
    )
    assert MAX_REQUEST_ZONES <= 50_000  # the bound behind the 22 MiB above
