"""The latest placement decision per pod UID, kept between /prioritize and /bind.

kube-scheduler calls prioritize and bind in separate requests (bind in its asynchronous binding cycle),
so the numbers of a decision must outlive the request that made them. The store is bounded (oldest
entries go first) and entries expire, so pods that never bind cannot grow memory without limit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ZoneFigures:
    intensity: float | None
    score: int


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    zones: Mapping[str | None, ZoneFigures]
    """Verdict per candidate zone (None: nodes without a zone)."""
    mean_intensity: float | None
    """Node-weighted mean intensity of the candidates with fresh data."""


@dataclass(frozen=True, slots=True)
class BoundDecision:
    node: str
    zone: str | None
    intensity: float | None
    score: int | None
    mean_intensity: float | None

    @property
    def avoided(self) -> float | None:
        """gCO2eq/kWh below the candidates' mean (negative when other plugins chose a dirtier node)."""
        if self.intensity is None or self.mean_intensity is None:
            return None
        return self.mean_intensity - self.intensity


class DecisionStore:
    """Bounded LRU with a TTL. Times are plain floats (monotonic seconds) passed in by the caller."""

    def __init__(self, max_entries: int = 10_000, ttl: float = 600.0) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: OrderedDict[str, tuple[float, DecisionRecord]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, uid: str, record: DecisionRecord, now: float) -> None:
        if not uid:
            return
        self.expire(now)
        self._entries[uid] = (now + self.ttl, record)
        self._entries.move_to_end(uid)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def get(self, uid: str, now: float) -> DecisionRecord | None:
        entry = self._entries.get(uid)
        if entry is None:
            return None
        if entry[0] < now:
            del self._entries[uid]
            return None
        return entry[1]

    def pop(self, uid: str, now: float) -> DecisionRecord | None:
        record = self.get(uid, now)
        self._entries.pop(uid, None)
        return record

    def expire(self, now: float) -> int:
        """Drop expired entries (oldest first, stops at the first live one); returns how many."""
        dropped = 0
        while self._entries:
            uid, (expires, _) = next(iter(self._entries.items()))
            if expires >= now:
                break
            del self._entries[uid]
            dropped += 1
        return dropped


def resolve(record: DecisionRecord | None, node: str, cache_zone: str | None) -> BoundDecision:
    """What was decided for `node`, whose zone the caller looked up (node cache, or the zones seen in
    full-Nodes requests). Without a record (prioritize is skipped for a single feasible node) only
    the zone is known."""
    if record is None:
        return BoundDecision(node, cache_zone, None, None, None)
    zone = cache_zone
    figures = record.zones.get(zone)
    if figures is None:
        return BoundDecision(node, zone, None, None, record.mean_intensity)
    return BoundDecision(node, zone, figures.intensity, figures.score, record.mean_intensity)
