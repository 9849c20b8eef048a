"""A small synchronous Kubernetes REST client for the tests: just the calls the e2e suite makes.

Synchronous on purpose: the session-wide control plane outlives every test's event loop, and plain
blocking calls with timeouts keep waits simple and bounded. The extender under test uses its own
async client; this one only arranges the world and observes it.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .procs import http_get

JSON = dict[str, Any]


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


class KubeApi:
    def __init__(self, server: str, token: str, ca_file: Path, timeout: float = 15.0) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.ca_file = ca_file
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=str(ca_file))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            with exc:  # the error carries the open response: close it, or its socket leaks
                detail = exc.read().decode("utf-8", "replace")
            raise ApiError(method, path, exc.code, detail) from None
        return json.loads(raw) if raw else None

    def get_text(self, path: str) -> str:
        status, body = http_get(
            self.server + path, headers={"Authorization": f"Bearer {self.token}"}, context=self._ssl
        )
        if status != 200:
            raise ApiError("GET", path, status, body.decode("utf-8", "replace"))
        return body.decode()

    # --- objects the suite creates ---

    def create_namespace(self, name: str) -> None:
        self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        # No controller-manager runs here, so nothing creates the "default" service account that the
        # ServiceAccount admission plugin requires of every pod: create it like the controller would.
        self.request("POST", f"/api/v1/namespaces/{name}/serviceaccounts", {"metadata": {"name": "default"}})

    def create_node(
        self,
        name: str,
        labels: Mapping[str, str],
        *,
        cpu: str = "4",
        memory: str = "16Gi",
        pods: int = 110,
    ) -> None:
        """A node as a plain API object: no kubelet, Ready set through the status subresource."""
        self.request("POST", "/api/v1/nodes", {"metadata": {"name": name, "labels": dict(labels)}})
        resources = {"cpu": cpu, "memory": memory, "pods": str(pods)}
        status = {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "e2e node without a kubelet",
                }
            ],
        }
        self.request(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
        # The TaintNodesByCondition admission plugin puts node.kubernetes.io/not-ready:NoSchedule on
        # every new node; the node-lifecycle controller (not run here) would lift it once Ready.
        self.request(
            "PATCH",
            f"/api/v1/nodes/{name}",
            {"spec": {"taints": None}},
            content_type="application/merge-patch+json",
        )

    def delete_node(self, name: str) -> None:
        try:
            self.request("DELETE", f"/api/v1/nodes/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise

    def create_pod(
        self,
        namespace: str,
        name: str,
        *,
        scheduler_name: str,
        node_selector: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        cpu: str = "100m",
        memory: str = "64Mi",
        priority_class: str | None = None,
    ) -> JSON:
        pod: JSON = {
            "metadata": {"name": name, "annotations": dict(annotations or {})},
            "spec": {
                "schedulerName": scheduler_name,
                "nodeSelector": dict(node_selector or {}),
                "containers": [
                    {
                        "name": "app",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": cpu, "memory": memory}},
                    }
                ],
                # Nothing runs these pods; a zero grace period lets deletes finish without a kubelet.
                "terminationGracePeriodSeconds": 0,
            },
        }
        if priority_class:
            pod["spec"]["priorityClassName"] = priority_class
        result: JSON = self.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
        return result

    def pod(self, namespace: str, name: str) -> JSON:
        result: JSON = self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        return result

    def pods(self, namespace: str) -> list[JSON]:
        items: list[JSON] = self.request("GET", f"/api/v1/namespaces/{namespace}/pods")["items"]
        return items

    def patch_pod_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        self.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            {"metadata": {"annotations": dict(annotations)}},
            content_type="application/merge-patch+json",
        )

    def delete_pod(self, namespace: str, name: str) -> None:
        self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", {"gracePeriodSeconds": 0})

    def events(self, namespace: str, involved: str | None = None) -> list[JSON]:
        query = {"fieldSelector": f"involvedObject.name={involved}"} if involved else None
        items: list[JSON] = self.request("GET", f"/api/v1/namespaces/{namespace}/events", query=query)[
            "items"
        ]
        return sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))

    def describe_events(self, namespace: str, involved: str | None = None) -> str:
        lines = []
        for event in self.events(namespace, involved):
            who = event.get("involvedObject", {}).get("name", "?")
            lines.append(f"  {who}: {event.get('type')} {event.get('reason')}: {event.get('message')}")
        return "\n".join(lines) or "  <no events>"

    def resource_for(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        """(plural, namespaced) of ``kind`` from API discovery; None when this apiserver does not serve it."""
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            listing = self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        for resource in listing.get("resources", []):
            if resource.get("kind") == kind and "/" not in resource["name"]:
                return str(resource["name"]), bool(resource["namespaced"])
        return None

    def dry_run_create(self, obj: Mapping[str, Any], namespace: str) -> JSON:
        """Server-side dry run of creating ``obj``, as `kubectl apply --dry-run=server` does for a new one.

        Strict field validation: a misspelt field is an error here, as it is for kubectl.
        """
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        found = self.resource_for(api_version, kind)
        if found is None:
            raise ApiError("POST", f"{api_version}/{kind}", 404, f"{kind} ({api_version}) is not served")
        plural, namespaced = found
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        ns = str(obj.get("metadata", {}).get("namespace") or namespace)
        path = f"{prefix}/namespaces/{ns}/{plural}" if namespaced else f"{prefix}/{plural}"
        result: JSON = self.request(
            "POST", path, dict(obj), query={"dryRun": "All", "fieldValidation": "Strict"}
        )
        return result
