"""Node labels → carbon zone: an explicit zone label wins, else the cloud region through a region map.

The bundled map (extender/data/regions.json) covers the main AWS, GCP and Azure regions with
Electricity Maps zone ids; a user JSON file is merged over it, so one entry can be corrected without
copying the rest. Keys starting with "_" are comments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

import orjson

from extender.wire import MAX_LABEL_VALUE


class RegionMapError(ValueError):
    """A region map file is unreadable or not a JSON object of strings."""


def _validate(raw: object, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise RegionMapError(f"{where}: expected a JSON object {{region: zone}}")
    out: dict[str, str] = {}
    for region, zone in raw.items():
        if region.startswith("_"):
            continue
        if not isinstance(zone, str) or not zone:
            raise RegionMapError(
                f"{where}: zone for region {region!r} must be a non-empty string, got {zone!r}"
            )
        out[region] = zone
    return out


def bundled_region_map() -> dict[str, str]:
    data = resources.files("extender").joinpath("data/regions.json").read_bytes()
    return _validate(orjson.loads(data), "bundled regions.json")


def load_region_map(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The bundled map, with the user's file (if any) merged over it."""
    merged = bundled_region_map()
    if path is None:
        return merged
    try:
        with open(path, "rb") as handle:
            raw = orjson.loads(handle.read())
    except OSError as exc:
        raise RegionMapError(f"{path}: cannot read region map: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise RegionMapError(f"{path}: not valid JSON: {exc}") from None
    merged.update(_validate(raw, str(path)))
    return merged


class ZoneResolver:
    """Pure label lookup; the node cache calls it once per node change, the request path in full-Nodes
    mode once per node, so it stays two dict lookups."""

    __slots__ = ("region_label", "region_map", "zone_label")

    def __init__(self, zone_label: str, region_label: str, region_map: Mapping[str, str]) -> None:
        self.zone_label = zone_label
        self.region_label = region_label
        self.region_map = dict(region_map)

    def zone_of_labels(self, labels: Mapping[str, str]) -> str | None:
        # Labels from a request's Node objects are untrusted: a non-string value, or one longer than
        # Kubernetes allows a label value (63), means "no zone" (scored neutrally), as for a node
        # without the label; it is never kept in a cache.
        zone = labels.get(self.zone_label)
        if type(zone) is str and zone and len(zone) <= MAX_LABEL_VALUE:
            return zone
        region = labels.get(self.region_label)
        if type(region) is str and region and len(region) <= MAX_LABEL_VALUE:
            return self.region_map.get(region)
        return None


class CandidateMemo:
    """Remembers the zones of recently seen NodeNames lists.

    kube-scheduler sends the same feasible-node list for pod after pod. Looking up 5,000 zones costs
    more than parsing the request; comparing the list with the remembered one is a C-level memcmp
    per name, several times cheaper. A hit requires the *same* names in the same order (checked with
    ==, never guessed from a hash), and an entry lives at most `ttl` seconds so a node relabelled
    to another zone is seen within that time (the node cache's own watch lag is of the same order);
    a cache that exposes a `version` changing with every update invalidates entries at once.
    Each entry also keeps the last encoded prioritize answer, reused while the scores are unchanged.
    """

    __slots__ = ("_entries", "max_entries", "ttl")

    def __init__(self, max_entries: int = 8, ttl: float = 1.0) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: dict[tuple[int, str, str], MemoEntry] = {}

    def get(self, names: list[Any], now: float, version: object = None) -> MemoEntry | None:
        """The entry for exactly these names. Safe on unvalidated input: a remembered list was
        validated when it was stored, so an equal list is valid too, and garbage never matches."""
        if not names:
            return None
        try:
            entry = self._entries.get((len(names), names[0], names[-1]))
        except TypeError:  # an unhashable element: not a list of names, let validation say why
            return None
        if entry is None or entry.expires < now or entry.version != version or entry.names != names:
            return None
        return entry

    def put(
        self,
        names: list[str],
        zones: list[str | None],
        counts: Mapping[str | None, int],
        now: float,
        version: object = None,
    ) -> MemoEntry:
        entry = MemoEntry(names, zones, dict(counts), now + self.ttl, version)
        if names:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[(len(names), names[0], names[-1])] = entry
        return entry


class MemoEntry:
    __slots__ = (
        "counts",
        "evaluation",
        "evaluation_key",
        "expires",
        "filter_key",
        "filter_output",
        "names",
        "output",
        "output_scores",
        "version",
        "zones",
    )

    def __init__(
        self,
        names: list[str],
        zones: list[str | None],
        counts: dict[str | None, int],
        expires: float,
        version: object = None,
    ) -> None:
        self.names = names
        self.zones = zones
        self.counts = counts
        self.expires = expires
        self.version = version
        self.output_scores: dict[str | None, int] | None = None
        self.output: bytes | None = None
        self.filter_key: dict[str | None, str] | None = None
        self.filter_output: bytes | None = None
        # The policy's verdict for (carbon view object, pod policy) on these nodes; opaque here.
        self.evaluation_key: tuple[object, object] | None = None
        self.evaluation: Any = None
