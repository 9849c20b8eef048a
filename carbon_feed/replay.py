"""The replay provider: a real historical trace (CSV) played against the clock.

Trace time and wall time are tied by one line: ``trace = trace_start + (now - anchor) * speed``. By
default ``anchor`` is the current wall-clock hour and ``trace_start`` the trace hour with the same
month, day and hour, so a demo shows the grid's real daily shape at the right time of day. Readings are
stamped in wall time (the rest of the feed sees an ordinary, fresh provider), and an hour of trace lasts
``3600 / speed`` wall seconds.

The "provider forecast" is the next ``horizon_hours`` of the trace. That is a perfect forecast unless
``noise`` is set: then each point gets a seeded multiplicative Gaussian error growing with the lead time
(sigma = noise * sqrt(lead hours / 24)), so demos and benchmarks can be honest about forecast error.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_common.timeutil import floor_hour, parse_rfc3339, utcnow
from carbon_feed.model import FetchResult, Reading
from carbon_feed.traces import embedded_trace_path, load_trace

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)


class ReplayConfigError(ValueError):
    """A replay option is wrong; the message names the option."""


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    path: str | None = None
    """Trace CSV (datetime,zone,intensity; .gz read too). None: the packaged ENTSO-E 2019 trace."""
    speed: float = 1.0
    """Trace seconds per wall second: 1 = real time, 3600 = one trace hour per second."""
    trace_start: datetime | None = None
    """Trace time that plays at `anchor`. None: the trace hour with the same month/day/hour as now."""
    anchor: datetime | None = None
    """Wall time at which `trace_start` plays. None: the current hour (at construction)."""
    loop: bool = True
    """After the last trace hour, start again from the first (else: no more readings)."""
    horizon_hours: int = 48
    """Forecast length served as the provider forecast (0 = none)."""
    noise: float = 0.0
    """Relative forecast error at 24 h lead (0.1 = 10 %); 0 = the trace itself (a perfect forecast)."""
    seed: int = 0
    zones: tuple[str, ...] = ()
    """Zones to serve (default: every zone in the trace)."""


def _number(options: Mapping[str, Any], key: str, default: float, minimum: float, strict: bool) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ReplayConfigError(f"replay option {key!r} must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ReplayConfigError(
            f"replay option {key!r} must be {'>' if strict else '>='} {minimum:g}, got {value!r}"
        )
    return float(value)


def _time(options: Mapping[str, Any], key: str) -> datetime | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ReplayConfigError(f"replay option {key!r} needs a UTC offset")
        return value.astimezone(UTC)
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise ReplayConfigError(f"replay option {key!r}: {exc}") from None


def parse_options(options: Mapping[str, Any]) -> ReplayOptions:
    known = {"path", "speed", "trace_start", "anchor", "loop", "horizon_hours", "noise", "seed", "zones"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ReplayConfigError(f"unknown replay option(s) {unknown}; known: {sorted(known)}")
    path = options.get("path")
    if path is not None and not isinstance(path, str):
        raise ReplayConfigError(f"replay option 'path' must be a string, got {path!r}")
    loop = options.get("loop", True)
    if not isinstance(loop, bool):
        raise ReplayConfigError(f"replay option 'loop' must be true or false, got {loop!r}")
    horizon = options.get("horizon_hours", 48)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 0 <= horizon <= 24 * 14:
        raise ReplayConfigError(f"replay option 'horizon_hours' must be an integer 0..336, got {horizon!r}")
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ReplayConfigError(f"replay option 'seed' must be an integer, got {seed!r}")
    zones = options.get("zones", ())
    if not isinstance(zones, list | tuple) or not all(isinstance(z, str) and z for z in zones):
        raise ReplayConfigError(f"replay option 'zones' must be a list of zone names, got {zones!r}")
    return ReplayOptions(
        path=path,
        speed=_number(options, "speed", 1.0, 0.0, strict=True),
        trace_start=_time(options, "trace_start"),
        anchor=_time(options, "anchor"),
        loop=loop,
        horizon_hours=horizon,
        noise=_number(options, "noise", 0.0, 0.0, strict=False),
        seed=seed,
        zones=tuple(zones),
    )


class ReplayProvider:
    """Kind "replay": plays a trace CSV against the clock. Implements carbon_feed.model.Provider."""

    def __init__(self, name: str, options: Mapping[str, Any], *, now: datetime | None = None) -> None:
        self.name = name
        self.options = parse_options(options)
        self._created = floor_hour(now or utcnow())
        self._trace: dict[str, list[tuple[datetime, float]]] | None = None
        self._lock = asyncio.Lock()
        self._first = datetime.min.replace(tzinfo=UTC)
        self._span = HOUR
        self._trace_start = self._first
        self._anchor = self._created

    def __repr__(self) -> str:
        return f"ReplayProvider(name={self.name!r}, path={self.options.path!r}, speed={self.options.speed})"

    def load(self) -> None:
        """Read the trace now; blocking, so call it off the event loop. Raises TraceError (file) or
        ReplayConfigError (zones); FeedService.start calls it so both stop the start-up."""
        path = Path(self.options.path) if self.options.path else embedded_trace_path()
        trace = load_trace(path)
        if self.options.zones:
            missing = sorted(set(self.options.zones) - set(trace))
            if missing:
                raise ReplayConfigError(
                    f"zones: {missing} are not in trace {path} (it has {', '.join(sorted(trace))})"
                )
            trace = {z: trace[z] for z in self.options.zones}
        self._first = min(points[0][0] for points in trace.values())
        last = max(points[-1][0] for points in trace.values())
        self._span = last + HOUR - self._first
        self._anchor = self.options.anchor or self._created
        self._trace_start = self.options.trace_start or self._same_time_of_year(self._anchor)
        self._trace = trace

    def _same_time_of_year(self, moment: datetime) -> datetime:
        year = self._first.year
        for candidate_year in (year, year + 1):
            try:
                candidate = moment.replace(year=candidate_year)
            except ValueError:  # 29 February in a year without it
                candidate = moment.replace(year=candidate_year, day=28)
            if self._first <= candidate < self._first + self._span:
                return floor_hour(candidate)
        return self._first

    async def preflight(self) -> None:
        """Load the trace and check the configured zones now (FeedService.start): a missing file or
        an unknown zone is a configuration error, not a warning on every refresh."""
        async with self._lock:
            if self._trace is None:
                await asyncio.to_thread(self.load)

    @property
    def zones(self) -> list[str]:
        return sorted(self._trace or ())

    def trace_time(self, now: datetime) -> datetime | None:
        """The trace moment playing at wall time `now`, or None past the end without loop."""
        offset = (now - self._anchor) * self.options.speed
        moment = self._trace_start + offset
        position = moment - self._first
        if self.options.loop:
            position = timedelta(seconds=position.total_seconds() % self._span.total_seconds())
        elif not timedelta(0) <= position < self._span:
            return None
        return self._first + position

    def _wall(self, trace_hour: datetime, now: datetime, now_trace: datetime) -> datetime:
        """Wall time at which `trace_hour` plays, relative to the current position (loop-safe)."""
        return now - (now_trace - trace_hour) / self.options.speed

    def _value(self, zone: str, hour: datetime) -> float | None:
        assert self._trace is not None
        points = self._trace[zone]
        if self.options.loop:
            hour = self._first + timedelta(
                seconds=(hour - self._first).total_seconds() % self._span.total_seconds()
            )
        i = bisect.bisect_left(points, hour, key=lambda p: p[0])
        if i < len(points) and points[i][0] == hour:
            return points[i][1]
        return None

    def _noisy(self, zone: str, value: float, lead_hours: int, issued: datetime) -> float:
        if self.options.noise <= 0 or lead_hours <= 0:
            return value
        # Seeded per (seed, zone, issue hour, lead): refetching within an hour gives the same forecast.
        key = f"{self.options.seed}|{zone}|{issued.isoformat()}|{lead_hours}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
        sigma = self.options.noise * math.sqrt(lead_hours / 24)
        return max(0.0, value * (1.0 + rng.gauss(0.0, sigma)))

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        await self.preflight()
        assert self._trace is not None
        now_trace = self.trace_time(now)
        if now_trace is None:
            return FetchResult(rejected=("replay trace has ended (loop is off)",))
        hour = floor_hour(now_trace)
        period = max(1, round(3600 / self.options.speed))
        wanted = [z for z in zones if z in self._trace] if zones else sorted(self._trace)
        rejected = [f"zone {z!r} is not in the replay trace" for z in zones if z not in self._trace]
        # Issued at the current trace hour (in wall time), not at `now`: refreshes within one trace hour
        # then upsert the same forecast rows instead of storing a new copy each time.
        issued = self._wall(hour, now, now_trace)
        readings: list[Reading] = []
        for zone in wanted:
            value = self._value(zone, hour)
            if value is not None:
                readings.append(
                    Reading(self.name, zone, "average", self._wall(hour, now, now_trace), period, value)
                )
            for lead in range(1, self.options.horizon_hours + 1):
                target = hour + lead * HOUR
                future = self._value(zone, target)
                if future is None:
                    continue
                readings.append(
                    Reading(
                        self.name,
                        zone,
                        "average",
                        self._wall(target, now, now_trace),
                        period,
                        self._noisy(zone, future, lead, hour),
                        estimated=True,
                        forecast=True,
                        issued_at=issued,
                    )
                )
        return FetchResult(readings=readings, rejected=tuple(rejected))
