"""Carbon data sources: the snapshot file watcher and the feed poller (against a loopback server)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from carbon_common.snapshot import Snapshot, ZoneReading, encode_snapshot, write_snapshot_atomic
from extender.carbon import FeedPoller, SnapshotFileWatcher
from extender.view import CarbonState, CarbonView

T = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def snap(**zones: float) -> Snapshot:
    return Snapshot(T, {z: ZoneReading(z, i, T, "test") for z, i in zones.items()})


# --- CarbonView ---------------------------------------------------------------------------------


def test_view_fresh_up_to_max_age() -> None:
    view = CarbonView(snap(DE=400.0), T)
    later = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # one hour after the point reading
    assert view.fresh("DE", later, 3600.0) is not None
    assert view.fresh("DE", later, 3599.0) is None
    assert view.fresh("FR", later, 1e9) is None


def test_view_measures_age_from_the_end_of_the_period() -> None:
    # issue 12 item 9: a one-day static reading observed 2 h ago is fresh (its period has not ended).
    hourly = Snapshot(T, {"ST": ZoneReading("ST", 100.0, T, "static", period_seconds=86400.0)})
    view = CarbonView(hourly, T)
    two_hours = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert view.fresh("ST", two_hours, 0.0) is not None  # age 0 while the period runs


# --- file watcher -------------------------------------------------------------------------------


def test_watcher_loads_reloads_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    state = CarbonState()
    watcher = SnapshotFileWatcher(path, state)
    assert watcher.check() is False  # missing file: no data, no crash
    assert state.view is None
    assert (state.errors, state.failing) == (1, True)  # counted once per outage
    assert watcher.check() is False
    assert state.errors == 1

    write_snapshot_atomic(path, snap(DE=400.0))
    assert watcher.check() is True
    assert state.view is not None
    assert state.view.snapshot.zones["DE"].intensity == 400.0
    assert state.failing is False
    assert watcher.check() is False  # unchanged

    write_snapshot_atomic(path, snap(DE=300.0, FR=50.0))
    assert watcher.check() is True
    assert set(state.view.snapshot.zones) == {"DE", "FR"}

    path.write_bytes(b'{"schemaVersion": 1, "zones": "broken"')  # torn / bad file
    good = state.view
    assert watcher.check() is False
    assert state.view is good
    assert state.errors == 2
    assert state.failing is True
    assert state.last_error is not None
    assert "JSON" in state.last_error

    path.unlink()
    assert watcher.check() is False
    assert state.view is good


def test_watcher_notices_in_place_rewrite_of_same_size(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    path.write_bytes(encode_snapshot(snap(DE=400.0)))
    state = CarbonState()
    watcher = SnapshotFileWatcher(path, state)
    assert watcher.check()
    path.write_bytes(encode_snapshot(snap(DE=500.0)))  # same size, same inode
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert watcher.check()
    assert state.view is not None
    assert state.view.snapshot.zones["DE"].intensity == 500.0


async def test_watcher_background_task_picks_up_changes(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "snapshot.json"
    write_snapshot_atomic(path, snap(DE=400.0))
    state = CarbonState()
    watcher = SnapshotFileWatcher(path, state, interval=0.02)
    await watcher.start()
    try:
        assert state.updates == 1  # loaded synchronously at start
        write_snapshot_atomic(path, snap(DE=100.0))
        for _ in range(500):  # up to 5 s
            if state.updates >= 2:
                break
            await asyncio.sleep(0.01)
        assert state.view is not None
        assert state.view.snapshot.zones["DE"].intensity == 100.0
    finally:
        await watcher.stop()


# --- feed poller --------------------------------------------------------------------------------


class Feed:
    def __init__(self) -> None:
        self.body = encode_snapshot(snap(DE=400.0))
        self.etag = '"v1"'
        self.status = 200
        self.requests: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.headers.get("If-None-Match"))
        if self.status != 200:
            return web.Response(status=self.status, text="down")
        if request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers={"ETag": self.etag})
        return web.Response(body=self.body, content_type="application/json", headers={"ETag": self.etag})


@pytest.fixture
async def feed(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> tuple[Feed, str]:
    f = Feed()
    app = web.Application()
    app.router.add_get("/v1/snapshot", f.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f, str(server.make_url("/")).rstrip("/")


async def test_poller_etag_304_errors_and_recovery(feed: tuple[Feed, str]) -> None:
    f, url = feed
    state = CarbonState()
    poller = FeedPoller(url + "/", state, interval=30.0)
    try:
        assert await poller.poll_once() is True
        assert state.view is not None
        assert state.view.snapshot.zones["DE"].intensity == 400.0
        assert f.requests == [None]

        assert await poller.poll_once() is False  # 304
        assert f.requests[-1] == '"v1"'
        assert state.updates == 1

        f.status = 503
        good = state.view
        assert await poller.poll_once() is False
        assert state.view is good
        assert state.errors == 1
        assert poller.failures == 1
        assert poller.next_delay() <= 1.2  # retries sooner than the 30 s interval
        await poller.poll_once()
        assert 1.6 <= poller.next_delay() <= 2.4  # exponential

        f.status, f.body, f.etag = 200, b"not json", '"v2"'
        assert await poller.poll_once() is False
        assert state.view is good
        assert "JSON" in (state.last_error or "")

        f.body = encode_snapshot(snap(FR=50.0))
        assert await poller.poll_once() is True
        assert state.view is not None
        assert set(state.view.snapshot.zones) == {"FR"}
        assert poller.failures == 0
        assert poller.next_delay() == 30.0
    finally:
        await poller.stop()


async def test_poller_unreachable_feed_is_an_error_not_an_exception() -> None:
    import socket

    with socket.socket() as sock:  # a loopback port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state = CarbonState()
    poller = FeedPoller(f"http://127.0.0.1:{port}", state, timeout=2.0)
    try:
        assert await poller.poll_once() is False
        assert state.errors == 1
        assert state.view is None
    finally:
        await poller.stop()


# --- background loops survive anything (issue 12 items 1 and 13) ---------------------------------


async def _until(condition: Callable[[], bool]) -> None:
    import asyncio

    for _ in range(500):  # up to 5 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


def _explode_once(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """parse_snapshot raises OverflowError (what parse_rfc3339 once let escape) on its first call."""
    import extender.carbon as carbon

    real = carbon.parse_snapshot
    calls: list[int] = []

    def parse(data: bytes | str) -> Snapshot:
        calls.append(1)
        if len(calls) == 1:
            raise OverflowError("date value out of range")
        return real(data)

    monkeypatch.setattr(carbon, "parse_snapshot", parse)
    return calls


async def test_watcher_survives_an_unexpected_exception_and_loads_later_snapshots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "snapshot.json"
    write_snapshot_atomic(path, snap(DE=400.0))
    calls = _explode_once(monkeypatch)
    state = CarbonState()
    watcher = SnapshotFileWatcher(path, state, interval=0.01)
    await watcher.start()  # the first read raises: start() must not, and the loop must keep going
    try:
        assert (state.errors, state.failing, state.view) == (1, True, None)
        assert "OverflowError" in (state.last_error or "")
        await _until(lambda: state.updates >= 1)  # retried (the file did not change) and loaded
        assert state.failing is False
        write_snapshot_atomic(path, snap(DE=100.0))
        await _until(lambda: state.updates >= 2)
        assert state.view is not None
        assert state.view.snapshot.zones["DE"].intensity == 100.0
        assert len(calls) >= 3
    finally:
        await watcher.stop()


async def test_poller_survives_an_unexpected_exception(
    feed: tuple[Feed, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = feed
    _explode_once(monkeypatch)
    state = CarbonState()
    poller = FeedPoller(url, state, interval=30.0, min_backoff=0.01)
    await poller.start()
    try:
        await _until(lambda: state.updates >= 1)  # the error was counted and the poll retried soon
        assert state.errors == 1
        assert "OverflowError" in (state.last_error or "")
        assert state.failing is False
    finally:
        await poller.stop()
