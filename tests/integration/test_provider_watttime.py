"""WattTime v3 provider against its loopback emulator: login, token refresh, MOER units, signal index."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from carbon_feed.http import AuthError, MalformedError, RateLimitedError, UnavailableError
from carbon_feed.providers import ConfigError, Runtime, build_provider
from carbon_feed.providers.watttime import WattTimeProvider
from carbon_feed.validate import LBS_PER_MWH_TO_G_PER_KWH
from tests.fakes.clock import FakeClock
from tests.fakes.provider_emulators import NOW, Fault, WattTimeEmulator

Env = tuple[WattTimeEmulator, dict[str, Any], aiohttp.ClientSession, FakeClock]


@pytest.fixture
async def env(
    aiohttp_server: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Env]:
    emu = WattTimeEmulator()
    server = await aiohttp_server(emu.app())
    (tmp_path / "password").write_text(emu.password)
    monkeypatch.setenv("TEST_WT_USER", emu.username)
    options = {
        "base_url": f"http://127.0.0.1:{server.port}",
        "username_env": "TEST_WT_USER",
        "password_file": str(tmp_path / "password"),
        "zones": {"US-CAL-CISO": "CAISO_NORTH", "US-MIDA-PJM": "PJM_DC"},
        "horizon_hours": 1,
    }
    async with aiohttp.ClientSession() as session:
        yield emu, options, session, FakeClock()


def make(env: Env, **extra: Any) -> WattTimeProvider:
    _, options, session, clock = env
    provider = build_provider(
        "watttime",
        "wt",
        {**options, **extra},
        session,
        None,
        runtime=Runtime(clock=clock, sleep=clock.sleep, rng=lambda: 0.5),
    )
    assert isinstance(provider, WattTimeProvider)
    return provider


async def test_moer_becomes_marginal_grams_per_kwh(env: Env) -> None:
    emu = env[0]
    result = await make(env).fetch(["US-CAL-CISO"], NOW)
    assert result.rejected == ()
    assert {r.signal for r in result.readings} == {"marginal"}
    history = sorted((r for r in result.readings if not r.forecast), key=lambda r: r.start)
    forecast = sorted((r for r in result.readings if r.forecast), key=lambda r: r.start)
    assert len(history) == 12
    assert len(forecast) == 12
    assert forecast[0].value == pytest.approx(900 * LBS_PER_MWH_TO_G_PER_KWH)
    assert history[-1].value == pytest.approx(901 * LBS_PER_MWH_TO_G_PER_KWH)
    assert all(r.period_seconds == 300 for r in result.readings)
    assert forecast[0].issued_at == NOW  # meta.generated_at
    hist_call = emu.calls("/v3/historical")[0]
    assert hist_call.query["region"] == ["CAISO_NORTH"]
    assert hist_call.query["start"] == ["2026-11-22T09:00:00Z"]
    assert emu.calls("/v3/forecast")[0].query["horizon_hours"] == ["1"]


async def test_signal_index_stays_an_index(env: Env) -> None:
    result = await make(env, signal_index=True, horizon_hours=0, history_minutes=0).fetch(
        ["US-CAL-CISO"], NOW
    )
    assert [(r.signal, r.value) for r in result.readings] == [("index", 42.0)]


async def test_aoer_is_an_average_signal(env: Env) -> None:
    result = await make(env, signal_type="co2_aoer", horizon_hours=0).fetch(["US-CAL-CISO"], NOW)
    assert {r.signal for r in result.readings} == {"average"}


async def test_logs_in_once_and_reuses_the_token(env: Env) -> None:
    emu = env[0]
    provider = make(env)
    await provider.fetch(["US-CAL-CISO", "US-MIDA-PJM"], NOW)
    await provider.fetch(["US-CAL-CISO"], NOW)
    assert emu.logins == 1
    assert provider.logins == 1


async def test_token_is_refreshed_before_it_expires(env: Env) -> None:
    emu, clock = env[0], env[3]
    provider = make(env)
    await provider.fetch(["US-CAL-CISO"], NOW)
    clock.t += 24 * 60  # 24 minutes: still well inside the 30 min validity
    await provider.fetch(["US-CAL-CISO"], NOW)
    assert emu.logins == 1
    clock.t += 2 * 60  # 26 minutes: inside the 5 min refresh margin
    await provider.fetch(["US-CAL-CISO"], NOW)
    assert emu.logins == 2
    # every data request carried a token the emulator had issued: no request was wasted on a 401
    assert len(emu.calls("/v3/")) == 6


async def test_401_triggers_one_relogin_and_the_request_is_repeated(env: Env) -> None:
    emu = env[0]
    provider = make(env)
    await provider.fetch(["US-CAL-CISO"], NOW)
    emu.expire_tokens()  # revoked server-side, before our own expiry
    result = await provider.fetch(["US-CAL-CISO"], NOW)
    assert len(result.readings) == 24
    assert emu.logins == 2


async def test_persistent_401_is_an_auth_error_not_a_login_loop(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("401"), path="/v3/", times=-1)
    with pytest.raises(AuthError, match="401"):
        await make(env).fetch(["US-CAL-CISO", "US-MIDA-PJM"], NOW)
    assert emu.logins == 2


async def test_wrong_password_is_an_auth_error(env: Env) -> None:
    emu = env[0]
    emu.password = "changed"
    with pytest.raises(AuthError, match="/login"):
        await make(env).fetch(["US-CAL-CISO"], NOW)
    assert emu.calls("/v3") == []


async def test_concurrent_fetches_share_one_login(env: Env) -> None:
    emu = env[0]
    provider = make(env)
    await asyncio.gather(*(provider.fetch(["US-CAL-CISO"], NOW) for _ in range(5)))
    assert emu.logins == 1


async def test_region_outside_the_plan_is_a_per_zone_rejection(env: Env) -> None:
    emu = env[0]
    emu.forbidden.add("PJM_DC")
    result = await make(env).fetch(["US-CAL-CISO", "US-MIDA-PJM"], NOW)
    assert {r.zone for r in result.readings} == {"US-CAL-CISO"}
    assert any(reason.startswith("US-MIDA-PJM:") and "403" in reason for reason in result.rejected)


async def test_429_on_login_is_waited_out_using_retry_after(env: Env) -> None:
    emu, clock = env[0], env[3]
    emu.fail(Fault("429", retry_after="3"), path="/login", times=1)
    result = await make(env).fetch(["US-CAL-CISO"], NOW)
    assert len(result.readings) == 24
    assert 3.0 in clock.sleeps


async def test_long_429_is_raised(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("429", retry_after="600"), path="/v3/", times=-1)
    with pytest.raises(RateLimitedError):
        await make(env).fetch(["US-CAL-CISO"], NOW)


async def test_login_rate_limit_is_enforced_client_side(env: Env) -> None:
    emu = env[0]
    provider = make(env, login_rate_limit={"requests": 2, "per_seconds": 300, "burst": 1}, max_attempts=1)
    await provider.fetch(["US-CAL-CISO"], NOW)
    emu.expire_tokens()
    # the re-login would need a token the login bucket has not refilled yet (1 per 300 s)
    with pytest.raises(RateLimitedError, match="client-side rate limit"):
        await provider.fetch(["US-CAL-CISO"], NOW)
    assert emu.logins == 1


async def test_5xx_and_timeouts(env: Env) -> None:
    emu = env[0]
    emu.fail(Fault("500"), path="/v3/", times=-1)
    with pytest.raises(UnavailableError, match="500"):
        await make(env, max_attempts=2).fetch(["US-CAL-CISO"], NOW)
    emu._faults.clear()
    emu.fail(Fault("slow", delay=2.0), path="/v3/", times=-1)
    with pytest.raises(UnavailableError) as info:
        await make(env, max_attempts=1, request_timeout=0.2).fetch(["US-CAL-CISO"], NOW)
    assert info.value.outcome == "timeout"


@pytest.mark.parametrize("kind", ["truncated", "malformed"])
async def test_bad_json(env: Env, kind: str) -> None:
    emu = env[0]
    emu.fail(Fault(kind), path="/v3/historical", times=-1)
    with pytest.raises(MalformedError):
        await make(env, horizon_hours=0).fetch(["US-CAL-CISO"], NOW)


async def test_unknown_region_is_rejected_others_kept(env: Env) -> None:
    emu = env[0]
    emu.missing.add("PJM_DC")
    result = await make(env).fetch(["US-CAL-CISO", "US-MIDA-PJM"], NOW)
    assert {r.zone for r in result.readings} == {"US-CAL-CISO"}
    assert any(reason.startswith("US-MIDA-PJM:") and "400" in reason for reason in result.rejected)


@pytest.mark.parametrize("value", [float("nan"), -1, 1e9])
async def test_out_of_range_values_are_dropped(env: Env, value: float) -> None:
    emu = env[0]
    emu.values["CAISO_NORTH"] = value
    result = await make(env).fetch(["US-CAL-CISO"], NOW)
    assert len(result.readings) == 22  # one history and one forecast point dropped
    assert len(result.rejected) == 2


async def test_secrets_never_appear_in_logs_errors_or_repr(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    emu = env[0]
    provider = make(env, max_attempts=2)
    caplog.set_level(logging.DEBUG)
    await provider.fetch(["US-CAL-CISO"], NOW)
    token = next(iter(emu.tokens))
    emu.fail(Fault("503"), path="/v3/", times=-1)
    with pytest.raises(UnavailableError) as info:
        await provider.fetch(["US-CAL-CISO"], NOW)
    texts = [repr(provider), str(provider), str(info.value), repr(info.value), caplog.text]
    texts += [str(vars(record)) for record in caplog.records]
    for text in texts:
        assert emu.password not in text
        assert token not in text
    assert "***" in repr(provider)


def test_config_errors(env: Env) -> None:
    _, options, session, _ = env
    with pytest.raises(ConfigError, match="inline secrets"):
        build_provider("watttime", "wt", {**options, "password": "hunter2"}, session, None)
    with pytest.raises(ConfigError, match="signal_type"):
        build_provider("watttime", "wt", {**options, "signal_type": "health_damage"}, session, None)
    with pytest.raises(ConfigError, match="horizon_hours"):
        build_provider("watttime", "wt", {**options, "horizon_hours": 100}, session, None)
    with pytest.raises(ConfigError, match="refresh_margin"):
        build_provider("watttime", "wt", {**options, "refresh_margin": 4000}, session, None)
    with pytest.raises(ConfigError, match="TEST_WT_NOPE"):
        build_provider("watttime", "wt", {**options, "username_env": "TEST_WT_NOPE"}, session, None)
