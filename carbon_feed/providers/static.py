"""Static zones from a YAML or JSON file (typically a mounted ConfigMap), re-read when it changes.

File shape: ``{zone: intensity}`` or ``{zone: {intensity, signal, estimated, forecast}}`` where
`forecast` is a list of numbers (one per period from the current one) or of ``{start, intensity}``.
A file that turns invalid is reported and the last good content keeps being served, so a bad edit to
the ConfigMap never empties the feed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import yaml

from carbon_feed.http import MalformedError, UnavailableError
from carbon_feed.model import FetchResult, SignalKind
from carbon_feed.providers._common import ConfigError, check_keys, option_int
from carbon_feed.validate import Collector

KIND: Final = "static"
_SIGNALS: Final = ("average", "marginal", "index")


@dataclass(frozen=True, slots=True)
class StaticZone:
    intensity: Any
    signal: SignalKind = "average"
    estimated: bool = False
    forecast: tuple[Any, ...] = ()


def parse_static(text: str) -> dict[str, StaticZone]:
    """Parse the file; ValueError names the first offending zone. Values are validated later, per point,
    by the Collector, so one NaN drops one value, not the file."""
    try:
        raw = yaml.safe_load(text)  # YAML is a superset of JSON: one parser for both
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML/JSON: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("expected a mapping of zone -> intensity")
    zones: dict[str, StaticZone] = {}
    for name, entry in raw.items():
        zone = str(name)
        if not isinstance(entry, dict):
            zones[zone] = StaticZone(intensity=entry)
            continue
        unknown = set(entry) - {"intensity", "signal", "estimated", "forecast"}
        if unknown:
            raise ValueError(f"{zone}: unknown keys {sorted(unknown)}")
        signal = entry.get("signal", "average")
        if signal not in _SIGNALS:
            raise ValueError(f"{zone}: signal must be one of {_SIGNALS}, got {signal!r}")
        estimated = entry.get("estimated", False)
        if not isinstance(estimated, bool):
            raise ValueError(f"{zone}: estimated must be true or false")
        forecast = entry.get("forecast") or []
        if not isinstance(forecast, list):
            raise ValueError(f"{zone}: forecast must be a list")
        zones[zone] = StaticZone(entry.get("intensity"), signal, estimated, tuple(forecast))
    return zones


class StaticProvider:
    def __init__(self, name: str, path: Path, *, period_seconds: int = 3600) -> None:
        self.name = name
        self.path = path
        self.period = period_seconds
        self._key: tuple[int, int, int] | None = None
        self._zones: dict[str, StaticZone] | None = None
        self._error: str | None = None

    def __repr__(self) -> str:
        return f"StaticProvider(name={self.name!r}, path={str(self.path)!r})"

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> StaticProvider:
        check_keys(KIND, options, {"path", "period_seconds"})
        path = options.get("path")
        if not isinstance(path, str) or not path:
            raise ConfigError(f"static {name}: path (a YAML or JSON file) is required")
        return cls(name, Path(path), period_seconds=option_int(options, "period_seconds", 3600, 60, 86400))

    def _reload(self) -> None:
        """Re-read when the file changed. Kubernetes swaps ConfigMap files by symlink, so stat (which
        follows links) sees a new inode/mtime even when the size is the same."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self._zones is None:
                raise UnavailableError(
                    f"static {self.name}: cannot read {self.path}: {exc.strerror}"
                ) from None
            self._error = f"cannot read {self.path} ({exc.strerror}); serving its last good content"
            return
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key == self._key:
            return
        self._key = key
        try:
            zones = parse_static(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            if self._zones is None:
                raise MalformedError(f"static {self.name}: {self.path}: {exc}") from None
            self._error = f"{self.path} is invalid ({exc}); serving its last good content"
            return
        self._zones, self._error = zones, None

    async def preflight(self) -> None:
        """Read the file now (FeedService.start): a missing or invalid file at start is a
        configuration error. Later the last good content is served through bad edits."""
        try:
            await asyncio.to_thread(self._reload)
        except (UnavailableError, MalformedError) as exc:
            raise ConfigError(f"path: {exc}") from None

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        await asyncio.to_thread(self._reload)
        assert self._zones is not None
        collector = Collector(self.name)
        if self._error is not None:
            collector.reject(self._error)
        period = timedelta(seconds=self.period)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        current = now - (now - epoch) % period
        for zone in zones or sorted(self._zones):
            entry = self._zones.get(zone)
            if entry is None:
                collector.reject(f"{zone}: not in {self.path}", zone=zone)
                continue
            collector.add(
                zone,
                entry.signal,
                current,
                entry.intensity,
                period_seconds=self.period,
                estimated=entry.estimated,
            )
            for i, point in enumerate(entry.forecast):
                start: Any = current + i * period
                value = point
                if isinstance(point, dict):
                    start, value = point.get("start"), point.get("intensity")
                    if isinstance(start, datetime) and start.tzinfo is None:
                        start = start.isoformat()  # YAML timestamps without offset: rejected as naive
                collector.add(
                    zone, entry.signal, start, value, period_seconds=self.period, forecast=True, issued_at=now
                )
        return collector.result()
