"""UK Carbon Intensity provider against its loopback emulator: national and regional, half-hourly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from carbon_feed.http import AuthError, MalformedError, RateLimitedError, UnavailableError
from carbon_feed.model import Reading
from carbon_feed.providers import ConfigError, Runtime, build_provider
from tests.fakes.clock import FakeClock
from tests.fakes.provider_emulators import NOW, Fault, UkGridEmulator

# 10:10, inside the 10:00-10:30 period
AT = NOW + timedelta(minutes=10)


Env = tuple[UkGridEmulator, dict[str, Any], aiohttp.ClientSession, FakeClock]


@pytest.fixture
async def env(aiohttp_server: Callable[..., Any]) -> AsyncIterator[Env]:
    emu = UkGridEmulator(now=AT)
    server = await aiohttp_server(emu.app())
    async with aiohttp.ClientSession() as session:
        yield emu, {"base_url": f"http://127.0.0.1:{server.port}"}, session, FakeClock()


def make(env: Env, **extra: Any) -> Any:
    _, options, session, clock = env
    runtime = Runtime(clock=clock, sleep=clock.sleep, rng=lambda: 0.5)
    return build_provider("ukgrid", "uk", {**options, **extra}, session, None, runtime=runtime)


def observations(readings: Any, zone: str) -> list[Reading]:
    return sorted((r for r in readings if r.zone == zone and not r.forecast), key=lambda r: r.start)


async def test_national_actuals_current_estimate_and_forecast(env: Env) -> None:
    emu = env[0]
    result = await make(env).fetch(["GB"], AT)
    assert result.rejected == ()
    seen = observations(result.readings, "GB")
    # 09:00 and 09:30 have actuals; 10:00 (current) has only a forecast, served as an estimate
    assert [(r.start.strftime("%H:%M"), r.estimated) for r in seen] == [
        ("09:00", False),
        ("09:30", False),
        ("10:00", True),
    ]
    assert seen[0].value == 177.0  # actual = forecast - 3 in the emulator
    assert seen[-1].value == 182.0
    forecast = [r for r in result.readings if r.forecast]
    assert forecast[0].start == NOW
    assert len(forecast) == 94  # 96 half-hours from 09:00, minus the two past ones
    assert all(r.period_seconds == 1800 and r.signal == "average" for r in result.readings)
    assert emu.calls("/intensity/")[0].path == "/intensity/2026-11-22T09:00Z/fw48h"


async def test_regional_ids_from_default_zone_names(env: Env) -> None:
    emu = env[0]
    result = await make(env).fetch(["GB-REGION-13", "GB-REGION-16"], AT)
    assert result.rejected == ()
    now13 = observations(result.readings, "GB-REGION-13")
    assert [(r.start, r.value, r.estimated) for r in now13] == [(NOW, 120.0, True)]
    assert len([r for r in result.readings if r.zone == "GB-REGION-16" and r.forecast]) == 96
    assert [c.path for c in emu.requests] == ["/regional/intensity/2026-11-22T10:00Z/fw48h"]


async def test_configured_mapping(env: Env) -> None:
    result = await make(env, zones={"london": 13, "uk": "national"}).fetch(["london", "uk", "GB"], AT)
    assert {r.zone for r in result.readings} == {"london", "uk"}
    assert any(reason.startswith("GB: not a UK grid zone") for reason in result.rejected)


async def test_missing_region_is_reported(env: Env) -> None:
    emu = env[0]
    emu.missing.add("GB-REGION-16")
    result = await make(env).fetch(["GB-REGION-13", "GB-REGION-16"], AT)
    assert {r.zone for r in result.readings} == {"GB-REGION-13"}
    assert result.rejected == ("GB-REGION-16: region 16 missing from the response",)


async def test_regional_failure_keeps_national(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("500"), path="/regional/", times=-1)
    result = await make(env, max_attempts=2).fetch(["GB", "GB-REGION-13"], AT)
    assert {r.zone for r in result.readings} == {"GB"}
    assert any(reason.startswith("GB-REGION-13:") and "500" in reason for reason in result.rejected)


async def test_everything_failing_raises(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("503"), times=-1)
    with pytest.raises(UnavailableError):
        await make(env, max_attempts=1).fetch(["GB", "GB-REGION-13"], AT)


@pytest.mark.parametrize("status", ["401", "403"])
async def test_auth_failures_from_a_proxy_are_auth_errors(env: Env, status: str) -> None:
    # The API has no auth, but egress proxies and WAFs in front of it do answer 401/403.
    emu = env[0]
    emu.fail(Fault(status), times=-1)
    with pytest.raises(AuthError, match=status):
        await make(env).fetch(["GB", "GB-REGION-13"], AT)


async def test_429_retry_after_and_long_429(env: Env) -> None:
    emu, clock = env[0], env[3]
    emu.fail(Fault("429", retry_after="2"), times=1)
    result = await make(env).fetch(["GB"], AT)
    assert result.readings
    assert clock.sleeps == [2.0]
    emu.fail(Fault("429", retry_after="3600"), times=-1)
    with pytest.raises(RateLimitedError):
        await make(env).fetch(["GB"], AT)


@pytest.mark.parametrize("kind", ["truncated", "malformed"])
async def test_bad_json(env: Env, kind: str) -> None:
    emu = env[0]
    emu.fail(Fault(kind), times=-1)
    with pytest.raises(MalformedError):
        await make(env).fetch(["GB"], AT)


async def test_timeout(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("slow", delay=2.0), times=-1)
    with pytest.raises(UnavailableError) as info:
        await make(env, request_timeout=0.2, max_attempts=1).fetch(["GB"], AT)
    assert info.value.outcome == "timeout"


@pytest.mark.parametrize("value", [float("nan"), -40, 1e9])
async def test_out_of_range_actuals_are_dropped(env: Env, value: float) -> None:
    emu = env[0]
    emu.values["GB"] = value
    result = await make(env).fetch(["GB"], AT)
    assert [r.estimated for r in observations(result.readings, "GB")] == [True]
    assert len(result.rejected) == 2  # both past actuals
    assert len([r for r in result.readings if r.forecast]) == 94


@pytest.mark.parametrize("bad", [{"x": 0}, {"x": 18}, {"x": "scotland"}, ["FR"]])
def test_config_errors(env: Env, bad: Any) -> None:
    _, options, session, _ = env
    with pytest.raises(ConfigError):
        build_provider("ukgrid", "uk", {**options, "zones": bad}, session, None)
