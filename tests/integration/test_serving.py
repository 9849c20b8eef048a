"""carbon_common.serving as carbon-feed and the deferral service use it (body_middleware): a slow
body gets a 408, a client hanging up is no ERROR, and the service keeps answering (issue 12 items 3, 4)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from carbon_common.serving import GuardedSite, ServingLimits, make_runner, start_site

LIMITS = ServingLimits(read_timeout=0.3)


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"got": len(await request.read())})


@pytest.fixture
async def site() -> AsyncIterator[GuardedSite]:
    app = web.Application()
    app.router.add_post("/echo", _echo)
    runner = make_runner(app, LIMITS)  # read_bodies=True: what run_app gives the feed and deferral
    await runner.setup()
    try:
        yield await start_site(runner, "127.0.0.1", 0, LIMITS)
    finally:
        await runner.cleanup()


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionError:
        pass
    return received


async def test_slow_body_is_408_and_closed(site: GuardedSite) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    async with asyncio.timeout(10):
        answer = await _until_closed(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    url = f"http://127.0.0.1:{site.port}/echo"
    async with aiohttp.ClientSession() as session, session.post(url, data=b"x" * 10) as resp:
        assert (resp.status, await resp.json()) == (200, {"got": 10})
    await asyncio.sleep(2 * LIMITS.read_timeout)  # aiohttp's lingering read ends (loop time)


async def test_client_hanging_up_is_not_an_error(site: GuardedSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    await writer.wait_closed()
    for _ in range(500):  # up to 10 s for the server to notice
        if any("mid-request" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the server never noticed the client leaving")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
