"""The shared provider HTTP policy (carbon_feed.http): retries, backoff, Retry-After, rate limit, timeouts.

A fake clock and sleep make waits instant; the HTTP itself is real, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from carbon_feed.http import (
    AuthError,
    HttpClient,
    MalformedError,
    RateLimitedError,
    RequestError,
    RetryPolicy,
    TokenBucket,
    UnavailableError,
    bucket_from_options,
    parse_retry_after,
)
from carbon_feed.secrets import Secret
from tests.fakes.clock import FakeClock
from tests.fakes.provider_emulators import Emulator, Fault

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
TOKEN = Secret("tok-SECRET-123456")


class EchoEmulator(Emulator):
    """/data answers {"ok": 1}; /echo-auth reflects the Authorization header (a leaky upstream)."""

    def routes(self, app: web.Application) -> None:
        async def data(request: web.Request) -> web.Response:
            return web.json_response({"ok": 1})

        async def nan(request: web.Request) -> web.Response:
            return web.Response(body=b'{"v": NaN}', content_type="application/json")

        async def echo(request: web.Request) -> web.Response:
            return web.json_response({"error": f"bad {request.headers.get('Authorization')}"}, status=401)

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound("http://127.0.0.2/elsewhere")

        app.router.add_get("/data", data)
        app.router.add_get("/nan", nan)
        app.router.add_get("/echo-auth", echo)
        app.router.add_get("/redirect", redirect)


class Outcomes(list[tuple[str, str, float]]):
    """(provider, outcome, seconds) as reported to the RequestObserver."""


@pytest.fixture
async def env(
    aiohttp_server: Callable[..., Any],
) -> AsyncIterator[tuple[EchoEmulator, str, aiohttp.ClientSession]]:
    emu = EchoEmulator()
    server: TestServer = await aiohttp_server(emu.app())
    async with aiohttp.ClientSession() as session:
        yield emu, f"http://127.0.0.1:{server.port}/", session


def client(session: aiohttp.ClientSession, clock: FakeClock, outcomes: Outcomes, **policy: Any) -> HttpClient:
    return HttpClient(
        "test",
        session,
        policy=RetryPolicy(**{"base_delay": 1.0, "max_delay": 8.0, **policy}),
        observer=lambda name, outcome, seconds: outcomes.append((name, outcome, seconds)),
        secrets=[TOKEN],
        clock=clock,
        sleep=clock.sleep,
        wall=lambda: NOW,
        rng=lambda: 0.5,
    )


async def test_5xx_is_retried_with_exponential_backoff(env: Any) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    emu.fail(Fault("503"), path="/data", times=2)
    emu.fail(Fault("500"), path="/data", times=1)
    assert await client(session, clock, outcomes).get_json(base + "data") == {"ok": 1}
    assert [o[1] for o in outcomes] == ["http_5xx", "http_5xx", "http_5xx", "ok"]
    # equal jitter with rng=0.5: step*0.75 for steps 1, 2, 4
    assert clock.sleeps == [0.75, 1.5, 3.0]
    assert len(emu.calls("/data")) == 4


async def test_gives_up_after_max_attempts_with_the_last_error(env: Any) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    emu.fail(Fault("502"), path="/data", times=-1)
    with pytest.raises(UnavailableError, match="HTTP 502") as info:
        await client(session, clock, outcomes, max_attempts=3).get_json(base + "data")
    assert info.value.status == 502
    assert len(emu.calls("/data")) == 3
    assert len(clock.sleeps) == 2


async def test_retry_after_seconds_is_honoured(env: Any) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    emu.fail(Fault("429", retry_after="7"), path="/data")
    assert await client(session, clock, outcomes).get_json(base + "data") == {"ok": 1}
    assert clock.sleeps == [7.0]
    assert [o[1] for o in outcomes] == ["http_429", "ok"]


async def test_retry_after_http_date_is_honoured(env: Any) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    when = email.utils.format_datetime(NOW + timedelta(seconds=12), usegmt=True)
    emu.fail(Fault("503", retry_after=when), path="/data")
    assert await client(session, clock, outcomes).get_json(base + "data") == {"ok": 1}
    assert clock.sleeps == [12.0]


async def test_long_retry_after_goes_back_to_the_caller(env: Any) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    emu.fail(Fault("429", retry_after="3600"), path="/data")
    with pytest.raises(RateLimitedError) as info:
        await client(session, clock, outcomes, max_retry_after=60).get_json(base + "data")
    assert info.value.retry_after == 3600.0
    assert clock.sleeps == []
    assert len(emu.calls("/data")) == 1


async def test_total_timeout_bounds_the_waiting(env: Any) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    emu.fail(Fault("429", retry_after="30"), path="/data", times=-1)
    with pytest.raises(RateLimitedError):
        await client(session, clock, outcomes, total_timeout=100, max_attempts=10).get_json(base + "data")
    # 30 + 30 + 30 = 90 < 100; a fourth wait would end past the deadline
    assert clock.sleeps == [30.0, 30.0, 30.0]


@pytest.mark.parametrize(("status", "error"), [("401", AuthError), ("403", AuthError), ("404", RequestError)])
async def test_client_errors_are_not_retried(env: Any, status: str, error: type[Exception]) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    emu.fail(Fault(status), path="/data")
    with pytest.raises(error, match=f"HTTP {status}"):
        await client(session, clock, outcomes).get_json(base + "data")
    assert len(emu.calls("/data")) == 1
    assert outcomes[0][1] == "http_4xx"


async def test_slow_response_times_out_and_is_retried(env: Any) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    emu.fail(Fault("slow", delay=2.0), path="/data", times=1)
    result = await client(session, clock, outcomes, request_timeout=0.2).get_json(base + "data")
    assert result == {"ok": 1}
    assert [o[1] for o in outcomes] == ["timeout", "ok"]


async def test_persistent_timeouts_raise_unavailable(env: Any) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    emu.fail(Fault("slow", delay=2.0), path="/data", times=-1)
    with pytest.raises(UnavailableError, match=r"within 0\.2 s") as info:
        await client(session, clock, outcomes, request_timeout=0.2, max_attempts=2).get_json(base + "data")
    assert info.value.outcome == "timeout"


@pytest.mark.parametrize("kind", ["truncated", "malformed"])
async def test_bodies_that_are_not_json_are_malformed(env: Any, kind: str) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    emu.fail(Fault(kind), path="/data")
    with pytest.raises(MalformedError, match="not valid JSON"):
        await client(session, clock, outcomes).get_json(base + "data")
    assert [o[1] for o in outcomes] == ["malformed"]


async def test_connection_cut_mid_body_is_a_retried_network_error(env: Any) -> None:
    emu, base, session = env
    clock, outcomes = FakeClock(1000.0), Outcomes()
    emu.fail(Fault("cut"), path="/data")
    assert await client(session, clock, outcomes).get_json(base + "data") == {"ok": 1}
    assert [o[1] for o in outcomes] == ["network", "ok"]


async def test_connection_refused_is_network(unused_tcp_port: int) -> None:
    clock, outcomes = FakeClock(1000.0), Outcomes()
    async with aiohttp.ClientSession() as session:
        http = client(session, clock, outcomes, max_attempts=2)
        with pytest.raises(UnavailableError) as info:
            await http.get_json(f"http://127.0.0.1:{unused_tcp_port}/data")
    assert info.value.outcome == "network"
    assert [o[1] for o in outcomes] == ["network", "network"]


async def test_nan_literal_still_decodes_so_validation_can_reject_one_value(env: Any) -> None:
    _, base, session = env
    value = await client(session, FakeClock(1000.0), Outcomes()).get_json(base + "nan")
    assert value["v"] != value["v"]  # NaN


async def test_oversized_bodies_are_refused(env: Any) -> None:
    _, base, session = env
    http = client(session, FakeClock(1000.0), Outcomes())
    http.max_body_bytes = 5
    with pytest.raises(MalformedError, match="exceeds the 5 byte limit"):
        await http.get_json(base + "data")


async def test_json_is_asked_for(env: Any) -> None:
    emu, base, session = env
    await client(session, FakeClock(1000.0), Outcomes()).get_json(base + "data")
    assert emu.requests[0].headers["Accept"] == "application/json"


async def test_redirects_are_not_followed(env: Any) -> None:
    _, base, session = env
    with pytest.raises(RequestError, match="HTTP 302"):
        await client(session, FakeClock(1000.0), Outcomes()).get_json(
            base + "redirect", headers={"auth-token": TOKEN.reveal()}
        )


async def test_secrets_echoed_by_the_server_never_reach_the_error(env: Any) -> None:
    _, base, session = env
    with pytest.raises(AuthError) as info:
        await client(session, FakeClock(1000.0), Outcomes()).get_json(
            base + "echo-auth", headers={"Authorization": f"Bearer {TOKEN.reveal()}"}
        )
    assert TOKEN.reveal() not in str(info.value)
    assert TOKEN.reveal() not in repr(info.value)
    assert "***" in str(info.value)


async def test_a_broken_observer_does_not_fail_the_request(env: Any) -> None:
    _, base, session = env

    def broken(name: str, outcome: str, seconds: float) -> None:
        raise RuntimeError("metrics bug")

    http = HttpClient("test", session, observer=broken)
    assert await http.get_json(base + "data") == {"ok": 1}


# --- token bucket -------------------------------------------------------------------------------


async def test_token_bucket_allows_a_burst_then_paces() -> None:
    clock = FakeClock(1000.0)
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        await bucket.acquire()
    assert clock.sleeps == [0.5, 0.5]


async def test_token_bucket_refuses_a_wait_past_the_deadline() -> None:
    clock = FakeClock(1000.0)
    bucket = TokenBucket(rate=0.1, burst=1, clock=clock, sleep=clock.sleep)
    await bucket.acquire()
    with pytest.raises(RateLimitedError, match="client-side rate limit") as info:
        await bucket.acquire(deadline=clock() + 5)
    assert info.value.retry_after == pytest.approx(10.0)


async def test_rate_limit_paces_requests_through_the_client(env: Any) -> None:
    emu, base, session = env
    clock = FakeClock(1000.0)
    http = client(session, clock, Outcomes())
    http.bucket = TokenBucket(rate=1.0, burst=1, clock=clock, sleep=clock.sleep)
    await asyncio.gather(*(http.get_json(base + "data") for _ in range(3)))
    assert clock.sleeps == [1.0, 1.0]
    assert len(emu.calls("/data")) == 3


def test_quota_never_exceeds_the_provider_window() -> None:
    bucket = TokenBucket.for_quota(3000, 300)  # WattTime: 3,000 per 5 minutes
    assert bucket.burst + bucket.rate * 300 <= 3000


def test_bucket_from_options() -> None:
    assert bucket_from_options({"rate_limit": None}, default=(10, 1)) is None
    assert bucket_from_options({}, default=None) is None
    custom = bucket_from_options(
        {"rate_limit": {"requests": 100, "per_seconds": 60, "burst": 10}}, default=None
    )
    assert custom is not None
    assert custom.burst == 10
    assert custom.rate == pytest.approx(1.5)
    with pytest.raises(ValueError, match="unknown keys"):
        bucket_from_options({"rate_limit": {"requests": 1, "per_seconds": 1, "rps": 3}}, default=None)
    with pytest.raises(ValueError, match="requests must be an integer"):
        bucket_from_options({"rate_limit": {"requests": "many", "per_seconds": 1}}, default=None)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 5 ", 5.0),
        ("Sun, 22 Nov 2026 10:01:00 GMT", 60.0),
        ("Sun, 22 Nov 2026 09:00:00 GMT", 0.0),  # in the past: retry now
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


@pytest.mark.parametrize(
    "policy",
    [{"max_attempts": 0}, {"request_timeout": 0}, {"base_delay": -1}, {"total_timeout": float("nan")}],
)
def test_bad_policies_are_refused(policy: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by field
        RetryPolicy(**policy)
