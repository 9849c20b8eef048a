"""The few Kubernetes API writes of the controller, on raw JSON (like carbon_common.kube's list/watch)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from kubernetes_asyncio import client

from carbon_common.kube import post_pod_event, read_json

COMPONENT = "carbon-deferral"


class PodWriter(Protocol):
    """What the controller writes; a Protocol so the policy can be tested without an API server."""

    async def patch_json(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None: ...

    async def merge_annotations(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None: ...

    async def event(
        self, pod: Mapping[str, str], reason: str, message: str, warning: bool, now: datetime
    ) -> None: ...


class KubePodWriter:
    def __init__(self, api: client.ApiClient, identity: str, timeout: float = 10.0) -> None:
        # Typed as Any: raw dict bodies and raw responses (_preload_content=False), which the generated
        # signatures (V1Pod in, V1Pod out) do not describe.
        self._core: Any = client.CoreV1Api(api)
        self._identity = identity
        self._timeout = timeout

    async def patch_json(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        # A list body makes kubernetes-asyncio send application/json-patch+json.
        resp = await self._core.patch_namespaced_pod(
            name, namespace, ops, _preload_content=False, _request_timeout=self._timeout
        )
        await read_json(resp)

    async def merge_annotations(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        # A dict body is sent as a strategic merge patch: only these annotations change.
        body = {"metadata": {"annotations": dict(annotations)}}
        resp = await self._core.patch_namespaced_pod(
            name, namespace, body, _preload_content=False, _request_timeout=self._timeout
        )
        await read_json(resp)

    async def event(
        self, pod: Mapping[str, str], reason: str, message: str, warning: bool, now: datetime
    ) -> None:
        await post_pod_event(
            self._core,
            namespace=pod["namespace"],
            name=pod["name"],
            uid=pod["uid"],
            component=COMPONENT,
            instance=self._identity,
            reason=reason,
            message=message,
            warning=warning,
            now=now,
            request_timeout=self._timeout,
        )
