"""WattTime API v3: MOER (marginal) forecast and history, optionally the signal index.

Login is `GET /login` with HTTP Basic and returns a bearer token valid for 30 minutes. We log in again
shortly before it expires (so no request is wasted on a 401) and, should a 401 still arrive (token
revoked, clock skew), once more before giving up. Logins have their own quota (100 per 5 minutes).

MOER values arrive in lbs CO2/MWh and become g/kWh (x 0.453592) with signal "marginal"; co2_aoer is an
average rate. The signal index is a 0-100 percentile of the region's recent MOER: it stays "index" and
is never converted to g/kWh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import aiohttp

from carbon_common.timeutil import format_rfc3339
from carbon_feed.http import (
    AuthError,
    HttpClient,
    MalformedError,
    RequestError,
    RequestObserver,
    TokenBucket,
    basic_auth,
    bucket_from_options,
)
from carbon_feed.model import FetchResult, SignalKind
from carbon_feed.providers._common import (
    ConfigError,
    Runtime,
    base_url,
    check_keys,
    expect_dict,
    expect_list,
    make_http,
    option_bool,
    option_int,
    per_zone,
    resolve_zones,
    zone_map,
)
from carbon_feed.secrets import Secret, SecretError, require_secret
from carbon_feed.validate import Collector, InvalidValue, parse_time, unit_factor

KIND: Final = "watttime"
DEFAULT_BASE_URL: Final = "https://api.watttime.org"
DATA_QUOTA: Final = (3000, 300.0)
LOGIN_QUOTA: Final = (100, 300.0)
DEFAULT_PERIOD: Final = 300
SIGNALS: Final[dict[str, SignalKind]] = {"co2_moer": "marginal", "co2_aoer": "average"}


class WattTimeProvider:
    def __init__(
        self,
        name: str,
        http: HttpClient,
        username: Secret,
        password: Secret,
        *,
        runtime: Runtime,
        base: str = DEFAULT_BASE_URL,
        zones: Mapping[str, str] | None = None,
        signal_type: str = "co2_moer",
        horizon_hours: int = 24,
        history_minutes: int = 60,
        signal_index: bool = False,
        login_bucket: TokenBucket | None = None,
        token_ttl: float = 1800.0,
        refresh_margin: float = 300.0,
    ) -> None:
        if signal_type not in SIGNALS:
            raise ConfigError(f"signal_type must be one of {sorted(SIGNALS)}, got {signal_type!r}")
        self.name = name
        self._http, self._username, self._password = http, username, password
        self._runtime, self._base, self._zones = runtime, base, zones
        self._signal_type, self._horizon, self._history = signal_type, horizon_hours, history_minutes
        self._index = signal_index
        self._login_bucket = login_bucket
        self._ttl, self._margin = token_ttl, refresh_margin
        self._token: Secret | None = None
        self._expires = 0.0
        self._login_lock = asyncio.Lock()
        self.logins = 0
        """How many times we logged in (tests and debugging)."""

    def __repr__(self) -> str:
        return f"WattTimeProvider(name={self.name!r}, base={self._base!r}, username={self._username!r})"

    @classmethod
    def from_options(
        cls,
        name: str,
        options: Mapping[str, Any],
        session: aiohttp.ClientSession,
        observer: RequestObserver | None,
        runtime: Runtime | None = None,
    ) -> WattTimeProvider:
        check_keys(
            KIND,
            options,
            {
                "username",
                "password",
                "username_file",
                "username_env",
                "password_file",
                "password_env",
                "signal_type",
                "horizon_hours",
                "history_minutes",
                "signal_index",
                "token_ttl",
                "refresh_margin",
                "login_rate_limit",
            },
        )
        rt = runtime or Runtime()
        try:
            username = require_secret(options, "username")
            password = require_secret(options, "password")
        except SecretError as exc:
            raise ConfigError(f"{KIND} {name}: {exc}") from None
        try:
            login_bucket = bucket_from_options(
                {"rate_limit": options["login_rate_limit"]} if "login_rate_limit" in options else {},
                default=LOGIN_QUOTA,
                clock=rt.clock,
                sleep=rt.sleep,
            )
        except ValueError as exc:
            raise ConfigError(f"login_rate_limit: {exc}") from None
        ttl = options.get("token_ttl", 1800)
        margin = options.get("refresh_margin", 300)
        if not isinstance(ttl, int | float) or not isinstance(margin, int | float) or not 0 <= margin < ttl:
            raise ConfigError(f"need 0 <= refresh_margin < token_ttl, got {margin!r} and {ttl!r}")
        return cls(
            name,
            make_http(name, options, session, observer, rt, quota=DATA_QUOTA, secrets=[username, password]),
            username,
            password,
            runtime=rt,
            base=base_url(options, DEFAULT_BASE_URL),
            zones=zone_map(options),
            signal_type=str(options.get("signal_type", "co2_moer")),
            horizon_hours=option_int(options, "horizon_hours", 24, 0, 72),
            history_minutes=option_int(options, "history_minutes", 60, 0, 60 * 24 * 30),
            signal_index=option_bool(options, "signal_index", False),
            login_bucket=login_bucket,
            token_ttl=float(ttl),
            refresh_margin=float(margin),
        )

    # --- authentication -------------------------------------------------------------------------

    async def _current_token(self) -> Secret:
        async with self._login_lock:  # concurrent fetches share one login
            if self._token is None or self._runtime.clock() >= self._expires - self._margin:
                await self._login()
            assert self._token is not None
            return self._token

    async def _login(self) -> None:
        started = self._runtime.clock()
        body = expect_dict(
            await self._http.get_json(
                f"{self._base}/login",
                headers={"Authorization": basic_auth(self._username, self._password)},
                bucket=self._login_bucket,
            ),
            f"{self.name} login",
        )
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise MalformedError(f"{self.name} login: response has no token")
        self._token = Secret(token)
        self._http.add_secret(self._token)
        # Counted from before the request: the server's 30 minutes started no later than that.
        self._expires = started + self._ttl
        self.logins += 1

    async def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        for attempt in (1, 2):
            token = await self._current_token()
            try:
                body = await self._http.get_json(
                    f"{self._base}{path}",
                    params=params,
                    headers={"Authorization": f"Bearer {token.reveal()}"},
                )
            except AuthError as exc:
                if exc.status == 403:
                    # WattTime answers 403 for a region outside the plan: a per-zone problem.
                    raise RequestError(
                        f"{exc} (region not included in this WattTime plan?)", status=403
                    ) from None
                if attempt == 2:
                    raise
                async with self._login_lock:
                    if self._token is token:  # nobody has refreshed it meanwhile
                        self._token = None
                continue
            return expect_dict(body, f"{self.name} {path}")
        raise AssertionError("unreachable")

    # --- data -----------------------------------------------------------------------------------

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        collector = Collector(self.name)

        async def one(zone: str, region: str) -> None:
            signal = {"region": region, "signal_type": self._signal_type}
            if self._history > 0:
                start = now - timedelta(minutes=self._history)
                body = await self._get(
                    "/v3/historical", {**signal, "start": format_rfc3339(start), "end": format_rfc3339(now)}
                )
                self._points(collector, zone, body, forecast=False)
            if self._horizon > 0:
                body = await self._get("/v3/forecast", {**signal, "horizon_hours": str(self._horizon)})
                self._points(collector, zone, body, forecast=True)
            if self._index:
                body = await self._get("/v3/signal-index", {"region": region, "signal_type": "co2_moer"})
                self._points(collector, zone, body, forecast=False, index=True)

        await per_zone(collector, resolve_zones(collector, zones, self._zones), one)
        return collector.result()

    def _points(
        self, collector: Collector, zone: str, body: dict[str, Any], *, forecast: bool, index: bool = False
    ) -> None:
        meta = expect_dict(body.get("meta", {}), f"{self.name} meta")
        data = expect_list(body.get("data"), f"{self.name} data")
        period = meta.get("data_point_period_seconds", DEFAULT_PERIOD)
        if not isinstance(period, int) or isinstance(period, bool) or period <= 0:
            raise MalformedError(f"{self.name}: data_point_period_seconds is {period!r}")
        factor = 1.0
        signal: SignalKind = "index"
        if not index:
            signal = SIGNALS[self._signal_type]
            try:
                factor = unit_factor(str(meta.get("units", "lbs_co2_per_mwh")))
            except InvalidValue as exc:
                raise MalformedError(f"{self.name}: {exc}") from None
        issued: datetime | None = None
        if forecast:
            try:
                issued = parse_time(meta.get("generated_at"))
            except InvalidValue as exc:
                collector.reject(f"{zone}: forecast generated_at: {exc}", zone=zone)
        for point in data:
            if not isinstance(point, dict):
                collector.reject(f"{zone}: data point is not an object: {point!r:.80}", zone=zone)
                continue
            collector.add(
                zone,
                signal,
                point.get("point_time"),
                point.get("value"),
                period_seconds=period,
                factor=factor,
                forecast=forecast,
                issued_at=issued,
            )
