"""Extender protocol v1 on the wire: parse what kube-scheduler sends, build what it expects back.

The Go structs (k8s.io/kube-scheduler/extender/v1) carry no json tags, so keys are the Go field names
and Go's decoder matches them case-insensitively: "Pod", "pod" and "POD" are the same key. Fields have
no omitempty, so the unused one of Nodes/NodeNames arrives as null. Every malformed input raises
WireError whose message names the offending field; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import orjson

MIN_SCORE = 0
MAX_SCORE = 10
# Kubernetes' limits: a node name is a DNS subdomain (at most 253 characters), a label value at most
# 63. The API server enforces them, so a longer name never names a real node: such a request is
# refused (400) rather than held in the caches it would feed.
MAX_NODE_NAME = 253
MAX_LABEL_VALUE = 63


class WireError(ValueError):
    """The request does not follow extender protocol v1; the message names the field."""


def _fold(raw: Mapping[str, Any], known: Mapping[str, str]) -> dict[str, Any]:
    """Go-style case-insensitive struct decoding: map each key onto its canonical Go field name.

    Unknown keys are ignored, as encoding/json does; a later duplicate wins, also as encoding/json does.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        canonical = known.get(key.lower())
        if canonical is not None:
            out[canonical] = value
    return out


def _decode(body: bytes) -> dict[str, Any]:
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise WireError(f"request body must be a JSON object, got {type(raw).__name__}")
    return raw


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{where}: expected a JSON object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "number")


def _string(value: Any, where: str, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise WireError(f"{where}: expected a string, got {_kind(value)}")
    if not value and not empty_ok:
        raise WireError(f"{where}: must not be empty")
    return value


# --- pods -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodRef:
    """The few pod fields the extender reads; the pod object itself is never re-encoded."""

    namespace: str
    name: str
    uid: str
    annotations: Mapping[str, Any]


_EMPTY: Mapping[str, Any] = {}


def pod_ref(pod: Any, where: str = "Pod") -> PodRef:
    obj = _object(pod, where)
    meta = obj.get("metadata")
    if meta is None:
        return PodRef("", "", "", _EMPTY)
    meta = _object(meta, f"{where}.metadata")
    annotations = meta.get("annotations")
    if annotations is None:
        annotations = _EMPTY
    elif not isinstance(annotations, dict):
        raise WireError(f"{where}.metadata.annotations: expected a JSON object, got {_kind(annotations)}")
    fields = []
    for key in ("namespace", "name", "uid"):
        value = meta.get(key, "")
        fields.append(_string(value if value is not None else "", f"{where}.metadata.{key}", empty_ok=True))
    return PodRef(fields[0], fields[1], fields[2], annotations)


# --- filter / prioritize --------------------------------------------------------------------------

_ARGS_KEYS = {"pod": "Pod", "nodes": "Nodes", "nodenames": "NodeNames"}


@dataclass(frozen=True, slots=True)
class ExtenderArgs:
    """ExtenderArgs. Exactly one of `node_names` (nodeCacheCapable) and `nodes` (the NodeList as
    received, kept so a filter answer can hand back the very same objects) is set."""

    pod: PodRef
    node_names: list[str] | None
    nodes: dict[str, Any] | None

    @property
    def items(self) -> list[dict[str, Any]]:
        """The Node objects of full-Nodes mode (validated by parse_extender_args)."""
        items: list[dict[str, Any]] = (self.nodes or {}).get("items") or []
        return items


def check_node_names(args: ExtenderArgs) -> None:
    """The element check that parse_extender_args(check_names=False) skipped."""
    if args.node_names is not None:
        _node_names(args.node_names)


def _node_names(value: list[Any]) -> list[str]:
    # C-speed checks first (5,000 names arrive on every call); walk the list only to name the culprit.
    if not value or (
        set(map(type, value)) == {str} and "" not in value and max(map(len, value)) <= MAX_NODE_NAME
    ):
        return value
    for i, name in enumerate(value):
        if type(name) is not str or not name:
            raise WireError(f"NodeNames[{i}]: expected a non-empty string, got {name!r}")
        _check_name_length(name, f"NodeNames[{i}]")
    return value


def _check_name_length(name: str, where: str) -> None:
    if len(name) > MAX_NODE_NAME:
        raise WireError(
            f"{where}: {len(name)} characters, over the {MAX_NODE_NAME} a Kubernetes node name may have"
        )


def _node_list(value: Any) -> dict[str, Any]:
    nodes = _object(value, "Nodes")
    items = nodes.get("items")
    if items is None:
        return nodes
    if not isinstance(items, list):
        raise WireError(f"Nodes.items: expected an array, got {_kind(items)}")
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise WireError(f"Nodes.items[{i}]: expected a Node object, got {_kind(item)}")
        meta = item.get("metadata")
        if type(meta) is not dict:
            raise WireError(f"Nodes.items[{i}].metadata: expected an object, got {_kind(meta)}")
        name = meta.get("name")
        if type(name) is not str or not name:
            raise WireError(f"Nodes.items[{i}].metadata.name: expected a non-empty string, got {name!r}")
        _check_name_length(name, f"Nodes.items[{i}].metadata.name")
        labels = meta.get("labels")
        if labels is not None and type(labels) is not dict:
            raise WireError(f"Nodes.items[{i}].metadata.labels: expected an object, got {_kind(labels)}")
    return nodes


def parse_extender_args(body: bytes, *, check_names: bool = True) -> ExtenderArgs:
    """Parse the body of a filter or prioritize call (ExtenderArgs).

    `check_names=False` leaves the NodeNames elements unchecked (the array itself is checked) for a
    caller that recognises a list it validated before; it must call `check_node_names` otherwise.
    """
    raw = _fold(_decode(body), _ARGS_KEYS)
    if raw.get("Pod") is None:
        raise WireError("Pod: required, got null or nothing")
    pod = pod_ref(raw["Pod"])
    names, nodes = raw.get("NodeNames"), raw.get("Nodes")
    if names is not None and nodes is not None:
        # kube-scheduler sends exactly one; answering both shapes would hide a misconfigured caller.
        raise WireError("Nodes and NodeNames are both set; exactly one must be non-null")
    if names is not None:
        if not isinstance(names, list):
            raise WireError(f"NodeNames: expected an array of strings or null, got {_kind(names)}")
        return ExtenderArgs(pod, _node_names(names) if check_names else names, None)
    if nodes is not None:
        return ExtenderArgs(pod, None, _node_list(nodes))
    raise WireError("Nodes and NodeNames are both null; exactly one must be set")


def filter_result(
    args: ExtenderArgs,
    passed: Sequence[str] | None,
    failed: Mapping[str, str],
    unresolvable: Mapping[str, str],
) -> bytes:
    """ExtenderFilterResult in the request's mode. `passed=None` means every node passed, which lets
    full-Nodes mode hand back the received NodeList object itself without rebuilding it.

    Raises WireError when the NodeList cannot be encoded back (nested more than 254 levels deep)."""
    body: dict[str, Any] = {
        "Nodes": None,
        "NodeNames": None,
        "FailedNodes": failed,
        "FailedAndUnresolvableNodes": unresolvable,
        "Error": "",
    }
    if args.node_names is not None:
        body["NodeNames"] = args.node_names if passed is None else list(passed)
    elif passed is None:
        body["Nodes"] = args.nodes
    else:
        keep = set(passed)
        items = [item for item in args.items if item["metadata"]["name"] in keep]
        body["Nodes"] = {**(args.nodes or {}), "items": items}
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        # Only the NodeList, handed back as received, can fail: orjson reads values nested up to
        # 1,024 levels but writes at most 254. No real Node is that deep; checking every request's
        # depth up front would cost a walk of every Node, so the rare failure is caught here instead.
        raise WireError(f"Nodes: cannot be handed back to the scheduler ({exc}: nested too deeply)") from None


def filter_error(message: str) -> bytes:
    return orjson.dumps(
        {
            "Nodes": None,
            "NodeNames": None,
            "FailedNodes": {},
            "FailedAndUnresolvableNodes": {},
            "Error": message,
        }
    )


# Characters JSON needs escaped in a string; Kubernetes node names never contain them.
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')
_MIDDLE = [f'","Score":{s}}},{{"Host":"' for s in range(MAX_SCORE + 1)]
_LAST = [f'","Score":{s}}}]' for s in range(MAX_SCORE + 1)]


def priority_list(hosts: Sequence[str], scores: Sequence[int]) -> bytes:
    """The bare HostPriorityList array. Scores must already be ints in 0..10: a float would make the
    scheduler drop every score of this extender without telling anyone.

    Byte-identical to orjson.dumps([{"Host": h, "Score": s}, ...]), but built by interleaving the
    names with precomputed fragments in C (str.join over zip) instead of creating one dict per node:
    at 5,000 nodes that is the difference between most of the request time and a small part of it.
    """
    if len(hosts) != len(scores):
        raise ValueError("hosts and scores differ in length")
    if not hosts:
        return b"[]"
    if (
        _NEEDS_ESCAPE.search("".join(hosts))
        or set(map(type, scores)) != {int}
        or not set(scores) <= _VALID_SCORES
    ):
        return orjson.dumps([{"Host": h, "Score": s} for h, s in zip(hosts, scores, strict=True)])
    tails = list(map(_MIDDLE.__getitem__, scores))
    tails[-1] = _LAST[scores[-1]]
    return ('[{"Host":"' + "".join(chain.from_iterable(zip(hosts, tails, strict=True)))).encode()


_VALID_SCORES = frozenset(range(MIN_SCORE, MAX_SCORE + 1))


# --- bind -----------------------------------------------------------------------------------------

_BIND_KEYS = {"podname": "PodName", "podnamespace": "PodNamespace", "poduid": "PodUID", "node": "Node"}


@dataclass(frozen=True, slots=True)
class BindingArgs:
    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str


def parse_binding_args(body: bytes) -> BindingArgs:
    raw = _fold(_decode(body), _BIND_KEYS)
    values = {key: _string(raw.get(key), key) for key in ("PodName", "PodNamespace", "PodUID", "Node")}
    _check_name_length(values["Node"], "Node")
    return BindingArgs(values["PodName"], values["PodNamespace"], values["PodUID"], values["Node"])


def binding_result(error: str = "") -> bytes:
    return orjson.dumps({"Error": error})


# --- preempt --------------------------------------------------------------------------------------

_PREEMPT_KEYS = {
    "pod": "Pod",
    "nodenametovictims": "NodeNameToVictims",
    "nodenametometavictims": "NodeNameToMetaVictims",
}
_VICTIMS_KEYS = {"pods": "Pods", "numpdbviolations": "NumPDBViolations"}
_META_POD_KEYS = {"uid": "UID"}

MetaVictims = dict[str, dict[str, Any]]


def _pdb(value: Any, where: str) -> int:
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise WireError(f"{where}.NumPDBViolations: expected a non-negative integer, got {value!r}")
    return value


def _victims(raw: Any, where: str, *, meta: bool) -> dict[str, Any]:
    victims = _fold(_object(raw, where), _VICTIMS_KEYS)
    pods = victims.get("Pods")
    if pods is None:
        pods = []
    if not isinstance(pods, list):
        raise WireError(f"{where}.Pods: expected an array, got {_kind(pods)}")
    uids: list[dict[str, str]] = []
    for i, pod in enumerate(pods):
        pw = f"{where}.Pods[{i}]"
        if meta:
            uid = _fold(_object(pod, pw), _META_POD_KEYS).get("UID")
            uids.append({"UID": _string(uid, pw + ".UID")})
        else:
            ref = pod_ref(pod, pw)
            uids.append({"UID": _string(ref.uid, pw + ".metadata.uid")})
    return {"Pods": uids, "NumPDBViolations": _pdb(victims.get("NumPDBViolations"), where)}


@dataclass(frozen=True, slots=True)
class PreemptionArgs:
    pod: PodRef
    victims: MetaVictims
    """Always in NodeNameToMetaVictims form, whichever form arrived."""


def parse_preemption_args(body: bytes) -> PreemptionArgs:
    raw = _fold(_decode(body), _PREEMPT_KEYS)
    if raw.get("Pod") is None:
        raise WireError("Pod: required, got null or nothing")
    pod = pod_ref(raw["Pod"])
    meta, full = raw.get("NodeNameToMetaVictims"), raw.get("NodeNameToVictims")
    # With nodeCacheCapable the scheduler fills the Meta map; otherwise the full one. Prefer Meta.
    source, key, is_meta = (
        (meta, "NodeNameToMetaVictims", True) if meta is not None else (full, "NodeNameToVictims", False)
    )
    if source is None:
        return PreemptionArgs(pod, {})
    nodes = _object(source, key)
    victims = {node: _victims(value, f"{key}.{node}", meta=is_meta) for node, value in nodes.items()}
    return PreemptionArgs(pod, victims)


def preemption_result(victims: MetaVictims) -> bytes:
    return orjson.dumps({"NodeNameToMetaVictims": victims})
