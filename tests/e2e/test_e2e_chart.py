"""Issue 3, test 9: what users deploy is accepted by a real apiserver (`kubectl apply --dry-run=server`).

The server-side dry run goes through the same REST call kubectl makes (POST ?dryRun=All with strict
field validation): defaulting, validation and admission all run, nothing is stored. Kinds from CRDs
this bare apiserver does not have (Prometheus Operator, cert-manager) are listed, not hidden.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import unavailable
from .kubeharness import REPO_ROOT, ApiError, ChartUnavailable, ControlPlane, KubeApi, render_chart

pytestmark = pytest.mark.e2e

RENDERED = REPO_ROOT / "manifests" / "rendered"
# Optional integrations whose CRDs a plain cluster does not serve.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
}


def dry_run_all(api: KubeApi, docs: list[dict[str, Any]], default_namespace: str) -> set[tuple[str, str]]:
    """Dry-run every document; fail with every error at once. Returns the kinds the server does not serve."""
    namespaces = {default_namespace} | {
        str(d["metadata"]["namespace"]) for d in docs if d.get("metadata", {}).get("namespace")
    }
    for ns in sorted(namespaces):
        try:
            api.create_namespace(ns)  # a dry-run create needs its namespace to exist for real
        except ApiError as exc:
            if exc.status != 409:
                raise
    errors: list[str] = []
    unserved: set[tuple[str, str]] = set()
    for doc in docs:
        key = (str(doc.get("apiVersion")), str(doc.get("kind")))
        if api.resource_for(*key) is None:
            unserved.add(key)
            continue
        try:
            api.dry_run_create(doc, default_namespace)
        except ApiError as exc:
            errors.append(f"{key[1]} {doc.get('metadata', {}).get('name')}: {exc}")
    assert errors == [], "\n".join(errors)
    return unserved


def test_chart_rendered_with_defaults_passes_server_side_dry_run(
    control_plane: ControlPlane, artifacts_dir: Path
) -> None:
    try:
        docs = render_chart({}, artifacts_dir / "chart", release="dryrun")
    except ChartUnavailable as exc:
        unavailable(str(exc))
        raise
    kinds = {d.get("kind") for d in docs}
    assert {"Deployment", "ConfigMap"} <= kinds, kinds

    unserved = dry_run_all(control_plane.api, docs, "e2e-chart")

    assert unserved <= CRD_KINDS, f"kinds this apiserver does not serve: {sorted(unserved)}"


@pytest.mark.skipif(not RENDERED.is_dir(), reason=f"{RENDERED} does not exist yet (deploy engineer's output)")
@pytest.mark.parametrize(
    "path", sorted(RENDERED.glob("*.yaml")) if RENDERED.is_dir() else [], ids=lambda p: p.name
)
def test_committed_rendered_manifests_pass_server_side_dry_run(
    control_plane: ControlPlane, path: Path
) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path} holds no manifests"

    unserved = dry_run_all(control_plane.api, docs, "default")

    assert unserved <= CRD_KINDS, f"kinds this apiserver does not serve: {sorted(unserved)}"
