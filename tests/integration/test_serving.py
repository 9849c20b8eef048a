"""carbon_common.serving as carbon-feed and the deferral service use it (body_middleware): a slow
body gets a 408, a client hanging up is no ERROR, and the service keeps answering (issue 12 items 3, 4)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from carbon_common.serving import GuardedSite, ServingLimits, make_runner, start_site

from .sockets import read_until_closed

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


async def test_slow_body_is_408_and_closed(site: GuardedSite) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    async with asyncio.timeout(10):
        answer = await read_until_closed(reader)
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


async def _raw(site: GuardedSite, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(request)
    async with asyncio.timeout(10):
        answer = await read_until_closed(reader)
    writer.close()
    return answer


# docs/fuzz.md finding 3: aiohttp's parser answered these itself, text/plain, with an ERROR traceback.
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /echo?" + b"z" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # request line over 8,190 bytes
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * 9000 + b"\r\n\r\n",  # header over 8,190
    ],
)
async def test_a_request_the_http_parser_refuses_gets_json_and_no_error_line(
    site: GuardedSite, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await _raw(site, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400"
    assert b"content-type: application/json" in head.lower()
    assert "8190" in orjson.loads(body)["error"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    url = f"http://127.0.0.1:{site.port}/echo"
    async with aiohttp.ClientSession() as session, session.post(url, data=b"x") as resp:
        assert resp.status == 200  # still serving


async def test_a_head_the_http_parser_refuses_gets_no_body(site: GuardedSite) -> None:
    url = f"http://127.0.0.1:{site.port}/echo?" + "z" * 9000
    async with aiohttp.ClientSession() as session, session.head(url) as resp:
        assert resp.status == 400
        assert await resp.read() == b""


async def test_the_error_key_of_parser_answers_is_the_apps() -> None:
    app = web.Application()
    runner = make_runner(app, LIMITS, error_key="Error")
    await runner.setup()
    try:
        site = await start_site(runner, "127.0.0.1", 0, LIMITS)
        answer = await _raw(site, b"GET /" + b"z" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        await runner.cleanup()
    assert list(orjson.loads(answer.partition(b"\r\n\r\n")[2])) == ["Error"]
