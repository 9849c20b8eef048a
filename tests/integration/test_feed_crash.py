"""The feed as a real process: SIGKILL it mid-refresh, restart it, and check that nothing was lost.

The first run replays a trace fast (one trace hour per second, a refresh every 50 ms, each writing ~600
rows), so a kill lands inside or between transactions. The restarted feed cannot reach its provider
(an HTTP provider at a closed port; a missing trace file now stops the start as a configuration
error): whatever it serves comes from the store alone, before any fetch succeeds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carbon_common.snapshot import parse_snapshot
from carbon_common.timeutil import format_rfc3339

ROOT = Path(__file__).resolve().parents[2]
ZONES = ("DE", "FR", "PL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_trace(path: Path) -> None:
    start = datetime(2019, 1, 1, tzinfo=UTC)
    lines = ["datetime,zone,intensity"]
    for hour in range(24 * 30):
        for i, zone in enumerate(ZONES):
            lines.append(f"{format_rfc3339(start + timedelta(hours=hour))},{zone},{100 + 50 * i + hour % 24}")
    path.write_text("\n".join(lines) + "\n")


def write_config(tmp_path: Path, port: int, trace: Path | None) -> Path:
    provider: dict[str, Any] = {
        "kind": "replay",
        "name": "replay",
        "interval": "50ms",
        "options": {"path": str(trace), "speed": 3600, "horizon_hours": 200},
    }
    if trace is None:  # the same name, now a provider that cannot be reached
        closed = f"http://127.0.0.1:{free_port()}"
        options = {"base_url": closed, "zones": list(ZONES), "max_attempts": 1}
        provider = {"kind": "carbonaware_sdk", "name": "replay", "interval": "1s", "options": options}
    config = tmp_path / f"feed-{port}.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "host": "127.0.0.1",
                "port": port,
                "db": str(tmp_path / "feed.sqlite"),
                "snapshot_file": str(tmp_path / "snapshot.json"),
                "log_level": "warning",
                "jitter_ratio": 0,
                "providers": [provider],
            }
        )
    )
    return config


@pytest.fixture
def start_feed(
    tmp_path: Path,
) -> Iterator[Callable[[Path | None], tuple[subprocess.Popen[bytes], int]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(trace: Path | None) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        log = (tmp_path / f"feed-{port}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(
            [sys.executable, "-m", "carbon_feed", "--config", str(write_config(tmp_path, port, trace))],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        log.close()
        started.append(process)
        return process, port

    yield start
    for process in started:  # by PID, never by name
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(
    what: str, check: Callable[[], Any], process: subprocess.Popen[bytes], timeout: float = 30
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"feed exited with {process.returncode} while waiting for {what}"
        try:
            value = check()
        except (OSError, sqlite3.Error):
            value = None
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def observation_count(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0])


def test_sigkill_mid_refresh_then_restart(tmp_path: Path, start_feed: Any) -> None:
    trace = tmp_path / "trace.csv"
    write_trace(trace)
    db, snapshot_file = tmp_path / "feed.sqlite", tmp_path / "snapshot.json"

    process, port = start_feed(trace)
    wait_for("ready", lambda: http_get(port, "/readyz")[0] == 200, process)
    wait_for("history", lambda: observation_count(db) >= 4 * len(ZONES), process)
    before = observation_count(db)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert observation_count(db) >= before

    # Restart without a usable provider: everything served must come from the store.
    snapshot_file.unlink()
    process, port = start_feed(None)
    _, body = wait_for("snapshot", lambda: (r := http_get(port, "/v1/snapshot"))[0] == 200 and r, process)
    served = parse_snapshot(body)
    assert sorted(served.zones) == list(ZONES)
    assert wait_for("snapshot file", snapshot_file.is_file, process)
    assert sorted(parse_snapshot(snapshot_file.read_bytes()).zones) == list(ZONES)
    assert http_get(port, "/readyz")[0] == 200
    zones = json.loads(http_get(port, "/v1/zones")[1])["zones"]
    assert all(z["ageSeconds"] >= 0 for z in zones)
    assert observation_count(db) >= before
    metrics = wait_for(
        "a failed fetch",
        lambda: (
            (t := http_get(port, "/metrics")[1].decode()) and 'outcome="error",provider="replay"' in t and t
        ),
        process,
    )
    assert 'carbon_feed_fetches_total{outcome="ok",provider="replay"}' not in metrics

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
