"""Node cache: node name → carbon zone, kept fresh in the background (API-server watch or static file).

The request path only calls `NodeLookup.zones_of`/`zone_of`, dict lookups; all I/O happens in
background tasks. Only the zone and the Ready flag are kept per node (two small values, names
interned): full Node objects with image lists would cost tens of KiB each at 5,000 nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from kubernetes_asyncio import client

from carbon_common.kube import ListWatchOptions, WatchStats, list_watch
from carbon_common.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ZoneOfLabels = Callable[[Mapping[str, str]], str | None]
"""Resolves a node's labels to its carbon zone (zone label, else region map); None when unknown."""


class NodeLookup(Protocol):
    """What the request path needs from a node cache."""

    def zone_of(self, node_name: str) -> str | None:
        """The node's carbon zone; None when the node is unknown or carries no resolvable zone."""

    def zones_of(self, node_names: list[str]) -> list[str | None]:
        """`zone_of` of many nodes in request order, in one call (the request path's bulk lookup)."""

    @property
    def version(self) -> int:
        """Changes with every update, so request-path memos of zones can tell they are stale."""

    def __contains__(self, node_name: object) -> bool: ...

    def __len__(self) -> int: ...

    @property
    def synced(self) -> bool:
        """True once the first full list has been loaded (readiness)."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    zone: str | None
    ready: bool


class NodesFileError(ValueError):
    """The static nodes file is missing, not JSON, or not a v1 NodeList."""


def node_info(obj: Mapping[str, Any], zone_of_labels: ZoneOfLabels) -> tuple[str, NodeInfo]:
    """Name and cached fields of one v1 Node (raw JSON). KeyError/TypeError on a malformed object."""
    meta = obj["metadata"]
    name = sys.intern(str(meta["name"]))
    labels = meta.get("labels") or {}
    zone = zone_of_labels(labels)
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in ((obj.get("status") or {}).get("conditions") or ())
    )
    return name, _shared_info(zone, ready)


@functools.lru_cache(maxsize=4096)
def _shared_info(zone: str | None, ready: bool) -> NodeInfo:
    # 5,000 nodes share a handful of (zone, ready) pairs: one frozen object each, not one per node.
    return NodeInfo(zone, ready)


class _Cache:
    """The dict and the lookups both caches share."""

    def __init__(self, zone_of_labels: ZoneOfLabels) -> None:
        self._zone_of_labels = zone_of_labels
        self._nodes: dict[str, NodeInfo] = {}
        # name → zone beside _nodes so a 5,000-name request resolves with one C-level map().
        self._zone: dict[str, str | None] = {}
        self._synced = False
        self.version = 0
        """Changes with every update, so request-path memos of zones can tell they are stale."""

    def _replace(self, nodes: dict[str, NodeInfo]) -> None:
        # Swap whole dicts: a relist also drops nodes deleted while nobody was watching.
        self._nodes = nodes
        self._zone = {name: info.zone for name, info in nodes.items()}
        self.version += 1

    def _put(self, name: str, info: NodeInfo) -> None:
        if self._nodes.get(name) != info:
            self._nodes[name] = info
            self._zone[name] = info.zone
            self.version += 1

    def _drop(self, name: str) -> None:
        if self._nodes.pop(name, None) is not None:
            del self._zone[name]
            self.version += 1

    def zones_of(self, names: list[str]) -> list[str | None]:
        """Zones of many nodes in request order (None for unknown ones), without a call per node."""
        return list(map(self._zone.get, names))

    def zone_of(self, node_name: str) -> str | None:
        info = self._nodes.get(node_name)
        return info.zone if info is not None else None

    def ready(self, node_name: str) -> bool | None:
        """Ready condition of a known node; None for an unknown one."""
        info = self._nodes.get(node_name)
        return info.ready if info is not None else None

    def __contains__(self, node_name: object) -> bool:
        return node_name in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def synced(self) -> bool:
        return self._synced

    def zones(self) -> dict[str | None, int]:
        """Node count per zone (None = unresolved), for metrics and /readyz detail; O(n), not hot."""
        counts: dict[str | None, int] = {}
        for info in self._nodes.values():
            counts[info.zone] = counts.get(info.zone, 0) + 1
        return counts


class KubeNodeCache(_Cache):
    """Nodes from the API server: paginated list, then watch with bookmarks; relist on 410.

    Counters for metrics: `stats` (a `carbon_common.kube.WatchStats`: lists, relists_410, errors,
    events, bookmarks, watch_restarts, resource_version, synced) plus `len(cache)`.
    """

    def __init__(
        self,
        api: client.ApiClient,
        zone_of_labels: ZoneOfLabels,
        options: ListWatchOptions | None = None,
    ) -> None:
        super().__init__(zone_of_labels)
        self._core = client.CoreV1Api(api)
        self._options = options or ListWatchOptions()
        self.stats = WatchStats()
        self._task: asyncio.Task[None] | None = None
        self._synced_event = asyncio.Event()

    async def start(self) -> None:
        """Start the background list/watch; returns at once (readiness is `synced`)."""
        if self._task is None:
            self._task = asyncio.create_task(
                list_watch(
                    self._core.list_node,
                    self._on_list,
                    self._on_event,
                    self.stats,
                    self._options,
                    transform=self._transform,
                ),
                name="node-cache",
            )

    async def wait_synced(self) -> None:
        """Return once the first list is loaded; bound it with asyncio.timeout."""
        await self._synced_event.wait()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def _transform(self, obj: dict[str, Any]) -> tuple[str, NodeInfo]:
        return node_info(obj, self._zone_of_labels)

    def _on_list(self, items: list[tuple[str, NodeInfo]]) -> None:
        self._replace(dict(items))
        self._synced = True
        self._synced_event.set()
        log.info("node cache listed", extra={"nodes": len(self._nodes)})

    def _on_event(self, etype: str, obj: dict[str, Any]) -> None:
        if etype == "DELETED":
            name = (obj.get("metadata") or {}).get("name")
            if name is not None:
                self._drop(name)
            return
        self._put(*node_info(obj, self._zone_of_labels))


class StaticNodeCache(_Cache):
    """Nodes from a file holding a v1 NodeList (`kubectl get nodes -o json`), reloaded when it changes.

    A bad file at start-up raises NodesFileError; a bad file later is logged and the previous nodes
    stay in place (`stats.errors` counts it).
    """

    def __init__(self, path: Path, zone_of_labels: ZoneOfLabels, poll_interval: float = 2.0) -> None:
        super().__init__(zone_of_labels)
        self._path = path
        self._poll_interval = poll_interval
        self._stamp: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self.stats = WatchStats()

    def _file_stamp(self) -> tuple[int, int, int]:
        st = self._path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> None:
        try:
            stamp = self._file_stamp()
            doc = orjson.loads(self._path.read_bytes())
        except OSError as exc:
            raise NodesFileError(f"cannot read nodes file {self._path}: {exc.strerror or exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise NodesFileError(f"nodes file {self._path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
            raise NodesFileError(
                f"nodes file {self._path} is not a v1 NodeList (expected an object with an 'items' "
                "list, as printed by `kubectl get nodes -o json`)"
            )
        nodes: dict[str, NodeInfo] = {}
        for i, obj in enumerate(doc["items"]):
            try:
                name, info = node_info(obj, self._zone_of_labels)
            except Exception as exc:  # malformed item or a zone resolver choking on its labels
                raise NodesFileError(f"nodes file {self._path}: items[{i}] is not a Node ({exc!r})") from exc
            nodes[name] = info
        self._replace(nodes)
        self._stamp = stamp
        self._synced = True
        self.stats.lists += 1
        log.info("nodes file loaded", extra={"path": str(self._path), "nodes": len(nodes)})

    async def start(self) -> None:
        """Load the file (NodesFileError if it is unusable), then watch it for changes."""
        self._load()
        if self._task is None and self._poll_interval > 0:
            self._task = asyncio.create_task(self._watch_file(), name="nodes-file")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _watch_file(self) -> None:
        # Polling the stat is portable, cheap, and sees ConfigMap symlink swaps that inotify misses.
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                if self._file_stamp() == self._stamp:
                    continue
                self._load()
            except (OSError, NodesFileError) as exc:
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                log.warning("nodes file reload failed; keeping previous nodes", extra={"error": str(exc)})
                with contextlib.suppress(OSError):
                    self._stamp = self._file_stamp()  # do not log the same bad file every poll
