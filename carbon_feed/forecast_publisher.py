"""Each zone's forecast for the view: the provider's own if it offers one, else the baseline, which is
computed from the provider's history of the zone and stored so its accuracy can be measured later."""

from __future__ import annotations

from datetime import datetime, timedelta

from carbon_common.interval import Interval
from carbon_feed.forecast import BASELINE, HISTORY_DAYS, baseline_forecast
from carbon_feed.model import Reading
from carbon_feed.store import Store
from carbon_feed.view import ZoneForecast


class ForecastPublisher:
    def __init__(self, store: Store, horizon_hours: int) -> None:
        self.store = store
        self.horizon_hours = horizon_hours

    async def forecast_for(self, reading: Reading, now: datetime) -> ZoneForecast:
        """The forecast for the zone of `reading` (the zone's chosen reading) and its source."""
        since = now - timedelta(seconds=reading.period_seconds)
        offered = await self.store.aforecast(reading.provider, reading.zone, reading.signal, since)
        if offered:
            values = tuple(
                Interval(p.start, p.start + timedelta(seconds=p.period_seconds), p.value) for p in offered
            )
            return values, reading.provider
        # No provider forecast: the baseline, built from this provider's own history of the zone.
        history = await self.store.ahistory(
            reading.zone, now - timedelta(days=HISTORY_DAYS), now + timedelta(hours=1), reading.signal
        )
        observations = [(h.start, h.value) for h in history if h.provider == reading.provider]
        values = tuple(baseline_forecast(observations, self.horizon_hours))
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
