"""Helm post-renderer for the deploy tests' single node: the chart's pods on the host network.

On these machines the only pod network is the host's (no bridge may be created, and the no-op CNI
plugin gives other pods only `lo`), there is no kube-proxy and no cluster DNS. So, on every pod
template of the rendered chart, and nothing else:
- hostNetwork (dnsPolicy ClusterFirstWithHostNet), and KUBERNETES_SERVICE_HOST/PORT pointing at the
  API server on 127.0.0.1, so in-cluster configuration works without a Service route;
- every listener on 127.0.0.1 instead of 0.0.0.0: under hostNetwork a container port is a host port;
- URLs of the release's own Services (`http://<name>.<namespace>.svc:<port>`) become 127.0.0.1:<port>;
- Deployments use the Recreate strategy: two pods that both bind the same host ports cannot overlap;
- webhooks are called at https://127.0.0.1:<the webhook container's port>: a Service's endpoints may
  not be loopback addresses, so the API server cannot reach a webhook through its Service here (the
  test's certificate names 127.0.0.1 too).

A user's cluster needs none of this. Reads the manifests on stdin, writes them on stdout; the API
server's port comes from $CARBON_NODE_APISERVER_PORT.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import yaml

SERVICE_URL = re.compile(r"(https?://)[a-z0-9-]+\.[a-z0-9-]+\.svc(?:\.cluster\.local)?(:\d+)")


def _container(container: dict[str, Any], api_port: str) -> None:
    env = [e for e in container.get("env", []) if not e["name"].startswith("KUBERNETES_SERVICE_")]
    env += [
        {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": api_port},
    ]
    container["env"] = env
    for key in ("command", "args"):
        words = container.get(key)
        if not words:
            continue
        words = [w.replace("0.0.0.0", "127.0.0.1") for w in words]
        words = [SERVICE_URL.sub(r"\g<1>127.0.0.1\g<2>", w) for w in words]
        container[key] = words


def _pod_spec(spec: dict[str, Any], api_port: str) -> None:
    spec["hostNetwork"] = True
    spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        _container(container, api_port)


def transform(doc: dict[str, Any], api_port: str) -> dict[str, Any]:
    kind = doc.get("kind")
    if kind == "Pod":
        _pod_spec(doc["spec"], api_port)
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        _pod_spec(doc["spec"]["template"]["spec"], api_port)
        if kind == "Deployment":
            doc["spec"]["strategy"] = {"type": "Recreate"}
    return doc


def webhook_port(docs: list[dict[str, Any]]) -> int | None:
    """The containerPort named `webhook` of the rendered Deployments (the deferral webhook's)."""
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"].get("containers", []):
            for port in container.get("ports", []):
                if port.get("name") == "webhook":
                    return int(port["containerPort"])
    return None


def webhook_by_url(doc: dict[str, Any], port: int | None) -> dict[str, Any]:
    if doc.get("kind") != "MutatingWebhookConfiguration" or port is None:
        return doc
    for hook in doc.get("webhooks", []):
        service = hook["clientConfig"].pop("service", None)
        if service is not None:
            hook["clientConfig"]["url"] = f"https://127.0.0.1:{port}{service.get('path', '/')}"
    return doc


def main() -> None:
    api_port = os.environ["CARBON_NODE_APISERVER_PORT"]
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    port = webhook_port(docs)
    docs = [webhook_by_url(transform(d, api_port), port) for d in docs]
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
