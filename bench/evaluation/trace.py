"""Hourly carbon-intensity traces for the evaluation: loading, validation and alignment.

Two CSV layouts are accepted, detected from the header:

- the project's own ``datetime,zone,intensity`` (one row per zone and hour, RFC 3339 UTC, gCO2eq/kWh),
  which is what ``carbon_feed.traces`` writes;
- an Electricity Maps data-portal export (``Datetime (UTC)``, ``Zone Id``, ``Carbon Intensity gCO₂eq/kWh
  (life cycle assessment)`` or ``(LCA)`` or ``(direct)``); several zone files can be concatenated or
  passed one by one.

Everything is aligned onto one hourly UTC grid shared by all zones: sub-hourly data is averaged into
its hour, and the evaluation only runs over the hours every zone covers, because comparing policies
on hours where some zones are missing would silently favour the zones with data.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from carbon_common.timeutil import floor_hour, format_rfc3339, parse_rfc3339

HOUR = timedelta(hours=1)
# Gaps up to a day are interpolated linearly (ENTSO-E 2019 has 6 h gaps in ES and FR and a 24 h one in
# NL); longer ones would invent a grid state, so they are an error and the user must trim the trace.
MAX_FILLED_GAP_HOURS = 24
# A zone that needs more of its hours invented than this is an error, not a silent fill: the results
# would describe the interpolation rather than the grid.
MAX_FILLED_SHARE = 0.05
MAX_PLAUSIBLE_INTENSITY = 2500.0
Basis = str  # "lca" | "direct" (Electricity Maps exports carry both)


class TraceError(ValueError):
    """The trace cannot be used; the message names the file, line or zone."""


@dataclass(frozen=True, slots=True)
class Trace:
    """Hourly intensity per zone on a common grid: ``values[z, h]`` is zone ``zones[z]`` in hour ``h``."""

    start: datetime
    zones: tuple[str, ...]
    values: npt.NDArray[np.float64]
    source: str
    filled_hours: int = 0
    """How many zone-hours were interpolated over a short gap (reported, never hidden)."""

    @property
    def hours(self) -> int:
        return int(self.values.shape[1])

    def time_of(self, hour: int) -> datetime:
        return self.start + hour * HOUR

    def window(self, first_hour: int, hours: int) -> Trace:
        """A sub-trace; raises TraceError when the trace is too short."""
        if first_hour < 0 or hours <= 0 or first_hour + hours > self.hours:
            raise TraceError(f"window {first_hour}+{hours} h is outside the trace's {self.hours} h")
        return Trace(
            start=self.time_of(first_hour),
            zones=self.zones,
            values=self.values[:, first_hour : first_hour + hours].copy(),
            source=self.source,
            filled_hours=self.filled_hours,
        )

    def select(self, zones: Sequence[str]) -> Trace:
        missing = [z for z in zones if z not in self.zones]
        if missing:
            raise TraceError(f"zones not in the trace: {missing}; it has {list(self.zones)}")
        rows = [self.zones.index(z) for z in zones]
        return Trace(self.start, tuple(zones), self.values[rows].copy(), self.source, self.filled_hours)


def _parse_time(text: str, naive_is_utc: bool, where: str) -> datetime:
    try:
        return parse_rfc3339(text)
    except ValueError:
        if not naive_is_utc:
            raise TraceError(f"{where}: not an RFC 3339 UTC timestamp: {text!r}") from None
    try:
        # Electricity Maps writes "2023-01-01 00:00:00" under a "Datetime (UTC)" header.
        return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC)
    except ValueError:
        raise TraceError(f"{where}: not a timestamp: {text!r}") from None


def _parse_intensity(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{where}: intensity is not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0 or value > MAX_PLAUSIBLE_INTENSITY:
        raise TraceError(f"{where}: intensity {value!r} is outside 0..{MAX_PLAUSIBLE_INTENSITY:g} gCO2eq/kWh")
    return value


def _columns(header: Sequence[str], basis: Basis, where: str) -> tuple[int, int, int, bool]:
    """Indexes of (time, zone, intensity) and whether naive times are UTC, from the header row."""
    names = [h.strip().lstrip("\ufeff") for h in header]
    lower = [n.lower() for n in names]
    if {"datetime", "zone", "intensity"} <= set(lower):
        return lower.index("datetime"), lower.index("zone"), lower.index("intensity"), False
    if "datetime (utc)" in lower and "zone id" in lower:
        wanted = ("life cycle", "lca") if basis == "lca" else ("direct",)
        for i, name in enumerate(lower):
            if name.startswith("carbon intensity") and any(w in name for w in wanted):
                return lower.index("datetime (utc)"), lower.index("zone id"), i, True
        raise TraceError(f"{where}: Electricity Maps export without a {basis!r} carbon-intensity column")
    raise TraceError(
        f"{where}: unknown CSV header {names!r}; expected 'datetime,zone,intensity' "
        "or an Electricity Maps export ('Datetime (UTC)', 'Zone Id', 'Carbon Intensity gCO₂eq/kWh (...)')"
    )


def read_points(path: Path, basis: Basis = "lca") -> dict[str, dict[datetime, list[float]]]:
    """Raw points of one CSV file: zone → hour → values in that hour (sub-hourly data averages later)."""
    points: dict[str, dict[datetime, list[float]]] = defaultdict(lambda: defaultdict(list))
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot open: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path}: empty file")
        t_col, z_col, i_col, naive_utc = _columns(header, basis, str(path))
        width = max(t_col, z_col, i_col) + 1
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            where = f"{path}:{line}"
            if len(row) < width:
                raise TraceError(f"{where}: expected at least {width} columns, got {len(row)}")
            if not row[i_col].strip() and naive_utc:
                continue  # Electricity Maps leaves a cell empty where it has no value; that is a gap.
            zone = row[z_col].strip()
            if not zone:
                raise TraceError(f"{where}: empty zone")
            moment = _parse_time(row[t_col], naive_utc, where)
            points[zone][floor_hour(moment)].append(_parse_intensity(row[i_col], where))
    if not points:
        raise TraceError(f"{path}: no data rows")
    return points


def build_trace(
    points: Mapping[str, Mapping[datetime, Sequence[float]]], source: str, zones: Sequence[str] | None = None
) -> Trace:
    """Align per-zone hourly points onto the hours every zone covers; fill only short gaps."""
    chosen = list(zones) if zones else sorted(points)
    missing = [z for z in chosen if z not in points]
    if missing:
        raise TraceError(f"{source}: zones not in the trace: {missing}; it has {sorted(points)}")
    if not chosen:
        raise TraceError(f"{source}: no zones")
    start = max(min(points[z]) for z in chosen)
    end = min(max(points[z]) for z in chosen)
    if end < start:
        raise TraceError(f"{source}: the zones' periods do not overlap")
    hours = int((end - start) / HOUR) + 1
    values = np.empty((len(chosen), hours), dtype=np.float64)
    filled = 0
    for row, zone in enumerate(chosen):
        series = points[zone]
        zone_filled = 0
        known: list[int] = []
        for h in range(hours):
            bucket = series.get(start + h * HOUR)
            if bucket:
                values[row, h] = sum(bucket) / len(bucket)
                known.append(h)
        # The first and last hours are covered by construction (the overlap starts and ends on data).
        for before, after in itertools.pairwise(known):
            gap = after - before - 1
            if gap == 0:
                continue
            if gap > MAX_FILLED_GAP_HOURS:
                moment = format_rfc3339(start + (before + 1) * HOUR)
                raise TraceError(
                    f"{source}: zone {zone} has a gap of {gap} h at {moment} (more than "
                    f"{MAX_FILLED_GAP_HOURS} h); trim the trace or drop the zone"
                )
            values[row, before + 1 : after] = np.interp(
                np.arange(before + 1, after), [before, after], [values[row, before], values[row, after]]
            )
            zone_filled += gap
        if zone_filled > MAX_FILLED_SHARE * hours:
            raise TraceError(
                f"{source}: zone {zone} needs {zone_filled} of its {hours} h interpolated "
                f"({zone_filled / hours:.1%}, more than {MAX_FILLED_SHARE:.0%}); use a more complete trace "
                "or drop the zone"
            )
        filled += zone_filled
    return Trace(start=start, zones=tuple(chosen), values=values, source=source, filled_hours=filled)


def add_trace_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """--trace (repeatable), --zones and --basis: how every bench command names its trace files."""
    parser.add_argument(
        "--trace",
        type=Path,
        action="append",
        default=[],
        help=f"trace CSV (datetime,zone,intensity or an Electricity Maps export); repeatable ({default})",
    )
    parser.add_argument("--zones", default="", help="comma-separated zones to use (default: all)")
    parser.add_argument(
        "--basis",
        choices=("lca", "direct"),
        default="lca",
        help="Electricity Maps exports: life-cycle or direct intensity column",
    )


def load_csv(paths: Iterable[Path], zones: Sequence[str] | None = None, basis: Basis = "lca") -> Trace:
    """Load one or more CSV files (either layout) into one aligned trace."""
    merged: dict[str, dict[datetime, list[float]]] = defaultdict(lambda: defaultdict(list))
    names: list[str] = []
    for path in paths:
        names.append(path.name)
        for zone, series in read_points(path, basis).items():
            for moment, bucket in series.items():
                merged[zone][moment].extend(bucket)
    if not names:
        raise TraceError("no trace files given")
    return build_trace(merged, source=",".join(names), zones=zones)


def write_csv(trace: Trace, path: Path) -> None:
    """Write in the project's ``datetime,zone,intensity`` layout (round-trips through load_csv)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["datetime", "zone", "intensity"])
        for h in range(trace.hours):
            stamp = format_rfc3339(trace.time_of(h))
            for z, zone in enumerate(trace.zones):
                writer.writerow([stamp, zone, f"{trace.values[z, h]:.3f}"])
