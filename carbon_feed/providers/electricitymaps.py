"""Electricity Maps API v3: latest, history (revisions) and forecast, average gCO2eq/kWh, hourly.

`shouldUseFallbackCallerLookup=false` is sent on every call: without it an unknown zone is silently
answered with the zone of the caller's IP address, i.e. plausible numbers for the wrong grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import aiohttp

from carbon_feed.http import HttpClient, MalformedError, ProviderError, RateLimitedError, RequestObserver
from carbon_feed.model import FetchResult
from carbon_feed.providers._common import (
    ConfigError,
    Runtime,
    base_url,
    check_keys,
    expect_dict,
    expect_list,
    make_http,
    option_bool,
    per_zone,
    resolve_zones,
    zone_map,
)
from carbon_feed.secrets import Secret, SecretError, require_secret
from carbon_feed.validate import Collector, InvalidValue, parse_time

DEFAULT_BASE_URL: Final = "https://api.electricitymaps.com"
PERIOD_SECONDS: Final = 3600
KIND: Final = "electricitymaps"


class ElectricityMapsProvider:
    def __init__(
        self,
        name: str,
        http: HttpClient,
        token: Secret,
        *,
        base: str = DEFAULT_BASE_URL,
        zones: Mapping[str, str] | None = None,
        history: bool = True,
        forecast: bool = True,
        emission_factor_type: str | None = None,
    ) -> None:
        self.name = name
        self._http, self._token, self._base, self._zones = http, token, base, zones
        self._history, self._forecast = history, forecast
        self._factor_type = emission_factor_type

    def __repr__(self) -> str:
        return f"ElectricityMapsProvider(name={self.name!r}, base={self._base!r}, token={self._token!r})"

    @classmethod
    def from_options(
        cls,
        name: str,
        options: Mapping[str, Any],
        session: aiohttp.ClientSession,
        observer: RequestObserver | None,
        runtime: Runtime | None = None,
    ) -> ElectricityMapsProvider:
        check_keys(
            KIND, options, {"token", "token_file", "token_env", "history", "forecast", "emission_factor_type"}
        )
        try:
            token = require_secret(options, "token")
        except SecretError as exc:
            raise ConfigError(f"{KIND} {name}: {exc}") from None
        factor_type = options.get("emission_factor_type")
        if factor_type not in (None, "lifecycle", "direct"):
            raise ConfigError(f"emission_factor_type must be lifecycle or direct, got {factor_type!r}")
        http = make_http(name, options, session, observer, runtime or Runtime(), quota=None, secrets=[token])
        return cls(
            name,
            http,
            token,
            base=base_url(options, DEFAULT_BASE_URL),
            zones=zone_map(options),
            history=option_bool(options, "history", True),
            forecast=option_bool(options, "forecast", True),
            emission_factor_type=factor_type,
        )

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        collector = Collector(self.name)

        async def one(zone: str, remote: str) -> None:
            await self._latest(collector, zone, remote)
            # History and forecast are extras (the free tier has no forecast): their failures are
            # reported but do not discard the latest value we already have.
            for wanted, extra in (
                (self._history, self._history_points),
                (self._forecast, self._forecast_points),
            ):
                if not wanted:
                    continue
                try:
                    await extra(collector, zone, remote)
                except RateLimitedError:
                    raise
                except ProviderError as exc:
                    collector.reject(f"{zone}: {exc}", zone=zone)

        # Electricity Maps keys are scoped to the zones of the plan: a 401/403 for one zone says
        # nothing about the others. A bad key still fails the round, since then every zone fails.
        await per_zone(collector, resolve_zones(collector, zones, self._zones), one, auth_is_per_zone=True)
        return collector.result()

    async def _get(self, endpoint: str, remote: str) -> dict[str, Any]:
        params = {"zone": remote, "shouldUseFallbackCallerLookup": "false"}
        if self._factor_type is not None:
            params["emissionFactorType"] = self._factor_type
        body = expect_dict(
            await self._http.get_json(
                f"{self._base}/v3/carbon-intensity/{endpoint}",
                params=params,
                headers={"auth-token": self._token.reveal()},
            ),
            f"{self.name} {endpoint}",
        )
        answered = body.get("zone")
        if answered is not None and answered != remote:
            # Defence in depth against the caller-location fallback: never file one grid under another.
            raise MalformedError(f"{self.name} {endpoint}: asked for zone {remote!r}, got {answered!r}")
        return body

    def _point(self, collector: Collector, zone: str, point: Any) -> None:
        if not isinstance(point, dict):
            collector.reject(f"{zone}: history point is not an object: {point!r:.80}", zone=zone)
            return
        collector.add(
            zone,
            "average",
            point.get("datetime"),
            point.get("carbonIntensity"),
            period_seconds=PERIOD_SECONDS,
            estimated=bool(point.get("isEstimated", False)),
            revised_at=point.get("updatedAt"),
        )

    async def _latest(self, collector: Collector, zone: str, remote: str) -> None:
        self._point(collector, zone, await self._get("latest", remote))

    async def _history_points(self, collector: Collector, zone: str, remote: str) -> None:
        body = await self._get("history", remote)
        for point in expect_list(body.get("history"), f"{self.name} history.history"):
            self._point(collector, zone, point)

    async def _forecast_points(self, collector: Collector, zone: str, remote: str) -> None:
        body = await self._get("forecast", remote)
        issued: datetime | None = None
        if body.get("updatedAt") is not None:
            try:
                issued = parse_time(body["updatedAt"])
            except InvalidValue as exc:
                collector.reject(f"{zone}: forecast updatedAt: {exc}", zone=zone)
        for point in expect_list(body.get("forecast"), f"{self.name} forecast.forecast"):
            if not isinstance(point, dict):
                collector.reject(f"{zone}: forecast point is not an object: {point!r:.80}", zone=zone)
                continue
            collector.add(
                zone,
                "average",
                point.get("datetime"),
                point.get("carbonIntensity"),
                period_seconds=PERIOD_SECONDS,
                forecast=True,
                issued_at=issued,
            )
