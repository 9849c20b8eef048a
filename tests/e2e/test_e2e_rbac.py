"""The chart's RBAC is enough: kube-scheduler and the extender run as the chart's ServiceAccount.

Everywhere else the harness hands out the admin token. Here the chart's ServiceAccount, ClusterRoles,
bindings and leader-election Role are created for real from `helm template`, a token for that
ServiceAccount comes from the TokenRequest API, and both processes use only it, with leader election
on as deployed. A verb missing from the chart fails this test (a forbidden list, bind or lease).
"""

from __future__ import annotations

import json

import pytest

from .conftest import E2EWorld, unavailable
from .kubeharness import ApiError, ChartUnavailable, render_chart, wait_until

pytestmark = pytest.mark.e2e

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def test_scheduler_and_extender_work_with_only_the_charts_rbac(world: E2EWorld) -> None:
    release = f"r-{world.set_id}"[:40]
    scheduler_name = f"cas-{world.set_id}-rbac"[:63]
    try:
        docs = render_chart(
            {"scheduler": {"name": scheduler_name}}, world.workdir, release=release, namespace=world.namespace
        )
    except ChartUnavailable as exc:
        unavailable(str(exc))
        raise
    rbac = [d for d in docs if d.get("kind") in RBAC_KINDS]
    accounts = [d["metadata"]["name"] for d in rbac if d["kind"] == "ServiceAccount"]
    assert len(accounts) == 1, f"the chart should render one ServiceAccount, got {accounts}"
    for doc in rbac:
        kind = doc["kind"]
        plural, namespaced = world.api.resource_for(doc["apiVersion"], kind) or ("", False)
        prefix = "/api/v1" if doc["apiVersion"] == "v1" else f"/apis/{doc['apiVersion']}"
        ns = doc["metadata"].get("namespace", world.namespace)
        path = f"{prefix}/namespaces/{ns}/{plural}" if namespaced else f"{prefix}/{plural}"
        try:
            world.api.request("POST", path, doc)
        except ApiError as exc:
            if not (exc.status == 409 and kind == "ServiceAccount"):  # "default" exists already
                raise
    token = world.api.request(
        "POST",
        f"/api/v1/namespaces/{world.namespace}/serviceaccounts/{accounts[0]}/token",
        {"spec": {"expirationSeconds": 3600}},
    )["status"]["token"]
    sa_user = f"system:serviceaccount:{world.namespace}:{accounts[0]}"
    kubeconfig = world.plane.write_kubeconfig(world.workdir / "sa-kubeconfig.yaml", token, sa_user)

    world.add_nodes({"SE": 1, "PL": 1})
    world.snapshot({"SE": 30.0, "PL": 690.0})
    ext = world.extender(kubeconfig=kubeconfig)
    sched = world.scheduler(
        "rbac", ext.base_url, kubeconfig=kubeconfig, ignorable=False, leader_election=True
    )
    assert sched.name == scheduler_name
    world.pod("p0", sched)

    placed = world.wait_bound(["p0"])

    assert world.zones_of(placed) == {"p0": "SE"}
    annotations = world.api.pod(world.namespace, "p0")["metadata"]["annotations"]
    assert json.loads(annotations["carbon-aware.io/decision"])["zone"] == "SE"
    lease = wait_until(
        lambda: world.api.request(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/{world.namespace}/leases/{scheduler_name}"
        ),
        timeout=30,
        what="the scheduler's leader-election Lease",
    )
    assert lease["spec"]["holderIdentity"]
    for proc in (sched.process, ext.process):
        forbidden = [line for line in proc.log_path.read_text().splitlines() if "forbidden" in line.lower()]
        assert forbidden == [], f"{proc.name} was refused by RBAC:\n" + "\n".join(forbidden[:10])
