"""GSF Carbon Aware SDK WebAPI, for users who already run it in front of their data source.

The SDK reports g/kWh but does not say whether the figure is average or marginal: that depends on the
data source it was configured with (WattTime: marginal, Electricity Maps: average). The `signal` option
states it; the default, marginal, matches the SDK's own documentation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import aiohttp

from carbon_common.timeutil import format_rfc3339
from carbon_feed.http import HttpClient, ProviderError, RateLimitedError, RequestObserver
from carbon_feed.model import FetchResult, SignalKind
from carbon_feed.providers._common import (
    ConfigError,
    Runtime,
    base_url,
    check_keys,
    expect_list,
    make_http,
    option_bool,
    option_int,
    resolve_zones,
    zone_map,
)
from carbon_feed.validate import Collector, InvalidValue, parse_time

KIND: Final = "carbonaware_sdk"
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?")


def sdk_duration_seconds(value: Any) -> int:
    """Seconds from the SDK's durations: a .NET TimeSpan ("00:05:00", "1.00:00:00") in emissions data,
    whole minutes (int) in forecast data.

    A wire format of this provider, not carbon_common.timeutil.parse_duration's grammar (where a
    number means seconds): the two must not be merged."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value * 60
    elif isinstance(value, str) and (match := _TIMESPAN.fullmatch(value.strip())):
        days, hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    else:
        raise InvalidValue(f"unreadable duration {value!r}")
    if seconds <= 0:
        raise InvalidValue(f"duration {value!r} is not positive")
    return seconds


class CarbonAwareSdkProvider:
    def __init__(
        self,
        name: str,
        http: HttpClient,
        *,
        base: str,
        zones: Mapping[str, str] | None,
        signal: SignalKind = "marginal",
        forecast: bool = True,
        history_minutes: int = 60,
    ) -> None:
        self.name = name
        self._http, self._base, self._zones = http, base, zones
        self._signal, self._forecast, self._history = signal, forecast, history_minutes

    def __repr__(self) -> str:
        return f"CarbonAwareSdkProvider(name={self.name!r}, base={self._base!r})"

    @classmethod
    def from_options(
        cls,
        name: str,
        options: Mapping[str, Any],
        session: aiohttp.ClientSession,
        observer: RequestObserver | None,
        runtime: Runtime | None = None,
    ) -> CarbonAwareSdkProvider:
        check_keys(KIND, options, {"signal", "forecast", "history_minutes"})
        signal = options.get("signal", "marginal")
        if signal not in ("average", "marginal"):
            raise ConfigError(f"signal must be average or marginal, got {signal!r}")
        return cls(
            name,
            make_http(name, options, session, observer, runtime or Runtime(), quota=None),
            base=base_url(options, None),
            zones=zone_map(options),
            signal=signal,
            forecast=option_bool(options, "forecast", True),
            history_minutes=option_int(options, "history_minutes", 60, 1, 60 * 24 * 7),
        )

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        collector = Collector(self.name)
        pairs = resolve_zones(collector, zones, self._zones)
        if not pairs:
            return collector.result()
        by_location = {remote: zone for zone, remote in pairs}
        locations = [("location", remote) for remote in by_location]
        errors: list[ProviderError] = []
        jobs = [self._observations]
        if self._forecast:
            jobs.append(self._forecasts)
        for job in jobs:
            try:
                await job(collector, by_location, locations, now)
            except RateLimitedError:
                raise
            except ProviderError as exc:
                errors.append(exc)
                collector.reject(str(exc))
        if len(errors) == len(jobs):
            raise errors[0]
        return collector.result()

    async def _observations(
        self,
        collector: Collector,
        by_location: dict[str, str],
        locations: list[tuple[str, str]],
        now: datetime,
    ) -> None:
        params = [
            *locations,
            ("time", format_rfc3339(now - timedelta(minutes=self._history))),
            ("toTime", format_rfc3339(now)),
        ]
        body = expect_list(
            await self._http.get_json(f"{self._base}/emissions/bylocations", params=params), "bylocations"
        )
        seen: set[str] = set()
        for item in body:
            zone = self._zone_of(collector, by_location, item)
            if zone is None:
                continue
            seen.add(zone)
            try:
                period = sdk_duration_seconds(item.get("duration"))
            except InvalidValue as exc:
                collector.reject(f"{zone}: {exc}", zone=zone)
                continue
            collector.add(zone, self._signal, item.get("time"), item.get("rating"), period_seconds=period)
        self._missing(collector, by_location, seen, "emissions")

    async def _forecasts(
        self,
        collector: Collector,
        by_location: dict[str, str],
        locations: list[tuple[str, str]],
        now: datetime,
    ) -> None:
        body = expect_list(
            await self._http.get_json(f"{self._base}/emissions/forecasts/current", params=locations),
            "forecasts",
        )
        seen: set[str] = set()
        for entry in body:
            zone = self._zone_of(collector, by_location, entry)
            if zone is None:
                continue
            seen.add(zone)
            issued: datetime | None = None
            try:
                issued = parse_time(entry.get("generatedAt"))
            except InvalidValue as exc:
                collector.reject(f"{zone}: forecast generatedAt: {exc}", zone=zone)
            points = entry.get("forecastData")
            if not isinstance(points, list):
                collector.reject(f"{zone}: forecastData is not a list", zone=zone)
                continue
            for point in points:
                if not isinstance(point, dict):
                    collector.reject(f"{zone}: forecast point is not an object: {point!r:.80}", zone=zone)
                    continue
                try:
                    period = sdk_duration_seconds(point.get("duration"))
                except InvalidValue as exc:
                    collector.reject(f"{zone}: {exc}", zone=zone)
                    continue
                collector.add(
                    zone,
                    self._signal,
                    point.get("timestamp"),
                    point.get("value"),
                    period_seconds=period,
                    forecast=True,
                    issued_at=issued,
                )
        self._missing(collector, by_location, seen, "forecast")

    @staticmethod
    def _zone_of(collector: Collector, by_location: dict[str, str], item: Any) -> str | None:
        if not isinstance(item, dict):
            collector.reject(f"item is not an object: {item!r:.80}")
            return None
        zone = by_location.get(str(item.get("location")))
        if zone is None:
            collector.reject(f"unexpected location {item.get('location')!r} in the response")
        return zone

    @staticmethod
    def _missing(collector: Collector, by_location: dict[str, str], seen: set[str], what: str) -> None:
        for zone in by_location.values():
            if zone not in seen:
                collector.reject(f"{zone}: no {what} data in the response", zone=zone)
