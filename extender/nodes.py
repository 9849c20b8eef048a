"""Node cache: node name → carbon zone, kept fresh in the background (API-server watch or static file).

The request path only calls `NodeLookup.zone_of`, a dict lookup; all I/O happens in background tasks.
"""

from __future__ import annotations

from typing import Protocol


class NodeLookup(Protocol):
    """What the request path needs from a node cache."""

    def zone_of(self, node_name: str) -> str | None:
        """The node's carbon zone; None when the node is unknown or carries no resolvable zone."""

    def __contains__(self, node_name: object) -> bool: ...

    def __len__(self) -> int: ...

    @property
    def synced(self) -> bool:
        """True once the first full list has been loaded (readiness)."""
