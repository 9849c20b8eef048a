"""Bind pods to nodes for kube-scheduler (the extender's `bind` verb).

Semantics (docs/kubernetes.md has the long form):
- POST pods/{name}/binding with `metadata.uid` = the pod UID the scheduler decided for, so a pod that
  was deleted and recreated under the same name is never bound by a stale decision.
- 409 is not automatically a failure: the scheduler retries binds whose answer it did not see, so we
  GET the pod; bound to the same node with the same UID → success (`already_bound`).
- Calls for the same pod are serialized (a per-pod lock): exactly one Binding is created, and the
  others see `already_bound`.
- The decision annotations travel on the Binding itself: the API server copies Binding annotations
  onto the pod in the same write, so there is no second request and no pods/patch permission.
  kube-apiserver 1.35 copies them *without validating them* (checked against the real binary: an
  invalid key and a 300 KiB value were both accepted), and a pod with invalid metadata then fails
  every later update. So the binder validates them first (`check_annotations`) and drops invalid
  ones; if an API server does refuse them (400/422), the bind is retried without them. Annotating is
  never a reason to fail a bind.
- kubernetes-asyncio cannot deserialize the Status the API server answers to a Binding,
  so every call reads the raw answer and checks the status itself.
- The Binding POST (once per scheduled pod, the hot path) skips kubernetes-asyncio's generic request
  machinery and goes straight to aiohttp, on the ApiClient's own connection pool, TLS and credentials
  (bench/scheduler_throughput.py measured why: the generic path's session has trust_env=True, which
  costs two thread-pool round trips per request for a ~/.netrc lookup and a proxy-environment lookup,
  plus model sanitizing and header negotiation). The proxy that path would use (the configuration's,
  else the environment's, resolved once) is kept. The rare 409 follow-up GET stays on the generic path.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, cast
from urllib.parse import quote

import aiohttp
import orjson
from kubernetes_asyncio import client
from yarl import URL

from carbon_common.kube import ApiStatusError, read_json, status_message

log = logging.getLogger(__name__)

BindResult = Literal["bound", "already_bound", "conflict", "error"]
RESULTS: Final[tuple[BindResult, ...]] = ("bound", "already_bound", "conflict", "error")


Outcome = tuple[BindResult, str | None]

MAX_ANNOTATION_BYTES: Final = 64 * 1024
"""Cap for the annotations we add: a pod's annotations share 256 KiB in total with everyone else's."""
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_annotations(annotations: Mapping[str, str]) -> str | None:
    """Why these annotations would make the pod invalid (Kubernetes' rules), or None when they are fine."""
    size = 0
    for key, value in annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return f"annotation {key!r}: keys and values must be strings"
        prefix, _, name = key.rpartition("/")
        if not _NAME.match(name) or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))):
            return f"annotation key {key!r} is not a qualified name ([prefix/]name)"
        size += len(key.encode()) + len(value.encode())
    if size > MAX_ANNOTATION_BYTES:
        return f"annotations take {size} bytes, over the {MAX_ANNOTATION_BYTES} allowed"
    return None


class Binder:
    """Creates Bindings; `results` counts outcomes by label (bound, already_bound, conflict, error)."""

    def __init__(
        self,
        api: client.ApiClient,
        timeout: float = 4.0,
        *,
        on_result: Callable[[BindResult], None] | None = None,
    ) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._http: _DirectPost | None = None
        self._timeout = timeout
        self._on_result = on_result
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._waiters: Counter[tuple[str, str]] = Counter()
        self.results: Counter[BindResult] = Counter({r: 0 for r in RESULTS})
        self.annotation_failures = 0
        self._closed = False

    async def bind(
        self,
        namespace: str,
        name: str,
        uid: str,
        node: str,
        annotations: Mapping[str, str] | None = None,
    ) -> str | None:
        """Bind; None on success (also when already bound to `node`), else a message for Error."""
        if self._closed:
            return self._record("error", "binder is shutting down")
        if not namespace or not name or not node:
            return self._record("error", "bind needs PodNamespace, PodName and Node")
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiters[key] += 1
        try:
            async with asyncio.timeout(self._timeout), lock:
                result, message = await self._bind_once(namespace, name, uid, node, annotations)
            return self._record(result, message)
        except TimeoutError:
            return self._record(
                "error", f"binding pod {namespace}/{name} to {node} timed out after {self._timeout:g}s"
            )
        except (aiohttp.ClientError, OSError) as exc:
            return self._record("error", f"binding pod {namespace}/{name} to {node} failed: {exc}")
        except Exception as exc:  # e.g. a non-JSON answer: still an Error for the scheduler, never a 500
            log.exception("unexpected bind failure", extra={"pod": f"{namespace}/{name}", "node": node})
            return self._record(
                "error", f"binding pod {namespace}/{name} to {node} failed: {type(exc).__name__}: {exc}"
            )
        finally:
            # Drop the lock once nobody waits on it, so the map does not grow with every pod ever bound.
            self._waiters[key] -= 1
            if self._waiters[key] == 0:
                del self._waiters[key]
                self._locks.pop(key, None)

    async def _bind_once(
        self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str] | None
    ) -> Outcome:
        if annotations:
            problem = check_annotations(annotations)
            if problem is not None:
                self.annotation_failures += 1
                log.warning(
                    "dropping invalid decision annotations",
                    extra={"pod": f"{namespace}/{name}", "node": node, "error": problem},
                )
                annotations = None
        status, message = await self._post(namespace, name, uid, node, annotations)
        if status in (400, 422) and annotations:
            # The annotations were refused (size, key syntax): bind without them, say so, carry on.
            self.annotation_failures += 1
            log.warning(
                "binding refused the decision annotations; binding without them",
                extra={"pod": f"{namespace}/{name}", "node": node, "error": message},
            )
            status, message = await self._post(namespace, name, uid, node, None)
        if status == 409:
            outcome = await self._check_existing(namespace, name, uid, node, message)
            if outcome is not None:
                return outcome
            # Not bound, same UID: the conflict was transient (a concurrent update); one more try.
            status, message = await self._post(namespace, name, uid, node, None)
            if status == 409:
                return await self._check_existing(namespace, name, uid, node, message) or (
                    "conflict",
                    f"binding pod {namespace}/{name} to {node}: conflict: {message}",
                )
        if 200 <= status <= 299:
            return "bound", None
        if status == 404:
            return "error", f"pod {namespace}/{name} not found (deleted before it could be bound)"
        return "error", f"binding pod {namespace}/{name} to {node} failed: HTTP {status}: {message}"

    async def _post(
        self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str] | None
    ) -> tuple[int, str]:
        metadata: dict[str, Any] = {"name": name, "namespace": namespace}
        if uid:
            metadata["uid"] = uid
        if annotations:
            metadata["annotations"] = dict(annotations)
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": metadata,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        if self._http is None:
            self._http = _DirectPost(self._api)
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/binding"
        status, raw = await self._http.post(path, orjson.dumps(body))
        return status, ("" if 200 <= status <= 299 else status_message(raw))

    async def _check_existing(
        self, namespace: str, name: str, uid: str, node: str, conflict: str
    ) -> Outcome | None:
        """After a 409: decide from the pod itself; None when it is still unbound with our UID."""
        resp = cast(
            aiohttp.ClientResponse,
            await self._core.read_namespaced_pod(name, namespace, _preload_content=False),
        )
        try:
            pod = await read_json(resp)
        except ApiStatusError as exc:
            if exc.status == 404:
                return "error", f"pod {namespace}/{name} not found (deleted while binding)"
            return (
                "error",
                f"binding pod {namespace}/{name}: conflict ({conflict}), then reading it failed: {exc}",
            )
        meta = pod.get("metadata") or {}
        actual_uid = meta.get("uid") or ""
        bound_to = (pod.get("spec") or {}).get("nodeName") or ""
        if uid and actual_uid != uid:
            return (
                "conflict",
                f"pod {namespace}/{name} has UID {actual_uid}, not {uid}: it was recreated; not binding",
            )
        if bound_to == node:
            return "already_bound", None
        if bound_to:
            return "conflict", f"pod {namespace}/{name} is already bound to node {bound_to}, not {node}"
        return None

    def _record(self, result: BindResult, message: str | None) -> str | None:
        self.results[result] += 1
        if self._on_result is not None:
            self._on_result(result)
        if message is None:
            log.debug("pod bound", extra={"result": result})
        else:
            log.warning("bind failed", extra={"result": result, "error": message})
        return message

    async def close(self) -> None:
        """Refuse new binds and release the direct-POST session (call it before closing the ApiClient,
        which belongs to the caller and owns the connection pool)."""
        self._closed = True
        if self._http is not None:
            await self._http.close()


class _DirectPost:
    """POST JSON to the API server the way the ApiClient would (same connection pool, TLS, server name,
    headers, credentials and proxy), without its per-request overhead."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        cfg = api.configuration
        rest = api.rest_client
        self._base = str(cfg.host).rstrip("/")
        # The ApiClient's own pool: one set of keep-alive connections to the API server for everything.
        # trust_env=False because the proxy is resolved once below, not per request.
        self._session = aiohttp.ClientSession(
            connector=rest.pool_manager.connector, connector_owner=False, trust_env=False
        )
        self._extra: dict[str, Any] = {}
        proxy = rest.proxy or _env_proxy(URL(self._base))
        if proxy:
            self._extra["proxy"] = proxy
        if rest.proxy_headers:
            self._extra["proxy_headers"] = rest.proxy_headers
        if rest.server_hostname:
            self._extra["server_hostname"] = rest.server_hostname

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        headers: dict[str, str] = {"Accept": "application/json", "Content-Type": "application/json"}
        headers.update(self._api.default_headers)
        if self._api.cookie:
            headers["Cookie"] = self._api.cookie
        # The ApiClient's auth step: runs the token refresh hook (in-cluster token rotation, exec plugins).
        await self._api.update_params_for_auth(headers, [], ["BearerToken"])
        async with self._session.post(self._base + path, data=body, headers=headers, **self._extra) as resp:
            return resp.status, await resp.read()

    async def close(self) -> None:
        # Does not close the shared connector: the ApiClient owns it.
        await self._session.close()


def _env_proxy(url: URL) -> str | None:
    """The proxy aiohttp's trust_env would pick for `url` (HTTPS_PROXY/HTTP_PROXY, honouring NO_PROXY)."""
    if url.host is None or urllib.request.proxy_bypass(url.host):
        return None
    return urllib.request.getproxies().get(url.scheme)
