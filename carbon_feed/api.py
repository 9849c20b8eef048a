"""The feed's HTTP API (aiohttp, orjson). Reads only the in-memory view and, for ranges, the store.

Every bad query parameter gets 400 {"error": "<what is wrong>"}; an unknown zone 404. See docs/feed.md.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from carbon_common.interval import Interval
from carbon_common.responses import error_response, health_response, json_response, readiness_response
from carbon_common.timeutil import format_rfc3339, parse_duration, parse_rfc3339
from carbon_common.windows import best_windows
from carbon_feed.model import Reading
from carbon_feed.service import FeedService
from carbon_feed.view import ZoneView, readiness, reading_age

log = logging.getLogger(__name__)

FEED = web.AppKey("feed", FeedService)
MAX_RANGE = timedelta(days=31)
MAX_BEST_SPAN = timedelta(days=14)
DEFAULT_BEST_SPAN = timedelta(hours=24)
# Times a query may name. Far wider than any data, yet far enough inside datetime's range (years
# 1..9999) that the handlers' date arithmetic (start + 24 h, now - period) cannot overflow: an
# OverflowError there once answered 9999-12-31T23:59:59Z with a 500.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class BadRequest(ValueError):
    """A query parameter is wrong; the message says which and why."""


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        return error_response(400, str(exc))

    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.reason)
        raise
    except Exception:
        log.exception("request failed", extra={"path": request.path})
        return error_response(500, "internal error")


def _time_param(request: web.Request, key: str, default: datetime | None) -> datetime | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        moment = parse_rfc3339(raw)
    except ValueError as exc:
        raise BadRequest(f"{key}: {exc}") from None
    if not EARLIEST <= moment < LATEST:
        raise BadRequest(f"{key}: {raw!r} is out of range ({EARLIEST.year} to {LATEST.year - 1})")
    return moment


def _age(reading: Reading, now: datetime) -> float:
    # The contract's age (from the end of the reading's period), the same the freshness uses.
    return round(reading_age(reading, now), 3)


def _current(view: ZoneView, now: datetime) -> dict[str, Any]:
    r = view.reading
    return {
        "zone": r.zone,
        "intensity": r.value,
        "unit": "gCO2eq/kWh",
        "signal": r.signal,
        "source": r.provider,
        "estimated": r.estimated,
        "observedAt": format_rfc3339(r.start),
        "periodSeconds": r.period_seconds,
        "ageSeconds": _age(r, now),
        "fresh": view.fresh,
    }


def _index(r: Reading, now: datetime) -> dict[str, Any]:
    return {
        "zone": r.zone,
        "value": r.value,
        "unit": "percentile",
        "signal": "index",
        "source": r.provider,
        "observedAt": format_rfc3339(r.start),
        "ageSeconds": _age(r, now),
    }


def _feed(request: web.Request) -> FeedService:
    return request.app[FEED]


def _zone_or_404(feed: FeedService, zone: str) -> ZoneView | None:
    view = feed.state.zones.get(zone)
    if view is None and zone not in feed.state.indexes:
        raise web.HTTPNotFound(reason=f"unknown zone {zone!r}")
    return view


async def zones_handler(request: web.Request) -> web.Response:
    feed = _feed(request)
    now = feed.clock()
    zones = [_current(v, now) for _, v in sorted(feed.state.zones.items())]
    indexes = [_index(r, now) for _, r in sorted(feed.state.indexes.items())]
    return json_response({"zones": zones, "indexes": indexes})


async def intensity_all(request: web.Request) -> web.Response:
    feed = _feed(request)
    now = feed.clock()
    return json_response(
        {
            "generatedAt": format_rfc3339(now),
            "zones": {zone: _current(v, now) for zone, v in sorted(feed.state.zones.items())},
        }
    )


async def intensity_zone(request: web.Request) -> web.Response:
    feed = _feed(request)
    zone = request.match_info["zone"]
    now = feed.clock()
    view = _zone_or_404(feed, zone)
    start = _time_param(request, "from", None)
    end = _time_param(request, "to", None)
    body: dict[str, Any] = _current(view, now) if view else _index(feed.state.indexes[zone], now)
    if start is None and end is not None:
        raise BadRequest("to: given without from")
    if start is not None:
        end = end or now
        if end <= start:
            raise BadRequest("to: must be after from")
        if end - start > MAX_RANGE:
            raise BadRequest(f"from/to: range longer than {MAX_RANGE.days} days")
        history = await feed.store.ahistory(zone, start, end)
        body["history"] = [
            {
                "start": format_rfc3339(h.start),
                "end": format_rfc3339(h.start + timedelta(seconds=h.period_seconds)),
                "intensity": h.value,
                "signal": h.signal,
                "source": h.provider,
                "estimated": h.estimated,
            }
            for h in history
        ]
    return json_response(body)


async def forecast_zone(request: web.Request) -> web.Response:
    feed = _feed(request)
    zone = request.match_info["zone"]
    view = _zone_or_404(feed, zone)
    if view is None:
        raise BadRequest(f"zone {zone!r} only has an index signal, which has no forecast")
    return json_response(
        {
            "zone": zone,
            "signal": view.reading.signal,
            "source": view.forecast_source,
            "forecast": [
                {"start": format_rfc3339(p.start), "end": format_rfc3339(p.end), "intensity": p.intensity}
                for p in view.forecast
            ],
        }
    )


def zone_points(view: ZoneView) -> list[Interval]:
    """The current period (actual value) followed by the forecast points that start after it."""
    r = view.reading
    current_end = r.start + timedelta(seconds=r.period_seconds)
    points = [Interval(r.start, current_end, r.value)]
    points += [p for p in view.forecast if p.start >= current_end]
    return points


def _window(zone: str, w: Interval) -> dict[str, Any]:
    return {
        "zone": zone,
        "start": format_rfc3339(w.start),
        "end": format_rfc3339(w.end),
        "intensity": round(w.intensity, 3),
    }


async def best_handler(request: web.Request) -> web.Response:
    feed = _feed(request)
    now = feed.clock()
    raw_duration = request.query.get("duration")
    if not raw_duration:
        raise BadRequest("duration: required (seconds, or e.g. 1h30m)")
    try:
        duration = parse_duration(raw_duration)
    except ValueError as exc:
        raise BadRequest(f"duration: {exc}") from None
    start = _time_param(request, "start", now)
    assert start is not None
    deadline = _time_param(request, "deadline", start + DEFAULT_BEST_SPAN)
    assert deadline is not None
    if deadline <= start:
        raise BadRequest("deadline: must be after start")
    if deadline - start > MAX_BEST_SPAN:
        raise BadRequest(f"deadline: more than {MAX_BEST_SPAN.days} days after start")
    # A job longer than its span is not a malformed request (a deadline simply came close): it gets the
    # ordinary "no window" answer below, so callers need only one code path for "cannot plan".
    fits = duration <= deadline - start
    raw_zones = request.query.get("zones")
    known = feed.state.zones
    if raw_zones:
        zones = [z.strip() for z in raw_zones.split(",") if z.strip()]
        unknown = sorted(set(zones) - set(known))
        if not zones:
            raise BadRequest("zones: empty list")
        if unknown:
            raise BadRequest(f"zones: unknown zone(s) {unknown}")
    else:
        zones = sorted(known)
    # Stale zones are out, as in the snapshot: a window planned on old data is a guess.
    stale = [z for z in zones if not known[z].fresh]
    zones = [z for z in zones if known[z].fresh]
    by_zone: dict[str, list[Interval]] = {}
    for zone in zones if fits else ():
        found = best_windows(zone_points(known[zone]), duration, start, deadline)
        if found:
            by_zone[zone] = found
    body: dict[str, Any] = {
        "generatedAt": format_rfc3339(now),
        "duration": duration.total_seconds(),
        "start": format_rfc3339(start),
        "deadline": format_rfc3339(deadline),
        "windows": [],
        "byZone": {z: _window(z, ws[0]) for z, ws in sorted(by_zone.items())},
        "current": {z: known[z].reading.value for z in zones},
        "signals": {z: known[z].reading.signal for z in zones},
        "staleZones": stale,
    }
    if by_zone:
        best = min(ws[0].intensity for ws in by_zone.values())
        ties = [
            (w.start, z, w)
            for z, ws in by_zone.items()
            for w in ws
            if abs(w.intensity - best) <= 1e-9 * max(1.0, abs(best))
        ]
        body["windows"] = [_window(z, w) for _, z, w in sorted(ties, key=lambda t: (t[0], t[1]))]
    elif not fits:
        body["reason"] = "the duration is longer than the span between start and deadline"
    else:
        body["reason"] = "no forecast covers a window of this duration between start and deadline"
    return json_response(body)


async def snapshot_handler(request: web.Request) -> web.Response:
    state = _feed(request).state
    headers = {"ETag": state.etag, "Cache-Control": "no-cache"}
    match = request.headers.get("If-None-Match", "")
    if state.etag and (match.strip() == "*" or state.etag in [t.strip() for t in match.split(",")]):
        return web.Response(status=304, headers=headers)
    return web.Response(body=state.snapshot_bytes, content_type="application/json", headers=headers)


async def healthz(request: web.Request) -> web.Response:
    return health_response()


async def readyz(request: web.Request) -> web.Response:
    """200 only while the snapshot holds a zone (fresh data, fetched or restored from the store)."""
    ready, reason = readiness(_feed(request).state)
    return readiness_response(ready, reason)


def create_app(feed: FeedService) -> web.Application:
    """The app; `feed` is started in cleanup_ctx (store loaded, refresh loops running) and stopped."""
    app = web.Application(middlewares=[errors_middleware])
    app[FEED] = feed

    async def run_feed(app: web.Application) -> AsyncIterator[None]:
        await app[FEED].start()
        yield
        await app[FEED].stop()

    app.cleanup_ctx.append(run_feed)
    app.router.add_get("/v1/zones", zones_handler)
    app.router.add_get("/v1/intensity", intensity_all)
    app.router.add_get("/v1/intensity/{zone}", intensity_zone)
    app.router.add_get("/v1/forecast/{zone}", forecast_zone)
    app.router.add_get("/v1/best", best_handler)
    app.router.add_get("/v1/snapshot", snapshot_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(feed.metrics.registry))
    return app
