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
