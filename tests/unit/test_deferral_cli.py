"""carbon-deferral's CLI: flags, environment variables and defaults come from DeferralSettings."""

from __future__ import annotations

from pathlib import Path

import pytest

from deferral.__main__ import parse_settings
from deferral.settings import DeferralSettings, effective_guard_margin


def test_defaults_without_flags_or_environment() -> None:
    assert parse_settings([], env={}) == DeferralSettings()


def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {
        "CARBON_DEFERRAL_TICK": "0.5",
        "CARBON_DEFERRAL_FEED_URL": "http://env:1",
        "CARBON_DEFERRAL_WEBHOOK": "no",
    }
    settings = parse_settings(["--feed-url", "http://flag:2", "--kubeconfig", "/tmp/kc"], env=env)
    assert settings.feed_url == "http://flag:2"
    assert settings.tick == 0.5
    assert settings.webhook is False
    assert settings.kubeconfig == Path("/tmp/kc")
    assert parse_settings(["--no-leader-elect"], env={}).leader.leader_elect is False


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "http"], {}, "--port: expected an integer"),
        ([], {"CARBON_DEFERRAL_CONTROLLER": "maybe"}, "expected true or false"),
        (["--tls-cert", "/x.pem"], {}, "go together"),
        (["--renew-deadline", "20"], {}, "lease-duration"),
        (["--tick", "0"], {}, "positive"),
        (["--guard-margin", "-1"], {}, "--guard-margin must be zero or more"),
        (["--max-concurrent-releases", "0"], {}, "--max-concurrent-releases must be at least 1"),
        # Once accepted here and a traceback from the logging setup at start.
        ([], {"CARBON_DEFERRAL_LOG_LEVEL": "loud"}, "--log-level must be one of debug, info, warning, error"),
    ],
)
def test_bad_values_exit_with_a_clear_message(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_settings(argv, env=env)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_guard_margin_defaults_to_how_late_the_controller_can_be() -> None:
    # A tick, plus a failover after a leader crash when there is a leader to lose.
    assert effective_guard_margin(parse_settings([], env={})) == 1.0 + 15.0
    assert effective_guard_margin(parse_settings(["--no-leader-elect", "--tick", "2"], env={})) == 2.0
    assert effective_guard_margin(parse_settings(["--guard-margin", "0"], env={})) == 0.0
