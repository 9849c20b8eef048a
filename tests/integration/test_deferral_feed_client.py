"""The feed client over loopback HTTP: the query it sends, and every failure becoming "no forecast"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from deferral.annotations import DeferralSpec
from deferral.feed import FeedClient
from deferral.metrics import DeferralMetrics

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "payload", "why"),
    [
        (503, b'{"error": "down"}', "HTTP 503"),
        (200, b"not json", "malformed"),
        (200, b'{"windows": 3}', "malformed"),
    ],
)
async def test_client_turns_every_failure_into_none(status: int, payload: bytes, why: str) -> None:
    queries: list[dict[str, str]] = []

    async def best(request: web.Request) -> web.Response:
        queries.append(dict(request.query))
        return web.Response(status=status, body=payload, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/best", best)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    metrics = DeferralMetrics()
    try:
        async with ClientSession() as session:
            client = FeedClient(session, str(server.make_url("/")), metrics, zones=["DE", "FR"])
            spec = DeferralSpec(timedelta(seconds=1.5), T0 + timedelta(days=30), T0 + timedelta(hours=1))
            forecast, reason = await client.best(spec, T0)
    finally:
        await server.close()
    assert forecast is None
    assert why in reason
    # Rounded-up whole seconds, start at the earliest start, deadline capped at the feed's 14-day span.
    assert queries == [
        {
            "duration": "2",
            "start": "2026-11-23T13:00:00Z",
            "deadline": "2026-12-07T13:00:00Z",
            "zones": "DE,FR",
        }
    ]


async def test_client_reports_an_unreachable_feed() -> None:
    async with ClientSession() as session:
        client = FeedClient(session, "http://127.0.0.1:9", DeferralMetrics(), timeout=2.0)
        spec = DeferralSpec(timedelta(hours=1), T0 + timedelta(hours=5), T0)
        forecast, reason = await client.best(spec, T0)
    assert forecast is None
    assert "unreachable" in reason


async def test_client_adds_every_window_of_each_zone_forecast_as_candidates_cached_per_zone() -> None:
    calls: list[str] = []

    def window(zone: str, hour: int, intensity: float) -> dict[str, object]:
        start = T0 + timedelta(hours=hour)
        end = start + timedelta(hours=1)
        return {"zone": zone, "start": start.isoformat(), "end": end.isoformat(), "intensity": intensity}

    async def best(request: web.Request) -> web.Response:
        calls.append("best")
        body = {"windows": [window("FR", 2, 50.0)], "current": {"FR": 90.0, "DE": 300.0, "WT": 40.0}}
        body["signals"] = {"WT": "index"}
        return web.json_response(body)

    async def zone_forecast(request: web.Request) -> web.Response:
        zone = request.match_info["zone"]
        calls.append(zone)
        if zone == "DE":
            return web.json_response({"error": "down"}, status=503)
        hours = [window(zone, h, 50.0 + h) for h in range(4)]
        return web.json_response(
            {"zone": zone, "forecast": [{k: v for k, v in w.items() if k != "zone"} for w in hours]}
        )

    app = web.Application()
    app.router.add_get("/v1/best", best)
    app.router.add_get("/v1/forecast/{zone}", zone_forecast)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as session:
            client = FeedClient(session, str(server.make_url("/")), DeferralMetrics())
            spec = DeferralSpec(timedelta(hours=1), T0 + timedelta(hours=4), T0)
            forecast, reason = await client.best(spec, T0)
            again, _ = await client.best(spec, T0)
    finally:
        await server.close()
    assert reason == "ok"
    assert forecast is not None
    assert again is not None
    # FR's four hours are candidates; DE's forecast failed (no candidates, no error); the index zone
    # WT is never asked. The best windows are untouched.
    assert [(w.zone, w.start, w.intensity) for w in forecast.candidates] == [
        ("FR", T0 + timedelta(hours=h), 50.0 + h) for h in range(4)
    ]
    assert [w.intensity for w in forecast.windows] == [50.0]
    # The second plan reuses the zone forecasts (one call per zone per TTL for all pods).
    assert (calls[0], sorted(calls[1:3]), calls[3:]) == ("best", ["DE", "FR"], ["best"])
    assert again.candidates == forecast.candidates
