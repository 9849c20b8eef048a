"""Feed settings: precedence, validation messages, and secrets that never show."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from carbon_feed.config import ConfigError, FeedSettings, load_settings


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "feed.yaml"
    path.write_text(text)
    return str(path)


def test_no_config_replays_the_embedded_trace() -> None:
    settings = load_settings(None, {}, environ={})
    assert settings.port == 8080
    assert [(p.kind, p.name) for p in settings.providers] == [("replay", "replay")]
    assert settings.providers[0].options == {}


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 9000\nhost: 0.0.0.0\nlog_level: debug\nrefresh_interval_seconds: 5m\n")
    env = {"CARBON_FEED_PORT": "9100", "CARBON_FEED_DB": "/tmp/x.sqlite"}
    settings = load_settings(path, {"port": "9200", "host": None}, environ=env)
    assert settings.port == 9200  # flag beats env beats file
    assert settings.host == "0.0.0.0"  # file, no env or flag
    assert settings.db == "/tmp/x.sqlite"  # env
    assert settings.refresh_interval_seconds == 300.0


def test_config_path_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 9300\n")
    assert load_settings(None, {}, environ={"CARBON_FEED_CONFIG": path}).port == 9300


def test_providers_are_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
providers:
  - kind: electricitymaps
    name: em
    interval: 10m
    options: {zones: [DE, FR], token_file: /run/secrets/em}
  - kind: replay
    options: {speed: 3600}
""",
    )
    settings = load_settings(path, {}, environ={})
    em, replay = settings.providers
    assert (em.kind, em.name, em.interval_seconds, em.zones) == ("electricitymaps", "em", 600.0, ["DE", "FR"])
    assert (replay.name, replay.options, replay.zones) == ("replay", {"speed": 3600}, [])


def test_enabled_and_interval_are_the_feeds_wherever_they_are_written(tmp_path: Path) -> None:
    # Once accepted among the options and ignored: a disabled provider still ran, at the default pace.
    path = write(
        tmp_path,
        """
providers:
  - {kind: watttime, name: wt, options: {zones: [CAISO], enabled: false, interval: 15m}}
  - {kind: ukgrid, name: uk, enabled: true, interval: 30m, options: {zones: [GB]}}
  - {kind: replay, name: demo, options: {interval: 90, speed: 60}}
""",
    )
    off, uk, demo = load_settings(path, {}, environ={}).providers
    assert (off.enabled, off.interval_seconds, off.options) == (False, 900.0, {"zones": ["CAISO"]})
    assert (uk.enabled, uk.interval_seconds) == (True, 1800.0)
    assert (demo.enabled, demo.interval_seconds, demo.options) == (True, 90.0, {"speed": 60})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot: 1\n", r"unknown key\(s\) \['prot'\]"),
        ("port: 70000\n", "port: must be 1..65535"),
        ("port: eighty\n", "port: expected an integer"),
        ("port: true\n", "port: expected an integer"),
        ("log_level: loud\n", "log_level: must be one of"),
        ("jitter_ratio: 1.5\n", r"jitter_ratio: must be in \[0, 1\)"),
        ("refresh_interval_seconds: soon\n", "refresh_interval_seconds: not a duration"),
        ("providers: {}\n", "providers: expected a list"),
        ("providers: []\n", "providers: at least one provider"),
        ("providers: [{kind: carrier-pigeon}]\n", r"providers\[0\].kind: must be one of"),
        ("providers: [{kind: watttime, options: {}}]\n", r"providers\[0\].options.zones"),
        ("providers: [{kind: replay, name: 'Bad Name'}]\n", r"providers\[0\].name"),
        ("providers: [{kind: replay, colour: red}]\n", r"providers\[0\]: unknown key"),
        ("providers: [{kind: replay}, {kind: replay}]\n", r"duplicate name\(s\) \['replay'\]"),
        ("providers: [{kind: replay, interval: -1}]\n", r"providers\[0\].interval"),
        (
            "providers: [{kind: replay, options: {speed: 0}}]\n",
            r"providers\[0\].options: replay option 'speed'",
        ),
        ("providers: [{kind: replay, enabled: maybe}]\n", r"providers\[0\].enabled: must be true or false"),
        ("providers: [{kind: replay, options: {enabled: 1}}]\n", r"providers\[0\].options.enabled: must be"),
        ("providers: [{kind: replay, options: {interval: soon}}]\n", r"providers\[0\].options.interval"),
        ("providers: [{kind: replay, options: {interval: [1]}}]\n", r"providers\[0\].options.interval"),
        (
            "providers: [{kind: replay, interval: 5m, options: {interval: 1m}}]\n",
            r"providers\[0\]: interval is given twice",
        ),
        ("providers: [{kind: replay, enabled: false}]\n", "providers: every provider is disabled"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("port: [1\n", "not valid YAML at line"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text), {}, environ={})


def test_bad_flag_and_env_name_themselves() -> None:
    with pytest.raises(ConfigError, match="--port"):
        load_settings(None, {"port": "x"}, environ={})
    with pytest.raises(ConfigError, match="CARBON_FEED_PORT"):
        load_settings(None, {}, environ={"CARBON_FEED_PORT": "x"})


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(str(tmp_path / "nope.yaml"), {}, environ={})


SECRET = "sk-live-0123456789abcdef"


@pytest.mark.parametrize("key", ["token", "password", "api_key", "auth_token"])
def test_inline_secret_is_refused_without_echoing_it(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, f"providers: [{{kind: watttime, options: {{zones: [X], {key}: {SECRET}}}}}]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {}, environ={})
    assert f"{key}_file or {key}_env" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


def test_secrets_by_reference_never_appear_in_settings_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text(SECRET + "\n")
    path = write(
        tmp_path,
        f"providers: [{{kind: electricitymaps, options: {{zones: [DE], token_file: {secret_file}}}}}]\n",
    )
    env = {"CARBON_FEED_LOG_LEVEL": "debug", "EM_TOKEN": SECRET}
    with caplog.at_level(logging.DEBUG):
        settings = load_settings(path, {}, environ=env)
        logging.getLogger("carbon_feed").info("settings", extra={"settings": repr(settings)})
    assert isinstance(settings, FeedSettings)
    assert SECRET not in repr(settings)
    assert SECRET not in caplog.text
