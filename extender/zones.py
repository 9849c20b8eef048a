"""Node labels → carbon zone: an explicit zone label wins, else the cloud region through a region map.

The bundled map (extender/data/regions.json) covers the main AWS, GCP and Azure regions with
Electricity Maps zone ids; a user JSON file is merged over it, so one entry can be corrected without
copying the rest. Keys starting with "_" are comments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources

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
