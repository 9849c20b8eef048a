"""Serving aiohttp apps safely: read deadlines, a connection cap and a shutdown within Kubernetes' grace.

aiohttp (3.14) has no server-side read timeout: a client that sends its headers or body one byte a
second holds a connection, a handler and memory for as long as it likes, and shutdown waits for such a
handler up to `shutdown_timeout` twice (60 s each by default). This module adds, for every service:

- a header deadline: a connection must deliver a request's headers within `read_timeout` seconds of
  opening (or of the first byte of its next request); otherwise it is closed. Idle keep-alive
  connections are aiohttp's `keepalive_timeout`'s business.
- a body deadline: `read_body` (or `body_middleware`, which calls it for every request with a body)
  reads the whole body within `read_timeout`, else 408 and the connection is closed (after aiohttp's
  lingering read of what is still arriving, also capped at `read_timeout`).
- a connection cap per listener: connections beyond `max_connections` are closed on accept, so a flood
  cannot exhaust file descriptors (and the ops port, a separate listener, keeps answering probes).
- a shutdown bounded by `shutdown_timeout` (at most twice it: aiohttp waits for handlers, then again
  for them to cancel), well inside the 30 s Kubernetes gives between SIGTERM and SIGKILL.
- a client that hangs up mid-request raises `ClientAborted`, for callers to count and log quietly.
- a request aiohttp's HTTP parser refuses before any middleware runs (a request line or a header over
  8,190 bytes, a malformed request line) gets a small JSON 400 and a WARNING line, instead of a
  text/plain 400 (also sent to a HEAD) and an ERROR traceback: see `JsonErrorsHandler`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("carbon_common.serving")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ServingLimits:
    read_timeout: float = 10.0
    """Seconds for a request's headers to arrive, and again for its body."""
    max_connections: int = 1000
    """Open connections per listener; more are closed as soon as they are accepted."""
    keepalive_timeout: float = 120.0
    """Idle keep-alive connections are closed after this; above Go's 90 s client idle timeout, so the
    client (kube-scheduler, the API server) closes first and never races a server-side close."""
    shutdown_timeout: float = 5.0
    """On stop, seconds to wait for in-flight handlers before cancelling them (then as long again)."""


class ClientAborted(Exception):
    """The client closed the connection before its request body arrived in full."""


class JsonErrorsHandler(RequestHandler):
    """aiohttp's per-connection protocol, answering what never reaches the app in JSON.

    aiohttp's HTTP parser refuses a request line or a header over 8,190 bytes (and malformed lines)
    itself: `RequestHandler.handle_error` answers a text/plain 400 before any middleware runs and logs
    it with `logger.exception`, an ERROR traceback for a client's mistake. aiohttp has no option for
    either, so this subclass overrides that one method: a parser error gets `{error_key: message}`
    and a WARNING line; anything else (a 500 the app's middlewares let through) stays an ERROR
    traceback, with a JSON body too. The request line is unparsed, so aiohttp answers it as a GET:
    for a HEAD (seen by `_GuardedProtocol` in the raw bytes) the answer has no body.
    """

    __slots__ = ("error_key", "head_request")

    def __init__(self, manager: web.Server, *, error_key: str, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.error_key = error_key
        self.head_request = False

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError) and status < 500:
            text = (message or exc.message or "bad request")[:300]
            # Non-HTTP bytes (TLS to a plain port, a port scan) are routine: aiohttp logs them at debug.
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.WARNING
            log.log(level, "refused a malformed HTTP request", extra={"status": status, "error": text})
        else:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            text = "internal error"
        if request.writer.output_size > 0:
            # As aiohttp: part of an answer is out, so the connection is broken.
            raise ConnectionError("response already started, cannot send the error answer")
        body = b"" if self.head_request else orjson.dumps({self.error_key: text})
        response = web.Response(status=status, body=body, content_type="application/json")
        response.force_close()
        return response


class _GuardedProtocol(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol (which has __slots__, so it cannot be patched) to run a
    header deadline and to refuse connections over the cap."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.in_request = False
        self.rejected = False
        self.request_start = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if len(self.guard.connections) >= self.guard.limits.max_connections:
            self.rejected = True
            self.guard.refused += 1
            if self.guard.refused == 1 or self.guard.refused % 1000 == 0:
                log.warning(
                    "connection cap reached, closing new connections",
                    extra={
                        "maxConnections": self.guard.limits.max_connections,
                        "refused": self.guard.refused,
                    },
                )
            cast(asyncio.Transport, transport).abort()  # no FIN handshake to wait for
            return
        self.guard.connections[transport] = self
        self.arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.timer is None and not self.in_request:
            self.arm()  # first byte of the next request on a kept-alive connection
        if self.request_start:
            self.request_start = False
            if isinstance(self.inner, JsonErrorsHandler):
                self.inner.head_request = data.startswith(b"HEAD ")
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.rejected:
            return
        if self.transport is not None:
            self.guard.connections.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def arm(self) -> None:
        self.disarm()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.guard.limits.read_timeout, self.expire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def expire(self) -> None:
        self.timer = None
        if self.in_request or self.transport is None or self.transport.is_closing():
            return
        self.guard.timed_out += 1
        log.debug("closing a connection that did not send its request headers in time")
        self.transport.close()

    def request_started(self) -> None:
        self.disarm()
        self.in_request = True

    def request_finished(self) -> None:
        self.in_request = False
        self.request_start = True


class ConnectionGuard:
    """One per listener: wraps its protocol factory, counts its connections and their fate."""

    def __init__(self, limits: ServingLimits) -> None:
        self.limits = limits
        self.connections: dict[asyncio.BaseTransport, _GuardedProtocol] = {}
        self.refused = 0
        self.timed_out = 0

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, inner())


_GUARD: web.AppKey[list[ConnectionGuard]] = web.AppKey("carbon_connection_guards")
_ERROR_KEY: web.AppKey[str] = web.AppKey("carbon_error_key", str)


def _connection_of(request: web.Request) -> _GuardedProtocol | None:
    transport = request.transport
    if transport is None:
        return None
    for guard in request.app.get(_GUARD, ()):
        conn = guard.connections.get(transport)
        if conn is not None:
            return conn
    return None


@web.middleware
async def _request_started(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: the headers are in, so the header deadline ends; it restarts at the next request."""
    conn = _connection_of(request)
    if conn is not None:
        conn.request_started()
    try:
        return await handler(request)
    finally:
        if conn is not None:
            conn.request_finished()


async def read_body(request: web.Request, seconds: float, *, max_bytes: int | None = None) -> bytes:
    """The whole request body within `seconds`.

    Without `max_bytes`: request.read(), cached by aiohttp (later reads are free) and limited by the
    app's client_max_size. With `max_bytes`: read here and not cached, so the body is freed as soon as
    the caller drops it rather than when aiohttp releases the request (after the response is sent):
    for a large body that is the difference between one and two bodies alive at once.

    Raises web.HTTPRequestTimeout (408, connection closed) when it is slower, ClientAborted when the
    client hangs up first, and HTTPRequestEntityTooLarge above the limit.
    """
    try:
        async with asyncio.timeout(seconds):
            if max_bytes is None:
                return await request.read()
            chunks: list[bytes] = []
            size = 0
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > max_bytes:
                    raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=size)
                chunks.append(chunk)
            return b"".join(chunks)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"request body not received within {seconds:g}s", headers={"Connection": "close"}
        ) from None
    except ConnectionError as exc:  # aiohttp raises ConnectionResetError("Connection lost")
        raise ClientAborted(str(exc) or type(exc).__name__) from None


def body_middleware(seconds: float) -> Middleware:
    """Reads every request body under `read_body`'s deadline of `seconds` before the handler runs
    (its own reads then return the cached bytes). A client that hung up is logged at debug and
    answered with a 400 nobody receives, instead of aiohttp's ERROR traceback and 500."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                await read_body(request, seconds)
            except ClientAborted as exc:
                log.debug(
                    "client closed the connection mid-request",
                    extra={"path": request.path, "error": str(exc)},
                )
                return web.Response(status=400, text="client closed the connection mid-request")
        return await handler(request)

    return middleware


def install(app: web.Application, limits: ServingLimits, *, read_bodies: bool) -> None:
    """Add the request-start hook (and, with read_bodies, body_middleware) to an app not yet started.
    An app that reads bodies itself passes read_bodies=False and calls read_body."""
    app[_GUARD] = []
    app.middlewares.insert(0, _request_started)
    if read_bodies:
        app.middlewares.append(body_middleware(limits.read_timeout))


def _handler_options(limits: ServingLimits) -> dict[str, Any]:
    """The per-connection protocol's options: given to the AppRunner and to the JsonErrorsHandler
    that GuardedSite builds in its place, so both are the same."""
    return {
        "access_log": None,
        "keepalive_timeout": limits.keepalive_timeout,
        # After an answer given before the body was read (413, 415, 408), aiohttp keeps reading and
        # discarding the body so the client sees the answer: at most read_timeout, like any read
        # (aiohttp's default is 10 s, whatever the client's pace).
        "lingering_time": limits.read_timeout,
    }


def make_runner(
    app: web.Application, limits: ServingLimits, *, read_bodies: bool = True, error_key: str = "error"
) -> web.AppRunner:
    """An AppRunner with the limits applied; start listeners with `start_site`. `error_key` names the
    message in the JSON error answers given outside the app (the app's own convention)."""
    if _GUARD not in app:
        install(app, limits, read_bodies=read_bodies)
    app[_ERROR_KEY] = error_key
    return web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=limits.shutdown_timeout,
        **_handler_options(limits),
    )


class GuardedSite(web.BaseSite):
    """A TCP listener whose connections go through a ConnectionGuard."""

    __slots__ = ("_error_key", "_guard", "_host", "_port")

    def __init__(
        self,
        runner: web.AppRunner,
        host: str | None,
        port: int,
        limits: ServingLimits,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=min(limits.max_connections, 4096))
        self._host, self._port = host, port
        self._guard = ConnectionGuard(limits)
        runner.app[_GUARD].append(self._guard)
        self._error_key = runner.app.get(_ERROR_KEY, "error")

    @property
    def guard(self) -> ConnectionGuard:
        return self._guard

    @property
    def port(self) -> int:
        """The bound port (useful after asking for port 0)."""
        sockets: Any = getattr(self._server, "sockets", None)
        if sockets:
            return int(sockets[0].getsockname()[1])
        return self._port

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        limits = self._guard.limits
        error_key = self._error_key
        options = _handler_options(limits)

        def handler() -> asyncio.Protocol:
            return JsonErrorsHandler(server, loop=loop, error_key=error_key, **options)

        self._server = await loop.create_server(
            self._guard.factory(handler),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
            # A TLS handshake is part of "sending the headers": the same deadline.
            ssl_handshake_timeout=self._guard.limits.read_timeout if self._ssl_context else None,
        )


async def start_site(
    runner: web.AppRunner,
    host: str | None,
    port: int,
    limits: ServingLimits,
    ssl_context: ssl.SSLContext | None = None,
) -> GuardedSite:
    site = GuardedSite(runner, host, port, limits, ssl_context)
    await site.start()
    return site


async def serve_until_signalled(
    app: web.Application,
    host: str | None,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    limits: ServingLimits | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve `app` until SIGTERM/SIGINT (or `stop`), then shut down within the limits."""
    limits = limits or ServingLimits()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = make_runner(app, limits)
    try:
        await runner.setup()  # inside the try, as web.run_app: a failing startup hook still cleans up
        await start_site(runner, host, port, limits, ssl_context)
        await stop.wait()
    finally:
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run_app(
    app: web.Application,
    *,
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    limits: ServingLimits | None = None,
) -> None:
    """A drop-in for `web.run_app(app, host=, port=, ssl_context=, print=None, access_log=None)` with
    the limits above. Start-up errors (a port in use, a failing startup hook) propagate as they do
    from web.run_app."""
    asyncio.run(serve_until_signalled(app, host, port, ssl_context=ssl_context, limits=limits))


__all__ = [
    "ClientAborted",
    "ConnectionGuard",
    "GuardedSite",
    "JsonErrorsHandler",
    "ServingLimits",
    "body_middleware",
    "install",
    "make_runner",
    "read_body",
    "run_app",
    "serve_until_signalled",
    "start_site",
]
