"""Client of the feed's ``/v1/best``: the forecast a plan is made from.

Every failure (feed down, slow, 4xx/5xx, malformed body, no forecast for the span) comes back as
``None`` with a short reason, never as an exception: the planner has a rule for "no forecast" and the
deadline guard does not depend on the feed at all.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from carbon_common.interval import Interval
from carbon_common.timeutil import format_rfc3339, parse_rfc3339
from deferral.annotations import DeferralSpec
from deferral.metrics import DeferralMetrics
from deferral.planner import Forecast, candidate_windows

log = logging.getLogger(__name__)

MAX_SPAN = timedelta(days=14)
"""The feed's largest /v1/best span (carbon_feed.api.MAX_BEST_SPAN)."""


def _window(item: Any, zone: Any) -> Interval:
    if not isinstance(item, Mapping):
        raise ValueError("a window is not an object")
    intensity = item.get("intensity")
    if isinstance(intensity, bool) or not isinstance(intensity, int | float) or intensity != intensity:
        raise ValueError(f"window intensity {intensity!r} is not a number")
    if not isinstance(zone, str):
        raise ValueError(f"window zone {zone!r} is not a string")
    return Interval(
        parse_rfc3339(str(item.get("start", ""))),
        parse_rfc3339(str(item.get("end", ""))),
        float(intensity),
        zone=zone,
    )


def parse_best(body: Any) -> Forecast:
    """The /v1/best answer as a Forecast; ValueError naming the bad field otherwise.

    Candidates are the global ties (``windows``) plus each zone's best (``byZone``), minus zones whose
    signal is a percentile index (WattTime signal-index is not g/kWh and must never be ranked against
    intensities). ``byZone`` matters exactly then: when an index zone holds the global minimum,
    ``windows`` has nothing comparable left and the best g/kWh zone comes from ``byZone``.
    """
    if not isinstance(body, Mapping):
        raise ValueError("answer is not a JSON object")
    raw_windows = body.get("windows")
    if not isinstance(raw_windows, list):
        raise ValueError("'windows' is not a list")
    signals = body.get("signals")
    index_zones = (
        {z for z, kind in signals.items() if kind == "index"} if isinstance(signals, Mapping) else set()
    )
    windows = [_window(item, item.get("zone") if isinstance(item, Mapping) else None) for item in raw_windows]
    by_zone = body.get("byZone")
    if isinstance(by_zone, Mapping):
        windows += [_window(item, zone) for zone, item in by_zone.items()]
    current: dict[str, float] = {}
    raw_current = body.get("current")
    if isinstance(raw_current, Mapping):
        for zone, value in raw_current.items():
            # A zone without a current g/kWh value is simply not a candidate for "now".
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if isinstance(zone, str) and numeric and zone not in index_zones:
                current[zone] = float(value)
    generated = body.get("generatedAt")
    return Forecast(
        windows=[w for w in windows if w.zone not in index_zones],
        current=current,
        generated_at=parse_rfc3339(generated) if isinstance(generated, str) else None,
    )


def parse_forecast(zone: str, body: Any) -> list[Interval]:
    """The /v1/forecast/{zone} answer as points; ValueError naming the bad field otherwise."""
    if not isinstance(body, Mapping) or not isinstance(body.get("forecast"), list):
        raise ValueError("'forecast' is not a list")
    return [_window(item, zone) for item in body["forecast"]]


class FeedClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        metrics: DeferralMetrics,
        zones: Sequence[str] = (),
        timeout: float = 5.0,
        forecast_ttl: float = 300.0,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._url = self._base + "/v1/best"
        self._metrics = metrics
        self._zones = tuple(zones)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._forecast_ttl = forecast_ttl
        self._forecasts: dict[str, tuple[float, list[Interval]]] = {}
        """Zone -> (loop time fetched, points): one /v1/forecast call per zone per TTL, for all pods."""

    async def best(self, spec: DeferralSpec, now: datetime) -> tuple[Forecast | None, str]:
        """The forecast for this pod's span from now, or (None, why not)."""
        start = max(now, spec.earliest_start)
        # The feed plans at most MAX_SPAN ahead (400 beyond); forecasts do not reach further anyway, and
        # the guard still holds the far deadline.
        deadline = min(spec.deadline, start + MAX_SPAN)
        params = {
            # Whole seconds, rounded up: the feed's parser takes integers, and a longer run is safe.
            "duration": str(max(1, math.ceil(spec.duration.total_seconds()))),
            "start": format_rfc3339(start),
            "deadline": format_rfc3339(deadline),
        }
        if self._zones:
            params["zones"] = ",".join(self._zones)
        try:
            async with self._session.get(self._url, params=params, timeout=self._timeout) as resp:
                body = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            return self._fail("unreachable", f"feed unreachable: {type(error).__name__}: {error}")
        if status != 200:
            return self._fail("http_error", f"feed answered HTTP {status}: {body[:200]!r}")
        try:
            forecast = parse_best(orjson.loads(body))
        except ValueError as error:  # orjson.JSONDecodeError is a ValueError
            return self._fail("malformed", f"feed answer malformed: {error}")
        if not forecast.windows:
            raw = orjson.loads(body)
            reason = raw.get("reason") if isinstance(raw, dict) else None
            self._metrics.feed_requests.labels(outcome="no_forecast").inc()
            return forecast, f"no forecast covers the span: {reason or 'no reason given'}"
        self._metrics.feed_requests.labels(outcome="ok").inc()
        zones = sorted(set(forecast.current) | {w.zone for w in forecast.windows})
        series = await asyncio.gather(*(self._zone_points(zone) for zone in zones))
        points = [point for zone_points in series for point in zone_points]
        candidates = candidate_windows(points, spec.duration, start, deadline)
        return replace(forecast, candidates=candidates), "ok"

    async def _zone_points(self, zone: str) -> list[Interval]:
        """The zone's forecast (GET /v1/forecast/{zone}), cached; [] on any failure: the candidates
        only widen capacity-aware planning, the best windows above still stand."""
        clock = asyncio.get_running_loop().time()
        cached = self._forecasts.get(zone)
        if cached is not None and clock - cached[0] < self._forecast_ttl:
            return cached[1]
        url = f"{self._base}/v1/forecast/{quote(zone, safe='')}"
        try:
            async with self._session.get(url, timeout=self._timeout) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
            points = parse_forecast(zone, orjson.loads(body))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as error:
            log.debug("no zone forecast", extra={"zone": zone, "error": repr(error)})
            points = []
        self._forecasts[zone] = (clock, points)
        return points

    def _fail(self, outcome: str, reason: str) -> tuple[None, str]:
        self._metrics.feed_requests.labels(outcome=outcome).inc()
        log.warning("no forecast from the feed", extra={"reason": reason})
        return None, reason
