"""Issue 3, test 6: both nodeCacheCapable modes, HTTPS verified with caData, and mTLS."""

from __future__ import annotations

import re
import ssl
import urllib.error
import urllib.request

import pytest

from .conftest import E2EWorld

pytestmark = pytest.mark.e2e

GRID = {"SE": 30.0, "PL": 690.0}


@pytest.mark.parametrize("node_cache_capable", [True, False])
def test_both_node_cache_modes_place_pods_in_the_greenest_zone(
    world: E2EWorld, node_cache_capable: bool
) -> None:
    world.add_nodes({"SE": 2, "PL": 2})
    world.snapshot(GRID)
    _, sched = world.with_extender(node_cache_capable=node_cache_capable)
    names = [f"p{i}" for i in range(3)]
    for name in names:
        world.pod(name, sched)

    placed = world.wait_bound(names)

    assert set(world.zones_of(placed).values()) == {"SE"}, world.diagnostics()


def test_https_extender_verified_with_ca_data(world: E2EWorld) -> None:
    pki = world.plane.pki
    world.add_nodes({"SE": 1, "PL": 1})
    world.snapshot(GRID)
    ext = world.extender(tls=pki.issue("extender-tls", "127.0.0.1"), ca_file=pki.ca_file)
    # ignorable false: were the TLS setup wrong, the pod would stay pending instead of quietly
    # falling back to the default binder.
    sched = world.scheduler("tls", ext.base_url, ignorable=False, tls={"caData": pki.ca_data_b64})
    world.pod("p0", sched)

    placed = world.wait_bound(["p0"])

    assert ext.base_url.startswith("https://")
    assert world.zones_of(placed) == {"p0": "SE"}


def test_mtls_extender_serves_a_scheduler_with_a_client_certificate_and_refuses_one_without(
    world: E2EWorld,
) -> None:
    pki = world.plane.pki
    world.add_nodes({"SE": 1, "PL": 1})
    world.snapshot(GRID)
    client = pki.issue("scheduler-client", "kube-scheduler")
    ext = world.extender(
        tls=pki.issue("extender-mtls", "127.0.0.1"),
        ca_file=pki.ca_file,
        client_ca=pki.ca_file,
        probe_cert=client,
    )
    with_cert = world.scheduler(
        "mtls",
        ext.base_url,
        ignorable=False,
        tls={"caData": pki.ca_data_b64, "certFile": str(client.cert), "keyFile": str(client.key)},
    )
    without_cert = world.scheduler("nocert", ext.base_url, ignorable=False, tls={"caData": pki.ca_data_b64})
    world.pod("trusted", with_cert)
    world.pod("refused", without_cert)

    placed = world.wait_bound(["trusted"])
    # With TLS 1.3 the server checks the client certificate after the client's side of the handshake,
    # so the scheduler sees its /filter call cut off (EOF) rather than a handshake alert.
    world.wait_event(
        "refused", "FailedScheduling", re.escape(ext.base_url) + r"/filter.*(?i:EOF|tls|certificate|reset)"
    )

    assert world.zones_of(placed) == {"trusted": "SE"}
    assert world.placement()["refused"] == ""
    # And not only the scheduler: any client without a certificate is turned away at the handshake.
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        urllib.request.urlopen(ext.base_url + "/readyz", timeout=5, context=context).read()
