"""The whole carbon-deferral app (create_app): health, readiness after the pod cache syncs, metrics, the
webhook over TLS, and the controller wired to the loopback fake API server."""

from __future__ import annotations

import asyncio
import base64
import io
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from carbon_common.leader import LeaderSettings
from carbon_common.tls import CertReloader, server_ssl_context
from deferral.app import create_app
from deferral.settings import DeferralSettings

if TYPE_CHECKING:
    from tests.fakes.kube_apiserver import FakeKube

pytest_plugins = ["tests.fakes.kube_apiserver"]
pytestmark = pytest.mark.timeout(60)

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
GATE = "carbon-aware.io/green-window"


async def test_webhook_only_serves_health_metrics_and_mutate(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_app(DeferralSettings(controller=False)))
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    metrics = await client.get("/metrics")
    assert metrics.status == 200
    assert "carbon_deferral_releases_total" in await metrics.text()


async def test_errors_are_json(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_app(DeferralSettings(controller=False)))
    missing = await client.get("/nope")
    assert missing.status == 404
    assert (await missing.json())["error"]
    wrong_method = await client.get("/mutate")
    assert wrong_method.status == 405
    assert wrong_method.headers["Allow"] == "POST"
    assert (await wrong_method.json())["error"]
    too_big = await client.post("/mutate", data=io.BytesIO(b"x" * (5 * 1024 * 1024)))
    assert too_big.status == 413
    assert (await too_big.json())["error"]


async def test_controller_app_gets_ready_and_releases_invalid_pods(
    fake_kube: FakeKube, aiohttp_client: ClientFactory
) -> None:
    fake_kube.add_pod("batch", "typo", annotations={"carbon-aware.io/duration": "x"}, scheduling_gates=[GATE])
    settings = DeferralSettings(
        kubeconfig=fake_kube.kubeconfig,
        feed_url="http://127.0.0.1:9",  # discard port: the feed is down, which must not matter here
        tick=0.05,
        leader=LeaderSettings(
            lease_name="carbon-deferral",
            lease_namespace="kube-system",
            identity="app-test",
            lease_duration=3.0,
            renew_deadline=2.0,
            retry_period=0.1,
        ),
    )
    client = await aiohttp_client(create_app(settings))
    for _ in range(500):
        if (await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.02)
    assert (await client.get("/readyz")).status == 200
    for _ in range(200):
        pod = fake_kube.pod("batch", "typo")
        if pod is not None and not pod["spec"].get("schedulingGates"):
            break
        await asyncio.sleep(0.05)
    pod = fake_kube.pod("batch", "typo")
    assert pod is not None
    assert not pod["spec"].get("schedulingGates")
    text = await (await client.get("/metrics")).text()
    assert 'carbon_deferral_releases_total{reason="invalid"} 1.0' in text
    assert "carbon_deferral_leader 1.0" in text
    assert "carbon_deferral_pod_watch_errors_total 0.0" in text
    assert 'carbon_deferral_api_errors_total{operation="lease"}' not in text  # no lease call failed
    lease = fake_kube.store["leases"][("kube-system", "carbon-deferral")]
    assert lease["spec"]["holderIdentity"] == "app-test"


async def test_webhook_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    server = TestServer(create_app(DeferralSettings(controller=False)), host="127.0.0.1")
    await server.start_server(ssl=server_ssl_context(cert, key))
    try:
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE",
                "object": {
                    "metadata": {
                        "annotations": {"carbon-aware.io/duration": "1h", "carbon-aware.io/max-delay": "2h"}
                    },
                    "spec": {"containers": []},
                },
            },
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"https://127.0.0.1:{server.port}/mutate", data=orjson.dumps(review), ssl=client_ctx
            ) as resp,
        ):
            assert resp.status == 200
            answer = await resp.json()
        ops = orjson.loads(base64.b64decode(answer["response"]["patch"]))
        assert ops == [{"op": "add", "path": "/spec/schedulingGates", "value": [{"name": GATE}]}]
        # Plain HTTP to the TLS port is refused, not answered.
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.post(f"http://127.0.0.1:{server.port}/mutate", data=b"{}") as resp:
                    await resp.read()
    finally:
        await server.close()


def write_pair(ca: trustme.CA, cert: Path, key: Path) -> None:
    leaf = ca.issue_cert("127.0.0.1")
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))


async def test_rotated_webhook_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    write_pair(old_ca, cert, key)
    context = server_ssl_context(cert, key)
    reloader = CertReloader(context, cert, key, interval=0.05)
    server = TestServer(create_app(DeferralSettings(controller=False), reloader=reloader), host="127.0.0.1")
    await server.start_server(ssl=context)
    try:
        trusts_new = ssl.create_default_context()
        new_ca.configure_trust(trusts_new)
        write_pair(new_ca, cert, key)  # what cert-manager does to the mounted secret
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(
                        f"https://127.0.0.1:{server.port}/healthz", ssl=trusts_new
                    ) as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the rotated certificate was never served")
    finally:
        await server.close()


async def test_health_and_readiness_bodies_have_the_shape_every_service_uses(
    aiohttp_client: ClientFactory,
) -> None:
    client = await aiohttp_client(create_app(DeferralSettings(controller=False)))
    health = await client.get("/healthz")
    assert (health.status, await health.json()) == (200, {"status": "ok"})
    ready = await client.get("/readyz")
    body = {"ready": True, "reason": "webhook only: nothing to sync"}
    assert (ready.status, await ready.json()) == (200, body)
