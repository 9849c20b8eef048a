"""The CLI: every settings field is a flag and an environment variable, with validation."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import pytest

from carbon_common.settings import ConfigError, field_docs
from extender.__main__ import build_parser, event_loop_factory, main, parse_settings
from extender.settings import ExtenderSettings


def test_defaults_match_the_dataclass() -> None:
    assert parse_settings([], env={}) == ExtenderSettings()


def test_every_field_has_a_flag_env_var_and_help() -> None:
    text = build_parser().format_help()
    docs = field_docs(ExtenderSettings)
    for f in fields(ExtenderSettings):
        assert "--" + f.name.replace("_", "-") in text
        assert "CARBON_EXTENDER_" + f.name.upper() in text
        assert f.name in docs, f"{f.name} has no docstring for --help"


def test_flags_env_and_precedence() -> None:
    env = {
        "CARBON_EXTENDER_MAX_DATA_AGE": "600",
        "CARBON_EXTENDER_PORT": "9000",
        "CARBON_EXTENDER_ANNOTATE_DECISION": "false",
        "CARBON_EXTENDER_SNAPSHOT_FILE": "/data/snapshot.json",
        "CARBON_EXTENDER_SCORING": "absolute",
    }
    s = parse_settings(["--port", "9100", "--cap-unknown", "deny"], env=env)
    assert s.max_data_age == 600.0
    assert s.port == 9100  # flag beats env
    assert s.annotate_decision is False
    assert s.snapshot_file == Path("/data/snapshot.json")
    assert s.scoring == "absolute"
    assert s.cap_unknown == "deny"
    assert parse_settings(["--annotate-decision"], env=env).annotate_decision is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CARBON_EXTENDER_PORT": "http"}, "CARBON_EXTENDER_PORT"),
        ({"CARBON_EXTENDER_ANNOTATE_DECISION": "perhaps"}, "true or false"),
        ({"CARBON_EXTENDER_SCORING": "vibes"}, "relative, absolute"),
    ],
)
def test_bad_env_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings([], env=env)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key"),
        (["--client-ca", "ca.pem"], "--client-ca"),
        (["--snapshot-file", "a", "--feed-url", "http://x"], "not both"),
        (["--feed-url", "feed:8080"], "--feed-url"),
        (["--neutral-score", "11"], "--neutral-score"),
        (["--absolute-best", "900"], "--absolute-best"),
        (["--max-data-age", "0"], "--max-data-age"),
        (["--log-level", "loud"], "--log-level"),
        (["--api-connections", "1"], "--api-connections"),
    ],
)
def test_invalid_combinations(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(argv, env={})


def test_main_reports_bad_settings_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--neutral-score", "42"]) == 2
    assert "--neutral-score" in capsys.readouterr().err


def test_event_loop_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvloop

    assert event_loop_factory("asyncio") is None
    assert event_loop_factory("auto") is uvloop.new_event_loop
    assert event_loop_factory("uvloop") is uvloop.new_event_loop
    # Without uvloop, auto falls back to asyncio's loop and an explicit uvloop is an error.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert event_loop_factory("auto") is None
    with pytest.raises(ImportError):
        event_loop_factory("uvloop")
    assert parse_settings(["--event-loop", "asyncio"], env={}).event_loop == "asyncio"
    with pytest.raises(ConfigError, match="EVENT_LOOP"):
        parse_settings([], env={"CARBON_EXTENDER_EVENT_LOOP": "trio"})
