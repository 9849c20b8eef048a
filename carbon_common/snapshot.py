"""The snapshot: the one contract between carbon_feed (writer) and the extender (reader).

Schema (also in docs/feed.md): ``{"schemaVersion": 1, "generatedAt": RFC3339, "zones": {zone:
{"intensity", "unit", "observedAt", "periodSeconds", "source", "estimated", "signal", "forecast":
[{"start", "end", "intensity"}]}}}``. Intensity is always gCO2eq/kWh. A zone with no fresh reading is
absent, never guessed.

Freshness is defined here once (`reading_age`, `is_fresh`): a reading describes the period
``[observedAt, observedAt + periodSeconds)`` and its age is measured from the end of that period.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from carbon_common.interval import Interval
from carbon_common.timeutil import format_rfc3339, parse_rfc3339

SCHEMA_VERSION = 1
UNIT = "gCO2eq/kWh"
Signal = Literal["average", "marginal"]
SIGNALS: tuple[Signal, ...] = ("average", "marginal")
# Above any real grid (lignite is ~1,100 g/kWh lifecycle); larger values are unit mistakes.
MAX_PLAUSIBLE_INTENSITY = 2500.0
# A week: longer than any real averaging period (static zones use a day); larger is a unit mistake
# (milliseconds) and, unchecked, would keep a reading "fresh" for ever.
MAX_PERIOD_SECONDS = 7 * 24 * 3600.0


class SnapshotError(ValueError):
    """The snapshot bytes do not follow the contract; the message says where."""


@dataclass(frozen=True, slots=True)
class ZoneReading:
    zone: str
    intensity: float
    observed_at: datetime
    source: str
    estimated: bool = False
    signal: Signal = "average"
    forecast: tuple[Interval, ...] = ()
    period_seconds: float = 0.0
    """Length of the period starting at observed_at that the reading describes; 0 for a point reading."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    generated_at: datetime
    zones: Mapping[str, ZoneReading] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


def _intensity(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SnapshotError(f"{where}: intensity must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > MAX_PLAUSIBLE_INTENSITY:
        raise SnapshotError(f"{where}: intensity {number!r} is outside 0..{MAX_PLAUSIBLE_INTENSITY:g} {UNIT}")
    return number


def _period(value: Any, where: str) -> float:
    if value is None:  # absent: a snapshot from before periodSeconds, read as a point reading
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SnapshotError(f"{where}: periodSeconds must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > MAX_PERIOD_SECONDS:
        raise SnapshotError(f"{where}: periodSeconds {number!r} is outside 0..{MAX_PERIOD_SECONDS:g}")
    return number


def reading_age(reading: ZoneReading, now: datetime) -> float:
    """Seconds since the end of the reading's period (observedAt + periodSeconds), the one definition
    of age every component uses. A period still running, or clock skew, gives 0, never negative."""
    end = reading.observed_at + timedelta(seconds=reading.period_seconds)
    return max(0.0, (now - end).total_seconds())


def is_fresh(reading: ZoneReading, now: datetime, max_age: float) -> bool:
    """True when the reading's age (`reading_age`) is at most `max_age` seconds."""
    return reading_age(reading, now) <= max_age


def _time(value: Any, where: str) -> datetime:
    try:
        return parse_rfc3339(value)
    except (ValueError, OverflowError) as exc:
        raise SnapshotError(f"{where}: {exc}") from None


def _zone(name: str, raw: Any) -> ZoneReading:
    where = f"zones.{name}"
    if not isinstance(raw, dict):
        raise SnapshotError(f"{where}: expected an object")
    unit = raw.get("unit", UNIT)
    if unit != UNIT:
        raise SnapshotError(f"{where}: unit must be {UNIT!r}, got {unit!r}")
    signal = raw.get("signal", "average")
    if signal not in SIGNALS:
        raise SnapshotError(f"{where}: signal must be one of {SIGNALS}, got {signal!r}")
    points = raw.get("forecast")
    if points is None:  # absent or null: no forecast offered
        points = []
    if not isinstance(points, list):
        raise SnapshotError(f"{where}.forecast: expected a list")
    forecast: list[Interval] = []
    for i, point in enumerate(points):
        pw = f"{where}.forecast[{i}]"
        if not isinstance(point, dict):
            raise SnapshotError(f"{pw}: expected an object")
        start, end = _time(point.get("start"), pw + ".start"), _time(point.get("end"), pw + ".end")
        if end <= start:
            raise SnapshotError(f"{pw}: end is not after start")
        forecast.append(Interval(start, end, _intensity(point.get("intensity"), pw)))
    source = raw.get("source", "")
    estimated = raw.get("estimated", False)
    if not isinstance(source, str) or not isinstance(estimated, bool):
        raise SnapshotError(f"{where}: source must be a string and estimated a boolean")
    observed_at = _time(raw.get("observedAt"), where + ".observedAt")
    period = _period(raw.get("periodSeconds"), where)
    try:
        # reading_age adds the two on every request; an end past year 9999 must fail here, not there.
        observed_at + timedelta(seconds=period)
    except OverflowError:
        raise SnapshotError(
            f"{where}: observedAt + periodSeconds is past the last representable time"
        ) from None
    return ZoneReading(
        zone=name,
        intensity=_intensity(raw.get("intensity"), where),
        observed_at=observed_at,
        source=source,
        estimated=estimated,
        signal=signal,
        forecast=tuple(sorted(forecast, key=lambda p: p.start)),
        period_seconds=period,
    )


def parse_snapshot(data: bytes | str) -> Snapshot:
    """Decode and validate snapshot JSON; raises SnapshotError naming the first offending field."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"snapshot is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SnapshotError("snapshot must be a JSON object")
    version = raw.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise SnapshotError(f"unsupported schemaVersion {version!r} (this build reads {SCHEMA_VERSION})")
    zones = raw.get("zones")
    if not isinstance(zones, dict):
        raise SnapshotError("zones must be an object keyed by zone name")
    return Snapshot(
        generated_at=_time(raw.get("generatedAt"), "generatedAt"),
        zones={str(name): _zone(str(name), value) for name, value in zones.items()},
    )


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "schemaVersion": snapshot.schema_version,
        "generatedAt": format_rfc3339(snapshot.generated_at),
        "zones": {
            name: {
                "intensity": z.intensity,
                "unit": UNIT,
                "observedAt": format_rfc3339(z.observed_at),
                "periodSeconds": z.period_seconds,
                "source": z.source,
                "estimated": z.estimated,
                "signal": z.signal,
                "forecast": [
                    {"start": format_rfc3339(p.start), "end": format_rfc3339(p.end), "intensity": p.intensity}
                    for p in z.forecast
                ],
            }
            for name, z in sorted(snapshot.zones.items())
        },
    }


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return orjson.dumps(snapshot_to_dict(snapshot))


def write_snapshot_atomic(path: str | os.PathLike[str], snapshot: Snapshot) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the old file.

    Readers therefore see either the old or the new snapshot, never a torn one, even across a crash.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(encode_snapshot(snapshot))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
