"""Kubernetes objects (as the API returns them, plain dicts) to the policy's views: parsing, no I/O.

Malformed objects never raise: a pod or node that cannot be read is left out (None), and unreadable
requests count as the safe mistake (a node with unreadable allocatable has no room).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carbon_common.quantity import millicores, whole
from carbon_common.timeutil import parse_rfc3339
from rebalancer.policy import NodeView, PdbView, PodView, Resources

REBALANCE = "carbon-aware.io/rebalance"
"""Pod annotation (value "true") and namespace label (value "true") that opt pods in."""
ZONE_LABEL = "carbon-aware.io/zone"
MIRROR = "kubernetes.io/config.mirror"
RECREATING_OWNERS = ("ReplicaSet", "StatefulSet")


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in _map(value).items()}


def _resources(values: object) -> Resources:
    values = _map(values)
    try:
        cpu = millicores(values["cpu"]) if "cpu" in values else 0
    except ValueError:
        cpu = 0
    try:
        memory = whole(values["memory"]) if "memory" in values else 0
    except ValueError:
        memory = 0
    return Resources(cpu, memory)


def pod_requests(spec: Mapping[str, Any]) -> Resources:
    """The pod's requests as the scheduler counts them: the sum over containers, at least the largest
    init container; a limit alone is the request (API defaulting)."""

    def one(container: object) -> Resources:
        resources = _map(_map(container).get("resources"))
        return _resources(resources.get("limits")) if "requests" not in resources else _merge(resources)

    def _merge(resources: Mapping[str, Any]) -> Resources:
        requests, limits = _resources(resources.get("requests")), _resources(resources.get("limits"))
        req = _map(resources.get("requests"))
        return Resources(
            requests.cpu_m if "cpu" in req else limits.cpu_m,
            requests.memory if "memory" in req else limits.memory,
        )

    containers = spec.get("containers")
    inits = spec.get("initContainers")
    total = Resources()
    for container in containers if isinstance(containers, list) else ():
        total = total + one(container)
    for container in inits if isinstance(inits, list) else ():
        init = one(container)
        total = Resources(max(total.cpu_m, init.cpu_m), max(total.memory, init.memory))
    return total


def _exclusion(metadata: Mapping[str, Any], spec: Mapping[str, Any], allow_local_storage: bool) -> str | None:
    if MIRROR in _map(metadata.get("annotations")):
        return "mirror-pod"
    owners = metadata.get("ownerReferences")
    owner = (
        next(
            (o for o in owners if isinstance(o, Mapping) and o.get("controller")),
            None,
        )
        if isinstance(owners, list)
        else None
    )
    if owner is None:
        return "bare-pod"
    kind = owner.get("kind")
    if kind == "DaemonSet":
        return "daemonset"
    if kind == "Job":
        # The Job controller recreates an evicted pod only for a workload declared restartable.
        if spec.get("restartPolicy") != "OnFailure":
            return "job-without-restart"
    elif kind not in RECREATING_OWNERS:
        return "unsupported-owner"
    if not allow_local_storage:
        for volume in spec.get("volumes") or ():
            if isinstance(volume, Mapping) and ("emptyDir" in volume or "hostPath" in volume):
                return "local-storage"
    return None


def pod_view(
    obj: Mapping[str, Any],
    opted_in_namespaces: frozenset[str] = frozenset(),
    allow_local_storage: bool = False,
) -> PodView | None:
    """A pod bound to a node; None when unbound, finished or malformed."""
    metadata, spec, status = _map(obj.get("metadata")), _map(obj.get("spec")), _map(obj.get("status"))
    namespace, name, uid = (metadata.get(k) for k in ("namespace", "name", "uid"))
    node = spec.get("nodeName")
    if not all(isinstance(v, str) and v for v in (namespace, name, uid, node)):
        return None
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        return None
    try:
        created = parse_rfc3339(str(metadata.get("creationTimestamp") or ""))
    except ValueError:
        return None
    owner = next(
        (o for o in metadata.get("ownerReferences") or () if isinstance(o, Mapping) and o.get("controller")),
        {},
    )
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    annotations = _map(metadata.get("annotations"))
    return PodView(
        namespace=str(namespace),
        name=str(name),
        uid=str(uid),
        node=str(node),
        created=created,
        owner_kind=str(owner.get("kind") or ""),
        owner_name=str(owner.get("name") or ""),
        labels=_strings(metadata.get("labels")),
        node_selector=_strings(spec.get("nodeSelector")),
        requests=pod_requests(spec),
        opted_in=annotations.get(REBALANCE) == "true" or namespace in opted_in_namespaces,
        running=phase == "Running",
        ready=ready,
        terminating=bool(metadata.get("deletionTimestamp")),
        exclusion=_exclusion(metadata, spec, allow_local_storage),
    )


def node_view(obj: Mapping[str, Any], zone_label: str = ZONE_LABEL) -> NodeView | None:
    metadata, spec, status = _map(obj.get("metadata")), _map(obj.get("spec")), _map(obj.get("status"))
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        return None
    labels = _strings(metadata.get("labels"))
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    allocatable = _map(status.get("allocatable"))
    try:
        room = Resources(millicores(allocatable["cpu"]), whole(allocatable["memory"]))
    except (KeyError, ValueError):
        room = Resources()  # unreadable: no room (the safe mistake)
    return NodeView(
        name=name,
        zone=labels.get(zone_label) or None,
        ready=ready,
        schedulable=not spec.get("unschedulable"),
        labels=labels,
        allocatable=room,
    )


def pdb_view(obj: Mapping[str, Any]) -> PdbView | None:
    metadata, spec, status = _map(obj.get("metadata")), _map(obj.get("spec")), _map(obj.get("status"))
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    selector = spec.get("selector")
    allowed = status.get("disruptionsAllowed")
    # A PDB whose status the disruption controller has not computed yet allows nothing (as the API does).
    disruptions = allowed if isinstance(allowed, int) and not isinstance(allowed, bool) else 0
    if not isinstance(selector, Mapping):
        return PdbView(namespace, name, None, (), disruptions)
    expressions: list[tuple[str, str, tuple[str, ...]]] = []
    for item in selector.get("matchExpressions") or ():
        if not isinstance(item, Mapping):
            return PdbView(namespace, name, None, (), disruptions)
        values = item.get("values") or ()
        expressions.append((str(item.get("key")), str(item.get("operator")), tuple(str(v) for v in values)))
    return PdbView(namespace, name, _strings(selector.get("matchLabels")), tuple(expressions), disruptions)
