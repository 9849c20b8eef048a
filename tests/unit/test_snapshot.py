"""The feed → extender snapshot contract (carbon_common.snapshot)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from carbon_common.snapshot import (
    ForecastPoint,
    Snapshot,
    SnapshotError,
    ZoneReading,
    encode_snapshot,
    parse_snapshot,
    write_snapshot_atomic,
)

T = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DOC: dict[str, Any] = {
    "schemaVersion": 1,
    "generatedAt": "2026-11-22T10:00:00Z",
    "zones": {
        "US-CAL-CISO": {
            "intensity": 357.0,
            "unit": "gCO2eq/kWh",
            "observedAt": "2026-11-22T09:55:00Z",
            "source": "electricitymaps",
            "estimated": False,
            "forecast": [
                {"start": "2026-11-22T10:00:00Z", "end": "2026-11-22T11:00:00Z", "intensity": 340.0}
            ],
        }
    },
}


def test_design_example_parses() -> None:
    snap = parse_snapshot(orjson.dumps(DOC))
    z = snap.zones["US-CAL-CISO"]
    assert snap.generated_at == T
    assert (z.intensity, z.source, z.estimated, z.signal) == (357.0, "electricitymaps", False, "average")
    assert z.observed_at == datetime(2026, 11, 22, 9, 55, tzinfo=UTC)
    assert z.forecast == (ForecastPoint(T, datetime(2026, 11, 22, 11, tzinfo=UTC), 340.0),)


def test_round_trip() -> None:
    snap = parse_snapshot(orjson.dumps(DOC))
    assert parse_snapshot(encode_snapshot(snap)) == snap


def _with(zone_patch: dict[str, Any] | None = None, **top: Any) -> bytes:
    doc = orjson.loads(orjson.dumps(DOC))
    doc.update(top)
    if zone_patch is not None:
        doc["zones"]["US-CAL-CISO"].update(zone_patch)
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"nope", "not valid JSON"),
        (b"[]", "JSON object"),
        (_with(schemaVersion=2), "schemaVersion"),
        (_with(zones=[]), "zones"),
        (_with(generatedAt="yesterday"), "generatedAt"),
        (_with({"intensity": "high"}), "intensity must be a number"),
        (_with({"intensity": -1}), "outside"),
        (_with({"intensity": 99999}), "outside"),
        (_with({"intensity": True}), "intensity must be a number"),
        (_with({"unit": "lbs/MWh"}), "unit"),
        (_with({"signal": "index"}), "signal"),
        (_with({"observedAt": "2026-11-22T09:55:00"}), "observedAt"),
        (_with({"forecast": {"start": 1}}), "forecast"),
        (_with({"forecast": {}}), "forecast: expected a list"),
        (_with({"forecast": ""}), "forecast: expected a list"),
        (
            _with(
                {
                    "forecast": [
                        {"start": "2026-11-22T11:00:00Z", "end": "2026-11-22T10:00:00Z", "intensity": 1}
                    ]
                }
            ),
            "end is not after start",
        ),
        (_with({"source": 5}), "source"),
    ],
)
def test_bad_snapshots_name_the_field(data: bytes, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        parse_snapshot(data)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "snapshot.json"
    first = Snapshot(T, {"DE": ZoneReading("DE", 400.0, T, "t")})
    write_snapshot_atomic(target, first)
    inode = os.stat(target).st_ino
    second = Snapshot(T, {"FR": ZoneReading("FR", 50.0, T, "t")})
    write_snapshot_atomic(target, second)
    assert parse_snapshot(target.read_bytes()) == second
    assert os.stat(target).st_ino != inode
    assert [p.name for p in target.parent.iterdir()] == ["snapshot.json"]
