"""Free CPU per zone over time: pure accounting, no I/O.

The planner must know whether a zone can take a pod at a planned time, or it sends every deferred pod
into the same green hours of the same green zone, where they overflow into dirty zones (issue 13).
A zone's room over ``[start, end)`` is its allocatable CPU minus the peak of what is booked there in
that span: pods running now (until their expected end, or on and on when their run time is unknown),
and the releases already planned for other deferred pods (``[planned start, + duration)``).

CPU only: it is what deferral shifts (energy is charged per core); memory rarely binds first for
batch work, and the scheduler still checks every resource at release time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Booking:
    zone: str
    cpu_m: int
    start: datetime
    end: datetime | None = None
    """Expected end; None: unknown, assumed to run past any window we plan."""


@dataclass(frozen=True, slots=True)
class Capacity:
    """Allocatable CPU (millicores) per zone and what is booked in it."""

    allocatable_m: Mapping[str, int]
    bookings: Sequence[Booking] = ()
    _by_zone: dict[str, list[Booking]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_zone: dict[str, list[Booking]] = {}
        for booking in self.bookings:
            by_zone.setdefault(booking.zone, []).append(booking)
        object.__setattr__(self, "_by_zone", by_zone)

    def free(self, zone: str, start: datetime, end: datetime) -> int:
        """Allocatable minus the peak booked CPU in [start, end); 0 allocatable for an unknown zone."""
        overlapping = [
            b
            for b in self._by_zone.get(zone, ())
            if b.start < end and (b.end is None or b.end > start) and b.cpu_m > 0
        ]
        return self.allocatable_m.get(zone, 0) - _peak(overlapping, start, end)

    def plus(self, extra: Iterable[Booking]) -> Capacity:
        return Capacity(self.allocatable_m, [*self.bookings, *extra])


def _peak(bookings: Sequence[Booking], start: datetime, end: datetime) -> int:
    """Peak total CPU of bookings that overlap [start, end): a sweep over their starts and ends."""
    if not bookings:
        return 0
    level = sum(b.cpu_m for b in bookings if b.start <= start)
    changes: list[tuple[datetime, int]] = [(b.start, b.cpu_m) for b in bookings if b.start > start]
    changes += [(b.end, -b.cpu_m) for b in bookings if b.end is not None and b.end < end]
    # Ends before starts at the same instant: a pod ending at t frees room for one starting at t.
    changes.sort(key=lambda change: (change[0], change[1]))
    peak = level
    for _, delta in changes:
        level += delta
        peak = max(peak, level)
    return peak
