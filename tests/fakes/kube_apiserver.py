"""A loopback fake of the Kubernetes API server, speaking the real paths and JSON.

Not a mock of our code: clients (kubernetes-asyncio, our list_watch, the binder) talk HTTP to it
exactly as they would to kube-apiserver. It implements what this project uses:

- nodes: list (limit/continue, labelSelector), watch (resourceVersion, allowWatchBookmarks,
  timeoutSeconds), get;
- pods: get, list, watch (all namespaces or one), create, update (PUT with resourceVersion
  precondition), patch (merge, strategic-merge, json-patch), delete; pods/binding create (404 missing,
  409 already assigned, 409 UID precondition);
- events: create in core/v1 and events.k8s.io/v1;
- leases (coordination.k8s.io/v1): get, create (409 AlreadyExists), update (409 on stale
  resourceVersion).

Faults a test can inject: `fail_next` (any status on matching requests), `expire()` (compaction: watches
and lists from older resourceVersions get 410), `drop_watches()` (close every open watch mid-stream),
`bookmark()` (send a BOOKMARK now; `bookmark_interval` sends them periodically).

Use it from tests with the `fake_kube` fixture: add
`pytest_plugins = ["tests.fakes.kube_apiserver"]` to a test module (or to tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient

from carbon_common.kube import load_api_client

Obj = dict[str, Any]
_BODY = web.RequestKey("fake_kube_body", object)
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


def _status(code: int, reason: str, message: str, details: Obj | None = None) -> web.Response:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 300 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return web.Response(status=code, body=orjson.dumps(body), content_type="application/json")


def _truthy(value: str | None) -> bool:
    # kubernetes-asyncio sends Python's str(True) ("True"); kubectl and client-go send "true".
    return (value or "").lower() in ("true", "1")


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")


class _HTTPStatus(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass
class Fault:
    status: int
    method: str | None
    path_contains: str
    remaining: int
    message: str = "injected fault"
    body: bytes | None = None


@dataclass(eq=False)  # identity hash: watchers live in a set
class _Watcher:
    resource: str
    namespace: str | None
    label_selector: str
    field_selector: str
    queue: asyncio.Queue[Obj | bytes | None] = field(default_factory=asyncio.Queue)
    bookmarks: bool = False


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


# ---------------------------------------------------------------- selectors and patches


def _match_labels(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "==" in term or "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def _match_fields(obj: Obj, selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if _field(obj, k.strip()) == v.strip():
                return False
        else:
            k, v = term.replace("==", "=").split("=", 1)
            if _field(obj, k.strip()) != v.strip():
                return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# Lists that strategic merge patch merges by key (patchMergeKey) in the objects we serve.
_SMP_KEYS = {
    "schedulingGates": "name",
    "containers": "name",
    "initContainers": "name",
    "tolerations": None,
    "conditions": "type",
    "env": "name",
    "volumes": "name",
}


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """The subset of strategic merge patch our clients use: maps merge, keyed lists merge by key,
    `{"$patch": "delete", key: ...}` removes an element, `$setElementOrder/...` is accepted."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k == "$retainKeys":
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, list) and _SMP_KEYS.get(k):
            key = _SMP_KEYS[k]
            current = [copy.deepcopy(x) for x in result.get(k) or []]
            for item in v:
                if not isinstance(item, dict) or key not in item:
                    raise _HTTPStatus(422, "Invalid", f"{k}: element without merge key {key!r}")
                idx = next((i for i, x in enumerate(current) if x.get(key) == item[key]), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        current.pop(idx)
                elif idx is None:
                    current.append(item)
                else:
                    current[idx] = strategic_merge_patch(current[idx], item)
            result[k] = current
        else:
            result[k] = strategic_merge_patch(result.get(k), v)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise _HTTPStatus(422, "Invalid", f"json patch path {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, test."""
    if not isinstance(ops, list):
        raise _HTTPStatus(400, "BadRequest", "json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _HTTPStatus(400, "BadRequest", f"bad json patch operation {op!r}")
        parts = _pointer(op["path"])
        parent: Any = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.get(p)
            if parent is None:
                raise _HTTPStatus(422, "Invalid", f"json patch path {op['path']!r} does not exist")
        last = parts[-1]
        kind = op["op"]
        try:
            if kind == "test":
                cur = parent[int(last)] if isinstance(parent, list) else parent[last]
                if cur != op.get("value"):
                    raise _HTTPStatus(422, "Invalid", f"json patch test failed at {op['path']!r}")
            elif kind == "remove":
                if isinstance(parent, list):
                    parent.pop(int(last))
                else:
                    del parent[last]
            elif kind in ("add", "replace"):
                if isinstance(parent, list):
                    if last == "-":
                        parent.append(op["value"])
                    elif kind == "add":
                        parent.insert(int(last), op["value"])
                    else:
                        parent[int(last)] = op["value"]
                else:
                    if kind == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = op["value"]
            else:
                raise _HTTPStatus(422, "Invalid", f"unsupported json patch op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise _HTTPStatus(422, "Invalid", f"json patch {kind} at {op['path']!r} failed: {exc}") from exc
    return doc


# ---------------------------------------------------------------- the server


class FakeKube:
    """State and fault controls of the fake API server. Build it, then `await start()`."""

    def __init__(self, tmp_dir: Path) -> None:
        self._tmp_dir = tmp_dir
        self._rv = itertools.count(100)
        self.resource_version = next(self._rv)
        self.compacted = 0
        """Watches from a resourceVersion below this get 410 Gone (after `expire()`)."""
        self.store: dict[str, dict[Key, Obj]] = {"nodes": {}, "pods": {}, "leases": {}}
        self.events: list[Obj] = []
        self.bindings: list[Obj] = []
        """Every Binding the server accepted (one per successful bind)."""
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.bookmark_interval: float | None = None
        self.reject_binding_annotations = False
        self.binding_delay: float = 0.0
        """Seconds each binding takes, to widen race windows in concurrency tests."""
        self.stall_when: Callable[[web.Request], bool] | None = None
        """Requests for which this returns true get no answer until `unstall()` (see `stall`)."""
        self.stalled = 0
        """How many requests are being held by `stall` right now."""
        self._unstalled = asyncio.Event()
        self._watchers: set[_Watcher] = set()
        self._history: list[tuple[int, str, str, Obj]] = []
        self._runner: web.AppRunner | None = None
        self._bookmark_task: asyncio.Task[None] | None = None
        self.base_url = ""
        self.kubeconfig = tmp_dir / "kubeconfig"

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/api/v1/nodes", self._list_nodes)
        r.add_get("/api/v1/nodes/{name}", self._get_node)
        r.add_get("/api/v1/pods", self._list_pods)
        r.add_get("/api/v1/namespaces/{ns}/pods", self._list_pods)
        r.add_post("/api/v1/namespaces/{ns}/pods", self._create_pod)
        r.add_get("/api/v1/namespaces/{ns}/pods/{name}", self._get_pod)
        r.add_put("/api/v1/namespaces/{ns}/pods/{name}", self._put_pod)
        r.add_patch("/api/v1/namespaces/{ns}/pods/{name}", self._patch_pod)
        r.add_delete("/api/v1/namespaces/{ns}/pods/{name}", self._delete_pod)
        r.add_post("/api/v1/namespaces/{ns}/pods/{name}/binding", self._bind)
        r.add_post("/api/v1/namespaces/{ns}/events", self._create_event)
        r.add_post("/apis/events.k8s.io/v1/namespaces/{ns}/events", self._create_event)
        leases = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
        r.add_post(leases, self._create_lease)
        r.add_get(leases + "/{name}", self._get_lease)
        r.add_put(leases + "/{name}", self._put_lease)
        self._add_policy_routes(r)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.kubeconfig.write_text(
            orjson.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.base_url}}],
                    "users": [{"name": "fake", "user": {"token": "fake-token"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            ).decode()
        )
        self._bookmark_task = asyncio.create_task(self._bookmarks())

    async def stop(self) -> None:
        self.unstall()
        if self._bookmark_task:
            self._bookmark_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bookmark_task
        self.drop_watches()
        if self._runner:
            await self._runner.cleanup()

    # ------------------------------------------------------------ test controls: objects

    def _next_rv(self) -> int:
        self.resource_version = next(self._rv)
        return self.resource_version

    def _commit(self, resource: str, etype: str, key: Key, obj: Obj) -> Obj:
        rv = self._next_rv()
        obj.setdefault("metadata", {})["resourceVersion"] = str(rv)
        if etype == "DELETED":
            self.store[resource].pop(key, None)
        else:
            self.store[resource][key] = obj
        snapshot = copy.deepcopy(obj)
        self._history.append((rv, resource, etype, snapshot))
        for w in list(self._watchers):
            if w.resource == resource and self._visible(w, snapshot):
                w.queue.put_nowait({"type": etype, "object": snapshot})
        return obj

    @staticmethod
    def _visible(w: _Watcher, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        if w.namespace is not None and meta.get("namespace") != w.namespace:
            return False
        return _match_labels(meta.get("labels") or {}, w.label_selector) and _match_fields(
            obj, w.field_selector
        )

    def add_node(
        self, name: str, labels: dict[str, str] | None = None, ready: bool = True, **extra: Any
    ) -> Obj:
        node: Obj = {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "labels": dict(labels or {})},
            "spec": {},
            "status": {
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            },
        }
        node.update(extra)
        etype = "MODIFIED" if ("", name) in self.store["nodes"] else "ADDED"
        return self._commit("nodes", etype, ("", name), node)

    def set_node_labels(self, name: str, labels: dict[str, str]) -> Obj:
        node = copy.deepcopy(self.store["nodes"][("", name)])
        node["metadata"]["labels"] = dict(labels)
        return self._commit("nodes", "MODIFIED", ("", name), node)

    def delete_node(self, name: str) -> None:
        node = copy.deepcopy(self.store["nodes"][("", name)])
        self._commit("nodes", "DELETED", ("", name), node)

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        node_name: str | None = None,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        scheduling_gates: list[str] | None = None,
        scheduler_name: str = "default-scheduler",
        cpu: str | None = None,
    ) -> Obj:
        pod: Obj = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid or str(uuid.uuid4()),
                "annotations": dict(annotations or {}),
                "labels": dict(labels or {}),
                "creationTimestamp": "2026-11-22T10:00:00Z",
            },
            "spec": {
                "schedulerName": scheduler_name,
                "containers": [{"name": "main", "image": "busybox"}],
            },
            "status": {"phase": "Pending"},
        }
        if node_name:
            pod["spec"]["nodeName"] = node_name
        if cpu is not None:
            pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": cpu}}
        if scheduling_gates:
            pod["spec"]["schedulingGates"] = [{"name": g} for g in scheduling_gates]
        return self._commit("pods", "ADDED", (namespace, name), pod)

    def pod(self, namespace: str, name: str) -> Obj | None:
        return self.store["pods"].get((namespace, name))

    def delete_pod(self, namespace: str, name: str) -> None:
        pod = copy.deepcopy(self.store["pods"][(namespace, name)])
        self._commit("pods", "DELETED", (namespace, name), pod)

    # ------------------------------------------------------------ test controls: faults

    def fail_next(
        self,
        status: int,
        path_contains: str = "",
        *,
        method: str | None = None,
        times: int = 1,
        message: str = "injected fault",
        body: bytes | None = None,
    ) -> None:
        """The next `times` requests whose path contains `path_contains` (and method, if given) fail:
        with a metav1.Status carrying `message`, or with `body` verbatim (e.g. a proxy's HTML page)."""
        self.faults.append(Fault(status, method, path_contains, times, message, body))

    def stall(self, when: Callable[[web.Request], bool]) -> None:
        """Hold every matching request without an answer (a hung API server, or a network partition
        seen from one client) until `unstall()`; e.g. ``lambda r: "/leases" in r.path``."""
        self._unstalled.clear()
        self.stall_when = when

    def unstall(self) -> None:
        """Answer the held requests and stop holding new ones."""
        self.stall_when = None
        self._unstalled.set()

    def expire(self) -> None:
        """Compact history: every resourceVersion up to now is too old. Open watches get an ERROR 410."""
        self.compacted = self._next_rv()
        self._history.clear()
        gone = {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "too old resource version",
                "reason": "Expired",
                "code": 410,
            },
        }
        for w in list(self._watchers):
            w.queue.put_nowait(gone)
            w.queue.put_nowait(None)

    def drop_watches(self) -> None:
        """Close every open watch connection (as a restarting API server or a proxy would)."""
        for w in list(self._watchers):
            w.queue.put_nowait(None)

    def send_garbage(self, data: bytes = b'{"type": "ADDED", "object": {trunc\n') -> None:
        """Write raw bytes into every open watch stream (a corrupted or truncated event)."""
        for w in list(self._watchers):
            w.queue.put_nowait(data)

    def bookmark(self) -> None:
        """Send a BOOKMARK at the current resourceVersion to every watch that asked for bookmarks."""
        for w in list(self._watchers):
            if w.bookmarks:
                w.queue.put_nowait(self._bookmark_event(w.resource))

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def count(self, method: str, path_contains: str, *, watch: bool | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if r.method == method
            and path_contains in r.path
            and (watch is None or _truthy(r.query.get("watch")) == watch)
        )

    def _bookmark_event(self, resource: str) -> Obj:
        kind = {"nodes": "Node", "pods": "Pod", "leases": "Lease"}[resource]
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": kind,
                "apiVersion": "v1",
                # Like the real one: an object of the watched kind carrying only its resourceVersion.
                "metadata": {"resourceVersion": str(self.resource_version)},
            },
        }

    async def _bookmarks(self) -> None:
        while True:
            await asyncio.sleep(self.bookmark_interval or 0.05)
            if self.bookmark_interval:
                self.bookmark()

    # ------------------------------------------------------------ HTTP plumbing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                return _status(400, "BadRequest", "request body is not valid JSON")
        self.requests.append(
            Request(request.method, request.path, dict(request.query), request.content_type, body)
        )
        request[_BODY] = body
        if self.stall_when is not None and self.stall_when(request):
            self.stalled += 1
            try:
                await self._unstalled.wait()
            finally:
                self.stalled -= 1
        for fault in self.faults:
            if (
                fault.remaining > 0
                and fault.path_contains in request.path
                and (fault.method is None or fault.method == request.method)
            ):
                fault.remaining -= 1
                if fault.body is not None:
                    return web.Response(status=fault.status, body=fault.body, content_type="text/html")
                reason = {404: "NotFound", 409: "Conflict", 410: "Expired", 429: "TooManyRequests"}
                return _status(fault.status, reason.get(fault.status, "InternalError"), fault.message)
        try:
            result: web.StreamResponse = await handler(request)
            return result
        except _HTTPStatus as exc:
            return _status(exc.code, exc.reason, exc.message)

    def _list_or_watch(self, request: web.Request, resource: str, namespace: str | None) -> Any:
        q = request.query
        if _truthy(q.get("watch")):
            return self._watch(request, resource, namespace)
        return self._list(request, resource, namespace)

    def _selected(self, request: web.Request, resource: str, namespace: str | None) -> list[Obj]:
        w = _Watcher(
            resource,
            namespace,
            request.query.get("labelSelector", ""),
            request.query.get("fieldSelector", ""),
        )
        objs = sorted(self.store[resource].items())
        return [o for _, o in objs if self._visible(w, o)]

    async def _list(self, request: web.Request, resource: str, namespace: str | None) -> web.Response:
        items = self._selected(request, resource, namespace)
        q = request.query
        start = 0
        if q.get("continue"):
            token = q["continue"]
            try:
                list_rv, start_s = token.split(":")
                start = int(start_s)
            except ValueError:
                raise _HTTPStatus(400, "BadRequest", f"bad continue token {token!r}") from None
            if int(list_rv) <= self.compacted:
                raise _HTTPStatus(410, "Expired", "continue token expired, relist")
        limit = int(q.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        meta: Obj = {"resourceVersion": str(self.resource_version)}
        if limit and start + limit < len(items):
            meta["continue"] = f"{self.resource_version}:{start + limit}"
            meta["remainingItemCount"] = len(items) - start - limit
        kind = {"nodes": "NodeList", "pods": "PodList"}.get(resource, "List")
        return _json({"kind": kind, "apiVersion": "v1", "metadata": meta, "items": page})

    async def _watch(self, request: web.Request, resource: str, namespace: str | None) -> web.StreamResponse:
        q = request.query
        w = _Watcher(
            resource,
            namespace,
            q.get("labelSelector", ""),
            q.get("fieldSelector", ""),
            bookmarks=_truthy(q.get("allowWatchBookmarks")),
        )
        rv_param = q.get("resourceVersion", "")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)

        async def send(event: Obj) -> None:
            await resp.write(orjson.dumps(event) + b"\n")

        if rv_param in ("", "0"):
            # "Start at most recent": synthetic ADDED for every current object.
            for obj in self._selected(request, resource, namespace):
                await send({"type": "ADDED", "object": obj})
        else:
            rv = int(rv_param)
            if rv < self.compacted:
                await send(
                    {
                        "type": "ERROR",
                        "object": {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "metadata": {},
                            "status": "Failure",
                            "message": f"too old resource version: {rv} ({self.compacted})",
                            "reason": "Expired",
                            "code": 410,
                        },
                    }
                )
                return resp
            for hrv, hres, etype, obj in self._history:
                if hrv > rv and hres == resource and self._visible(w, obj):
                    await send({"type": etype, "object": obj})
        self._watchers.add(w)
        timeout = float(q.get("timeoutSeconds") or 1800)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await w.queue.get()
                    if event is None:
                        break
                    if isinstance(event, bytes):
                        await resp.write(event)
                    else:
                        await send(event)
        except TimeoutError:
            # kube-apiserver ends a timed-out watch with a bookmark when the client allowed them.
            if w.bookmarks:
                with contextlib.suppress(ConnectionResetError):
                    await send(self._bookmark_event(resource))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(w)
        return resp

    # ------------------------------------------------------------ handlers

    async def _list_nodes(self, request: web.Request) -> web.StreamResponse:
        result: web.StreamResponse = await self._list_or_watch(request, "nodes", None)
        return result

    async def _get_node(self, request: web.Request) -> web.Response:
        node = self.store["nodes"].get(("", request.match_info["name"]))
        if node is None:
            raise _HTTPStatus(404, "NotFound", f'nodes "{request.match_info["name"]}" not found')
        return _json(node)

    async def _list_pods(self, request: web.Request) -> web.StreamResponse:
        result: web.StreamResponse = await self._list_or_watch(request, "pods", request.match_info.get("ns"))
        return result

    def _pod_or_404(self, request: web.Request) -> tuple[Key, Obj]:
        key = (request.match_info["ns"], request.match_info["name"])
        pod = self.store["pods"].get(key)
        if pod is None:
            raise _HTTPStatus(404, "NotFound", f'pods "{key[1]}" not found')
        return key, pod

    async def _get_pod(self, request: web.Request) -> web.Response:
        return _json(self._pod_or_404(request)[1])

    async def _create_pod(self, request: web.Request) -> web.Response:
        body = request[_BODY]
        if not isinstance(body, dict) or not (body.get("metadata") or {}).get("name"):
            raise _HTTPStatus(422, "Invalid", "pod needs metadata.name")
        ns = request.match_info["ns"]
        key = (ns, body["metadata"]["name"])
        if key in self.store["pods"]:
            raise _HTTPStatus(409, "AlreadyExists", f'pods "{key[1]}" already exists')
        pod = copy.deepcopy(body)
        pod.setdefault("kind", "Pod")
        pod.setdefault("apiVersion", "v1")
        pod["metadata"].update(namespace=ns, uid=str(uuid.uuid4()))
        pod.setdefault("status", {"phase": "Pending"})
        return _json(self._commit("pods", "ADDED", key, pod), 201)

    def _check_update(self, old: Obj, new: Obj) -> None:
        old_gates = {g.get("name") for g in (old.get("spec") or {}).get("schedulingGates") or []}
        new_gates = {g.get("name") for g in (new.get("spec") or {}).get("schedulingGates") or []}
        if not new_gates <= old_gates:
            # The real API server only lets gates be removed after creation.
            raise _HTTPStatus(422, "Invalid", "spec.schedulingGates: only deletion is allowed")
        if (old.get("spec") or {}).get("nodeName") != (new.get("spec") or {}).get("nodeName"):
            raise _HTTPStatus(422, "Invalid", "spec.nodeName: field is immutable (use pods/binding)")
        new_meta = new.setdefault("metadata", {})
        for f in ("name", "namespace", "uid"):
            new_meta[f] = old["metadata"][f]

    async def _put_pod(self, request: web.Request) -> web.Response:
        key, old = self._pod_or_404(request)
        body = request[_BODY]
        if not isinstance(body, dict):
            raise _HTTPStatus(400, "BadRequest", "pod body must be an object")
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise _HTTPStatus(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods "{key[1]}": '
                "the object has been modified; please apply your changes to the latest version",
            )
        new = copy.deepcopy(body)
        self._check_update(old, new)
        return _json(self._commit("pods", "MODIFIED", key, new))

    async def _patch_pod(self, request: web.Request) -> web.Response:
        key, old = self._pod_or_404(request)
        patch = request[_BODY]
        ctype = request.content_type
        if ctype == "application/merge-patch+json":
            new = merge_patch(old, patch)
        elif ctype == "application/strategic-merge-patch+json":
            new = strategic_merge_patch(old, patch)
        elif ctype == "application/json-patch+json":
            new = json_patch(old, patch)
        else:
            raise _HTTPStatus(415, "UnsupportedMediaType", f"unsupported patch type {ctype!r}")
        if not isinstance(new, dict):
            raise _HTTPStatus(422, "Invalid", "patch must leave an object")
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise _HTTPStatus(409, "Conflict", f'Operation cannot be fulfilled on pods "{key[1]}"')
        self._check_update(old, new)
        return _json(self._commit("pods", "MODIFIED", key, new))

    async def _delete_pod(self, request: web.Request) -> web.Response:
        key, pod = self._pod_or_404(request)
        self._commit("pods", "DELETED", key, copy.deepcopy(pod))
        return _json(pod)

    async def _bind(self, request: web.Request) -> web.Response:
        body = request[_BODY]
        if not isinstance(body, dict):
            raise _HTTPStatus(400, "BadRequest", "binding body must be an object")
        target = body.get("target") or {}
        if target.get("kind") not in ("Node", "", None) or not target.get("name"):
            # Verbatim from kube-apiserver 1.35, including its (odd) 500 status.
            raise _HTTPStatus(
                500,
                "",
                f'target.kind: Unsupported value: "{target.get("kind")}": '
                'supported values: "Node", "<empty>"',
            )
        if self.binding_delay:
            await asyncio.sleep(self.binding_delay)
        key, pod = self._pod_or_404(request)
        uid = (body.get("metadata") or {}).get("uid")
        if uid and uid != pod["metadata"]["uid"]:
            raise _HTTPStatus(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods "{key[1]}": StorageError: invalid object, Code: 4, '
                f"Key: /registry/pods/{key[0]}/{key[1]}, ResourceVersion: 0, AdditionalErrorMsg: "
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {pod['metadata']['uid']}",
            )
        if pod["spec"].get("nodeName"):
            raise _HTTPStatus(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{key[1]}": pod {key[1]} is already '
                f'assigned to node "{pod["spec"]["nodeName"]}"',
            )
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = target["name"]
        annotations = (body.get("metadata") or {}).get("annotations")
        if annotations:
            # Copied verbatim, unvalidated, like kube-apiserver 1.35 does (checked: an invalid key
            # and a 300 KiB value were both accepted). `reject_binding_annotations` simulates a
            # stricter server.
            if self.reject_binding_annotations:
                raise _HTTPStatus(422, "Invalid", "metadata.annotations: Invalid value")
            new["metadata"].setdefault("annotations", {}).update(annotations)
        self._commit("pods", "MODIFIED", key, new)
        self.bindings.append(copy.deepcopy(body))
        return _json(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    async def _create_event(self, request: web.Request) -> web.Response:
        body = request[_BODY]
        if not isinstance(body, dict):
            raise _HTTPStatus(400, "BadRequest", "event body must be an object")
        event = copy.deepcopy(body)
        meta = event.setdefault("metadata", {})
        meta["namespace"] = request.match_info["ns"]
        if not meta.get("name"):
            meta["name"] = (meta.pop("generateName", None) or "event.") + uuid.uuid4().hex[:8]
        meta["resourceVersion"] = str(self._next_rv())
        event["_apiPath"] = request.path
        self.events.append(event)
        return _json({k: v for k, v in event.items() if k != "_apiPath"}, 201)

    def _lease_key(self, request: web.Request, name: str | None = None) -> Key:
        return (request.match_info["ns"], name or request.match_info["name"])

    async def _get_lease(self, request: web.Request) -> web.Response:
        key = self._lease_key(request)
        lease = self.store["leases"].get(key)
        if lease is None:
            raise _HTTPStatus(404, "NotFound", f'leases.coordination.k8s.io "{key[1]}" not found')
        return _json(lease)

    async def _create_lease(self, request: web.Request) -> web.Response:
        body = request[_BODY]
        if not isinstance(body, dict) or not (body.get("metadata") or {}).get("name"):
            raise _HTTPStatus(422, "Invalid", "lease needs metadata.name")
        key = self._lease_key(request, body["metadata"]["name"])
        if key in self.store["leases"]:
            raise _HTTPStatus(409, "AlreadyExists", f'leases.coordination.k8s.io "{key[1]}" already exists')
        lease = copy.deepcopy(body)
        lease.update(kind="Lease", apiVersion="coordination.k8s.io/v1")
        lease["metadata"].update(namespace=key[0], uid=str(uuid.uuid4()))
        return _json(self._commit("leases", "ADDED", key, lease), 201)

    async def _put_lease(self, request: web.Request) -> web.Response:
        key = self._lease_key(request)
        old = self.store["leases"].get(key)
        if old is None:
            raise _HTTPStatus(404, "NotFound", f'leases.coordination.k8s.io "{key[1]}" not found')
        body = request[_BODY]
        if not isinstance(body, dict):
            raise _HTTPStatus(400, "BadRequest", "lease body must be an object")
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if not rv:
            # Verbatim from kube-apiserver 1.35: leases allow no unconditional update.
            raise _HTTPStatus(
                422,
                "Invalid",
                f'leases.coordination.k8s.io "{key[1]}" is invalid: metadata.resourceVersion: '
                "Invalid value: 0: must be specified for an update",
            )
        if rv != old["metadata"]["resourceVersion"]:
            # Leader election relies on this optimistic-concurrency check.
            raise _HTTPStatus(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on leases.coordination.k8s.io "{key[1]}": '
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        new = copy.deepcopy(body)
        new.update(kind="Lease", apiVersion="coordination.k8s.io/v1")
        new["metadata"].update(namespace=key[0], name=key[1], uid=old["metadata"]["uid"])
        return _json(self._commit("leases", "MODIFIED", key, new))

    # ------------------------------------------------------------ PDBs, namespaces, evictions (rebalancer)

    def _add_policy_routes(self, r: web.UrlDispatcher) -> None:
        for resource in ("poddisruptionbudgets", "namespaces"):
            self.store.setdefault(resource, {})
        r.add_get("/apis/policy/v1/poddisruptionbudgets", self._list_pdbs)
        r.add_get("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", self._list_pdbs)
        r.add_get("/api/v1/namespaces", self._list_namespaces)
        r.add_post("/api/v1/namespaces/{ns}/pods/{name}/eviction", self._evict)

    def add_object(self, resource: str, obj: Obj) -> Obj:
        """Create or replace any object as given (e.g. a pod with ownerReferences and conditions)."""
        self.store.setdefault(resource, {})
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        key = (meta.get("namespace", ""), meta["name"])
        etype = "MODIFIED" if key in self.store[resource] else "ADDED"
        return self._commit(resource, etype, key, copy.deepcopy(obj))

    def add_pdb(
        self, namespace: str, name: str, match_labels: dict[str, str], disruptions_allowed: int
    ) -> Obj:
        """A policy/v1 PodDisruptionBudget whose status says `disruptions_allowed` (the disruption
        controller's job in a real cluster)."""
        return self.add_object(
            "poddisruptionbudgets",
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"namespace": namespace, "name": name},
                "spec": {"selector": {"matchLabels": dict(match_labels)}},
                "status": {"disruptionsAllowed": disruptions_allowed},
            },
        )

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> Obj:
        return self.add_object(
            "namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": dict(labels or {})},
            },
        )

    async def _list_pdbs(self, request: web.Request) -> web.StreamResponse:
        result: web.StreamResponse = await self._list_or_watch(
            request, "poddisruptionbudgets", request.match_info.get("ns")
        )
        return result

    async def _list_namespaces(self, request: web.Request) -> web.StreamResponse:
        result: web.StreamResponse = await self._list_or_watch(request, "namespaces", None)
        return result

    async def _evict(self, request: web.Request) -> web.Response:
        """policy/v1 Eviction as kube-apiserver does it: the UID precondition, then the pod's PDBs (429
        while one allows no disruption, 500 when more than one selects it), then a graceful delete
        (the pod gets a deletionTimestamp; `delete_pod` finishes it) and one disruption used."""
        body = request[_BODY]
        if not isinstance(body, dict) or body.get("kind") != "Eviction":
            raise _HTTPStatus(400, "BadRequest", "eviction body must be an Eviction")
        key, pod = self._pod_or_404(request)
        uid = ((body.get("deleteOptions") or {}).get("preconditions") or {}).get("uid")
        if uid and uid != pod["metadata"]["uid"]:
            raise _HTTPStatus(409, "Conflict", f"Precondition failed: UID in precondition: {uid}")
        labels = pod["metadata"].get("labels") or {}
        pdbs = [
            (pkey, pdb)
            for pkey, pdb in self.store.get("poddisruptionbudgets", {}).items()
            if pkey[0] == key[0]
            and all(
                labels.get(k) == v
                for k, v in ((pdb["spec"].get("selector") or {}).get("matchLabels") or {}).items()
            )
        ]
        if len(pdbs) > 1:
            raise _HTTPStatus(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not "
                "support.",
            )
        if pdbs and not pod["metadata"].get("deletionTimestamp"):
            pkey, pdb = pdbs[0]
            if int((pdb.get("status") or {}).get("disruptionsAllowed") or 0) <= 0:
                raise _HTTPStatus(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                )
            updated = copy.deepcopy(pdb)
            updated["status"]["disruptionsAllowed"] -= 1
            self._commit("poddisruptionbudgets", "MODIFIED", pkey, updated)
        new = copy.deepcopy(pod)
        new["metadata"].setdefault("deletionTimestamp", "2026-11-22T10:00:00Z")
        self._commit("pods", "MODIFIED", key, new)
        return _json(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )


@pytest.fixture
async def fake_kube(tmp_path: Path) -> AsyncIterator[FakeKube]:
    """A started FakeKube on 127.0.0.1 with `base_url` and a `kubeconfig` file pointing at it."""
    fake = FakeKube(tmp_path)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def api(fake_kube: FakeKube) -> AsyncIterator[ApiClient]:
    """A kubernetes-asyncio client configured from `fake_kube`'s kubeconfig, closed after the test."""
    client = await load_api_client(fake_kube.kubeconfig)
    try:
        yield client
    finally:
        await client.close()


def realistic_node(i: int, zone: str) -> tuple[str, dict[str, str], Obj]:
    """Name, labels and extra fields of a node shaped like a cloud node (images, addresses, info)."""
    name = f"node-{i:05d}"
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "m6i.2xlarge",
        "topology.kubernetes.io/region": "eu-central-1",
        "topology.kubernetes.io/zone": "eu-central-1a",
        "carbon-aware.io/zone": zone,
    }
    images = [
        {
            "names": [
                f"registry.example.com/team/app-{j}@sha256:{j:064x}",
                f"registry.example.com/team/app-{j}:v1",
            ],
            "sizeBytes": 100_000_000 + j,
        }
        for j in range(40)
    ]
    status = {
        "conditions": [
            {
                "type": t,
                "status": "False",
                "reason": "Ok",
                "message": "fine",
                "lastHeartbeatTime": "2026-11-22T10:00:00Z",
                "lastTransitionTime": "2026-11-22T10:00:00Z",
            }
            for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ]
        + [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }
        ],
        "addresses": [
            {"type": "InternalIP", "address": f"10.0.{i // 250}.{i % 250}"},
            {"type": "Hostname", "address": name},
        ],
        "allocatable": {"cpu": "7910m", "memory": "31Gi", "pods": "110", "ephemeral-storage": "95Gi"},
        "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        "images": images,
        "nodeInfo": {
            "kubeletVersion": "v1.35.7",
            "osImage": "Bottlerocket",
            "containerRuntimeVersion": "containerd://2.1.0",
            "kernelVersion": "6.1.0",
            "architecture": "amd64",
            "operatingSystem": "linux",
            "machineID": f"{i:032x}",
            "systemUUID": f"{i:032x}",
            "bootID": f"{i:032x}",
        },
    }
    return name, labels, {"status": status}


async def _serve_forever(nodes: int) -> None:
    import tempfile

    zones = ["DE", "FR", "PL", "SE", "US-CAL-CISO", "GB"]
    with tempfile.TemporaryDirectory(prefix="fake-kube-") as tmp:
        fake = FakeKube(Path(tmp))
        for i in range(nodes):
            name, labels, extra = realistic_node(i, zones[i % len(zones)])
            fake.add_node(name, labels, **extra)
        await fake.start()
        print(fake.base_url, fake.kubeconfig, flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await fake.stop()


if __name__ == "__main__":
    # A standalone fake for demos and benchmarks: `python -m tests.fakes.kube_apiserver --nodes 5000`.
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=100, help="realistic nodes to create")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.nodes))
