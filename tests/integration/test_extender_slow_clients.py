"""Slow, stalled, departing and too many clients (issue 12 items 3 and 4), against the extender served
through carbon_common.serving exactly as `python -m extender` serves it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson
import pytest
from aiohttp import web

from carbon_common.serving import GuardedSite, ServingLimits, make_runner, start_site
from extender.app import STATE, create_app
from extender.fixed_nodes import MappingNodeLookup
from extender.settings import ExtenderSettings
from extender.view import CarbonState

from .sockets import read_until_closed

READ_TIMEOUT = 0.3
PRIORITIZE = orjson.dumps({"Pod": {"metadata": {"uid": "u"}}, "NodeNames": ["a", "b"]})


@dataclass
class Served:
    app: web.Application
    site: GuardedSite
    url: str
    port: int


@pytest.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    max_connections = getattr(request, "param", 1000)
    settings = ExtenderSettings(read_timeout=READ_TIMEOUT, max_connections=max_connections)
    app = create_app(settings, MappingNodeLookup({"a": "DE", "b": "FR"}), CarbonState())
    limits = ServingLimits(read_timeout=READ_TIMEOUT, max_connections=max_connections)
    runner = make_runner(app, limits, read_bodies=False)
    await runner.setup()
    try:
        site = await start_site(runner, "127.0.0.1", 0, limits)
        yield Served(app, site, f"http://127.0.0.1:{site.port}", site.port)
    finally:
        await runner.cleanup()


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send `data` one byte every 50 ms (far slower than READ_TIMEOUT allows), until the server closes."""
    try:
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.05)
    except ConnectionError:
        pass


async def _prioritize_ok(session: aiohttp.ClientSession, url: str) -> None:
    headers = {"Content-Type": "application/json"}
    async with session.post(url + "/prioritize", data=PRIORITIZE, headers=headers) as resp:
        assert resp.status == 200
        assert len(orjson.loads(await resp.read())) == 2


async def test_slow_clients_are_closed_and_the_service_keeps_answering(served: Served) -> None:
    slow_headers = b"POST /prioritize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" * 20
    slow_body_head = (
        b"POST /prioritize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    tricklers: list[asyncio.Task[None]] = []
    try:
        for i in range(60):
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            conns.append((reader, writer))
            if i % 3 == 0:
                tricklers.append(asyncio.create_task(_trickle(writer, slow_headers)))
            elif i % 3 == 1:
                writer.write(slow_body_head)
                tricklers.append(asyncio.create_task(_trickle(writer, b"{" * 5000)))
            # i % 3 == 2: connects and sends nothing at all
        async with aiohttp.ClientSession() as session:
            await _prioritize_ok(session, served.url)  # answered while 60 slow clients are connected
            async with asyncio.timeout(20):  # a bound for a loaded machine, not a timing assertion
                answers = await asyncio.gather(*(read_until_closed(r) for r, _ in conns))
            await _prioritize_ok(session, served.url)
        # Slow bodies get a 408 before the close; slow or absent headers are simply closed.
        for i, answer in enumerate(answers):
            if i % 3 == 1:
                assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
            else:
                assert answer == b""
        assert served.site.guard.timed_out >= 40  # (a slow body, after its 408, may be cut here too)
        assert len(served.site.guard.connections) <= 1  # the session's own keep-alive connection
        # aiohttp's lingering read after each 408 ends read_timeout after it began (loop time), so
        # the handler tasks are gone after this sleep: a wait for cleanup, not a timing assertion.
        await asyncio.sleep(2 * READ_TIMEOUT)
    finally:
        for task in tricklers:
            task.cancel()
        await asyncio.gather(*tricklers, return_exceptions=True)
        for _, writer in conns:
            writer.close()


@pytest.mark.parametrize("served", [3], indirect=True)
async def test_connections_over_the_cap_are_closed_on_accept(served: Served) -> None:
    held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(3)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(10):
            assert await read_until_closed(reader) == b""
        writer.close()
        assert served.site.guard.refused >= 1
    finally:
        for _, w in held:
            w.close()
    async with aiohttp.ClientSession() as session, asyncio.timeout(10):
        while True:  # the held connections' slots free up once the server sees them close
            try:
                async with session.get(served.url + "/healthz") as resp:
                    assert resp.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)


async def test_a_client_hanging_up_mid_body_is_aborted_not_an_error(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    head = (
        b"POST /prioritize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 500\r\n\r\n"
    )
    caplog.set_level(logging.DEBUG)
    _, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(head + b'{"Pod": ')
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    await writer.wait_closed()
    metrics = served.app[STATE].metrics
    async with asyncio.timeout(10):
        while True:
            aborted = metrics.registry.get_sample_value(
                "carbon_extender_requests_total", {"verb": "prioritize", "outcome": "aborted"}
            )
            if aborted == 1.0:
                break
            await asyncio.sleep(0.02)
    errors = metrics.registry.get_sample_value(
        "carbon_extender_requests_total", {"verb": "prioritize", "outcome": "error"}
    )
    assert errors is None
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_read_timeout_applies_to_the_ops_app_too() -> None:
    # The ops app reads no bodies, but its listener still closes connections that never send headers.
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    limits = ServingLimits(read_timeout=READ_TIMEOUT)
    runner = make_runner(app, limits)
    await runner.setup()
    try:
        site = await start_site(runner, "127.0.0.1", 0, limits)
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(b"GET /hea")
        async with asyncio.timeout(10):
            assert await read_until_closed(reader) == b""
        writer.close()
        assert site.guard.timed_out == 1
    finally:
        await runner.cleanup()
