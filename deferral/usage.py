"""What the cluster can take, from the controller's watches of nodes and pods: parsing, no I/O.

- A node counts in its zone (the label ``--zone-label``, the extender's default ``carbon-aware.io/zone``)
  with its ``status.allocatable.cpu``, unless it is cordoned (``spec.unschedulable``); a node without
  the label or with an unreadable allocatable is left out (less room is the safe mistake).
- A pod bound to a node and not finished holds its CPU request in that node's zone (the sum over
  containers, at least the largest init container, as the scheduler counts it), until its expected end:
  start + its ``carbon-aware.io/duration`` annotation when it has one, else on and on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from carbon_common.quantity import millicores
from carbon_common.timeutil import parse_duration, parse_rfc3339
from deferral.annotations import DURATION, PREFIX
from deferral.capacity import Booking, Capacity

ZONE_LABEL = "carbon-aware.io/zone"
_DONE = ("Succeeded", "Failed")


def cpu_millis(quantity: object) -> int:
    """A Kubernetes CPU quantity (``"2"``, ``"500m"``, ``"1.5"``, ``4``, ``"1e3"``) in millicores,
    rounded up as the scheduler does; ValueError for anything else (carbon_common.quantity's grammar)."""
    try:
        return millicores(quantity)
    except ValueError:
        raise ValueError(f"CPU quantity {quantity!r} is not a quantity") from None


def pod_cpu_m(spec: Mapping[str, Any]) -> int:
    """A pod's CPU request as the scheduler counts it; unreadable requests count 0."""

    def request(container: object) -> int:
        if not isinstance(container, Mapping):
            return 0
        resources = container.get("resources") or {}
        if not isinstance(resources, Mapping):
            return 0
        for kind in ("requests", "limits"):  # a limit alone is also the request (API defaulting)
            values = resources.get(kind)
            if isinstance(values, Mapping) and "cpu" in values:
                try:
                    return cpu_millis(values["cpu"])
                except ValueError:
                    return 0
        return 0

    containers = spec.get("containers")
    inits = spec.get("initContainers")
    total = sum(request(c) for c in containers) if isinstance(containers, list) else 0
    init = max((request(c) for c in inits), default=0) if isinstance(inits, list) else 0
    return max(total, init)


@dataclass(frozen=True, slots=True)
class NodeRoom:
    name: str
    zone: str
    cpu_m: int


@dataclass(frozen=True, slots=True)
class RunningPod:
    uid: str
    node: str
    cpu_m: int
    start: datetime
    end: datetime | None


def node_room(obj: Mapping[str, Any], zone_label: str = ZONE_LABEL) -> NodeRoom | None:
    """The node's schedulable CPU in its zone; None when it does not count (see the module doc)."""
    metadata, spec, status = obj.get("metadata"), obj.get("spec") or {}, obj.get("status")
    if not isinstance(metadata, Mapping) or not isinstance(status, Mapping) or not isinstance(spec, Mapping):
        return None
    labels = metadata.get("labels") or {}
    zone = labels.get(zone_label) if isinstance(labels, Mapping) else None
    name = metadata.get("name")
    allocatable = status.get("allocatable")
    if not isinstance(zone, str) or not zone or not isinstance(name, str) or spec.get("unschedulable"):
        return None
    if not isinstance(allocatable, Mapping):
        return None
    try:
        return NodeRoom(name, zone, cpu_millis(allocatable.get("cpu")))
    except ValueError:
        return None


def running_pod(obj: Mapping[str, Any], prefix: str = PREFIX) -> RunningPod | None:
    """A pod bound to a node and not finished; None otherwise (or when malformed)."""
    metadata, spec, status = obj.get("metadata"), obj.get("spec"), obj.get("status") or {}
    if not isinstance(metadata, Mapping) or not isinstance(spec, Mapping) or not isinstance(status, Mapping):
        return None
    node, uid = spec.get("nodeName"), metadata.get("uid")
    if not isinstance(node, str) or not node or not isinstance(uid, str) or status.get("phase") in _DONE:
        return None
    try:
        start = parse_rfc3339(str(status.get("startTime") or metadata.get("creationTimestamp") or ""))
    except ValueError:
        return None
    end: datetime | None = None
    annotations = metadata.get("annotations")
    raw = annotations.get(prefix + DURATION) if isinstance(annotations, Mapping) else None
    if isinstance(raw, str):
        try:
            end = start + parse_duration(raw)
        except (ValueError, OverflowError):
            end = None  # unknown run time: it holds its room on and on
    return RunningPod(uid, node, pod_cpu_m(spec), start, end)


@dataclass(slots=True)
class ClusterUsage:
    """Nodes and running pods as the watches show them (every replica keeps it warm)."""

    nodes: dict[str, NodeRoom] = field(default_factory=dict)
    running: dict[str, RunningPod] = field(default_factory=dict)
    nodes_listed: bool = False

    def on_node_list(self, items: Iterable[NodeRoom | None]) -> None:
        self.nodes = {n.name: n for n in items if n is not None}
        self.nodes_listed = True

    def on_node(self, name: str, room: NodeRoom | None) -> None:
        if room is None:
            self.nodes.pop(name, None)
        else:
            self.nodes[name] = room

    def capacity(self, now: datetime, extra: Iterable[Booking] = ()) -> Capacity | None:
        """Allocatable per zone and the running pods' bookings; None before any labelled node is known
        (then the planner plans as if room were unlimited, as it did before it knew capacity). A pod
        still running past its expected end holds its room on."""
        if not self.nodes:
            return None
        allocatable: dict[str, int] = {}
        for node in self.nodes.values():
            allocatable[node.zone] = allocatable.get(node.zone, 0) + node.cpu_m
        bookings = [
            Booking(
                self.nodes[p.node].zone, p.cpu_m, p.start, p.end if p.end is None or p.end > now else None
            )
            for p in self.running.values()
            if p.node in self.nodes
        ]
        return Capacity(allocatable, [*bookings, *extra])
