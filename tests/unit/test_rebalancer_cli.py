"""carbon-rebalancer's CLI: flags, environment variables and defaults come from RebalancerSettings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rebalancer.__main__ import parse_settings
from rebalancer.settings import RebalancerSettings, policy_config


def test_defaults_dry_run_and_their_policy() -> None:
    settings = parse_settings([], env={})
    assert settings == RebalancerSettings()
    assert settings.dry_run is True
    config = policy_config(settings)
    assert (config.margin_abs, config.margin_rel, config.sustain) == (50.0, 0.2, timedelta(minutes=30))


def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {"CARBON_REBALANCER_MARGIN_ABS": "80", "CARBON_REBALANCER_DRY_RUN": "false"}
    settings = parse_settings(["--margin-abs", "90", "--max-per-run", "3"], env=env)
    assert settings.margin_abs == 90
    assert settings.dry_run is False
    assert settings.max_per_run == 3
    assert parse_settings(["--no-leader-elect"], env={}).leader.leader_elect is False


def test_help_lists_every_flag_with_its_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_settings(["--help"], env={})
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dry-run", "--margin-rel", "--sustain", "--horizon", "--cooldown", "--max-per-owner"):
        assert flag in text
    assert "CARBON_REBALANCER_ALLOW_LOCAL_STORAGE" in text


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "http"], {}, "--port: expected an integer"),
        ([], {"CARBON_REBALANCER_DRY_RUN": "maybe"}, "expected true or false"),
        (["--renew-deadline", "20"], {}, "lease-duration"),
        (["--interval", "0"], {}, "must be positive"),
        (["--margin-rel", "1.5"], {}, "--margin-rel < 1"),
        (["--sustain", "-1"], {}, "zero or more seconds"),
        (["--max-per-run", "-1"], {}, "zero or more"),
        (["--feed-url", "feed:8080"], {}, "http(s) URL"),
        ([], {"CARBON_REBALANCER_LOG_LEVEL": "loud"}, "--log-level must be one of"),
    ],
)
def test_bad_values_exit_2_with_a_clear_message(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_settings(argv, env=env)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_the_docs_list_every_flag_and_its_default() -> None:
    from pathlib import Path

    from carbon_common.settings import options
    from rebalancer.settings import ENV_PREFIX

    text = (Path(__file__).parents[2] / "docs" / "rebalancer.md").read_text()
    for option in options(RebalancerSettings, ENV_PREFIX):
        assert f"| `{option.flag}` | `{option.env}` |" in text
