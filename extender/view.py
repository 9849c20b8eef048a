"""Carbon data for the request path: an immutable CarbonView and the CarbonState holding the current one.

The request path only reads `CarbonState.view` (one attribute load). The sources that replace the view
(extender.carbon) do I/O; this module does none, so the pure policy (extender.policy) can use the view
type without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from carbon_common.snapshot import Snapshot, ZoneReading, is_fresh


@dataclass(frozen=True, slots=True)
class CarbonView:
    snapshot: Snapshot
    loaded_at: datetime
    source: str = ""

    def fresh(self, zone: str, now: datetime, max_age: float) -> ZoneReading | None:
        """The zone's reading if it is at most `max_age` seconds old, else None."""
        reading = self.snapshot.zones.get(zone)
        if reading is None or not is_fresh(reading, now, max_age):
            return None
        return reading


class CarbonState:
    """The current view, swapped atomically by a background source. `view` is None until first data.

    `failing` is True from a source's failed attempt until its next successful one (a new snapshot,
    or the feed answering 304): /readyz and the `carbon_source_failing` gauge show it."""

    __slots__ = ("errors", "failing", "last_error", "updates", "view")

    def __init__(self, view: CarbonView | None = None) -> None:
        self.view = view
        self.updates = 0
        self.errors = 0
        self.failing = False
        self.last_error: str | None = None

    def set(self, view: CarbonView) -> None:
        self.view = view
        self.updates += 1
        self.failing = False

    def record_ok(self) -> None:
        self.failing = False

    def record_error(self, message: str) -> None:
        self.errors += 1
        self.failing = True
        self.last_error = message
