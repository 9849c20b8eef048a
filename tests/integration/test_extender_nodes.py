"""Node cache against the loopback fake API server: list, watch, bookmarks, 410, disconnects, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from kubernetes_asyncio import client

from carbon_common.kube import Backoff, ListWatchOptions
from extender.nodes import KubeNodeCache, NodesFileError, StaticNodeCache

if TYPE_CHECKING:
    from tests.fakes.kube_apiserver import FakeKube

pytest_plugins = ["tests.fakes.kube_apiserver"]

ZONE = "carbon-aware.io/zone"


def zone_of_labels(labels: Mapping[str, str]) -> str | None:
    return labels.get(ZONE)


FAST = ListWatchOptions(page_size=2, watch_timeout=30, request_timeout=5.0, backoff=Backoff(0.01, 0.05))


async def eventually(cond: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a condition on the fake's state (bounded: fails the test after `within` seconds)."""
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110 (the state lives in another object; polling is simplest)
            await asyncio.sleep(0.01)


@pytest.fixture
async def cache(api: client.ApiClient) -> AsyncIterator[KubeNodeCache]:
    c = KubeNodeCache(api, zone_of_labels, FAST)
    yield c
    await c.stop()


async def test_lists_paginated_then_watches(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    for i in range(5):
        fake_kube.add_node(f"n{i}", {ZONE: "DE" if i % 2 else "FR"})
    fake_kube.add_node("plain")
    fake_kube.add_node("sick", {ZONE: "PL"}, ready=False)
    assert not cache.synced
    await cache.start()
    async with asyncio.timeout(5):
        await cache.wait_synced()
    assert len(cache) == 7
    assert cache.zone_of("n1") == "DE"
    assert cache.zone_of("n0") == "FR"
    assert cache.zone_of("plain") is None
    assert cache.zone_of("missing") is None
    assert "n3" in cache
    assert "missing" not in cache
    assert cache.ready("sick") is False
    assert cache.ready("n0") is True
    # 7 nodes with page size 2: four list pages, one list (no watch yet at this point).
    assert fake_kube.count("GET", "/api/v1/nodes", watch=False) == 4
    assert cache.stats.lists == 1

    assert cache.zones_of(["n1", "missing", "n0", "plain"]) == ["DE", None, "FR", None]
    listed_version = cache.version

    await eventually(lambda: fake_kube.open_watches == 1)
    fake_kube.add_node("late", {ZONE: "SE"})
    fake_kube.set_node_labels("n0", {ZONE: "NO"})
    fake_kube.delete_node("plain")
    await eventually(lambda: cache.zone_of("late") == "SE" and cache.zone_of("n0") == "NO")
    await eventually(lambda: "plain" not in cache)
    assert len(cache) == 7
    # The bulk lookup follows the watch too, and every change moved the version the memo checks.
    assert cache.zones_of(["late", "n0", "plain"]) == ["SE", "NO", None]
    assert cache.version >= listed_version + 3
    assert cache.zones()["DE"] == 2
    watch = [r for r in fake_kube.requests if r.query.get("watch") == "True"]
    assert watch[0].query["allowWatchBookmarks"] == "True"
    assert watch[0].query["resourceVersion"] == cache.stats.resource_version or int(
        watch[0].query["resourceVersion"]
    ) < int(cache.stats.resource_version)


async def test_bookmarks_advance_resource_version(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    await cache.start()
    await eventually(lambda: fake_kube.open_watches == 1)
    listed_rv = int(cache.stats.resource_version)
    # Unrelated writes move the server's resourceVersion; a bookmark tells the watcher.
    fake_kube.add_pod("default", "p1")
    fake_kube.add_pod("default", "p2")
    fake_kube.bookmark()
    await eventually(lambda: cache.stats.bookmarks >= 1)
    assert int(cache.stats.resource_version) == fake_kube.resource_version > listed_rv
    # The reconnect after a drop resumes from the bookmarked version, not the listed one.
    fake_kube.drop_watches()
    await eventually(lambda: fake_kube.count("GET", "/api/v1/nodes", watch=True) == 2)
    resumed = [r for r in fake_kube.requests if r.query.get("watch") == "True"][1]
    assert int(resumed.query["resourceVersion"]) == fake_kube.resource_version
    assert cache.stats.lists == 1


async def test_410_gone_relists_and_drops_vanished_nodes(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    fake_kube.add_node("b", {ZONE: "FR"})
    await cache.start()
    await eventually(lambda: fake_kube.open_watches == 1)
    # While the watch is broken, "b" is deleted and the history compacted: only a relist can tell.
    fake_kube.drop_watches()
    fake_kube.fail_next(503, "/api/v1/nodes", times=1)
    fake_kube.delete_node("b")
    fake_kube.add_node("c", {ZONE: "PL"})
    fake_kube.expire()
    await eventually(lambda: cache.stats.relists_410 >= 1 and cache.stats.lists >= 2)
    await eventually(lambda: "c" in cache)
    assert "b" not in cache
    assert cache.zone_of("c") == "PL"


async def test_open_watch_gets_410_error_event(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    await cache.start()
    await eventually(lambda: fake_kube.open_watches == 1)
    fake_kube.expire()
    await eventually(lambda: cache.stats.relists_410 == 1 and cache.stats.lists == 2)
    await eventually(lambda: fake_kube.open_watches == 1)
    fake_kube.add_node("b", {ZONE: "FR"})
    await eventually(lambda: cache.zone_of("b") == "FR")


async def test_disconnect_resumes_without_relist(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    await cache.start()
    await eventually(lambda: fake_kube.open_watches == 1)
    fake_kube.drop_watches()
    fake_kube.add_node("b", {ZONE: "FR"})  # happens while disconnected: replayed from history
    await eventually(lambda: cache.zone_of("b") == "FR")
    assert cache.stats.lists == 1
    assert cache.stats.watch_restarts >= 1


async def test_errors_back_off_then_recover(fake_kube: FakeKube, api: client.ApiClient) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    fake_kube.fail_next(500, "/api/v1/nodes", times=3)
    cache = KubeNodeCache(api, zone_of_labels, FAST)
    await cache.start()
    try:
        async with asyncio.timeout(5):
            await cache.wait_synced()
        assert cache.stats.errors == 3
        assert "500" in cache.stats.last_error
        assert cache.zone_of("a") == "DE"
        # Watch failures back off too and then resume from the held resourceVersion.
        await eventually(lambda: fake_kube.open_watches == 1)
        fake_kube.fail_next(500, "/api/v1/nodes", times=2)
        fake_kube.drop_watches()
        fake_kube.add_node("b", {ZONE: "FR"})
        await eventually(lambda: cache.zone_of("b") == "FR")
        assert cache.stats.errors == 5
        assert cache.stats.lists == 1
    finally:
        await cache.stop()


async def test_malformed_event_is_skipped(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    await cache.start()
    await eventually(lambda: fake_kube.open_watches == 1)
    fake_kube.add_node("bad", labels=None, metadata={"labels": {ZONE: "X"}})  # no name
    fake_kube.add_node("good", {ZONE: "FR"})
    await eventually(lambda: cache.zone_of("good") == "FR")
    assert cache.stats.errors == 1
    assert cache.zone_of("a") == "DE"


async def test_stop_cancels_watch(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    await cache.start()
    await eventually(lambda: fake_kube.open_watches == 1)
    await cache.stop()
    fake_kube.add_node("x", {ZONE: "DE"})
    await asyncio.sleep(0.05)
    assert "x" not in cache


# ---------------------------------------------------------------- static mode


def _node_list(nodes: dict[str, str | None]) -> bytes:
    items = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n, "labels": {ZONE: z} if z else {}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
        for n, z in nodes.items()
    ]
    return orjson.dumps({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}})


async def test_static_file_loads_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "nodes.json"
    path.write_bytes(_node_list({"a": "DE", "b": None}))
    cache = StaticNodeCache(path, zone_of_labels, poll_interval=0.01)
    await cache.start()
    try:
        assert cache.synced
        assert len(cache) == 2
        assert cache.zone_of("a") == "DE"
        assert cache.zone_of("b") is None
        # Atomic replace (as a ConfigMap update or `mv` does): picked up.
        tmp = tmp_path / "nodes.json.tmp"
        tmp.write_bytes(_node_list({"a": "FR", "c": "PL"}))
        tmp.replace(path)
        await eventually(lambda: cache.zone_of("a") == "FR")
        assert "b" not in cache
        assert cache.zone_of("c") == "PL"
        # A broken file later keeps the last good nodes.
        path.write_bytes(b"{not json")
        await eventually(lambda: cache.stats.errors >= 1)
        assert cache.zone_of("c") == "PL"
        assert "not valid JSON" in cache.stats.last_error
    finally:
        await cache.stop()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read nodes file"),
        (b"[1, 2", "not valid JSON"),
        (b'{"kind": "Node"}', "not a v1 NodeList"),
        (b'{"items": [{"metadata": {}}]}', "items[0] is not a Node"),
    ],
)
async def test_static_file_bad_at_startup(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "nodes.json"
    if content is not None:
        path.write_bytes(content)
    cache = StaticNodeCache(path, zone_of_labels)
    with pytest.raises(NodesFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        await cache.start()
    assert not cache.synced


async def test_malformed_object_in_list_is_skipped(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    fake_kube.add_node("bad", metadata={"labels": {ZONE: "X"}})  # no name
    await cache.start()
    async with asyncio.timeout(5):
        await cache.wait_synced()
    assert len(cache) == 1
    assert cache.zone_of("a") == "DE"
    assert cache.stats.errors == 1


async def test_410_as_http_status_relists(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    await cache.start()
    await eventually(lambda: fake_kube.open_watches == 1)
    # Some API servers (and proxies) answer the watch request itself with 410 instead of an ERROR event.
    fake_kube.fail_next(410, "/api/v1/nodes", method="GET")
    fake_kube.drop_watches()
    await eventually(lambda: cache.stats.relists_410 == 1 and cache.stats.lists == 2)
    assert cache.stats.errors == 0
    assert cache.zone_of("a") == "DE"


async def test_watch_timeout_resumes_without_relist(fake_kube: FakeKube, api: client.ApiClient) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    opts = ListWatchOptions(watch_timeout=1, request_timeout=5.0, backoff=Backoff(0.01, 0.05))
    cache = KubeNodeCache(api, zone_of_labels, opts)
    await cache.start()
    try:
        await eventually(lambda: fake_kube.open_watches == 1)
        fake_kube.add_pod("default", "unrelated")  # moves the resourceVersion, not a node event
        # The server closes the watch after timeoutSeconds=1 with a bookmark; the cache resumes from it.
        await eventually(lambda: fake_kube.count("GET", "/api/v1/nodes", watch=True) >= 2)
        assert cache.stats.bookmarks >= 1
        assert cache.stats.lists == 1
        assert cache.stats.errors == 0
        second = [r for r in fake_kube.requests if r.query.get("watch") == "True"][1]
        assert int(second.query["resourceVersion"]) == fake_kube.resource_version
    finally:
        await cache.stop()


async def test_corrupt_stream_resumes_after_last_event(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    await cache.start()
    await eventually(lambda: fake_kube.open_watches == 1)
    fake_kube.add_node("b", {ZONE: "FR"})
    await eventually(lambda: cache.zone_of("b") == "FR")
    seen_rv = cache.stats.resource_version
    fake_kube.send_garbage()
    await eventually(lambda: fake_kube.count("GET", "/api/v1/nodes", watch=True) == 2)
    resumed = [r for r in fake_kube.requests if r.query.get("watch") == "True"][1]
    assert resumed.query["resourceVersion"] == seen_rv  # after "b", not the list's version
    assert cache.stats.errors == 1
    assert "JSONDecodeError" in cache.stats.last_error
    assert cache.stats.lists == 1
    fake_kube.add_node("c", {ZONE: "PL"})
    await eventually(lambda: cache.zone_of("c") == "PL")


async def test_proxy_html_error_page_backs_off(fake_kube: FakeKube, cache: KubeNodeCache) -> None:
    fake_kube.add_node("a", {ZONE: "DE"})
    fake_kube.fail_next(502, "/api/v1/nodes", body=b"<html><body>502 Bad Gateway</body></html>")
    fake_kube.fail_next(200, "/api/v1/nodes", body=b"<html>captive portal</html>")
    await cache.start()
    async with asyncio.timeout(5):
        await cache.wait_synced()
    assert cache.stats.errors == 2
    assert cache.zone_of("a") == "DE"
