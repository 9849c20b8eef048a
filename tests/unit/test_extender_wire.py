"""Wire contract of extender protocol v1, pinned against the upstream bytes (kube-scheduler's
extender/v1 types_test.go)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from extender import wire


def _pod(uid: str = "uid-1", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-0", "namespace": "default", "uid": uid}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "c"}]}}


def _node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "status": {"capacity": {"cpu": "4"}}}


# --- golden bytes from k8s.io/kube-scheduler/extender/v1/types_test.go ----------------------------


def test_priority_list_bytes_match_upstream() -> None:
    assert wire.priority_list(["myhost"], [1]) == b'[{"Host":"myhost","Score":1}]'


def test_binding_args_golden_input_parses() -> None:
    body = b'{"PodName":"mypodname","PodNamespace":"mypodnamespace","PodUID":"mypoduid","Node":"mynode"}'
    assert wire.parse_binding_args(body) == wire.BindingArgs(
        "mypodname", "mypodnamespace", "mypoduid", "mynode"
    )


def test_binding_result_bytes_match_upstream() -> None:
    assert wire.binding_result("myerror") == b'{"Error":"myerror"}'
    assert wire.binding_result() == b'{"Error":""}'


def test_preemption_result_bytes_match_upstream() -> None:
    victims = {"foo": {"Pods": [{"UID": "myuid"}], "NumPDBViolations": 1}}
    expected = b'{"NodeNameToMetaVictims":{"foo":{"Pods":[{"UID":"myuid"}],"NumPDBViolations":1}}}'
    assert wire.preemption_result(victims) == expected


# --- ExtenderArgs -------------------------------------------------------------------------------


def test_node_names_mode_with_null_nodes() -> None:
    body = orjson.dumps({"Pod": _pod(), "Nodes": None, "NodeNames": ["a", "b"]})
    args = wire.parse_extender_args(body)
    assert (args.node_names, args.nodes) == (["a", "b"], None)
    assert args.pod.uid == "uid-1"
    assert args.pod.namespace == "default"


def test_full_nodes_mode_with_null_names() -> None:
    nodes = {"kind": "NodeList", "apiVersion": "v1", "items": [_node("a"), _node("b")]}
    args = wire.parse_extender_args(orjson.dumps({"Pod": _pod(), "Nodes": nodes, "NodeNames": None}))
    assert args.node_names is None
    assert [item["metadata"]["name"] for item in args.items] == ["a", "b"]


@pytest.mark.parametrize("keys", [("pod", "nodenames"), ("POD", "NODENAMES"), ("pOd", "nodeNames")])
def test_keys_are_case_insensitive(keys: tuple[str, str]) -> None:
    args = wire.parse_extender_args(orjson.dumps({keys[0]: _pod(), keys[1]: ["x"]}))
    assert args.node_names == ["x"]


def test_unknown_keys_are_ignored_like_go() -> None:
    args = wire.parse_extender_args(orjson.dumps({"Pod": _pod(), "NodeNames": ["x"], "Extra": 1}))
    assert args.node_names == ["x"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (orjson.dumps({"NodeNames": ["a"]}), "Pod"),
        (orjson.dumps({"Pod": None, "NodeNames": ["a"]}), "Pod"),
        (orjson.dumps({"Pod": "x", "NodeNames": ["a"]}), "Pod"),
        (orjson.dumps({"Pod": _pod()}), "both null"),
        (orjson.dumps({"Pod": _pod(), "Nodes": {"items": []}, "NodeNames": []}), "both set"),
        (orjson.dumps({"Pod": _pod(), "NodeNames": "a"}), "NodeNames"),
        (orjson.dumps({"Pod": _pod(), "NodeNames": ["a", 3]}), "NodeNames[1]"),
        (orjson.dumps({"Pod": _pod(), "NodeNames": [""]}), "NodeNames[0]"),
        (orjson.dumps({"Pod": _pod(), "Nodes": []}), "Nodes"),
        (orjson.dumps({"Pod": _pod(), "Nodes": {"items": {}}}), "Nodes.items"),
        (orjson.dumps({"Pod": _pod(), "Nodes": {"items": [1]}}), "Nodes.items[0]"),
        (
            orjson.dumps({"Pod": _pod(), "Nodes": {"items": [{"metadata": {}}]}}),
            "Nodes.items[0].metadata.name",
        ),
        (orjson.dumps({"Pod": _pod(), "Nodes": {"items": [{}]}}), "Nodes.items[0].metadata"),
        (
            orjson.dumps({"Pod": _pod(), "Nodes": {"items": [{"metadata": {"name": "a", "labels": []}}]}}),
            "Nodes.items[0].metadata.labels",
        ),
        (
            orjson.dumps({"Pod": {"metadata": {"annotations": []}}, "NodeNames": []}),
            "Pod.metadata.annotations",
        ),
        (orjson.dumps({"Pod": {"metadata": {"uid": 5}}, "NodeNames": []}), "Pod.metadata.uid"),
        # issue 12 item 2: a node name is a DNS subdomain, at most 253 characters.
        (orjson.dumps({"Pod": _pod(), "NodeNames": ["a", "n" * 254]}), "NodeNames[1]: 254 characters"),
        (
            orjson.dumps({"Pod": _pod(), "Nodes": {"items": [_node("a"), _node("n" * 10_000)]}}),
            "Nodes.items[1].metadata.name: 10000 characters",
        ),
    ],
)
def test_malformed_args_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(wire.WireError, match=field.replace("[", r"\[").replace("]", r"\]")):
        wire.parse_extender_args(body)


def test_null_items_is_an_empty_node_list() -> None:
    args = wire.parse_extender_args(orjson.dumps({"Pod": _pod(), "Nodes": {"items": None}}))
    assert (args.node_names, args.items) == (None, [])


# --- filter results -----------------------------------------------------------------------------


def test_filter_result_names_mode_answers_names_and_null_nodes() -> None:
    args = wire.parse_extender_args(orjson.dumps({"Pod": _pod(), "NodeNames": ["a", "b", "c"]}))
    out = orjson.loads(wire.filter_result(args, ["a", "c"], {}, {"b": "too dirty"}))
    assert out == {
        "Nodes": None,
        "NodeNames": ["a", "c"],
        "FailedNodes": {},
        "FailedAndUnresolvableNodes": {"b": "too dirty"},
        "Error": "",
    }


def test_filter_result_full_mode_returns_the_received_objects() -> None:
    nodes = {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [_node("a"), _node("b")]}
    args = wire.parse_extender_args(orjson.dumps({"Pod": _pod(), "Nodes": nodes, "NodeNames": None}))
    everyone = orjson.loads(wire.filter_result(args, None, {}, {}))
    assert everyone["Nodes"] == nodes
    assert everyone["NodeNames"] is None
    some = orjson.loads(wire.filter_result(args, ["b"], {"a": "x"}, {}))
    assert some["Nodes"] == {**nodes, "items": [_node("b")]}
    assert some["FailedNodes"] == {"a": "x"}


def test_filter_error_has_every_field() -> None:
    out = orjson.loads(wire.filter_error("boom"))
    assert out["Error"] == "boom"
    assert set(out) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}


def test_priority_scores_are_json_integers() -> None:
    raw = wire.priority_list(["a", "b"], [10, 0])
    assert raw == b'[{"Host":"a","Score":10},{"Host":"b","Score":0}]'


# --- binding ------------------------------------------------------------------------------------


def test_binding_lower_case_keys() -> None:
    body = b'{"podname":"p","podnamespace":"ns","poduid":"u","node":"n"}'
    assert wire.parse_binding_args(body) == wire.BindingArgs("p", "ns", "u", "n")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"PodNamespace": "ns", "PodUID": "u", "Node": "n"}, "PodName"),
        ({"PodName": "p", "PodNamespace": "ns", "PodUID": "u", "Node": 3}, "Node"),
        ({"PodName": "p", "PodNamespace": "ns", "PodUID": None, "Node": "n"}, "PodUID"),
        ({"PodName": "p", "PodNamespace": "", "PodUID": "u", "Node": "n"}, "PodNamespace"),
        ({"PodName": "p", "PodNamespace": "ns", "PodUID": "u", "Node": "n" * 254}, "Node: 254 characters"),
    ],
)
def test_binding_bad_fields(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(wire.WireError, match=field):
        wire.parse_binding_args(orjson.dumps(payload))


# --- preemption ---------------------------------------------------------------------------------


def test_preempt_meta_victims_pass_through() -> None:
    body = orjson.dumps(
        {
            "Pod": _pod(),
            "NodeNameToVictims": None,
            "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "v1"}, {"UID": "v2"}], "NumPDBViolations": 2}},
        }
    )
    args = wire.parse_preemption_args(body)
    assert orjson.loads(wire.preemption_result(args.victims)) == {
        "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "v1"}, {"UID": "v2"}], "NumPDBViolations": 2}}
    }


def test_preempt_full_victims_become_meta_with_uids() -> None:
    body = orjson.dumps(
        {
            "pod": _pod(),
            "nodenametovictims": {"n1": {"pods": [_pod("victim-uid")], "numpdbviolations": 0}},
            "nodenametometavictims": None,
        }
    )
    args = wire.parse_preemption_args(body)
    assert args.victims == {"n1": {"Pods": [{"UID": "victim-uid"}], "NumPDBViolations": 0}}


def test_preempt_nothing_is_an_empty_map() -> None:
    args = wire.parse_preemption_args(orjson.dumps({"Pod": _pod()}))
    assert wire.preemption_result(args.victims) == b'{"NodeNameToMetaVictims":{}}'


@pytest.mark.parametrize(
    ("victims", "field"),
    [
        ({"n1": []}, "NodeNameToMetaVictims.n1"),
        ({"n1": {"Pods": {}}}, "NodeNameToMetaVictims.n1.Pods"),
        ({"n1": {"Pods": [{"UID": 1}]}}, r"NodeNameToMetaVictims.n1.Pods\[0\].UID"),
        ({"n1": {"Pods": [], "NumPDBViolations": "2"}}, "NumPDBViolations"),
        ({"n1": {"Pods": [], "NumPDBViolations": -1}}, "NumPDBViolations"),
    ],
)
def test_preempt_bad_victims(victims: dict[str, Any], field: str) -> None:
    with pytest.raises(wire.WireError, match=field):
        wire.parse_preemption_args(orjson.dumps({"Pod": _pod(), "NodeNameToMetaVictims": victims}))


def test_preempt_full_victim_without_uid_is_rejected() -> None:
    pod = {"metadata": {"name": "x"}}
    body = orjson.dumps({"Pod": _pod(), "NodeNameToVictims": {"n1": {"Pods": [pod]}}})
    with pytest.raises(wire.WireError, match=r"NodeNameToVictims.n1.Pods\[0\].metadata.uid"):
        wire.parse_preemption_args(body)


@pytest.mark.parametrize(
    ("hosts", "scores"),
    [
        (["a", "b", "c"], [10, 0, 5]),
        (['quote"d', "back\\slash", "ctl\x01"], [1, 2, 3]),
        (["ünïcode-node"], [7]),
        (["x"], [True]),
        ([f"node-{i}" for i in range(1000)], [i % 11 for i in range(1000)]),
    ],
)
def test_priority_list_fast_path_is_byte_identical_to_orjson(hosts: list[str], scores: list[int]) -> None:
    expected = orjson.dumps([{"Host": h, "Score": s} for h, s in zip(hosts, scores, strict=True)])
    assert wire.priority_list(hosts, scores) == expected


def test_priority_list_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="length"):
        wire.priority_list(["a"], [])


def test_node_names_at_the_kubernetes_limit_are_accepted() -> None:
    longest = "n" * wire.MAX_NODE_NAME
    assert wire.parse_extender_args(orjson.dumps({"Pod": _pod(), "NodeNames": [longest]})).node_names == [
        longest
    ]


# docs/fuzz.md finding 1: orjson reads 1,024 levels but writes 254; the echo was a TypeError (500).
def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("passed", [None, ["a"]])
def test_filter_result_refuses_a_node_list_too_deep_to_hand_back(passed: list[str] | None) -> None:
    node = b'{"metadata": {"name": "a"}, "status": {"x": ' + _deep(300) + b"}}"
    body = b'{"Pod": {}, "Nodes": {"items": [' + node + b"]}}"
    args = wire.parse_extender_args(body)
    with pytest.raises(wire.WireError, match="Nodes: cannot be handed back"):
        wire.filter_result(args, passed, {}, {})
