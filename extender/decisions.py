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


# Measured with tracemalloc: a record holds ~70 bytes per zone besides the zone's string (49 bytes of
# header plus its characters); 200 covers the record, its dict and the store's entry. An estimate,
# not an exact count: it only has to grow with what a request can make the store keep.
_RECORD_BYTES = 200
_ZONE_BYTES = 120


def record_bytes(uid: str, record: DecisionRecord) -> int:
    """Approximate memory one entry keeps alive."""
    return _RECORD_BYTES + len(uid) + sum(_ZONE_BYTES + len(z or "") for z in record.zones)


class DecisionStore:
    """Bounded LRU with a TTL. Times are plain floats (monotonic seconds) passed in by the caller.

    Bounded twice: by entries, and by approximate bytes, since a request decides how many zones (and
    how long a pod UID) a record holds: 10,000 records of 5,000 zones each would be gigabytes."""

    def __init__(self, max_entries: int = 10_000, ttl: float = 600.0, max_bytes: int = 32 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[float, DecisionRecord, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, uid: str, record: DecisionRecord, now: float) -> None:
        if not uid:
            return
        self.expire(now)
        size = record_bytes(uid, record)
        if size > self.max_bytes:
            return  # one record over the whole budget: not worth evicting everything else for
        self._drop(uid)
        self._entries[uid] = (now + self.ttl, record, size)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped

    def _drop(self, uid: str) -> None:
        entry = self._entries.pop(uid, None)
        if entry is not None:
            self.bytes -= entry[2]

    def get(self, uid: str, now: float) -> DecisionRecord | None:
        entry = self._entries.get(uid)
        if entry is None:
            return None
        if entry[0] < now:
            self._drop(uid)
            return None
        return entry[1]

    def pop(self, uid: str, now: float) -> DecisionRecord | None:
        record = self.get(uid, now)
        self._drop(uid)
        return record

    def expire(self, now: float) -> int:
        """Drop expired entries (oldest first, stops at the first live one); returns how many."""
        dropped = 0
        while self._entries:
            uid, (expires, _, _) = next(iter(self._entries.items()))
            if expires >= now:
                break
            self._drop(uid)
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
