"""Electricity Maps v3 provider against its loopback emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from carbon_feed.http import AuthError, MalformedError, RateLimitedError, UnavailableError
from carbon_feed.providers import ConfigError, Runtime, build_provider
from tests.fakes.clock import FakeClock
from tests.fakes.provider_emulators import NOW, ElectricityMapsEmulator, Fault

Env = tuple[
    ElectricityMapsEmulator, dict[str, Any], aiohttp.ClientSession, FakeClock, list[tuple[str, str, float]]
]


@pytest.fixture
async def env(aiohttp_server: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Env]:
    emu = ElectricityMapsEmulator()
    server = await aiohttp_server(emu.app())
    token_file = tmp_path / "em-token"
    token_file.write_text(emu.token + "\n")
    options = {
        "base_url": f"http://127.0.0.1:{server.port}",
        "token_file": str(token_file),
        "zones": ["DE", "FR"],
    }
    async with aiohttp.ClientSession() as session:
        yield emu, options, session, FakeClock(), []


def make(env: Env, **extra: Any) -> Any:
    _, options, session, clock, outcomes = env
    return build_provider(
        "electricitymaps",
        "em",
        {**options, **extra},
        session,
        lambda name, outcome, seconds: outcomes.append((name, outcome, seconds)),
        runtime=Runtime(clock=clock, sleep=clock.sleep, rng=lambda: 0.5),
    )


async def test_latest_history_and_forecast(env: Env) -> None:
    emu = env[0]
    result = await make(env).fetch(["DE", "FR"], NOW)
    assert result.rejected == ()
    de = [r for r in result.readings if r.zone == "DE"]
    latest = [r for r in de if not r.forecast and r.start == NOW]
    assert len(latest) == 1
    assert latest[0].value == 380.0
    assert latest[0].estimated is True
    assert latest[0].signal == "average"
    assert latest[0].period_seconds == 3600
    assert latest[0].revised_at is not None  # updatedAt kept so later revisions win
    assert len([r for r in de if not r.forecast]) == 25  # latest + 24 h of history
    forecast = [r for r in de if r.forecast]
    assert len(forecast) == 24
    assert all(r.issued_at is not None and r.issued_at < r.start for r in forecast)
    assert {r.provider for r in result.readings} == {"em"}
    latest_calls = emu.calls("/v3/carbon-intensity/latest")
    assert [c.query["zone"] for c in latest_calls] == [["DE"], ["FR"]]
    assert all(c.query["shouldUseFallbackCallerLookup"] == ["false"] for c in emu.requests)


async def test_zone_mapping_sends_the_provider_id(env: Env) -> None:
    emu = env[0]
    result = await make(env, zones={"germany": "DE"}, history=False, forecast=False).fetch(
        ["germany", "XX"], NOW
    )
    assert [r.zone for r in result.readings] == ["germany"]
    assert any("XX: not in this provider's zones mapping" in reason for reason in result.rejected)
    assert emu.calls("/v3")[0].query["zone"] == ["DE"]


async def test_wrong_token_is_an_auth_error(env: Env) -> None:
    emu = env[0]
    emu.token = "rotated"
    with pytest.raises(AuthError, match="HTTP 401"):
        await make(env).fetch(["DE", "FR"], NOW)
    assert len(emu.requests) == 2  # once per zone, no retries


async def test_zone_outside_the_plan_does_not_hide_the_others(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("403"), path="/v3/carbon-intensity/latest", times=1)  # first zone: DE
    result = await make(env, history=False, forecast=False).fetch(["DE", "FR"], NOW)
    assert [r.zone for r in result.readings] == ["FR"]
    assert any(reason.startswith("DE:") and "403" in reason for reason in result.rejected)


async def test_403_on_forecast_keeps_the_latest_value(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("403"), path="/v3/carbon-intensity/forecast", times=-1)
    result = await make(env).fetch(["DE"], NOW)
    assert any(r.start == NOW and not r.forecast for r in result.readings)
    assert not any(r.forecast for r in result.readings)
    assert any("forecast" in reason and "403" in reason for reason in result.rejected)


async def test_429_with_retry_after_is_waited_out(env: Env) -> None:
    emu, clock, outcomes = env[0], env[3], env[4]
    emu.fail(Fault("429", retry_after="4"), path="/v3/carbon-intensity/latest", times=1)
    result = await make(env, history=False, forecast=False).fetch(["DE"], NOW)
    assert [r.value for r in result.readings] == [380.0]
    assert clock.sleeps == [4.0]
    assert [o[1] for o in outcomes] == ["http_429", "ok"]


async def test_long_rate_limit_is_raised_with_its_retry_after(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("429", retry_after="900"), path="/v3/", times=-1)
    with pytest.raises(RateLimitedError) as info:
        await make(env).fetch(["DE", "FR"], NOW)
    assert info.value.retry_after == 900.0


async def test_5xx_everywhere_is_unavailable(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("503"), times=-1)
    with pytest.raises(UnavailableError, match="503"):
        await make(env, max_attempts=2).fetch(["DE", "FR"], NOW)


async def test_one_zone_failing_does_not_lose_the_other(env: Env) -> None:
    emu = env[0]
    emu.missing.add("FR")
    result = await make(env, history=False, forecast=False).fetch(["DE", "FR"], NOW)
    assert [r.zone for r in result.readings] == ["DE"]
    assert any(reason.startswith("FR:") and "404" in reason for reason in result.rejected)


async def test_unreachable_host_is_not_waited_out_once_per_zone(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("slow", delay=2.0), path="/v3/carbon-intensity/latest", times=-1)
    provider = make(env, request_timeout=0.2, max_attempts=1, history=False, forecast=False)
    with pytest.raises(UnavailableError):
        await provider.fetch(["DE", "FR"], NOW)
    assert len(emu.requests) == 1


async def test_timeout_after_a_good_zone_keeps_it_and_skips_the_rest(env: Env) -> None:
    emu = env[0]
    emu.zones["PL"] = 700.0
    emu.fail(Fault("slow", delay=2.0), path="/v3/carbon-intensity/latest", times=-1, zone="FR")
    provider = make(env, request_timeout=0.2, max_attempts=1, history=False, forecast=False, zones=None)
    result = await provider.fetch(["DE", "FR", "PL"], NOW)
    assert [r.zone for r in result.readings] == ["DE"]
    assert result.rejected[1] == "PL: skipped after a timeout on FR"
    assert [c.query["zone"] for c in emu.requests] == [["DE"], ["FR"]]


async def test_slow_responses_time_out(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("slow", delay=2.0), times=-1)
    with pytest.raises(UnavailableError) as info:
        await make(env, request_timeout=0.2, max_attempts=1).fetch(["DE"], NOW)
    assert info.value.outcome == "timeout"


@pytest.mark.parametrize("kind", ["truncated", "malformed"])
async def test_bad_json_is_malformed(env: Env, kind: str) -> None:
    emu = env[0]
    emu.fail(Fault(kind), path="/v3/carbon-intensity/latest", times=-1)
    with pytest.raises(MalformedError):
        await make(env).fetch(["DE"], NOW)


@pytest.mark.parametrize("value", [float("nan"), -12, 1e9, None, "NaN"])
async def test_out_of_range_latest_is_rejected_history_kept(env: Env, value: Any) -> None:
    emu = env[0]
    emu.values["DE"] = value
    result = await make(env, forecast=False).fetch(["DE"], NOW)
    assert not any(r.start == NOW for r in result.readings)
    assert len(result.readings) == 24
    assert len(result.rejected) == 1
    assert result.rejected[0].startswith("DE at 2026-11-22T10:00:00.000Z")


async def test_answer_for_another_zone_is_refused(env: Env) -> None:
    emu = env[0]
    emu.zones["FR"] = 55.0
    original = emu._point
    emu._point = lambda zone, *a, **k: original("FR", *a, **k)  # type: ignore[method-assign]
    with pytest.raises(MalformedError, match="asked for zone 'DE', got 'FR'"):
        await make(env, history=False, forecast=False).fetch(["DE"], NOW)


def test_config_errors(env: Env, tmp_path: Path) -> None:
    _, options, session, _, _ = env
    with pytest.raises(ConfigError, match="inline secrets"):
        build_provider("electricitymaps", "em", {**options, "token": "abc"}, session, None)
    with pytest.raises(ConfigError, match="unknown option"):
        build_provider("electricitymaps", "em", {**options, "tokn_file": "x"}, session, None)
    missing = {k: v for k, v in options.items() if k != "token_file"}
    with pytest.raises(ConfigError, match="token is required"):
        build_provider("electricitymaps", "em", missing, session, None)
    with pytest.raises(ConfigError, match="cannot read"):
        build_provider(
            "electricitymaps", "em", {**options, "token_file": str(tmp_path / "nope")}, session, None
        )
    with pytest.raises(ConfigError, match="http"):
        build_provider("electricitymaps", "em", {**options, "base_url": "ftp://x"}, session, None)
    with pytest.raises(ConfigError, match="unknown kind"):
        build_provider("electricitymapz", "em", options, session, None)
