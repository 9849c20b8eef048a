"""The rebalancer's Kubernetes API writes, on raw JSON: policy/v1 Evictions and Events.

An Eviction, unlike a DELETE, is refused (429) while a PodDisruptionBudget allows no disruption, and
carries the pod's UID as a precondition: a StatefulSet pod recreated under the same name since we
looked is never the one evicted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol

from kubernetes_asyncio import client

from carbon_common.kube import ApiStatusError, post_pod_event, read_json
from rebalancer.policy import PodView

COMPONENT = "carbon-rebalancer"
EvictionResult = Literal["evicted", "pdb-blocked", "gone"]


class KubeWriter(Protocol):
    async def evict(self, pod: PodView) -> EvictionResult: ...

    async def event(self, pod: PodView, reason: str, message: str, warning: bool, now: datetime) -> None: ...


class KubeApiWriter:
    def __init__(self, api: client.ApiClient, identity: str, timeout: float = 10.0) -> None:
        # Typed as Any: raw dict bodies and raw responses (_preload_content=False).
        self._core: Any = client.CoreV1Api(api)
        self._identity = identity
        self._timeout = timeout

    async def evict(self, pod: PodView) -> EvictionResult:
        """evicted, pdb-blocked (429) or gone (404, or 409: the UID precondition failed); any other
        failure raises ApiStatusError."""
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
            "deleteOptions": {"preconditions": {"uid": pod.uid}},
        }
        resp = await self._core.create_namespaced_pod_eviction(
            pod.name, pod.namespace, body, _preload_content=False, _request_timeout=self._timeout
        )
        try:
            await read_json(resp)
        except ApiStatusError as error:
            if error.status == 429:
                return "pdb-blocked"
            if error.status in (404, 409):
                return "gone"
            raise
        return "evicted"

    async def event(self, pod: PodView, reason: str, message: str, warning: bool, now: datetime) -> None:
        await post_pod_event(
            self._core,
            namespace=pod.namespace,
            name=pod.name,
            uid=pod.uid,
            component=COMPONENT,
            instance=self._identity,
            reason=reason,
            message=message,
            warning=warning,
            now=now,
            request_timeout=self._timeout,
        )
