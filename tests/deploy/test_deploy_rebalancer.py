"""The chart's optional rebalancer: off by default, dry-run by default, least-privilege RBAC (evictions,
reads, Events, its Lease), a NetworkPolicy, and flags its own CLI accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rebalancer.__main__ import parse_settings
from tests.deploy.deploytools import by_kind, helm_template, one, render
from tests.deploy.valuesets import VALUE_SETS


def _rules(docs: list[dict[str, Any]], kind: str) -> list[tuple[str, str, str]]:
    role = one(docs, kind, "-rebalancer" if kind == "ClusterRole" else "-rebalancer-leader-election")
    return sorted(
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    )


def test_off_by_default(tmp_path: Path) -> None:
    docs = render(tmp_path=tmp_path)
    assert not [
        d for d in docs if d["metadata"]["name"].endswith(("-rebalancer", "-rebalancer-leader-election"))
    ]


def test_dry_run_by_default_and_flags_the_cli_accepts(tmp_path: Path) -> None:
    docs = render({"rebalancer": {"enabled": True}}, tmp_path=tmp_path, release="r", namespace="ns")
    deployment = one(docs, "Deployment", "-rebalancer")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][0] == "carbon-rebalancer"
    settings = parse_settings(container["command"][1:], env={})
    assert settings.dry_run is True
    assert settings.feed_url == "http://r-carbon-aware-scheduler.ns.svc:8080"
    assert settings.leader.lease_name == "r-carbon-aware-scheduler-rebalancer"
    assert settings.leader.lease_namespace == "ns"
    assert container["ports"] == [{"name": "http", "containerPort": settings.serving.port, "protocol": "TCP"}]
    # The feed is reachable through the Service now.
    service = one(docs, "Service", "r-carbon-aware-scheduler")
    assert "feed" in [p["name"] for p in service["spec"]["ports"]]


def test_the_value_set_renders_its_values(tmp_path: Path) -> None:
    docs = render(VALUE_SETS["rebalancer"], tmp_path=tmp_path)
    deployment = one(docs, "Deployment", "-rebalancer")
    assert deployment["spec"]["replicas"] == 2
    settings = parse_settings(deployment["spec"]["template"]["spec"]["containers"][0]["command"][1:], env={})
    assert (settings.margin_abs, settings.cooldown) == (80, 43200)
    undry = render({"rebalancer": {"enabled": True, "dryRun": False}}, tmp_path=tmp_path)
    command = one(undry, "Deployment", "-rebalancer")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert parse_settings(command[1:], env={}).dry_run is False


def test_rbac_is_evictions_reads_events_and_its_lease(tmp_path: Path) -> None:
    docs = render({"rebalancer": {"enabled": True}}, tmp_path=tmp_path)
    assert _rules(docs, "ClusterRole") == [
        ("", "events", "create"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "pods/eviction", "create"),
        ("policy", "poddisruptionbudgets", "list"),
        ("policy", "poddisruptionbudgets", "watch"),
    ]
    assert _rules(docs, "Role") == [
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "update"),
    ]


def test_network_policy_admits_only_its_port(tmp_path: Path) -> None:
    docs = render({"rebalancer": {"enabled": True}}, tmp_path=tmp_path)
    policy = one(docs, "NetworkPolicy", "-rebalancer")
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8095, "protocol": "TCP"}]}]
    closed = render({"rebalancer": {"enabled": True}, "networkPolicy": {"enabled": False}}, tmp_path=tmp_path)
    assert not by_kind(closed, "NetworkPolicy")


def test_bad_values_are_refused(tmp_path: Path) -> None:
    no_feed = helm_template({"rebalancer": {"enabled": True}, "feed": {"enabled": False}}, tmp_path=tmp_path)
    assert no_feed.returncode != 0
    assert "rebalancer.enabled needs feed.enabled" in no_feed.stderr
    bad = helm_template({"rebalancer": {"marginRel": 1.5}}, tmp_path=tmp_path)
    assert bad.returncode != 0
    assert "marginRel" in bad.stderr
