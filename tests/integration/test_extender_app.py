"""The extender over real HTTP on loopback: every endpoint, both modes, and every kind of bad input."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from carbon_common.snapshot import Snapshot, ZoneReading
from extender.app import BIND_DISABLED, STATE, create_app
from extender.settings import ExtenderSettings
from extender.view import CarbonState, CarbonView

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
P = "carbon-aware.io/"
ZONES = {"se-1": "SE", "fr-1": "FR", "de-1": "DE", "de-2": "DE", "pl-1": "PL", "nozone-1": None}
INTENSITY = {"SE": 20.0, "FR": 60.0, "DE": 420.0, "PL": 820.0}

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


class Lookup:
    def __init__(self, zones: Mapping[str, str | None], synced: bool = True) -> None:
        self.zones = dict(zones)
        self._synced = synced
        self.version = 0

    def zone_of(self, node_name: str) -> str | None:
        return self.zones.get(node_name)

    def zones_of(self, node_names: list[str]) -> list[str | None]:
        return [self.zones.get(name) for name in node_names]

    def __contains__(self, node_name: object) -> bool:
        return node_name in self.zones

    def __len__(self) -> int:
        return len(self.zones)

    @property
    def synced(self) -> bool:
        return self._synced


class FakeBinder:
    def __init__(self, error: str | None = None, delay: float = 0.0, raises: bool = False) -> None:
        self.calls: list[tuple[str, str, str, str, Mapping[str, str] | None]] = []
        self.error, self.delay, self.raises = error, delay, raises

    async def bind(
        self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str] | None
    ) -> str | None:
        self.calls.append((namespace, name, uid, node, annotations))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.raises:
            raise RuntimeError("apiserver exploded")
        return self.error

    async def close(self) -> None:
        pass


def carbon(stale: frozenset[str] = frozenset()) -> CarbonState:
    readings = {
        z: ZoneReading(z, i, NOW - timedelta(hours=10 if z in stale else 0, minutes=5), "test")
        for z, i in INTENSITY.items()
    }
    return CarbonState(CarbonView(Snapshot(NOW, readings), NOW))


def pod(uid: str = "uid-1", **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-0",
            "namespace": "shop",
            "uid": uid,
            "annotations": {P + k.replace("_", "-"): v for k, v in annotations.items()},
        },
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }


def node(name: str) -> dict[str, Any]:
    zone = ZONES.get(name)
    labels = {"kubernetes.io/hostname": name} | ({P + "zone": zone} if zone else {})
    return {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": {"cpu": "4"}}}


def args(names: list[str], full: bool, p: dict[str, Any] | None = None) -> dict[str, Any]:
    if full:
        return {
            "Pod": p or pod(),
            "Nodes": {"kind": "NodeList", "items": [node(n) for n in names]},
            "NodeNames": None,
        }
    return {"Pod": p or pod(), "Nodes": None, "NodeNames": names}


@pytest.fixture
def make_client(aiohttp_client: Callable[..., Awaitable[Client]]) -> MakeClient:
    async def make(
        settings: ExtenderSettings | None = None,
        binder: FakeBinder | None = None,
        state: CarbonState | None = None,
        synced: bool = True,
    ) -> Client:
        app = create_app(
            settings or ExtenderSettings(),
            Lookup(ZONES, synced),
            state if state is not None else carbon(),
            binder,
            clock=lambda: NOW,
        )
        return await aiohttp_client(app)

    return make


async def post(client: Client, path: str, body: Any, status: int = 200) -> Any:
    resp = await client.post(path, data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return orjson.loads(await resp.read())


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


ALL = ["se-1", "fr-1", "de-1", "de-2", "pl-1", "nozone-1", "unknown-node"]


# --- prioritize ---------------------------------------------------------------------------------


@pytest.mark.parametrize("full", [False, True])
async def test_prioritize_scores_greenest_highest(make_client: MakeClient, full: bool) -> None:
    client = await make_client()
    out = await post(client, "/prioritize", args(ALL, full))
    assert [h["Host"] for h in out] == ALL
    scores = {h["Host"]: h["Score"] for h in out}
    assert all(type(s) is int and 0 <= s <= 10 for s in scores.values())
    assert scores["se-1"] == 10
    assert scores["pl-1"] == 0
    assert scores["de-1"] == scores["de-2"] == 5
    assert scores["nozone-1"] == 5
    assert scores["unknown-node"] == 5


async def test_prioritize_lower_case_keys(make_client: MakeClient) -> None:
    client = await make_client()
    out = await post(client, "/prioritize", {"pod": pod(), "nodes": None, "nodenames": ["se-1", "pl-1"]})
    assert out == [{"Host": "se-1", "Score": 10}, {"Host": "pl-1", "Score": 0}]


async def test_prioritize_without_carbon_data_is_neutral(make_client: MakeClient) -> None:
    client = await make_client(state=CarbonState())
    out = await post(client, "/prioritize", args(["se-1", "pl-1"], False))
    assert out == [{"Host": "se-1", "Score": 5}, {"Host": "pl-1", "Score": 5}]
    metrics = await (await client.get("/metrics")).text()
    assert 'carbon_extender_neutral_scores_total{reason="missing"} 2.0' in metrics


async def test_prioritize_stale_zone_is_neutral(make_client: MakeClient) -> None:
    client = await make_client(state=carbon(stale=frozenset({"PL"})))
    out = await post(client, "/prioritize", args(["se-1", "de-1", "pl-1"], False))
    assert [h["Score"] for h in out] == [10, 0, 5]


async def test_prioritize_opt_out_is_neutral(make_client: MakeClient) -> None:
    client = await make_client()
    out = await post(client, "/prioritize", args(["se-1", "pl-1"], False, pod(opt_out="true")))
    assert [h["Score"] for h in out] == [5, 5]


async def test_prioritize_empty_list(make_client: MakeClient) -> None:
    client = await make_client()
    assert await post(client, "/prioritize", args([], False)) == []


# --- filter -------------------------------------------------------------------------------------


@pytest.mark.parametrize("full", [False, True])
async def test_filter_without_cap_passes_everything(make_client: MakeClient, full: bool) -> None:
    client = await make_client()
    body = args(ALL, full)
    out = await post(client, "/filter", body)
    if full:
        assert out["Nodes"] == body["Nodes"]
        assert out["NodeNames"] is None
    else:
        assert out["NodeNames"] == ALL
        assert out["Nodes"] is None
    assert out["FailedNodes"] == {}
    assert out["FailedAndUnresolvableNodes"] == {}
    assert out["Error"] == ""


@pytest.mark.parametrize("full", [False, True])
async def test_filter_cap_removes_dirty_nodes_with_reason(make_client: MakeClient, full: bool) -> None:
    client = await make_client()
    out = await post(client, "/filter", args(ALL, full, pod(max_intensity="100")))
    kept = ["se-1", "fr-1", "nozone-1", "unknown-node"]  # unknown → allowed by default
    if full:
        assert [n["metadata"]["name"] for n in out["Nodes"]["items"]] == kept
        assert out["Nodes"]["kind"] == "NodeList"
    else:
        assert out["NodeNames"] == kept
    failed = out["FailedAndUnresolvableNodes"]
    assert set(failed) == {"de-1", "de-2", "pl-1"}
    assert "zone PL" in failed["pl-1"]
    assert "820" in failed["pl-1"]
    metrics = await (await client.get("/metrics")).text()
    assert 'carbon_extender_nodes_filtered_total{reason="over_cap"} 3.0' in metrics


async def test_filter_cap_deny_unknown(make_client: MakeClient) -> None:
    client = await make_client(dataclasses.replace(ExtenderSettings(), cap_unknown="deny"))
    out = await post(client, "/filter", args(ALL, False, pod(max_intensity="100")))
    assert out["NodeNames"] == ["se-1", "fr-1"]
    assert "unknown" in out["FailedAndUnresolvableNodes"]["unknown-node"]


async def test_filter_malformed_annotation_is_ignored(make_client: MakeClient) -> None:
    client = await make_client()
    out = await post(client, "/filter", args(ALL, False, pod(max_intensity="very low")))
    assert out["NodeNames"] == ALL
    metrics = await (await client.get("/metrics")).text()
    assert "carbon_extender_annotation_problems_total 1.0" in metrics


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/filter", "/prioritize", "/bind", "/preempt"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{oops", "not valid JSON"),
        (b'"a string"', "JSON object"),
        (b'{"Pod": 7, "NodeNames": [], "PodName": 1, "NodeNameToMetaVictims": 3}', ""),
    ],
)
async def test_malformed_json_is_400_and_service_stays_up(
    make_client: MakeClient, path: str, body: bytes, message: str
) -> None:
    client = await make_client(binder=FakeBinder())
    resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    out = orjson.loads(await resp.read())
    assert message in out["Error"]
    assert out["Error"]
    assert (await client.get("/healthz")).status == 200


async def test_wrong_types_name_the_field(make_client: MakeClient) -> None:
    client = await make_client()
    out = await post(client, "/filter", {"Pod": pod(), "NodeNames": ["a", 1]}, 400)
    assert "NodeNames[1]" in out["Error"]
    out = await post(
        client, "/prioritize", {"Pod": pod(), "Nodes": {"items": [{"metadata": {"name": 3}}]}}, 400
    )
    assert "Nodes.items[0].metadata.name" in out["Error"]


async def test_wrong_content_type_is_415(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.post("/filter", data=b"{}", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    assert "application/json" in orjson.loads(await resp.read())["Error"]


async def test_content_type_with_charset_is_fine(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.post(
        "/prioritize",
        data=orjson.dumps(args(["se-1"], False)),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert resp.status == 200


async def test_huge_body_is_413_json(make_client: MakeClient) -> None:
    client = await make_client(dataclasses.replace(ExtenderSettings(), max_body_bytes=1024))
    big = orjson.dumps(args([f"node-{i}" for i in range(500)], False))
    resp = await client.post("/filter", data=big, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert "1024" in orjson.loads(await resp.read())["Error"]

    async def chunks() -> Any:  # no Content-Length: the limit must hold while reading
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    resp = await client.post("/filter", data=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await client.get("/healthz")).status == 200


async def test_unknown_route_404_json(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/nope")
    assert resp.status == 404
    assert "Error" in orjson.loads(await resp.read())
    resp = await client.post("/nope", data=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status == 404


async def test_wrong_method_405_json(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/filter")
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]
    assert "Error" in orjson.loads(await resp.read())


async def test_handler_crash_is_500_json_and_keeps_serving(make_client: MakeClient) -> None:
    client = await make_client()

    class Broken:
        view = property(lambda self: 1 / 0)

    client.app[STATE].carbon = Broken()  # type: ignore[assignment]
    out = await post(client, "/prioritize", args(["se-1"], False), 500)
    assert "ZeroDivisionError" in out["Error"]
    assert (await client.get("/healthz")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'carbon_extender_requests_total{outcome="error",verb="prioritize"} 1.0' in metrics


# --- bind ---------------------------------------------------------------------------------------

BIND = {"PodName": "web-0", "PodNamespace": "shop", "PodUID": "uid-1", "Node": "se-1"}


async def test_bind_without_binder(make_client: MakeClient) -> None:
    client = await make_client()
    assert await post(client, "/bind", BIND) == {"Error": BIND_DISABLED}


async def test_bind_after_prioritize_annotates_and_counts_avoided(make_client: MakeClient) -> None:
    binder = FakeBinder()
    client = await make_client(binder=binder)
    await post(client, "/prioritize", args(["se-1", "de-1", "pl-1"], False))
    assert await post(client, "/bind", BIND) == {"Error": ""}
    ns, name, uid, target, annotations = binder.calls[0]
    assert (ns, name, uid, target) == ("shop", "web-0", "uid-1", "se-1")
    assert annotations is not None
    note = orjson.loads(annotations[P + "decision"])
    assert note["zone"] == "SE"
    assert note["intensity"] == 20.0
    assert note["score"] == 10
    assert note["candidatesMeanIntensity"] == pytest.approx((20 + 420 + 820) / 3)
    assert note["time"] == "2026-11-22T10:00:00Z"
    metrics = await (await client.get("/metrics")).text()
    assert 'carbon_extender_binds_total{result="success"} 1.0' in metrics
    avoided = metric_value(metrics, "carbon_extender_intensity_avoided_grams_per_kwh_sum")
    assert avoided == pytest.approx(420.0 - 20.0)


async def test_bind_full_mode_uses_zone_from_request_nodes(make_client: MakeClient) -> None:
    binder = FakeBinder()
    client = await make_client(binder=binder)
    body = args(["de-1", "fr-1"], True)
    body["Nodes"]["items"][1]["metadata"]["labels"][P + "zone"] = "SE"  # request is newer than the cache
    await post(client, "/prioritize", body)
    await post(client, "/bind", {**BIND, "Node": "fr-1"})
    assert binder.calls[0][4] is not None
    assert orjson.loads(binder.calls[0][4][P + "decision"])["zone"] == "SE"


async def test_bind_without_prior_decision_still_annotates_current_intensity(make_client: MakeClient) -> None:
    binder = FakeBinder()
    client = await make_client(dataclasses.replace(ExtenderSettings(), annotate_decision=True), binder=binder)
    await post(client, "/bind", {**BIND, "Node": "de-1"})
    assert binder.calls[0][4] is not None
    note = orjson.loads(binder.calls[0][4][P + "decision"])
    assert (note["zone"], note["intensity"], note["candidatesMeanIntensity"]) == ("DE", 420.0, None)


async def test_bind_annotation_can_be_disabled(make_client: MakeClient) -> None:
    binder = FakeBinder()
    client = await make_client(
        dataclasses.replace(ExtenderSettings(), annotate_decision=False), binder=binder
    )
    await post(client, "/bind", BIND)
    assert binder.calls[0][4] is None


async def test_bind_error_is_reported_in_error(make_client: MakeClient) -> None:
    client = await make_client(binder=FakeBinder(error="pod is already bound to node x"))
    assert await post(client, "/bind", BIND) == {"Error": "pod is already bound to node x"}


async def test_bind_exception_and_timeout_become_error(make_client: MakeClient) -> None:
    client = await make_client(binder=FakeBinder(raises=True))
    assert "apiserver exploded" in (await post(client, "/bind", BIND))["Error"]
    client = await make_client(binder=FakeBinder(error="binding shop/web-0 timed out after 4s"))
    assert "timed out" in (await post(client, "/bind", BIND))["Error"]


async def test_concurrent_binds(make_client: MakeClient) -> None:
    binder = FakeBinder(delay=0.05)
    client = await make_client(binder=binder)
    bodies = [{**BIND, "PodName": f"p{i}", "PodUID": f"u{i}"} for i in range(20)]
    results = await asyncio.gather(*(post(client, "/bind", b) for b in bodies))
    assert results == [{"Error": ""}] * 20
    assert sorted(c[2] for c in binder.calls) == sorted(f"u{i}" for i in range(20))


async def test_bind_lower_case_keys(make_client: MakeClient) -> None:
    binder = FakeBinder()
    client = await make_client(binder=binder)
    await post(client, "/bind", {"podname": "p", "podnamespace": "ns", "poduid": "u", "node": "se-1"})
    assert binder.calls[0][:4] == ("ns", "p", "u", "se-1")


# --- preempt ------------------------------------------------------------------------------------


async def test_preempt_meta_passthrough(make_client: MakeClient) -> None:
    client = await make_client()
    victims = {"de-1": {"Pods": [{"UID": "v1"}], "NumPDBViolations": 1}}
    out = await post(
        client, "/preempt", {"Pod": pod(), "NodeNameToVictims": None, "NodeNameToMetaVictims": victims}
    )
    assert out == {"NodeNameToMetaVictims": victims}


async def test_preempt_full_victims(make_client: MakeClient) -> None:
    client = await make_client()
    body = {"pod": pod(), "nodeNameToVictims": {"de-1": {"Pods": [pod("v9")], "NumPDBViolations": 0}}}
    out = await post(client, "/preempt", body)
    assert out == {"NodeNameToMetaVictims": {"de-1": {"Pods": [{"UID": "v9"}], "NumPDBViolations": 0}}}


# --- health -------------------------------------------------------------------------------------


async def test_readyz_follows_node_cache_not_carbon_data(make_client: MakeClient) -> None:
    client = await make_client(state=CarbonState(), synced=False)
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert orjson.loads(await resp.read())["ready"] is False
    client = await make_client(state=CarbonState())
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert orjson.loads(await resp.read()) == {
        "ready": True,
        "reason": "node cache synced",
        "nodes": len(ZONES),
        "carbonData": False,
        "carbonSourceFailing": False,
        "carbonSourceError": None,
    }


async def test_readyz_and_metrics_show_a_failing_carbon_source_but_stay_ready(
    make_client: MakeClient,
) -> None:
    # issue 12 item 1: a source that keeps failing is visible (readiness body, gauge, counter); the
    # extender stays ready and scores on its last good data.
    state = carbon()
    state.record_error("zones.DE.observedAt: timestamp out of range")
    client = await make_client(state=state)
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = orjson.loads(await resp.read())
    assert (body["carbonData"], body["carbonSourceFailing"]) == (True, True)
    assert "out of range" in body["carbonSourceError"]
    text = await (await client.get("/metrics")).text()
    assert metric_value(text, "carbon_extender_carbon_source_failing") == 1.0
    assert metric_value(text, "carbon_extender_carbon_source_errors_total") == 1.0


async def test_metrics_exposition(make_client: MakeClient) -> None:
    client = await make_client()
    await post(client, "/prioritize", args(["se-1", "pl-1"], False))
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert 'carbon_extender_zone_intensity_grams_per_kwh{zone="PL"} 820.0' in text
    assert 'carbon_extender_carbon_data_age_seconds{zone="SE"}' in text
    assert 'carbon_extender_request_duration_seconds_bucket{le="0.0001",verb="prioritize"}' in text
    assert 'carbon_extender_scores_bucket{le="0.0"} 1.0' in text
    assert 'carbon_extender_scores_bucket{le="+Inf"} 2.0' in text
    assert "carbon_extender_node_cache_synced 1.0" in text


async def test_repeated_lists_follow_carbon_and_node_changes(make_client: MakeClient) -> None:
    client = await make_client()
    state = client.app[STATE]
    clock = [0.0]
    state.monotonic = lambda: clock[0]
    body = args(["se-1", "pl-1", "de-1"], False)
    assert [h["Score"] for h in await post(client, "/prioritize", body)] == [10, 0, 5]
    assert [h["Score"] for h in await post(client, "/prioritize", body)] == [10, 0, 5]
    # New carbon data: same list, new scores at once.
    readings = dict(carbon().view.snapshot.zones)  # type: ignore[union-attr]
    readings["PL"] = ZoneReading("PL", 10.0, NOW, "test")
    state.carbon.set(CarbonView(Snapshot(NOW, readings), NOW))
    assert [h["Score"] for h in await post(client, "/prioritize", body)] == [10, 10, 0]
    # A different cap on the same list: a different filter answer.
    capped = args(["se-1", "pl-1", "de-1"], False, pod(max_intensity="100"))
    assert (await post(client, "/filter", capped))["NodeNames"] == ["se-1", "pl-1"]
    capped = args(["se-1", "pl-1", "de-1"], False, pod(max_intensity="15"))
    assert (await post(client, "/filter", capped))["NodeNames"] == ["pl-1"]
    # A node relabelled to another zone is seen once the memo entry expires (1 s).
    state.nodes.zones["de-1"] = "SE"  # type: ignore[attr-defined]
    clock[0] = 2.0
    assert [h["Score"] for h in await post(client, "/prioritize", body)] == [
        0,
        10,
        0,
    ]  # SE 20 is now the dirtiest


async def test_stale_data_is_logged_once_per_zone_and_minute(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(state=carbon(stale=frozenset({"PL"})))
    body = args(["se-1", "pl-1", "unknown-node"], False)
    with caplog.at_level("WARNING", logger="extender"):
        await post(client, "/prioritize", body)
        await post(client, "/prioritize", body)
    lines = [r for r in caplog.records if "no fresh carbon data" in r.getMessage()]
    assert [(r.zone, r.status) for r in lines] == [("PL", "stale")]  # type: ignore[attr-defined]


# docs/fuzz.md finding 1: a Node nested more than 254 levels deep parsed, but its echo was a 500.
@pytest.mark.parametrize("cap", [False, True])
async def test_filter_of_a_node_too_deep_to_hand_back_is_400(make_client: MakeClient, cap: bool) -> None:
    client = await make_client()
    body = args(ALL, True, pod(max_intensity="100") if cap else None)
    deep = b"[" * 300 + b"]" * 300
    raw = orjson.dumps(body).replace(b'"allocatable"', b'"deep":' + deep + b',"allocatable"', 1)
    resp = await client.post("/filter", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    out = orjson.loads(await resp.read())
    assert "Nodes: cannot be handed back" in out["Error"]
    assert out["Nodes"] is None
    assert (await post(client, "/filter", args(ALL, True)))["Error"] == ""
