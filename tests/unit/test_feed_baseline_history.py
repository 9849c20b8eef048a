"""The feed hands the baseline forecaster the history it needs (HISTORY_DAYS), not the old 8 days."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carbon_feed.config import FeedSettings, ProviderConfig
from carbon_feed.forecast import HISTORY_DAYS, PROFILE_DAYS, baseline_forecast
from carbon_feed.model import FetchResult, Reading
from carbon_feed.service import FeedService
from carbon_feed.store import Store

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=30)
H = timedelta(hours=1)


def _reading(start: datetime) -> Reading:
    """The last 8 days differ from the weeks before, so how far back the profile looked shows."""
    recent = T0 - start < timedelta(days=8)
    value = 100.0 + 10 * (start.hour % 6) if recent else 400.0 + 20 * (start.hour % 4)
    return Reading("obs", "DE", "average", start, 3600, value)


class Observing:
    """A provider with no forecast of its own: the feed falls back to the baseline."""

    name = "obs"

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        return FetchResult([_reading(T0)])


def _baseline(history: list[Reading], days: int, horizon: int) -> list[float]:
    observations = [(r.start, r.value) for r in history if NOW - r.start <= timedelta(days=days)]
    return [p.intensity for p in baseline_forecast(observations, horizon)]


async def test_baseline_sees_history_days_of_stored_history(tmp_path: Path) -> None:
    assert HISTORY_DAYS > PROFILE_DAYS >= 7  # the profile and the weekly term both fit
    db = tmp_path / "feed.sqlite"
    # more than the forecaster needs, all within the default retention
    history = [_reading(T0 - i * H) for i in range((HISTORY_DAYS + 3) * 24, 0, -1)]
    store = Store(db)
    store.open()
    store.put(history, T0)
    store.close()

    settings = FeedSettings(db=str(db), snapshot_file=str(tmp_path / "snap.json"))
    assert settings.retention_days >= HISTORY_DAYS  # the default keeps what the forecaster needs
    config = ProviderConfig("static", "obs", {"zones": ["DE"]})
    service = FeedService(settings, clock=lambda: NOW, providers=[(config, Observing())])
    await service.start()
    try:
        async with asyncio.timeout(10):
            await service.refreshed.wait()
        view = service.state.zones["DE"]
        assert view.forecast_source == "baseline"
        got = [p.intensity for p in view.forecast]
        horizon = settings.forecast_horizon_hours
        everything = [*history, _reading(T0)]
        assert got == pytest.approx(_baseline(everything, HISTORY_DAYS, horizon))
        # the window matters: with the old 8 days of history the profile would be the recent era only
        assert got != pytest.approx(_baseline(everything, 8, horizon))
    finally:
        await service.stop()
