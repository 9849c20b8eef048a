"""GSF Carbon Aware SDK WebAPI provider against its loopback emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from carbon_feed.http import AuthError, MalformedError, RateLimitedError, UnavailableError
from carbon_feed.providers import ConfigError, Runtime, build_provider
from carbon_feed.providers.carbonaware_sdk import sdk_duration_seconds
from carbon_feed.validate import InvalidValue
from tests.fakes.clock import FakeClock
from tests.fakes.provider_emulators import NOW, CarbonAwareSdkEmulator, Fault

Env = tuple[CarbonAwareSdkEmulator, dict[str, Any], aiohttp.ClientSession, FakeClock]


@pytest.fixture
async def env(aiohttp_server: Callable[..., Any]) -> AsyncIterator[Env]:
    emu = CarbonAwareSdkEmulator()
    server = await aiohttp_server(emu.app())
    options = {
        "base_url": f"http://127.0.0.1:{server.port}",
        "zones": {"US-EAST": "eastus", "NL": "westeurope"},
    }
    async with aiohttp.ClientSession() as session:
        yield emu, options, session, FakeClock()


def make(env: Env, **extra: Any) -> Any:
    _, options, session, clock = env
    runtime = Runtime(clock=clock, sleep=clock.sleep, rng=lambda: 0.5)
    return build_provider("carbonaware_sdk", "sdk", {**options, **extra}, session, None, runtime=runtime)


async def test_emissions_and_forecast_in_one_request_each(env: Env) -> None:
    emu = env[0]
    result = await make(env).fetch(["US-EAST", "NL"], NOW)
    assert result.rejected == ()
    now = {r.zone: r for r in result.readings if not r.forecast}
    assert now["US-EAST"].value == 410.0
    assert now["US-EAST"].period_seconds == 3600  # "01:00:00"
    assert now["NL"].signal == "marginal"  # the documented default
    forecast = [r for r in result.readings if r.forecast and r.zone == "NL"]
    assert len(forecast) == 12
    assert all(r.period_seconds == 300 and r.issued_at == NOW for r in forecast)
    emissions = emu.calls("/emissions/bylocations")
    assert len(emissions) == 1
    assert emissions[0].query["location"] == ["eastus", "westeurope"]
    assert emissions[0].query["toTime"] == ["2026-11-22T10:00:00Z"]
    assert len(emu.calls("/emissions/forecasts/current")) == 1


async def test_signal_option_marks_average(env: Env) -> None:
    result = await make(env, signal="average", forecast=False).fetch(["NL"], NOW)
    assert {r.signal for r in result.readings} == {"average"}


async def test_missing_location_is_reported(env: Env) -> None:
    emu = env[0]
    emu.missing.add("westeurope")
    result = await make(env).fetch(["US-EAST", "NL"], NOW)
    assert {r.zone for r in result.readings} == {"US-EAST"}
    assert set(result.rejected) == {
        "NL: no emissions data in the response",
        "NL: no forecast data in the response",
    }


async def test_forecast_failure_keeps_emissions(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("500"), path="/emissions/forecasts", times=-1)
    result = await make(env, max_attempts=1).fetch(["US-EAST"], NOW)
    assert [r.forecast for r in result.readings] == [False]
    assert any("500" in reason for reason in result.rejected)


@pytest.mark.parametrize(("kind", "error"), [("503", UnavailableError), ("truncated", MalformedError)])
async def test_total_failure_raises(env: Env, kind: str, error: type[Exception]) -> None:
    emu = env[0]
    emu.fail(Fault(kind), times=-1)
    with pytest.raises(error):
        await make(env, max_attempts=1).fetch(["US-EAST"], NOW)


async def test_401_and_403_raise_auth_error(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("401"), times=-1)
    with pytest.raises(AuthError):
        await make(env).fetch(["US-EAST"], NOW)
    emu._faults.clear()
    emu.fail(Fault("403"), times=-1)
    with pytest.raises(AuthError):
        await make(env).fetch(["US-EAST"], NOW)


async def test_rate_limit_and_timeout(env: Env) -> None:
    emu, clock = env[0], env[3]
    emu.fail(Fault("429", retry_after="5"), times=1)
    assert (await make(env).fetch(["US-EAST"], NOW)).readings
    assert clock.sleeps == [5.0]
    emu.fail(Fault("429", retry_after="999"), times=-1)
    with pytest.raises(RateLimitedError):
        await make(env).fetch(["US-EAST"], NOW)
    emu._faults.clear()
    emu.fail(Fault("slow", delay=2.0), times=-1)
    with pytest.raises(UnavailableError):
        await make(env, request_timeout=0.2, max_attempts=1).fetch(["US-EAST"], NOW)


@pytest.mark.parametrize("value", [float("nan"), -3, 1e9, None])
async def test_bad_ratings_are_rejected(env: Env, value: Any) -> None:
    emu = env[0]
    emu.values["eastus"] = value
    result = await make(env, forecast=False).fetch(["US-EAST", "NL"], NOW)
    assert [r.zone for r in result.readings] == ["NL"]
    assert len(result.rejected) == 1
    assert result.rejected[0].startswith("US-EAST at")


@pytest.mark.parametrize(
    ("value", "seconds"), [("00:05:00", 300), ("01:00:00", 3600), ("1.00:00:00", 86400), (5, 300), (60, 3600)]
)
def test_sdk_durations(value: Any, seconds: int) -> None:
    assert sdk_duration_seconds(value) == seconds


@pytest.mark.parametrize("value", ["PT5M", "00:00:00", 0, None, True])
def test_sdk_durations_refused(value: Any) -> None:
    with pytest.raises(InvalidValue):
        sdk_duration_seconds(value)


def test_base_url_is_required(env: Env) -> None:
    session = env[2]
    with pytest.raises(ConfigError, match="base_url is required"):
        build_provider("carbonaware_sdk", "sdk", {}, session, None)
    with pytest.raises(ConfigError, match="signal"):
        build_provider(
            "carbonaware_sdk", "sdk", {"base_url": "http://127.0.0.1:1", "signal": "index"}, session, None
        )
