"""The feed → extender snapshot contract (carbon_common.snapshot)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from carbon_common.interval import Interval
from carbon_common.snapshot import (
    Snapshot,
    SnapshotError,
    ZoneReading,
    encode_snapshot,
    is_fresh,
    parse_snapshot,
    reading_age,
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
    assert z.forecast == (Interval(T, datetime(2026, 11, 22, 11, tzinfo=UTC), 340.0),)


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
        (_with({"periodSeconds": -1}), "periodSeconds"),
        (_with({"periodSeconds": "3600"}), "periodSeconds must be a number"),
        (_with({"periodSeconds": True}), "periodSeconds must be a number"),
        (_with({"periodSeconds": 1e12}), "periodSeconds"),
        # Out-of-range instants once in UTC (issue 12 item 1): a SnapshotError, never OverflowError.
        (_with({"observedAt": "9999-12-31T23:59:59-12:00"}), "observedAt"),
        (_with({"observedAt": "0001-01-01T00:00:00+01:00"}), "observedAt"),
        (_with(generatedAt="9999-12-31T23:59:59-12:00"), "generatedAt"),
        (
            _with(
                {"forecast": [{"start": "0001-01-01T00:00:00+01:00", "end": T.isoformat(), "intensity": 1}]}
            ),
            "forecast",
        ),
        (_with({"observedAt": "9999-12-31T23:00:00Z", "periodSeconds": 7200}), "past the last"),
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


def test_period_seconds_parsed_missing_is_zero_and_round_trips() -> None:
    assert parse_snapshot(orjson.dumps(DOC)).zones["US-CAL-CISO"].period_seconds == 0.0
    snap = parse_snapshot(_with({"periodSeconds": 3600}))
    assert snap.zones["US-CAL-CISO"].period_seconds == 3600.0
    assert parse_snapshot(encode_snapshot(snap)) == snap


def test_age_is_measured_from_the_end_of_the_period() -> None:
    # The contract (carbon_common.snapshot): age = now - (observedAt + periodSeconds). A day-long
    # static reading observed 25 h ago is one hour old, not 25.
    day = ZoneReading("X", 100.0, T, "static", period_seconds=86400.0)
    now = T + timedelta(hours=25)
    assert reading_age(day, now) == 3600.0
    assert is_fresh(day, now, 3600.0)
    assert not is_fresh(day, now, 3599.0)
    point = ZoneReading("X", 100.0, T, "t")
    assert reading_age(point, now) == 25 * 3600.0
    # A period still running, or clock skew, is age 0, never negative.
    assert reading_age(day, T + timedelta(hours=1)) == 0.0
    assert reading_age(point, T - timedelta(minutes=1)) == 0.0
