"""UK Carbon Intensity API (NESO): national and regional (DNO region 1-17), half-hourly, no auth.

National items carry `actual` for the past and `forecast` for every period; regional items are
forecast-only. For the current half hour without an actual, the forecast is served as the current value
marked `estimated`. All values are average gCO2/kWh.

Zone mapping (`zones:`): our zone id -> "national" or a region id. Without one, `GB` is national and
`GB-REGION-<n>` is region n.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final

import aiohttp

from carbon_feed.http import HttpClient, ProviderError, RateLimitedError, RequestObserver
from carbon_feed.model import FetchResult
from carbon_feed.providers._common import (
    ConfigError,
    Runtime,
    base_url,
    check_keys,
    expect_dict,
    expect_list,
    make_http,
)
from carbon_feed.validate import Collector, InvalidValue, parse_time

KIND: Final = "ukgrid"
DEFAULT_BASE_URL: Final = "https://api.carbonintensity.org.uk"
NATIONAL: Final = "national"
HALF_HOUR: Final = timedelta(minutes=30)
# No published quota; this keeps us a polite client of a free public service.
DEFAULT_QUOTA: Final = (60, 60.0)
_REGION_ZONE = re.compile(r"GB-REGION-(\d{1,2})")


def _region_id(value: Any) -> int | str:
    if value == NATIONAL:
        return NATIONAL
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"ukgrid zones: {value!r} is neither 'national' nor a region id 1-17") from None
    if not 1 <= number <= 17:
        raise ConfigError(f"ukgrid zones: region id {number} is outside 1-17")
    return number


def _floor_half_hour(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 30, second=0, microsecond=0)


def _api_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


class UkGridProvider:
    def __init__(
        self,
        name: str,
        http: HttpClient,
        *,
        base: str = DEFAULT_BASE_URL,
        zones: Mapping[str, int | str] | None,
    ) -> None:
        self.name = name
        self._http, self._base, self._zones = http, base, zones

    def __repr__(self) -> str:
        return f"UkGridProvider(name={self.name!r}, base={self._base!r})"

    @classmethod
    def from_options(
        cls,
        name: str,
        options: Mapping[str, Any],
        session: aiohttp.ClientSession,
        observer: RequestObserver | None,
        runtime: Runtime | None = None,
    ) -> UkGridProvider:
        check_keys(KIND, options, ())
        raw = options.get("zones")
        zones: dict[str, int | str] | None = None
        if isinstance(raw, Mapping):
            zones = {str(k): _region_id(v) for k, v in raw.items()}
        elif isinstance(raw, list | tuple):
            zones = {}
            for zone in map(str, raw):
                target = _default_target(zone)
                if target is None:
                    raise ConfigError(f"ukgrid zones: no default mapping for {zone!r}; use a mapping")
                zones[zone] = target
        elif raw is not None:
            raise ConfigError("ukgrid zones must be a list or a mapping")
        http = make_http(name, options, session, observer, runtime or Runtime(), quota=DEFAULT_QUOTA)
        return cls(name, http, base=base_url(options, DEFAULT_BASE_URL), zones=zones)

    def _target(self, zone: str) -> int | str | None:
        if self._zones is not None:
            return self._zones.get(zone)
        return _default_target(zone)

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        collector = Collector(self.name)
        national: list[str] = []
        regional: dict[str, int] = {}
        for zone in zones:
            target = self._target(zone)
            if target is None:
                collector.reject(
                    f"{zone}: not a UK grid zone (map it to 'national' or a region id)", zone=zone
                )
            elif target == NATIONAL:
                national.append(zone)
            else:
                regional[zone] = int(target)
        current = _floor_half_hour(now)
        errors: list[ProviderError] = []
        groups: list[tuple[list[str], Callable[[], Awaitable[None]]]] = []
        if national:
            groups.append((national, partial(self._national, collector, national, current, now)))
        if regional:
            groups.append((list(regional), partial(self._regional, collector, regional, current, now)))
        for group_zones, job in groups:
            try:
                await job()
            except RateLimitedError:
                raise
            except ProviderError as exc:
                errors.append(exc)
                for zone in group_zones:
                    collector.reject(f"{zone}: {exc}", zone=zone)
        if errors and len(errors) == len(groups):
            raise errors[0]
        return collector.result()

    async def _national(
        self, collector: Collector, zones: list[str], current: datetime, now: datetime
    ) -> None:
        # Starting an hour back picks up the latest actuals, which are published after each period.
        start = current - 2 * HALF_HOUR
        body = expect_dict(
            await self._http.get_json(f"{self._base}/intensity/{_api_time(start)}/fw48h"), "national"
        )
        for item in expect_list(body.get("data"), f"{self.name} intensity data"):
            period = _period(collector, zones[0], item)
            if period is None:
                continue
            begin, seconds, intensity = period
            actual = intensity.get("actual")
            for zone in zones:
                if actual is not None:
                    collector.add(zone, "average", begin, actual, period_seconds=seconds)
                elif begin <= now < begin + timedelta(seconds=seconds):
                    collector.add(
                        zone,
                        "average",
                        begin,
                        intensity.get("forecast"),
                        period_seconds=seconds,
                        estimated=True,
                    )
                if begin >= current:
                    collector.add(
                        zone,
                        "average",
                        begin,
                        intensity.get("forecast"),
                        period_seconds=seconds,
                        forecast=True,
                        issued_at=now,
                    )

    async def _regional(
        self, collector: Collector, zones: dict[str, int], current: datetime, now: datetime
    ) -> None:
        body = expect_dict(
            await self._http.get_json(f"{self._base}/regional/intensity/{_api_time(current)}/fw48h"),
            "regional",
        )
        seen: set[int] = set()
        for item in expect_list(body.get("data"), f"{self.name} regional data"):
            if not isinstance(item, dict):
                collector.reject(f"regional item is not an object: {item!r:.80}")
                continue
            try:
                begin, end = parse_time(item.get("from")), parse_time(item.get("to"))
            except InvalidValue as exc:
                collector.reject(f"regional item time: {exc}")
                continue
            seconds = int((end - begin).total_seconds())
            regions = {r.get("regionid"): r for r in item.get("regions") or [] if isinstance(r, dict)}
            for zone, region in zones.items():
                entry = regions.get(region)
                if entry is None:
                    continue
                seen.add(region)
                value = (entry.get("intensity") or {}).get("forecast")
                if begin <= now < end:
                    collector.add(zone, "average", begin, value, period_seconds=seconds, estimated=True)
                if begin >= current:
                    collector.add(
                        zone, "average", begin, value, period_seconds=seconds, forecast=True, issued_at=now
                    )
        for zone, region in zones.items():
            if region not in seen:
                collector.reject(f"{zone}: region {region} missing from the response", zone=zone)


def _default_target(zone: str) -> int | str | None:
    if zone == "GB":
        return NATIONAL
    match = _REGION_ZONE.fullmatch(zone)
    if match and 1 <= int(match.group(1)) <= 17:
        return int(match.group(1))
    return None


def _period(collector: Collector, zone: str, item: Any) -> tuple[datetime, int, dict[str, Any]] | None:
    if not isinstance(item, dict) or not isinstance(item.get("intensity"), dict):
        collector.reject(f"{zone}: item without an intensity object: {item!r:.80}", zone=zone)
        return None
    try:
        begin, end = parse_time(item.get("from")), parse_time(item.get("to"))
    except InvalidValue as exc:
        collector.reject(f"{zone}: {exc}", zone=zone)
        return None
    if end <= begin:
        collector.reject(f"{zone}: period ends before it starts at {item.get('from')}", zone=zone)
        return None
    return begin, int((end - begin).total_seconds()), item["intensity"]
