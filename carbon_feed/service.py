"""The feed's engine: one refresh loop per provider, each round ingesting into the store and then
rebuilding and publishing the view.

The in-memory view (`FeedState`, built by carbon_feed.view) is rebuilt from the store after every
refresh, so what the API and the snapshot file show is always what survived a commit: after a crash or
restart the same rebuild runs first, from the store alone, and the snapshot is written before any
provider is contacted. The parts: carbon_feed.ingest (fetch, guard, store), carbon_feed.view (the pure
view), carbon_feed.forecast_publisher (each zone's forecast, baselines stored), carbon_feed.publish (the
snapshot file and gauges) and carbon_feed.housekeeping (pruning and statistics on their schedules).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import aiohttp

from carbon_common.loops import doubling, run_forever
from carbon_common.tasks import cancel_and_wait
from carbon_common.timeutil import utcnow
from carbon_feed.config import ConfigError, FeedSettings, ProviderConfig
from carbon_feed.forecast import HISTORY_DAYS
from carbon_feed.forecast_publisher import ForecastPublisher
from carbon_feed.housekeeping import Housekeeping
from carbon_feed.http import ProviderError, RateLimitedError
from carbon_feed.ingest import ingest
from carbon_feed.metrics import FeedMetrics
from carbon_feed.model import Provider
from carbon_feed.publish import SnapshotPublisher, check_snapshot_file
from carbon_feed.replay import ReplayProvider
from carbon_feed.store import Store
from carbon_feed.traces import TraceError
from carbon_feed.view import FeedState, build_state, choose_zone_readings

log = logging.getLogger(__name__)

# After an unexpected exception a loop waits BACKOFF_BASE, doubling per failure in a row, at most its
# interval: a bug does not spin the CPU, and the loop comes back on its own once the cause is gone.
BACKOFF_BASE = 1.0


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
        self.forecasts = ForecastPublisher(self.store, settings.forecast_horizon_hours)
        self.publisher = SnapshotPublisher(settings.snapshot_file, self.metrics)
        self.housekeeping = Housekeeping(
            self.store,
            self.metrics,
            timedelta(days=settings.retention_days),
            lambda: [c.name for c, _ in self.providers],
        )
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
            await asyncio.to_thread(check_snapshot_file, self.settings.snapshot_file)
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

        async def step() -> float:
            await self.refresh(config, provider)
            jitter = self.settings.jitter_ratio
            pause = interval * (1 + random.uniform(-jitter, jitter))
            return max(pause, self._retry_after.pop(config.name, 0.0))

        await run_forever(
            step,
            log=log,
            message="refresh loop failed; retrying",
            on_error=lambda _: self.metrics.loop_errors.labels(f"refresh:{config.name}").inc(),
            backoff=lambda failures: doubling(failures, self.backoff_base, interval),
            extra={"provider": config.name},
        )

    async def refresh(self, config: ProviderConfig, provider: Provider) -> bool:
        """One round for one provider; never raises (a failed round is logged and counted)."""
        now = self.clock()
        started = time.monotonic()
        # The providers bound their own retries; this outer limit only guards against a hung client.
        limit = min(600.0, max(30.0, 2 * self._interval(config)))
        try:
            ingested = await ingest(config.name, provider, config.zones, self.store, now, limit)
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
        self.metrics.record_rejected(config.name, ingested.rejected)
        stamp = time.time()
        for zone in {r.zone for r in ingested.readings if not r.forecast}:
            self.metrics.last_success.labels(config.name, zone).set(stamp)
        log.debug(
            "refreshed",
            extra={"provider": config.name, "readings": len(ingested.readings), "written": ingested.written},
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
    async def rebuild(self) -> None:
        """Build the view from the store, publish it (file, gauges), then run the housekeeping due."""
        async with self._rebuild_lock:
            now = self.clock()
            latest = await self.store.alatest()
            chosen = choose_zone_readings(latest, self._order)
            forecasts = {
                zone: await self.forecasts.forecast_for(r, now) for zone, r in sorted(chosen.items())
            }
            stale_after = timedelta(seconds=self.settings.stale_after_seconds)
            self.state = build_state(latest, chosen, forecasts, now, stale_after, self.state.loaded)
            await self.publisher.publish(self.state, now)
            try:
                await self.housekeeping.run(now)
            except Exception:
                # Pruning or statistics failing must not hide fresh data; each retries on its own
                # schedule (hourly, every 10 min, every minute).
                self.metrics.loop_errors.labels("housekeeping").inc()
                log.exception("housekeeping failed; retrying on its schedule")

    async def update_forecast_errors(self, now: datetime) -> None:
        """MAPE per lead bucket for each provider's own forecasts and for the baseline."""
        await self.housekeeping.update_forecast_errors(now)
