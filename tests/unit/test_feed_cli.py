"""The carbon-feed command line: configuration errors exit 2 with one readable line."""

from __future__ import annotations

import socket
from collections.abc import Iterator
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


@pytest.fixture
def taken_port() -> Iterator[str]:
    """A port already in use: should start-up ever get as far as listening, it fails there instead
    of serving for ever (the checks below must stop it earlier, with a message naming the key)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield str(sock.getsockname()[1])


def test_an_unusable_db_exits_2_naming_the_flag(
    tmp_path: Path, taken_port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "history.db"
    db.write_bytes(b"not a database" * 512)
    assert main(["--db", str(db), "--port", taken_port]) == 2
    err = capsys.readouterr().err
    assert f"carbon-feed: configuration error: db (--db, CARBON_FEED_DB): cannot use {db}" in err


def test_an_unknown_replay_zone_exits_2(
    tmp_path: Path, taken_port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "feed.yaml"
    config.write_text("providers: [{kind: replay, name: demo, options: {zones: [DE, XX]}}]\n")
    assert main(["--config", str(config), "--db", str(tmp_path / "f.sqlite"), "--port", taken_port]) == 2
    err = capsys.readouterr().err
    assert "providers[name=demo] (replay).options: zones: ['XX'] are not in trace" in err
