"""build_provider: every kind from a minimal config entry, extension kinds, the observer contract."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from carbon_feed.http import OUTCOMES
from carbon_feed.model import FetchResult, Provider
from carbon_feed.providers import PROVIDER_KINDS, ConfigError, Runtime, build_provider, register_kind
from tests.fakes.provider_emulators import NOW, Fault, UkGridEmulator


async def test_every_kind_builds_from_a_minimal_entry(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    (tmp_path / "zones.yaml").write_text("FR: 55\n")
    entries: dict[str, dict[str, Any]] = {
        "electricitymaps": {"token_file": str(tmp_path / "token"), "zones": ["DE"]},
        "watttime": {
            "username_file": str(tmp_path / "token"),
            "password_file": str(tmp_path / "token"),
            "zones": {"US-CAL-CISO": "CAISO_NORTH"},
        },
        "ukgrid": {"zones": ["GB"]},
        "carbonaware_sdk": {"base_url": "http://127.0.0.1:1", "zones": ["eastus"]},
        "static": {"path": str(tmp_path / "zones.yaml"), "zones": ["FR"]},
    }
    async with aiohttp.ClientSession() as session:
        for kind, options in entries.items():
            provider = build_provider(kind, f"p-{kind}", options, session, None)
            assert provider.name == f"p-{kind}"
    assert set(entries) | {"replay"} <= set(PROVIDER_KINDS)


async def test_unknown_kind_and_bad_options() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match="unknown kind 'nope'"):
            build_provider("nope", "x", {}, session, None)
        with pytest.raises(ConfigError, match="options must be a mapping"):
            build_provider("ukgrid", "x", ["GB"], session, None)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=r"provider 'x' \(ukgrid\): ukgrid: unknown option"):
            build_provider("ukgrid", "x", {"zones": ["GB"], "timeout": 3}, session, None)


class Fixed:
    def __init__(self, name: str) -> None:
        self.name = name

    async def fetch(self, zones: Any, now: datetime) -> FetchResult:
        return FetchResult()


async def test_other_modules_can_register_kinds() -> None:
    def factory(
        name: str, options: Mapping[str, Any], session: aiohttp.ClientSession, observer: Any, rt: Runtime
    ) -> Provider:
        return Fixed(name)

    register_kind("test-fixed", factory)
    try:
        async with aiohttp.ClientSession() as session:
            built = build_provider("test-fixed", "mine", {}, session, None)
        assert isinstance(built, Fixed)
        assert built.name == "mine"
        with pytest.raises(ValueError, match="already registered"):
            register_kind("test-fixed", factory)
    finally:
        del PROVIDER_KINDS["test-fixed"]


async def test_observer_sees_every_attempt_with_a_known_outcome(aiohttp_server: Callable[..., Any]) -> None:
    emu = UkGridEmulator()
    server = await aiohttp_server(emu.app())
    seen: list[tuple[str, str, float]] = []

    async def no_wait(seconds: float) -> None:
        return None

    emu.fail(Fault("503"), times=1)
    emu.fail(Fault("429", retry_after="1"), times=1)
    async with aiohttp.ClientSession() as session:
        provider = build_provider(
            "ukgrid",
            "uk",
            {"base_url": f"http://127.0.0.1:{server.port}", "zones": ["GB"]},
            session,
            lambda *args: seen.append(args),
            runtime=Runtime(sleep=no_wait),
        )
        await provider.fetch(["GB"], NOW)
    assert [(name, outcome) for name, outcome, _ in seen] == [
        ("uk", "http_5xx"),
        ("uk", "http_429"),
        ("uk", "ok"),
    ]
    assert all(outcome in OUTCOMES and seconds >= 0 for _, outcome, seconds in seen)
