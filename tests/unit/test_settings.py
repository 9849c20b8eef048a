"""carbon_common.settings: a documented frozen dataclass, groups and all, as flags, variables and --help."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from carbon_common.settings import (
    LOG_LEVELS,
    ConfigError,
    check_log_level,
    convert,
    field_docs,
    options,
    parse,
    parse_bool,
    parser_for,
    report,
    resolve,
)
from carbon_feed.config import FeedSettings
from deferral.settings import DeferralSettings
from extender.settings import ExtenderSettings

PREFIX = "CARBON_TOY_"


@dataclass(frozen=True, slots=True)
class ServingSettings:
    port: int = 8080
    """Listen port."""
    read_timeout: float = 10.0
    """Seconds a client gets to send its request: 100% of it."""
    tls_cert: Path | None = None
    """PEM certificate chain."""


@dataclass(frozen=True, slots=True)
class KubeSettings:
    kubeconfig: Path | None = None
    """Kubeconfig; default in-cluster."""
    leader_elect: bool = True
    """Elect one leader."""


@dataclass(frozen=True, slots=True)
class ToySettings:
    serving: ServingSettings = ServingSettings()
    """Listener settings."""
    kube: KubeSettings = KubeSettings()
    """API server settings."""
    mode: Literal["fast", "slow"] = "fast"
    """fast or slow."""
    interval: float = field(default=60.0, metadata={"parse": lambda text: float(text.rstrip("s"))})
    """Seconds between rounds, "5" or "5s"."""
    items: tuple[str, ...] = field(default=(), metadata={"cli": False})
    """Only in a file: never a flag."""
    log_level: str = "info"
    """debug, info, warning or error."""


def toy_validate(settings: ToySettings) -> list[str]:
    problems = check_log_level(settings.log_level, "--log-level")
    if settings.serving.port == 0:
        problems.append("--port must not be 0")
    return problems


def load(argv: list[str], env: dict[str, str]) -> ToySettings:
    return parse(ToySettings, PREFIX, argv, env, prog="toy", description="A toy.", validate=toy_validate)


def test_groups_are_flattened_and_keep_plain_names() -> None:
    opts = options(ToySettings, PREFIX)
    assert [(o.path, o.flag, o.env) for o in opts] == [
        (("serving", "port"), "--port", "CARBON_TOY_PORT"),
        (("serving", "read_timeout"), "--read-timeout", "CARBON_TOY_READ_TIMEOUT"),
        (("serving", "tls_cert"), "--tls-cert", "CARBON_TOY_TLS_CERT"),
        (("kube", "kubeconfig"), "--kubeconfig", "CARBON_TOY_KUBECONFIG"),
        (("kube", "leader_elect"), "--leader-elect", "CARBON_TOY_LEADER_ELECT"),
        (("mode",), "--mode", "CARBON_TOY_MODE"),
        (("interval",), "--interval", "CARBON_TOY_INTERVAL"),
        (("log_level",), "--log-level", "CARBON_TOY_LOG_LEVEL"),
    ]


def test_defaults_without_flags_or_environment() -> None:
    assert load([], {}) == ToySettings()


def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {
        "CARBON_TOY_PORT": "9000",
        "CARBON_TOY_READ_TIMEOUT": "2.5",
        "CARBON_TOY_LEADER_ELECT": "off",
        "CARBON_TOY_MODE": "slow",
        "CARBON_TOY_INTERVAL": "5s",
    }
    settings = load(["--port", "9100", "--kubeconfig", "/tmp/kc"], env)
    assert settings.serving == ServingSettings(port=9100, read_timeout=2.5)
    assert settings.kube == KubeSettings(kubeconfig=Path("/tmp/kc"), leader_elect=False)
    assert (settings.mode, settings.interval) == ("slow", 5.0)
    assert load(["--leader-elect"], env).kube.leader_elect is True
    assert load(["--no-leader-elect"], {}).kube.leader_elect is False


def test_a_base_layer_sits_under_the_environment() -> None:
    # The feed's YAML file is such a base: the environment and the flags still win over it.
    base = ToySettings(serving=ServingSettings(port=7000, read_timeout=3.0), mode="slow")
    settings = resolve(ToySettings, PREFIX, {"read_timeout": "4"}, {"CARBON_TOY_PORT": "7100"}, base)
    assert settings.serving == ServingSettings(port=7100, read_timeout=4.0)
    assert settings.mode == "slow"


def test_an_empty_variable_unsets_an_optional_setting() -> None:
    assert load(["--tls-cert", "c.pem"], {}).serving.tls_cert == Path("c.pem")
    assert load([], {"CARBON_TOY_TLS_CERT": ""}).serving.tls_cert is None


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "http"], {}, "--port: expected an integer, got 'http' (CARBON_TOY_PORT)"),
        ([], {"CARBON_TOY_PORT": "http"}, "CARBON_TOY_PORT: expected an integer, got 'http' (--port)"),
        ([], {"CARBON_TOY_LEADER_ELECT": "maybe"}, "CARBON_TOY_LEADER_ELECT: expected true or false"),
        (["--mode", "medium"], {}, "--mode: expected one of fast, slow, got 'medium' (CARBON_TOY_MODE)"),
        (["--read-timeout", "soon"], {}, "--read-timeout: expected a number"),
        (["--interval", "xs"], {}, "--interval: could not convert"),
        (["--log-level", "loud"], {}, "--log-level must be one of debug, info, warning, error"),
        (["--port", "0", "--log-level", "loud"], {}, "--log-level must be one of"),
    ],
)
def test_a_bad_value_names_the_flag_and_the_variable(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(argv, env)
    assert message in str(caught.value)


def test_every_problem_of_a_combination_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load(["--port", "0", "--log-level", "loud"], {})
    assert "--port must not be 0" in str(caught.value)
    assert "--log-level" in str(caught.value)


def test_report_prints_one_line_and_gives_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert report("toy", ConfigError("--port: expected an integer")) == 2
    assert capsys.readouterr().err == "toy: configuration error: --port: expected an integer\n"


def test_help_shows_each_fields_docstring_variable_and_default() -> None:
    text = " ".join(parser_for(ToySettings, PREFIX, "toy", "A toy.").format_help().split())
    assert "--read-timeout READ_TIMEOUT Seconds a client gets to send its request: 100% of it." in text
    assert "[env CARBON_TOY_READ_TIMEOUT] (default: 10.0)" in text
    assert "--leader-elect, --no-leader-elect Elect one leader. [env CARBON_TOY_LEADER_ELECT]" in text
    assert "--mode {fast,slow} fast or slow." in text
    assert "--items" not in text
    assert "CARBON_TOY_ITEMS" not in text


def test_field_docs_read_the_docstring_under_each_field() -> None:
    assert field_docs(ServingSettings) == {
        "port": "Listen port.",
        "read_timeout": "Seconds a client gets to send its request: 100% of it.",
        "tls_cert": "PEM certificate chain.",
    }


def test_yaml_values_convert_with_the_key_named() -> None:
    (port,) = (o for o in options(ToySettings, PREFIX) if o.name == "port")
    assert convert(port, 9000, "port") == 9000
    assert convert(port, 9000.0, "port") == 9000
    for bad in (True, 1.5, [1], None):
        with pytest.raises(
            ConfigError, match=r"^port: expected an integer, got .*\(--port, CARBON_TOY_PORT\)$"
        ):
            convert(port, bad, "port")


def test_one_boolean_grammar() -> None:
    for text in ("1", "true", "YES", " on "):
        assert parse_bool(text) is True
    for text in ("0", "False", "no", "off", ""):
        assert parse_bool(text) is False
    with pytest.raises(ValueError, match="expected true or false, got 'perhaps'"):
        parse_bool("perhaps")


def test_one_list_of_log_levels() -> None:
    assert LOG_LEVELS == ("debug", "info", "warning", "error")
    assert check_log_level("WARNING", "--log-level") == []


def test_leaf_names_must_be_unique_across_groups() -> None:
    @dataclass(frozen=True, slots=True)
    class Clash:
        serving: ServingSettings = ServingSettings()
        port: int = 1

    with pytest.raises(TypeError, match=r"repeated: \['port'\]"):
        options(Clash, PREFIX)


@pytest.mark.parametrize(
    ("cls", "prefix"),
    [
        (ExtenderSettings, "CARBON_EXTENDER_"),
        (DeferralSettings, "CARBON_DEFERRAL_"),
        (FeedSettings, "CARBON_FEED_"),
    ],
)
def test_every_services_settings_are_documented_for_help(cls: type, prefix: str) -> None:
    """The three services use this toolkit; each of their flags has --help text from its docstring."""
    undocumented = [o.flag for o in options(cls, prefix) if not o.doc]
    assert undocumented == []


def test_fields_that_are_not_settings_are_left_alone() -> None:
    @dataclass(frozen=True, slots=True)
    class WithFileOnly:
        port: int = 1
        """A flag."""
        upstream: ServingSettings = field(default=ServingSettings(port=5), metadata={"cli": False})
        """Only in a file: its port is not --port."""

    settings = resolve(WithFileOnly, PREFIX, {"port": "2"}, {})
    assert (settings.port, settings.upstream.port) == (2, 5)


@dataclass(frozen=True, slots=True)
class SharedGroup:
    name: str = ""
    """A name each service sets."""


@dataclass(frozen=True, slots=True)
class UsesSharedGroup:
    shared: SharedGroup = field(default_factory=lambda: SharedGroup(name="mine"))
    """A shared group with this service's own default."""


def test_a_groups_default_instance_gives_the_defaults_of_its_fields() -> None:
    (option,) = options(UsesSharedGroup, "CARBON_TOY_")
    assert option.default == "mine"  # not the group class's own ""
    help_text = " ".join(parser_for(UsesSharedGroup, "CARBON_TOY_", "toy", "A toy.").format_help().split())
    assert "(default: mine)" in help_text
    assert parse(UsesSharedGroup, "CARBON_TOY_", [], {}, prog="toy", description="").shared.name == "mine"
