"""A fixed node → zone map behind the `NodeLookup` protocol: no cache, no I/O.

The node source of `python -m extender.demo` and of the benchmarks, which hand the real app a known set
of nodes; it lives here rather than in the demo so that nothing outside the demo imports the demo.
"""

from __future__ import annotations

from collections.abc import Mapping


class MappingNodeLookup:
    """A fixed node → zone map (NodeLookup), for the demo and benchmarks."""

    version = 0
    """The map never changes."""

    def __init__(self, zones: Mapping[str, str | None]) -> None:
        self._zones = dict(zones)

    def zone_of(self, node_name: str) -> str | None:
        return self._zones.get(node_name)

    def zones_of(self, node_names: list[str]) -> list[str | None]:
        """Bulk lookup used by the request path."""
        return list(map(self._zones.get, node_names))

    def __contains__(self, node_name: object) -> bool:
        return node_name in self._zones

    def __len__(self) -> int:
        return len(self._zones)

    @property
    def synced(self) -> bool:
        return True
