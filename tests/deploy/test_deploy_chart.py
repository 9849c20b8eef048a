"""The chart renders what the contract says, rejects bad values with a clear message, and passes
helm lint and kubeconform (strict, offline schemas) for every value set."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploytools import (
    CHART_DIR,
    KUBE_VERSION,
    by_kind,
    find_tool,
    helm_template,
    one,
    render,
    run,
    scheduler_config,
)
from tests.deploy.kubeschemas import kubeconform_argv
from tests.deploy.valuesets import VALUE_SETS

VALUE_SET_IDS = sorted(VALUE_SETS)


def _pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (main,) = [
        d
        for d in by_kind(docs, "Deployment")
        if not d["metadata"]["name"].endswith(("-deferral", "-rebalancer"))
    ]
    spec: dict[str, Any] = main["spec"]["template"]["spec"]
    return spec


def _containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in _pod_spec(docs)["containers"]}


# --- the contract with the e2e harness ---------------------------------------------------------


def test_default_scheduler_config_is_the_contract(tmp_path: Path) -> None:
    docs = render(
        tmp_path=tmp_path,
        release="e2e",
        namespace="sched",
        extra=["--show-only", "templates/scheduler-config.yaml"],
    )
    assert [d["metadata"]["name"] for d in docs] == ["e2e-carbon-aware-scheduler-scheduler-config"]
    assert scheduler_config(docs) == {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "leaderElection": {
            "leaderElect": True,
            "resourceLock": "leases",
            "resourceNamespace": "sched",
            "resourceName": "carbon-aware-scheduler",
        },
        "percentageOfNodesToScore": 100,
        # kube-scheduler defaults it to true; /debug/pprof exposes internals (CIS 1.4.1).
        "enableProfiling": False,
        "profiles": [{"schedulerName": "carbon-aware-scheduler"}],
        "extenders": [
            {
                "urlPrefix": "http://127.0.0.1:8888",
                "filterVerb": "filter",
                "prioritizeVerb": "prioritize",
                "preemptVerb": "preempt",
                "bindVerb": "bind",
                "weight": 5,
                "ignorable": True,
                "httpTimeout": "5s",
                "nodeCacheCapable": True,
            }
        ],
    }


def test_scheduler_config_follows_values(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    values = {
        "scheduler": {"name": "green", "percentageOfNodesToScore": 50, "leaderElection": {"enabled": False}},
        "extender": {
            "port": 9443,
            "weight": 3,
            "ignorable": False,
            "httpTimeout": "2500ms",
            "nodeCacheCapable": False,
            "filter": False,
            "bind": False,
            "managedResources": [{"name": "example.com/green", "ignoredByScheduler": True}],
            "tls": {
                "enabled": True,
                "secretName": "s",
                "serverName": "ext",
                "caData": pem,
                "certFile": "/c",
                "keyFile": "/k",
            },
        },
    }
    config = scheduler_config(render(values, tmp_path=tmp_path))
    assert config["leaderElection"] == {"leaderElect": False}
    assert config["percentageOfNodesToScore"] == 50
    assert config["profiles"] == [{"schedulerName": "green"}]
    (extender,) = config["extenders"]
    assert "bindVerb" not in extender
    assert "filterVerb" not in extender
    assert (extender["prioritizeVerb"], extender["preemptVerb"]) == ("prioritize", "preempt")
    assert extender["urlPrefix"] == "https://127.0.0.1:9443"
    assert (extender["weight"], extender["ignorable"], extender["httpTimeout"]) == (3, False, "2500ms")
    assert extender["nodeCacheCapable"] is False
    assert extender["enableHTTPS"] is True
    assert extender["managedResources"] == [{"name": "example.com/green", "ignoredByScheduler": True}]
    tls = extender["tlsConfig"]
    assert base64.b64decode(tls["caData"]).decode() == pem
    assert (tls["serverName"], tls["certFile"], tls["keyFile"]) == ("ext", "/c", "/k")
    assert "insecure" not in tls
    assert "caFile" not in tls


def test_ca_data_given_as_base64_is_kept(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n").decode()
    values = {"extender": {"tls": {"enabled": True, "secretName": "s", "caData": encoded}}}
    (extender,) = scheduler_config(render(values, tmp_path=tmp_path))["extenders"]
    assert extender["tlsConfig"] == {"caData": encoded}


def test_url_prefix_value_wins(tmp_path: Path) -> None:
    values = {"extender": {"urlPrefix": "http://127.0.0.1:40001/carbon"}}
    (extender,) = scheduler_config(render(values, tmp_path=tmp_path))["extenders"]
    assert extender["urlPrefix"] == "http://127.0.0.1:40001/carbon"


def test_extender_service_snippet_points_at_the_service(tmp_path: Path) -> None:
    docs = render({"mode": "extender-service"}, tmp_path=tmp_path, release="r", namespace="ns")
    cm = one(docs, "ConfigMap", "-scheduler-config")
    snippet = yaml.safe_load(cm["data"]["extenders.yaml"])
    assert snippet["extenders"][0]["urlPrefix"] == "http://r-carbon-aware-scheduler.ns.svc:8888"
    assert snippet["extenders"] == scheduler_config(docs)["extenders"]
    service = one(docs, "Service")
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [
        ("extender", 8888),
        ("metrics", 9888),
    ]
    # No kube-scheduler in this shape, and none of its RBAC.
    assert set(_containers(docs)) == {"extender", "feed"}
    assert not [b for b in by_kind(docs, "ClusterRoleBinding") if b["roleRef"]["name"].startswith("system:")]
    assert "--host=0.0.0.0" in _containers(docs)["extender"]["command"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # values.schema.json: helm refuses before rendering, naming the path.
        ({"extender": {"weight": 0}}, "at '/extender/weight': minimum: got 0, want 1"),
        ({"extender": {"wieght": 3}}, "at '/extender': additional properties 'wieght' not allowed"),
        ({"extender": {"httpTimeout": "5"}}, "at '/extender/httpTimeout'"),
        ({"scheduler": {"percentageOfNodesToScore": 101}}, "at '/scheduler/percentageOfNodesToScore'"),
        ({"mode": "sidecar"}, "at '/mode': value must be one of 'second-scheduler', 'extender-service'"),
        ({"feed": {"providers": [{"kind": "nope"}]}}, "at '/feed/providers/0/kind'"),
        # Template checks: what a schema cannot say.
        ({"extender": {"managedResources": [{"name": "cpu"}]}}, "not an extended resource name"),
        ({"extender": {"managedResources": [{"name": "kubernetes.io/x"}]}}, "reserved"),
        ({"extender": {"managedResources": [{"name": "a.io/x"}, {"name": "a.io/x"}]}}, "listed twice"),
        ({"scheduler": {"name": "Not_A_Name"}}, "DNS-1123 subdomain"),
        ({"extender": {"tls": {"enabled": True}}}, "needs a certificate"),
        ({"extender": {"tls": {"enabled": True, "certManager": {"enabled": True}}}}, "issuerRef.name"),
        ({"extender": {"metricsPort": 0}}, "at '/extender/metricsPort': minimum: got 0, want 1"),
        ({"extender": {"metricsPort": 8888}}, "extender.metricsPort 8888 is also extender.port"),
        ({"extender": {"metricsPort": 8080}}, "extender.metricsPort 8080 is also feed.port"),
        ({"extender": {"metricsPort": 10259}}, "extender.metricsPort 10259 is also scheduler.securePort"),
    ],
)
def test_bad_values_fail_with_a_clear_message(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    proc = helm_template(values, tmp_path=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"extender": {"weight": 0}}, "extender.weight must be > 0"),
        ({"extender": {"httpTimeout": "5"}}, "extender.httpTimeout must be a Go duration"),
        ({"scheduler": {"percentageOfNodesToScore": 101}}, "within 0..100"),
        ({"mode": "sidecar"}, 'mode must be "second-scheduler" or "extender-service"'),
    ],
)
def test_template_checks_hold_without_the_schema(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    """With --skip-schema-validation the chart still cannot render a config kube-scheduler rejects."""
    proc = helm_template(values, tmp_path=tmp_path, extra=["--skip-schema-validation"])
    assert proc.returncode != 0
    assert message in proc.stderr


# --- shape details --------------------------------------------------------------------------------


def test_second_scheduler_pod(tmp_path: Path) -> None:
    docs = render(tmp_path=tmp_path)
    containers = _containers(docs)
    assert set(containers) == {"kube-scheduler", "extender", "feed"}
    scheduler = containers["kube-scheduler"]
    assert scheduler["image"] == "registry.k8s.io/kube-scheduler:v1.35.8"
    assert "--config=/etc/kubernetes/carbon-scheduler/config.yaml" in scheduler["command"]
    extender = containers["extender"]
    assert "--host=127.0.0.1" in extender["command"]
    assert "--snapshot-file=/var/run/carbon/snapshot.json" in extender["command"]
    # The verbs stay on loopback; the kubelet probes the ops port on the pod IP instead.
    assert "--metrics-port=9888" in extender["command"]
    assert {"name": "metrics", "containerPort": 9888, "protocol": "TCP"} in extender["ports"]
    assert extender["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": "HTTP"}
    assert extender["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": "HTTP"}
    # The feed, on loopback and without an ops port, is still probed from inside its container.
    assert "http://127.0.0.1:8080/readyz" in containers["feed"]["readinessProbe"]["exec"]["command"][-1]
    feed = containers["feed"]
    assert {"--config=/etc/carbon-feed/feed.yaml", "--db=/var/lib/carbon-feed/history.db"} <= set(
        feed["command"]
    )
    assert not by_kind(docs, "Service")
    assert not by_kind(docs, "PodDisruptionBudget")


def test_metrics_reach_prometheus_in_the_second_scheduler_shape(tmp_path: Path) -> None:
    values = {"serviceMonitor": {"enabled": True}, "prometheusAnnotations": True}
    docs = render(values, tmp_path=tmp_path)
    # The verbs stay on loopback (and off the Service); the ops port is what is exposed and scraped.
    assert "--host=127.0.0.1" in _containers(docs)["extender"]["command"]
    assert [p["name"] for p in one(docs, "Service")["spec"]["ports"]] == ["metrics", "feed"]
    endpoints = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert [(e["port"], e["path"]) for e in endpoints] == [("feed", "/metrics"), ("metrics", "/metrics")]
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9888",
        "prometheus.io/path": "/metrics",
    }
    plain = one(render(tmp_path=tmp_path), "Deployment")["spec"]["template"]["metadata"]
    assert not [k for k in plain["annotations"] if k.startswith("prometheus.io/")]


def test_network_policy_admits_the_ops_port_with_its_own_sources(tmp_path: Path) -> None:
    control_plane = [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]

    def rules(values: dict[str, Any]) -> list[dict[str, Any]]:
        policy = one(render(values, tmp_path=tmp_path), "NetworkPolicy")
        ingress: list[dict[str, Any]] = policy["spec"]["ingress"]
        return ingress

    # Default shape: the verbs are on loopback, so only kube-scheduler's port and the ops port open.
    assert rules({}) == [
        {"ports": [{"port": 10259, "protocol": "TCP"}]},
        {"ports": [{"port": 9888, "protocol": "TCP"}]},
    ]
    verbs, ops = rules({"mode": "extender-service", "networkPolicy": {"from": control_plane}})
    # The feed stays on loopback here (no ServiceMonitor, no deferral): only the verbs' port.
    assert verbs == {"ports": [{"port": 8888, "protocol": "TCP"}], "from": control_plane}
    assert ops == {"ports": [{"port": 9888, "protocol": "TCP"}], "from": control_plane}
    values = {"mode": "extender-service", "networkPolicy": {"from": control_plane, "metricsFrom": prometheus}}
    verbs, ops = rules(values)
    assert verbs["from"] == control_plane
    assert ops == {"ports": [{"port": 9888, "protocol": "TCP"}], "from": prometheus}


def test_rbac_is_the_least_privilege_plus_the_scheduler_roles(tmp_path: Path) -> None:
    docs = render(tmp_path=tmp_path, release="r", namespace="ns")
    role = one(docs, "ClusterRole", "-extender")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("",), ("nodes",)): {"list", "watch"},
        (("",), ("pods",)): {"get"},
        (("",), ("pods/binding",)): {"create"},
        (("", "events.k8s.io"), ("events",)): {"create"},
    }
    cluster_roles = {b["roleRef"]["name"] for b in by_kind(docs, "ClusterRoleBinding")}
    assert cluster_roles == {
        "r-carbon-aware-scheduler-extender",
        "system:kube-scheduler",
        "system:volume-scheduler",
    }
    auth = one(docs, "RoleBinding", "-authentication-reader")
    assert (auth["metadata"]["namespace"], auth["roleRef"]["name"]) == (
        "kube-system",
        "extension-apiserver-authentication-reader",
    )
    lease = one(docs, "Role", "-leader-election")
    assert {"resourceNames": ["carbon-aware-scheduler"], "verbs": ["get", "update"]}.items() <= lease[
        "rules"
    ][1].items()
    for binding in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "r-carbon-aware-scheduler", "namespace": "ns"}
        ]


def test_pdb_only_with_several_replicas(tmp_path: Path) -> None:
    assert not by_kind(render({"replicaCount": 1}, tmp_path=tmp_path), "PodDisruptionBudget")
    pdb = one(render({"replicaCount": 2}, tmp_path=tmp_path), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1


def test_config_change_rolls_the_pods(tmp_path: Path) -> None:
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        docs = render(values, tmp_path=tmp_path)
        result: dict[str, str] = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return result

    base = annotations({})
    feed_changed = annotations({"feed": {"settings": {"retention_days": 7}}})
    scheduler_changed = annotations({"extender": {"weight": 7}})
    assert base["checksum/config"] != feed_changed["checksum/config"]
    assert base["checksum/scheduler-config"] == feed_changed["checksum/scheduler-config"]
    assert base["checksum/scheduler-config"] != scheduler_changed["checksum/scheduler-config"]
    assert base == annotations({})


@pytest.mark.parametrize("name", VALUE_SET_IDS)
def test_every_container_is_locked_down(tmp_path: Path, name: str) -> None:
    docs = render(VALUE_SETS[name], tmp_path=tmp_path)
    for doc in by_kind(docs, "Deployment") + by_kind(docs, "Pod"):
        spec = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, container["name"]
            assert ctx["readOnlyRootFilesystem"] is True, container["name"]
            assert ctx["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert container["resources"]["limits"]["memory"], container["name"]


def test_tls_and_mtls_mounts(tmp_path: Path) -> None:
    docs = render(
        VALUE_SETS["extender-service-cert-manager-mtls"], tmp_path=tmp_path, release="r", namespace="ns"
    )
    cert = one(docs, "Certificate")
    assert cert["spec"]["secretName"] == "r-carbon-aware-scheduler-extender-tls"
    assert "r-carbon-aware-scheduler.ns.svc" in cert["spec"]["dnsNames"]
    extender = _containers(docs)["extender"]
    assert "--client-ca=/etc/carbon-extender/client-ca/ca.crt" in extender["command"]
    assert "--tls-cert=/etc/carbon-extender/tls/tls.crt" in extender["command"]
    # The verbs demand client certificates, which the kubelet has none of: it probes the ops port.
    assert extender["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": "HTTP"}
    assert extender["readinessProbe"]["httpGet"]["port"] == "metrics"
    # So does Prometheus, in plain HTTP: no TLS settings for the extender's endpoint.
    endpoints = {e["port"]: e for e in one(docs, "ServiceMonitor")["spec"]["endpoints"]}
    assert endpoints["metrics"] == {"port": "metrics", "path": "/metrics", "interval": "30s"}
    assert "extender" not in endpoints
    (entry,) = scheduler_config(docs)["extenders"]
    assert entry["urlPrefix"] == "https://r-carbon-aware-scheduler.ns.svc:8888"
    assert entry["managedResources"] == [{"name": "carbon-aware.io/opt-in", "ignoredByScheduler": True}]


def test_feed_config_and_secrets(tmp_path: Path) -> None:
    values = {
        "feed": {
            "secrets": [{"name": "em-token"}],
            "settings": {"refresh_interval_seconds": 600},
            "staticZones": {"FR": 56, "DE": 380},
        }
    }
    docs = render(values, tmp_path=tmp_path)
    feed_config = yaml.safe_load(one(docs, "ConfigMap", "-feed")["data"]["feed.yaml"])
    assert feed_config == {
        "refresh_interval_seconds": 600,
        "providers": [
            {
                "kind": "static",
                "name": "static",
                "options": {"path": "/etc/carbon-feed/static/zones.yaml", "zones": ["DE", "FR"]},
            }
        ],
    }
    assert yaml.safe_load(one(docs, "ConfigMap", "-static-zones")["data"]["zones.yaml"]) == {
        "FR": 56,
        "DE": 380,
    }
    mounts = {m["mountPath"]: m for m in _containers(docs)["feed"]["volumeMounts"]}
    assert mounts["/etc/carbon-feed/secrets/em-token"]["readOnly"] is True
    assert mounts["/etc/carbon-feed/static"]["readOnly"] is True
    # Tokens never land in a ConfigMap.
    assert "em-token" not in json.dumps(by_kind(docs, "ConfigMap"))


def test_unknown_feed_setting_is_refused(tmp_path: Path) -> None:
    proc = helm_template({"feed": {"settings": {"port": 1}}}, tmp_path=tmp_path)
    assert proc.returncode != 0
    assert "feed.settings.port: unknown or set by the chart" in proc.stderr


@pytest.mark.parametrize("name", VALUE_SET_IDS)
def test_rendered_commands_parse_with_the_real_clis(tmp_path: Path, name: str) -> None:
    """The flags and feed config the chart writes are accepted by our own parsers (no drift)."""
    from carbon_feed import __main__ as feed_main
    from carbon_feed.config import from_mapping
    from extender.__main__ import parse_settings

    docs = render(VALUE_SETS[name], tmp_path=tmp_path)
    containers = _containers(docs)
    command = containers["extender"]["command"]
    assert command[0] == "carbon-extender"
    settings = parse_settings(command[1:], env={})
    assert settings.port == 8888
    # The probes' named port is the one the extender's ops listener really opens.
    ports = {p["name"]: p["containerPort"] for p in containers["extender"]["ports"]}
    assert ports == {"extender": settings.port, "metrics": settings.metrics_port}
    assert settings.metrics_port == 9888
    for probe in ("livenessProbe", "readinessProbe"):
        assert containers["extender"][probe]["httpGet"]["port"] == "metrics"
    assert settings.zone_label == "carbon-aware.io/zone"
    if "feed" in containers:
        feed_command = containers["feed"]["command"]
        assert feed_command[0] == "carbon-feed"
        args = feed_main.parse_args(feed_command[1:])
        assert args.config == "/etc/carbon-feed/feed.yaml"
        feed_config = yaml.safe_load(one(docs, "ConfigMap", "-feed")["data"]["feed.yaml"])
        assert from_mapping(feed_config).providers


# --- the real tools ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SET_IDS)
def test_helm_lint(tmp_path: Path, name: str) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(VALUE_SETS[name]))
    proc = run(
        [find_tool("helm"), "lint", "--strict", CHART_DIR, "-f", values_file, "--kube-version", KUBE_VERSION]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", VALUE_SET_IDS)
def test_kubeconform_strict(tmp_path: Path, name: str) -> None:
    proc = helm_template(VALUE_SETS[name], tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = run([*kubeconform_argv(), "-"], stdin=proc.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert (summary["invalid"], summary["errors"]) == (0, 0), summary
    assert summary["valid"] >= 8, summary


def test_kubeconform_catches_an_invalid_manifest(tmp_path: Path) -> None:
    """The schemas are really applied: an unknown field in a Deployment is an error in strict mode."""
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": 1, "replicaz": 2},
    }
    result = run([*kubeconform_argv(), "-"], stdin=yaml.safe_dump(bad))
    assert result.returncode != 0
    assert "replicaz" in result.stdout


def _render_notes(tmp_path: Path, values: dict[str, Any]) -> str:
    """NOTES.txt as `helm install` prints it (helm template skips it): a copy of the chart renders it
    into a ConfigMap through tpl."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART_DIR, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes-under-test.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
        '    {{- tpl (.Files.Get "notes-under-test.txt") . | nindent 4 }}\n'
    )
    values_file = tmp_path / "notes-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = run(
        [
            find_tool("helm"),
            "template",
            "r",
            chart,
            "-n",
            "ns",
            "-f",
            values_file,
            "--kube-version",
            KUBE_VERSION,
            "--show-only",
            "templates/zz-notes.yaml",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    notes: str = yaml.safe_load(proc.stdout)["data"]["notes"]
    return notes


def test_notes_print_the_extenders_snippet(tmp_path: Path) -> None:
    values = {"mode": "extender-service", "feed": {"staticZones": {"FR": 56}}}
    notes = _render_notes(tmp_path, values)
    # The snippet runs from "extenders:" to the next blank line (warnings follow it).
    snippet = yaml.safe_load(notes[notes.index("\nextenders:\n") + 1 :].split("\n\n")[0])
    assert "accepts calls without a client certificate" in notes
    assert snippet == yaml.safe_load(
        one(render(values, tmp_path=tmp_path, release="r", namespace="ns"), "ConfigMap", "-scheduler-config")[
            "data"
        ]["extenders.yaml"]
    )
    assert "demo data" not in notes


def test_notes_warn_about_demo_data_and_unverified_tls(tmp_path: Path) -> None:
    notes = _render_notes(
        tmp_path, {"mode": "extender-service", "extender": {"tls": {"enabled": True, "secretName": "s"}}}
    )
    assert "enableHTTPS without caData or caFile" in notes
    assert "accepts calls without a client certificate" in notes
    assert "demo data" in notes
    tls = {"enabled": True, "secretName": "s", "caFile": "/ca", "clientCASecretName": "client-ca"}
    secured = _render_notes(tmp_path / "mtls", {"mode": "extender-service", "extender": {"tls": tls}})
    assert "client certificate" not in secured
    assert "enableHTTPS without" not in secured
    second = _render_notes(tmp_path / "second", {})
    assert "schedulerName: carbon-aware-scheduler" in second
    assert "carbon-aware\\.io/decision" in second


def test_deferral_controller_and_webhook(tmp_path: Path) -> None:
    from deferral.__main__ import parse_settings as deferral_settings

    docs = render(VALUE_SETS["deferral-cert-manager"], tmp_path=tmp_path, release="r", namespace="ns")
    deployment = one(docs, "Deployment", "-deferral")
    selector = deployment["spec"]["selector"]["matchLabels"]
    main_selector = one(docs, "Deployment", "r-carbon-aware-scheduler")["spec"]["selector"]["matchLabels"]
    assert selector != main_selector
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    settings = deferral_settings(container["command"][1:], env={})
    assert settings.feed_url == "http://r-carbon-aware-scheduler.ns.svc:8080"
    assert (settings.zones, settings.leader.lease_namespace, settings.leader.leader_elect) == (
        "FR,DE",
        "ns",
        True,
    )
    # The feed leaves loopback so the controller can reach it through the Service.
    feed = _containers(docs)["feed"]
    assert "--host=0.0.0.0" in feed["command"]
    assert [p["name"] for p in one(docs, "Service", "r-carbon-aware-scheduler")["spec"]["ports"]] == ["feed"]
    (webhook,) = one(docs, "MutatingWebhookConfiguration")["webhooks"]
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["clientConfig"]["service"] == {
        "name": "r-carbon-aware-scheduler-deferral",
        "namespace": "ns",
        "path": "/mutate",
        "port": 443,
    }
    annotations = one(docs, "MutatingWebhookConfiguration")["metadata"]["annotations"]
    assert annotations == {"cert-manager.io/inject-ca-from": "ns/r-carbon-aware-scheduler-deferral"}


def test_deferral_needs_a_certificate(tmp_path: Path) -> None:
    proc = helm_template({"deferral": {"enabled": True}}, tmp_path=tmp_path)
    assert proc.returncode != 0
    assert "deferral.enabled needs a webhook certificate" in proc.stderr
