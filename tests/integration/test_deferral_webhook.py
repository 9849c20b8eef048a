"""The mutating webhook over real loopback HTTP: gate added once, never blocks, non-reviews rejected."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from deferral.metrics import DeferralMetrics
from deferral.webhook import KEY_METRICS, add_webhook_routes, gate_patch

GATE = "carbon-aware.io/green-window"
UID = "705ab4f5-6393-11e8-b7cc-42010a800002"
OPTED_IN = {"carbon-aware.io/duration": "1h", "carbon-aware.io/max-delay": "6h"}

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def review(pod: dict[str, Any], operation: str = "CREATE", kind: str = "Pod") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": kind},
            "operation": operation,
            "namespace": "batch",
            "object": pod,
        },
    }


def pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "job-1", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    app = web.Application()
    add_webhook_routes(app, DeferralMetrics())
    return await aiohttp_client(app)


def apply(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Just enough RFC 6902 'add' to check the patch does what the API server would do."""
    for op in ops:
        assert op["op"] == "add"
        parts = op["path"].strip("/").split("/")
        target: Any = obj
        for part in parts[:-1]:
            target = target[part]
        if parts[-1] == "-":
            target.append(op["value"])
        else:
            target[parts[-1]] = op["value"]
    return obj


async def post(client: TestClient[Any, Any], body: Any) -> dict[str, Any]:
    resp = await client.post("/mutate", data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    assert resp.status == 200
    answer = await resp.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response: dict[str, Any] = answer["response"]
    assert response["allowed"] is True
    return response


async def test_opted_in_pod_gets_the_gate_once(client: TestClient[Any, Any]) -> None:
    original = pod(OPTED_IN)
    response = await post(client, review(original))
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert response["patchType"] == "JSONPatch"
    ops = orjson.loads(base64.b64decode(response["patch"]))
    gated = apply(original, ops)
    assert gated["spec"]["schedulingGates"] == [{"name": GATE}]
    assert "warnings" not in response
    # Reinvocation (reinvocationPolicy, or a retry) must not add a second gate.
    again = await post(client, review(gated))
    assert "patch" not in again


async def test_gate_is_appended_to_existing_gates(client: TestClient[Any, Any]) -> None:
    original = pod(OPTED_IN, schedulingGates=[{"name": "other.io/gate"}])
    ops = orjson.loads(base64.b64decode((await post(client, review(original)))["patch"]))
    assert apply(original, ops)["spec"]["schedulingGates"] == [{"name": "other.io/gate"}, {"name": GATE}]


@pytest.mark.parametrize(
    "body",
    [
        review(pod()),
        review(pod({"carbon-aware.io/duration": "1h"})),
        review(pod(OPTED_IN, nodeName="node-a")),
        review(pod(OPTED_IN, schedulingGates=[{"name": GATE}])),
        review(pod(OPTED_IN), operation="UPDATE"),
        review(pod(OPTED_IN), kind="Deployment"),
    ],
)
async def test_pods_that_did_not_opt_in_are_left_alone(client: TestClient[Any, Any], body: Any) -> None:
    response = await post(client, body)
    assert "patch" not in response


async def test_invalid_annotations_are_gated_with_a_warning(client: TestClient[Any, Any]) -> None:
    response = await post(
        client, review(pod({"carbon-aware.io/duration": "soon", "carbon-aware.io/max-delay": "1h"}))
    )
    assert response["patchType"] == "JSONPatch"
    assert any("duration" in warning for warning in response["warnings"])


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"request": {"uid": 5}}',
        orjson.dumps({**review(pod(OPTED_IN)), "kind": "Pod"}),
        orjson.dumps({**review(pod(OPTED_IN)), "apiVersion": "admission.k8s.io/v2"}),
        orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
        orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}),
        orjson.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}}
        ),
    ],
)
async def test_what_is_not_an_admission_review_is_rejected_and_the_service_keeps_serving(
    client: TestClient[Any, Any], raw: bytes
) -> None:
    resp = await client.post("/mutate", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    answer = await resp.json()
    assert isinstance(answer["error"], str)
    assert answer["error"]
    ok = await post(client, review(pod(OPTED_IN)))
    assert "patch" in ok


async def test_unexpected_objects_are_allowed_unchanged_with_the_uid(client: TestClient[Any, Any]) -> None:
    response = await post(client, review({"metadata": 7}))
    assert response["uid"] == UID
    assert "patch" not in response


async def test_the_answer_is_in_the_version_received(client: TestClient[Any, Any]) -> None:
    body = {**review(pod(OPTED_IN)), "apiVersion": "admission.k8s.io/v1beta1"}
    resp = await client.post("/mutate", data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    assert resp.status == 200
    answer = await resp.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
    assert answer["response"]["uid"] == UID
    assert answer["response"]["patchType"] == "JSONPatch"


@pytest.mark.parametrize(
    "notes",
    [
        {"carbon-aware.io/deadline": "9999-12-31T23:59:59-12:00"},
        {"carbon-aware.io/deadline": "0001-01-01T00:00:00+01:00"},
        {"carbon-aware.io/max-delay": "1h", "carbon-aware.io/earliest-start": "9999-12-31T23:30:00Z"},
        {
            "carbon-aware.io/deadline": "9999-12-31T23:59:59Z",
            "carbon-aware.io/earliest-start": "9999-12-31T23:30:00Z",
        },
    ],
)
async def test_out_of_range_times_are_gated_with_a_warning_and_the_uid(
    client: TestClient[Any, Any], notes: dict[str, str]
) -> None:
    response = await post(client, review(pod({"carbon-aware.io/duration": "1h", **notes})))
    assert response["uid"] == UID
    assert response["patchType"] == "JSONPatch"
    assert any("out of range" in warning for warning in response["warnings"])


async def test_a_webhook_bug_admits_the_pod_with_the_uid_and_a_warning(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("deferral.webhook.parse_spec", broken)
    response = await post(client, review(pod(OPTED_IN)))
    assert response["uid"] == UID
    assert "patch" not in response
    assert any("not deferred" in warning and "boom" in warning for warning in response["warnings"])
    registry = client.app[KEY_METRICS].registry
    assert registry.get_sample_value("carbon_deferral_admissions_total", {"outcome": "error"}) == 1


async def test_outcomes_are_counted(client: TestClient[Any, Any]) -> None:
    await post(client, review(pod(OPTED_IN)))
    await post(client, review(pod()))
    await client.post("/mutate", data=b"{", headers={"Content-Type": "application/json"})
    registry = client.app[KEY_METRICS].registry
    assert registry.get_sample_value("carbon_deferral_admissions_total", {"outcome": "gated"}) == 1
    assert registry.get_sample_value("carbon_deferral_admissions_total", {"outcome": "skipped"}) == 1
    assert registry.get_sample_value("carbon_deferral_admissions_total", {"outcome": "error"}) == 1


def test_gate_patch_ignores_malformed_pods() -> None:
    assert gate_patch({"metadata": {"annotations": OPTED_IN}, "spec": {"schedulingGates": "x"}}) == []
    assert gate_patch({"metadata": {"annotations": ["x"]}}) == []


@pytest.mark.parametrize(
    "notes",
    [
        {"carbon-aware.io/duration": "1h"},
        {"carbon-aware.io/deadline": "2030-01-01T00:00:00Z"},
        {"carbon-aware.io/max-delay": "6h", "carbon-aware.io/earliest-start": "2030-01-01T00:00:00Z"},
    ],
)
async def test_half_an_opt_in_is_admitted_ungated_with_a_warning(
    client: TestClient[Any, Any], notes: dict[str, str]
) -> None:
    response = await post(client, review(pod(notes)))
    assert response["uid"] == UID
    assert "patch" not in response
    assert any("needs carbon-aware.io/duration" in warning for warning in response["warnings"])


async def test_a_client_hanging_up_mid_body_is_counted_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    arrived = asyncio.Event()

    @web.middleware
    async def signal_arrival(request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived.set()  # the handler runs now: hanging up from here on is mid-body, not mid-headers
        return await handler(request)

    app = web.Application(middlewares=[signal_arrival])
    add_webhook_routes(app, DeferralMetrics())
    registry = app[KEY_METRICS].registry
    # A runner like the service's: aiohttp's TestServer cancels handlers on disconnect, production does not.
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        _, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        writer.write(b'Content-Length: 1000\r\n\r\n{"kind": ')
        await writer.drain()
        async with asyncio.timeout(10):
            await arrived.wait()
        writer.close()
        await writer.wait_closed()
        for _ in range(500):
            if registry.get_sample_value("carbon_deferral_admissions_total", {"outcome": "aborted"}):
                break
            await asyncio.sleep(0.01)
        assert registry.get_sample_value("carbon_deferral_admissions_total", {"outcome": "aborted"}) == 1
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        await runner.cleanup()


# docs/fuzz.md finding 4: a list or object value was an ERROR traceback and an ungated pod.
@pytest.mark.parametrize("value", [["1h"], {"hours": 1}, 5400])
async def test_a_non_string_annotation_is_gated_with_a_warning_and_no_error(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture, value: object
) -> None:
    response = await post(client, review(pod({**OPTED_IN, "carbon-aware.io/duration": value})))  # type: ignore[dict-item]
    assert response["uid"] == UID
    assert response["patchType"] == "JSONPatch"
    assert any("duration: an annotation value must be a string" in w for w in response["warnings"])
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
