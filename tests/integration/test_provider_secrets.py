"""Secrets: read from files or env, never in repr, str, f-strings, logs, exceptions or pickles."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from carbon_common.jsonlog import JsonFormatter
from carbon_feed.http import AuthError
from carbon_feed.providers import build_provider
from carbon_feed.secrets import MASK, Secret, SecretError, load_secret, redact
from tests.fakes.provider_emulators import NOW, ElectricityMapsEmulator

VALUE = "s3cr3t-VALUE-9f8e"


def test_secret_never_prints_its_value() -> None:
    secret = Secret(VALUE)
    for text in (
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        "%s" % (secret,),  # noqa: UP031 - the %-operator is one of the leak paths tested
        json.dumps(str(secret)),
    ):
        assert VALUE not in text
    assert secret.reveal() == VALUE
    assert secret == Secret(VALUE)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(SecretError):
        Secret("")


def test_load_from_file_strips_the_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "t").write_text(VALUE + "\n")
    secret = load_secret({"token_file": str(tmp_path / "t")}, "token")
    assert secret is not None
    assert secret.reveal() == VALUE


def test_load_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SECRET_TOKEN", VALUE)
    secret = load_secret({"token_env": "TEST_SECRET_TOKEN"}, "token")
    assert secret is not None
    assert secret.reveal() == VALUE


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token": VALUE}, "inline secrets"),
        ({"token_file": "/nonexistent/x", "token_env": "X"}, "only one"),
        ({"token_env": "TEST_SECRET_UNSET_VAR"}, "unset or empty"),
        ({}, "required"),
    ],
)
def test_bad_secret_config_never_echoes_the_value(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SecretError, match=message) as info:
        load_secret(options, "token")
    assert VALUE not in str(info.value)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("\n")
    with pytest.raises(SecretError, match="empty"):
        load_secret({"token_file": str(tmp_path / "t")}, "token")


def test_optional_secret_may_be_absent() -> None:
    assert load_secret({}, "token", required=False) is None


def test_redact_masks_known_values_and_bearer_tokens() -> None:
    text = redact(f"echo {VALUE} and Authorization: Bearer abc.def-ghi", [Secret(VALUE), None])
    assert VALUE not in text
    assert "abc.def-ghi" not in text
    assert text.count(MASK) == 2


async def test_provider_failures_and_logs_carry_no_token(
    aiohttp_server: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emu = ElectricityMapsEmulator(token="rotated-on-server")
    server = await aiohttp_server(emu.app())
    (tmp_path / "token").write_text(VALUE)
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as session:
        provider = build_provider(
            "electricitymaps",
            "em",
            {"base_url": f"http://127.0.0.1:{server.port}", "token_file": str(tmp_path / "token")},
            session,
            None,
        )
        with pytest.raises(AuthError) as info:
            await provider.fetch(["DE"], NOW)
    assert emu.requests[0].headers["auth-token"] == VALUE  # it was sent...
    formatter = JsonFormatter()
    rendered = [formatter.format(record) for record in caplog.records]
    for text in (repr(provider), str(info.value), repr(info.value), caplog.text, *rendered):
        assert VALUE not in text  # ...and never shown
