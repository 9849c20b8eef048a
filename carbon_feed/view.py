"""The feed's read-only view, built from what the store holds: pure functions, no I/O, no clock.

Zone policy (one reading per zone in the snapshot): the freshest *average* reading wins, a marginal one
only when no provider gives an average for the zone (the two are not comparable: a grid mean against the
marginal plant's emissions); index signals (percentiles) never enter the snapshot. A zone whose newest
reading ended more than `stale_after_seconds` ago is left out of the snapshot rather than guessed; the
API still shows it, marked stale, with its age.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from carbon_common import snapshot as contract
from carbon_common.interval import Interval
from carbon_common.snapshot import (
    MAX_PLAUSIBLE_INTENSITY,
    Snapshot,
    ZoneReading,
    encode_snapshot,
)
from carbon_feed.model import Reading

ZoneForecast = tuple[tuple[Interval, ...], str | None]
"""A zone's forecast and its source (the provider, or "baseline"; None without a forecast)."""


@dataclass(frozen=True, slots=True)
class ZoneView:
    reading: Reading
    fresh: bool
    forecast: tuple[Interval, ...] = ()
    forecast_source: str | None = None
    """The provider whose forecast this is, or "baseline"."""


@dataclass(slots=True)
class FeedState:
    """What the API serves. Replaced as a whole (never mutated in place) after each rebuild."""

    zones: dict[str, ZoneView] = field(default_factory=dict)
    indexes: dict[str, Reading] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    snapshot_bytes: bytes = b""
    etag: str = ""
    loaded: bool = False
    """True once start-up read the store (before any provider is contacted)."""


def readiness(state: FeedState) -> tuple[bool, str]:
    """/readyz: ready means serving data, i.e. the snapshot holds at least one zone, fetched now or
    restored from the store and still fresh. "Started" is not enough: a feed with no data would let
    the extender score every node neutrally while every probe said all was well."""
    if not state.loaded:
        return False, "starting: the history store is not loaded yet"
    if state.snapshot is not None and state.snapshot.zones:
        return True, f"serving {len(state.snapshot.zones)} fresh zone(s)"
    if state.zones:
        return False, f"no fresh zone: all {len(state.zones)} known zone(s) are stale (see /v1/zones)"
    return False, "no data: no provider has delivered a reading yet and the history store is empty"


def choose_zone_readings(latest: Sequence[Reading], order: Mapping[str, int]) -> dict[str, Reading]:
    """One reading per zone: average beats marginal; then the newest; then the first provider listed."""

    def rank(r: Reading) -> tuple[int, datetime, int]:
        return (1 if r.signal == "average" else 0, r.start, -order.get(r.provider, len(order)))

    chosen: dict[str, Reading] = {}
    for reading in latest:
        if reading.signal == "index":
            continue
        best = chosen.get(reading.zone)
        if best is None or rank(reading) > rank(best):
            chosen[reading.zone] = reading
    return chosen


def zone_reading(reading: Reading, forecast: tuple[Interval, ...] = ()) -> ZoneReading:
    """The snapshot's view of a stored reading, periodSeconds included (the extender needs it to
    measure age the same way)."""
    return ZoneReading(
        zone=reading.zone,
        intensity=reading.value,
        observed_at=reading.start,
        source=reading.provider,
        estimated=reading.estimated,
        signal="marginal" if reading.signal == "marginal" else "average",
        forecast=forecast,
        period_seconds=float(reading.period_seconds),
    )


def reading_age(reading: Reading, now: datetime) -> float:
    """Seconds since the end of the reading's period: the contract's one definition (snapshot.py)."""
    return contract.reading_age(zone_reading(reading), now)


def is_fresh(reading: Reading, now: datetime, stale_after: timedelta) -> bool:
    """The contract's freshness (carbon_common.snapshot.is_fresh), so feed and extender agree."""
    return contract.is_fresh(zone_reading(reading), now, stale_after.total_seconds())


def build_snapshot(zones: Mapping[str, ZoneView], now: datetime) -> Snapshot:
    """The contract object: fresh zones only, forecast points from the current period on."""
    out: dict[str, ZoneReading] = {}
    for name, view in zones.items():
        r = view.reading
        if not view.fresh or r.signal == "index" or not 0 <= r.value <= MAX_PLAUSIBLE_INTENSITY:
            continue
        points = tuple(
            Interval(p.start, p.end, p.intensity)
            for p in view.forecast
            if p.end > now and p.end > p.start and 0 <= p.intensity <= MAX_PLAUSIBLE_INTENSITY
        )
        out[name] = zone_reading(r, points)
    return Snapshot(generated_at=now, zones=out)


def snapshot_etag(snapshot: Snapshot, now: datetime) -> str:
    """The ETag ignores generatedAt: it changes only when the data does, so pollers get 304s."""
    content = encode_snapshot(
        Snapshot(generated_at=datetime.fromtimestamp(0, now.tzinfo), zones=snapshot.zones)
    )
    return '"' + hashlib.sha256(content).hexdigest()[:32] + '"'


def build_state(
    latest: Sequence[Reading],
    chosen: Mapping[str, Reading],
    forecasts: Mapping[str, ZoneForecast],
    now: datetime,
    stale_after: timedelta,
    loaded: bool,
) -> FeedState:
    """The whole view from the store's latest readings, the zone readings chosen among them
    (`choose_zone_readings`) and each chosen zone's forecast."""
    zones: dict[str, ZoneView] = {}
    for zone, reading in sorted(chosen.items()):
        forecast, source = forecasts.get(zone, ((), None))
        zones[zone] = ZoneView(reading, is_fresh(reading, now, stale_after), forecast, source)
    indexes = {r.zone: r for r in latest if r.signal == "index"}
    snapshot = build_snapshot(zones, now)
    return FeedState(
        zones, indexes, snapshot, encode_snapshot(snapshot), snapshot_etag(snapshot, now), loaded
    )
