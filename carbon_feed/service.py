"""The feed's engine: refresh loops per provider, the store, forecasts and the snapshot.

The in-memory view (`FeedState`) is rebuilt from the store after every refresh, so what the API and the
snapshot file show is always what survived a commit: after a crash or restart the same rebuild runs
first, from the store alone, and the snapshot is written before any provider is contacted.

Zone policy (one reading per zone in the snapshot): the freshest *average* reading wins, a marginal one
only when no provider gives an average for the zone (the two are not comparable: a grid mean against the
marginal plant's emissions); index signals (percentiles) never enter the snapshot. A zone whose newest
reading ended more than `stale_after_seconds` ago is left out of the snapshot rather than guessed; the
API still shows it, marked stale, with its age.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import random
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp

from carbon_common import snapshot as contract
from carbon_common.snapshot import (
    MAX_PERIOD_SECONDS,
    MAX_PLAUSIBLE_INTENSITY,
    ForecastPoint,
    Snapshot,
    ZoneReading,
    encode_snapshot,
    write_snapshot_atomic,
)
from carbon_common.tasks import cancel_and_wait
from carbon_common.timeutil import utcnow
from carbon_feed.config import ConfigError, FeedSettings, ProviderConfig
from carbon_feed.forecast import (
    BASELINE,
    HISTORY_DAYS,
    LEAD_BUCKETS,
    ForecastValue,
    baseline_forecast,
    mape_by_bucket,
)
from carbon_feed.http import ProviderError, RateLimitedError
from carbon_feed.metrics import FeedMetrics
from carbon_feed.model import Provider, Reading
from carbon_feed.replay import ReplayProvider
from carbon_feed.store import Store
from carbon_feed.traces import TraceError

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)
ERRORS_EVERY = timedelta(minutes=10)
ERROR_WINDOW = timedelta(days=7)
COUNTS_EVERY = timedelta(minutes=1)
# A reading further from now than this is a provider's unit or clock mistake (no forecast reaches a
# year ahead, and history that old is pruned anyway). Unchecked, 9999-12-31 overflowed every rebuild.
PLAUSIBLE_TIME_SPAN = timedelta(days=366)
# After an unexpected exception a loop waits BACKOFF_BASE, doubling per failure in a row, at most its
# interval: a bug does not spin the CPU, and the loop comes back on its own once the cause is gone.
BACKOFF_BASE = 1.0


@dataclass(frozen=True, slots=True)
class ZoneView:
    reading: Reading
    fresh: bool
    forecast: tuple[ForecastValue, ...] = ()
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


def build_provider(
    config: ProviderConfig,
    session: aiohttp.ClientSession,
    observer: Callable[[str, str, float], None] | None,
) -> Provider:
    """Our own kind ("replay") directly; every other kind through the providers package."""
    if config.kind == "replay":
        return ReplayProvider(config.name, config.options)
    from carbon_feed.providers import build_provider as build

    return build(config.kind, config.name, config.options, session, observer)


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


def insane(reading: Reading, now: datetime) -> str | None:
    """Why a reading must not be stored, or None. Providers validate already (carbon_feed.validate);
    this is the store's own guard, so one buggy provider cannot poison the history."""
    value = reading.value
    upper = 100.0 if reading.signal == "index" else MAX_PLAUSIBLE_INTENSITY
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{reading.zone}: value {value!r} is not a finite number"
    if not 0 <= value <= upper:
        return f"{reading.zone}: value {value!r} is outside range 0..{upper:g}"
    if reading.start.tzinfo is None or reading.period_seconds <= 0:
        return f"{reading.zone}: bad time (naive start or non-positive period)"
    if abs(reading.start - now) > PLAUSIBLE_TIME_SPAN or reading.period_seconds > MAX_PERIOD_SECONDS:
        return f"{reading.zone}: bad time (start {reading.start.isoformat()} is implausibly far from now)"
    return None


def zone_reading(reading: Reading, forecast: tuple[ForecastPoint, ...] = ()) -> ZoneReading:
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
            ForecastPoint(p.start, p.end, p.intensity)
            for p in view.forecast
            if p.end > now and p.end > p.start and 0 <= p.intensity <= MAX_PLAUSIBLE_INTENSITY
        )
        out[name] = zone_reading(r, points)
    return Snapshot(generated_at=now, zones=out)


class FeedService:
    def __init__(
        self,
        settings: FeedSettings,
        *,
        store: Store | None = None,
        metrics: FeedMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        providers: Sequence[tuple[ProviderConfig, Provider]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or Store(settings.db)
        self.metrics = metrics or FeedMetrics()
        self.clock = clock
        self.state = FeedState()
        self._given = list(providers) if providers is not None else None
        self.providers: list[tuple[ProviderConfig, Provider]] = []
        self._order: dict[str, int] = {}
        self._rebuild_lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_prune = datetime.min.replace(tzinfo=utcnow().tzinfo)
        self._last_errors = self._last_prune
        self._last_counts = self._last_prune
        self.refreshes = 0
        # Provider name → seconds its last 429 asked us to wait (Retry-After); honoured by _loop.
        self._retry_after: dict[str, float] = {}
        self.refreshed = asyncio.Event()
        """Set after every successful refresh (tests and readiness probes wait on it)."""
        self.backoff_base = BACKOFF_BASE

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, serve and write what it holds, then start one refresh loop per provider."""
        if self.settings.retention_days < HISTORY_DAYS:
            # Allowed (small disks, short-lived feeds), but the baseline forecast gets worse: say so once.
            log.warning(
                "retention_days is shorter than the history the baseline forecaster uses; "
                "zones without a provider forecast get a profile from fewer days",
                extra={"retentionDays": self.settings.retention_days, "forecasterDays": HISTORY_DAYS},
            )
        try:
            await asyncio.to_thread(self._check_snapshot_file)
            await self._open_store()
            self._session = aiohttp.ClientSession()
            if self._given is not None:
                self.providers = self._given
            else:
                self.providers = [
                    (c, self._build(c, self._session)) for c in self.settings.providers if c.enabled
                ]
            for config, provider in self.providers:
                await self._preflight(config, provider)
            self._order = {c.name: i for i, (c, _) in enumerate(self.providers)}
        except BaseException:
            # A bad provider option or an unusable store: release what was opened, then report.
            await self.stop()
            raise
        try:
            await self.rebuild()
        except Exception:
            # Whatever the store holds must not keep the feed from starting: the loops rebuild again
            # after each refresh, and /readyz says whether data is being served meanwhile.
            self.metrics.loop_errors.labels("rebuild").inc()
            log.exception("building the view from the store failed at start")
        self.state.loaded = True
        for config, provider in self.providers:
            self._tasks.append(
                asyncio.create_task(self._loop(config, provider), name=f"refresh-{config.name}")
            )

    def _check_snapshot_file(self) -> None:
        """The extender reads this file: a path the feed can never write is a configuration error at
        start, not an error logged after every refresh while the extender scores nodes neutrally."""
        path = self.settings.snapshot_file
        if not path:
            return
        key = "snapshot_file (--snapshot-file, CARBON_FEED_SNAPSHOT_FILE)"
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{key}: cannot create {target.parent}: {exc.strerror}") from None
        if target.is_dir():
            raise ConfigError(f"{key}: {target} is a directory")
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}: cannot write to {target.parent}")

    async def _open_store(self) -> None:
        try:
            await self.store.aopen()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                f"db (--db, CARBON_FEED_DB): cannot use {self.store.path!s} as the SQLite history: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def _build(self, config: ProviderConfig, session: aiohttp.ClientSession) -> Provider:
        try:
            return build_provider(config, session, self.metrics.observe_request)
        except ValueError as exc:  # the providers' ConfigError, ReplayConfigError
            raise ConfigError(f"providers[name={config.name}] ({config.kind}): {exc}") from None

    async def _preflight(self, config: ProviderConfig, provider: Provider) -> None:
        """A provider that can check its configuration without the network (a trace or a file that
        must exist, zones it must know) does so now, so the mistake stops start-up instead of failing
        every refresh."""
        check = getattr(provider, "preflight", None)
        if check is None:
            return
        try:
            await check()
        except (ValueError, TraceError, ProviderError, OSError) as exc:
            raise ConfigError(f"providers[name={config.name}] ({config.kind}).options: {exc}") from None

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.store.aclose()

    # -- refresh ---------------------------------------------------------------------------------
    def _interval(self, config: ProviderConfig) -> float:
        return config.interval_seconds or self.settings.refresh_interval_seconds

    async def _loop(self, config: ProviderConfig, provider: Provider) -> None:
        """Refresh for ever. `refresh` handles the failures it expects; anything else (a bug, a
        provider breaking its contract) is logged, counted and retried with backoff, never fatal."""
        interval = self._interval(config)
        failures = 0
        while True:
            try:
                await self.refresh(config, provider)
                failures = 0
                jitter = self.settings.jitter_ratio
                pause = interval * (1 + random.uniform(-jitter, jitter))
                pause = max(pause, self._retry_after.pop(config.name, 0.0))
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                pause = min(interval, self.backoff_base * 2 ** min(failures - 1, 20))
                self.metrics.loop_errors.labels(f"refresh:{config.name}").inc()
                log.exception(
                    "refresh loop failed; retrying",
                    extra={"provider": config.name, "failures": failures, "retryIn": pause},
                )
            await asyncio.sleep(pause)

    async def refresh(self, config: ProviderConfig, provider: Provider) -> bool:
        """One round for one provider; never raises (a failed round is logged and counted)."""
        now = self.clock()
        started = time.monotonic()
        # The providers bound their own retries; this outer limit only guards against a hung client.
        limit = min(600.0, max(30.0, 2 * self._interval(config)))
        try:
            async with asyncio.timeout(limit):
                result = await provider.fetch(config.zones, now)
            problems = [(r, insane(r, now)) for r in result.readings]
            readings = [r for r, why in problems if why is None]
            dropped = [why for _, why in problems if why is not None]
            for why in dropped:
                log.warning("value rejected", extra={"provider": config.name, "reason": why})
            written = await self.store.aput(readings, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, RateLimitedError) and exc.retry_after:
                self._retry_after[config.name] = exc.retry_after
            self.metrics.fetches.labels(config.name, "error").inc()
            self.metrics.fetch_seconds.labels(config.name).observe(time.monotonic() - started)
            # str(exc) only: provider errors never carry secrets (carbon_feed.http redacts them).
            log.warning(
                "refresh failed",
                extra={"provider": config.name, "error": f"{type(exc).__name__}: {exc}"},
            )
            return False
        self.metrics.fetches.labels(config.name, "ok").inc()
        self.metrics.fetch_seconds.labels(config.name).observe(time.monotonic() - started)
        self.metrics.record_rejected(config.name, [*result.rejected, *dropped])
        stamp = time.time()
        for zone in {r.zone for r in readings if not r.forecast}:
            self.metrics.last_success.labels(config.name, zone).set(stamp)
        log.debug(
            "refreshed",
            extra={"provider": config.name, "readings": len(readings), "written": written},
        )
        try:
            await self.rebuild()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The data is committed; the view stays as it was until a later rebuild succeeds.
            self.metrics.loop_errors.labels("rebuild").inc()
            log.exception("rebuilding the view failed", extra={"provider": config.name})
            return False
        self.refreshes += 1
        self.refreshed.set()
        return True

    # -- the view --------------------------------------------------------------------------------
    async def _zone_forecast(
        self, reading: Reading, now: datetime
    ) -> tuple[tuple[ForecastValue, ...], str | None]:
        since = now - timedelta(seconds=reading.period_seconds)
        offered = await self.store.aforecast(reading.provider, reading.zone, reading.signal, since)
        if offered:
            values = tuple(
                ForecastValue(p.start, p.start + timedelta(seconds=p.period_seconds), p.value)
                for p in offered
            )
            return values, reading.provider
        # No provider forecast: the baseline, built from this provider's own history of the zone.
        history = await self.store.ahistory(
            reading.zone, now - timedelta(days=HISTORY_DAYS), now + timedelta(hours=1), reading.signal
        )
        observations = [(h.start, h.value) for h in history if h.provider == reading.provider]
        values = tuple(baseline_forecast(observations, self.settings.forecast_horizon_hours))
        if not values:
            return (), None
        issued = reading.start  # one stored baseline per observed period, so reruns upsert, not pile up
        await self.store.aput(
            [
                Reading(
                    BASELINE,
                    reading.zone,
                    reading.signal,
                    v.start,
                    3600,
                    v.intensity,
                    True,
                    None,
                    True,
                    issued,
                )
                for v in values
            ],
            now,
        )
        return values, BASELINE

    async def rebuild(self) -> None:
        async with self._rebuild_lock:
            now = self.clock()
            latest = await self.store.alatest()
            stale_after = timedelta(seconds=self.settings.stale_after_seconds)
            chosen = choose_zone_readings(latest, self._order)
            zones: dict[str, ZoneView] = {}
            for zone, reading in sorted(chosen.items()):
                forecast, source = await self._zone_forecast(reading, now)
                zones[zone] = ZoneView(reading, is_fresh(reading, now, stale_after), forecast, source)
            indexes = {r.zone: r for r in latest if r.signal == "index"}
            snapshot = build_snapshot(zones, now)
            body = encode_snapshot(snapshot)
            # The ETag ignores generatedAt: it changes only when the data does, so pollers get 304s.
            content = encode_snapshot(
                Snapshot(generated_at=datetime.fromtimestamp(0, now.tzinfo), zones=snapshot.zones)
            )
            etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
            self.state = FeedState(zones, indexes, snapshot, body, etag, self.state.loaded)
            await self._write_snapshot(snapshot)
            self._update_metrics(zones, indexes, now)
            try:
                await self._housekeeping(now)
            except Exception:
                # Pruning or statistics failing must not hide fresh data; each retries on its own
                # schedule (hourly, every 10 min, every minute).
                self.metrics.loop_errors.labels("housekeeping").inc()
                log.exception("housekeeping failed; retrying on its schedule")

    async def _write_snapshot(self, snapshot: Snapshot) -> None:
        path = self.settings.snapshot_file
        if not path:
            return
        try:
            await asyncio.to_thread(write_snapshot_atomic, path, snapshot)
        except Exception as exc:
            # A full or read-only volume must not stop the feed: /v1/snapshot still serves it, and
            # the next rebuild writes again.
            self.metrics.snapshot_writes.labels("error").inc()
            log.error("snapshot write failed", extra={"path": path, "error": f"{type(exc).__name__}: {exc}"})
            return
        self.metrics.snapshot_writes.labels("ok").inc()

    def _update_metrics(
        self, zones: Mapping[str, ZoneView], indexes: Mapping[str, Reading], now: datetime
    ) -> None:
        m = self.metrics
        m.snapshot_zones.set(sum(1 for v in zones.values() if v.fresh))
        for zone, view in zones.items():
            m.intensity.labels(zone, view.reading.signal).set(view.reading.value)
            for label, bound in LEAD_BUCKETS:
                target = now + timedelta(seconds=bound)
                point = next((p for p in view.forecast if p.start <= target < p.end), None)
                if point is not None:
                    m.forecast.labels(zone, label).set(point.intensity)
        for zone, reading in indexes.items():
            m.index.labels(zone).set(reading.value)

    async def _housekeeping(self, now: datetime) -> None:
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            removed = await self.store.aprune(now, timedelta(days=self.settings.retention_days))
            if removed:
                log.info("pruned history", extra={"rows": removed})
        if now - self._last_errors >= ERRORS_EVERY:
            self._last_errors = now
            await self.update_forecast_errors(now)
        # COUNT(*) scans the tables: once a minute is plenty for a gauge, even with fast refreshes.
        if now - self._last_counts >= COUNTS_EVERY:
            self._last_counts = now
            rows, size = await self.store.acounts()
            self.metrics.store_rows.set(rows)
            self.metrics.store_bytes.set(size)

    async def update_forecast_errors(self, now: datetime) -> None:
        """MAPE per lead bucket for each provider's own forecasts and for the baseline."""
        since = now - ERROR_WINDOW
        for config, _ in self.providers:
            for source in (config.name, BASELINE):
                pairs = await self.store.aforecast_pairs(source, config.name, since)
                errors = mape_by_bucket((p.lead_seconds, p.forecast, p.actual) for p in pairs)
                label = config.name if source == config.name else f"{BASELINE}:{config.name}"
                self.metrics.record_errors(label, errors)
