"""Work that follows a rebuild on its own schedule: pruning, forecast accuracy, store size gauges."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from carbon_feed.forecast import BASELINE, mape_by_bucket
from carbon_feed.metrics import FeedMetrics
from carbon_feed.store import Store

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)
ERRORS_EVERY = timedelta(minutes=10)
ERROR_WINDOW = timedelta(days=7)
COUNTS_EVERY = timedelta(minutes=1)


class Housekeeping:
    """Each task runs when its interval has passed since its last run (the first call runs all)."""

    def __init__(
        self,
        store: Store,
        metrics: FeedMetrics,
        retention: timedelta,
        provider_names: Callable[[], Iterable[str]],
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.retention = retention
        self.provider_names = provider_names
        """The providers whose forecast accuracy is measured (read at each run: set at start)."""
        self._last_prune = datetime.min.replace(tzinfo=UTC)
        self._last_errors = self._last_prune
        self._last_counts = self._last_prune

    async def run(self, now: datetime) -> None:
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            removed = await self.store.aprune(now, self.retention)
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
        for name in self.provider_names():
            for source in (name, BASELINE):
                pairs = await self.store.aforecast_pairs(source, name, since)
                errors = mape_by_bucket((p.lead_seconds, p.forecast, p.actual) for p in pairs)
                label = name if source == name else f"{BASELINE}:{name}"
                self.metrics.record_errors(label, errors)
