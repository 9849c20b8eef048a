"""The carbon-feed command line: configuration errors exit 2 with one readable line."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbon_feed.__main__ import main, parse_args


def test_flags_are_parsed() -> None:
    args = parse_args(["--port", "9000", "--snapshot-file", "/tmp/s.json", "--db", "/tmp/f.sqlite"])
    assert (args.port, args.snapshot_file, args.db, args.host) == (
        "9000",
        "/tmp/s.json",
        "/tmp/f.sqlite",
        None,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "eighty"], "--port: expected an integer"),
        (["--log-level", "loud"], "log_level: must be one of"),
    ],
)
def test_bad_flags_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "feed.yaml"
    config.write_text("providers: [{kind: replay, options: {speed: -1}}]\n")
    assert main(["--config", str(config)]) == 2
    assert "providers[0].options: replay option 'speed' must be > 0" in capsys.readouterr().err
