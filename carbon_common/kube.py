"""Kubernetes API access shared by the extender and the deferral controller.

Two things live here: building an `ApiClient` (in-cluster or kubeconfig) and `list_watch`, the
list-then-watch loop every cache in this project runs (nodes for the extender, pods for the deferral
controller).

`list_watch` deliberately works on raw JSON (orjson) instead of kubernetes-asyncio's `Watch`: the
generated models cost much more CPU and memory per object than a dict, and a cache that keeps only a few
fields per object (node → zone) has no use for them. It also owns 410 handling: kubernetes-asyncio's
`Watch` retries a 410 once with the same resourceVersion and then raises, which never recovers; here a
410 always means "relist".
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, overload

import aiohttp
import orjson
import yaml
from kubernetes_asyncio import client, config

from carbon_common.timeutil import format_rfc3339

log = logging.getLogger(__name__)

_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster() -> bool:
    """True inside a pod with a mounted service-account token (what load_incluster_config needs)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (_SA_DIR / "token").is_file()


class KubeConfigError(ValueError):
    """No usable API-server configuration (a ValueError, so CLIs report it as a start-up error)."""


async def load_api_client(kubeconfig: Path | None, *, connections: int | None = None) -> client.ApiClient:
    """An ApiClient for the explicit kubeconfig, else in-cluster config in a pod, else ~/.kube/config.

    An explicit kubeconfig wins over in-cluster config so a pod can be pointed at another cluster.
    ``connections`` caps the keep-alive connections to the API server (kubernetes-asyncio's default
    is 5 per CPU, watches included). Raises KubeConfigError with the file and the loader's message
    when no usable configuration exists.
    """
    cfg = client.Configuration()
    if connections is not None:
        cfg.connection_pool_maxsize = connections
    try:
        if kubeconfig is None and in_cluster():
            # Synchronous in kubernetes-asyncio, unlike load_kube_config.
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=cfg,
                token_filename=str(_SA_DIR / "token"),
                cert_filename=str(_SA_DIR / "ca.crt"),
            )
        else:
            path = kubeconfig if kubeconfig is not None else Path.home() / ".kube" / "config"
            if not path.is_file():
                raise KubeConfigError(
                    f"kubeconfig {path} does not exist (not running in a pod; pass --kubeconfig)"
                )
            # persist_config=False: never write token refreshes back into the user's kubeconfig.
            await config.load_kube_config(
                config_file=str(path), client_configuration=cfg, persist_config=False
            )
    except (config.ConfigException, OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"cannot load Kubernetes client configuration: {exc}") from exc
    return client.ApiClient(configuration=cfg)


class ApiStatusError(Exception):
    """A non-2xx answer from the API server, with the Status message it carried."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


async def read_json(resp: aiohttp.ClientResponse) -> Any:
    """Body of a raw (`_preload_content=False`) response as JSON; ApiStatusError on non-2xx."""
    try:
        body = await resp.read()
    finally:
        resp.release()
    if not 200 <= resp.status <= 299:
        raise ApiStatusError(resp.status, status_message(body))
    return orjson.loads(body)


def status_message(body: bytes) -> str:
    """The `message` of a metav1.Status body, else the (truncated) body itself."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    return body[:200].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter (a random delay between half the step and the step) between
    failed list/watch attempts."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        # Jitter: many replicas restarting together must not hit the API server in lock-step.
        cap = min(self.maximum, self.initial * self.factor**attempt)
        return random.uniform(cap / 2, cap)


@dataclass(slots=True)
class WatchStats:
    """Counters a metrics collector reads; plain ints so reading them costs nothing."""

    lists: int = 0
    relists_410: int = 0
    watch_restarts: int = 0
    errors: int = 0
    events: int = 0
    bookmarks: int = 0
    resource_version: str = ""
    synced: bool = False
    last_error: str = ""


ListFunc = Callable[..., Awaitable[Any]]
"""A kubernetes-asyncio list method (e.g. `CoreV1Api.list_node`), possibly a functools.partial."""


T = TypeVar("T")

OnList = Callable[[list[T]], None]
"""Called with every (transformed) object of a complete (re)list: the callback replaces its state."""
Transform = Callable[[dict[str, Any]], T]
"""Applied to each listed object as its page arrives, so only one raw page is alive at a time (a
5,000-node list of full Node objects is ~100 MB of dicts). Raising skips the object (logged)."""
OnEvent = Callable[[str, dict[str, Any]], None]
"""Called with ADDED / MODIFIED / DELETED and the raw object."""


@dataclass(slots=True)
class ListWatchOptions:
    page_size: int = 250
    """Paginated lists keep peak memory flat: measured at 5,000 realistic nodes, the RSS growth of a
    full sync is ~16 MiB with 250 per page, ~24 MiB with 500 and ~190 MiB unpaginated."""
    watch_timeout: int = 300
    """timeoutSeconds for each watch; the server closes it and we resume from the last resourceVersion."""
    request_timeout: float = 60.0
    """Client-side bound on list pages and on silence inside a watch (bookmarks arrive ~every minute)."""
    backoff: Backoff = field(default_factory=Backoff)


class _Gone(Exception):
    """The resourceVersion we hold has been compacted: relist."""


def _identity(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


@overload
async def list_watch(
    list_func: ListFunc,
    on_list: OnList[dict[str, Any]],
    on_event: OnEvent,
    stats: WatchStats,
    options: ListWatchOptions | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None: ...


@overload
async def list_watch(
    list_func: ListFunc,
    on_list: OnList[T],
    on_event: OnEvent,
    stats: WatchStats,
    options: ListWatchOptions | None = None,
    extra: Mapping[str, Any] | None = None,
    *,
    transform: Transform[T],
) -> None: ...


async def list_watch(
    list_func: ListFunc,
    on_list: OnList[Any],
    on_event: OnEvent,
    stats: WatchStats,
    options: ListWatchOptions | None = None,
    extra: Mapping[str, Any] | None = None,
    *,
    transform: Transform[Any] = _identity,
) -> None:
    """List, then watch from the list's resourceVersion, forever (until cancelled).

    - Bookmarks (allowWatchBookmarks) only advance the resourceVersion, so a reconnect after a quiet
      period does not fall behind the compaction window.
    - A watch that ends (server timeout, dropped connection) resumes from the last resourceVersion.
    - 410 Gone / "Expired" (on watch or on a list continue token) → full relist.
    - Any other error → backoff with jitter, then resume (watch) if we still hold a resourceVersion,
      else relist. Callbacks raising are logged and counted, never stop the loop.
    `extra` is passed to every call (e.g. label_selector, field_selector). Without `transform`,
    `on_list` receives the raw objects.
    """
    opts = options or ListWatchOptions()
    kwargs = dict(extra or {})
    rv = ""
    failures = 0
    while True:
        try:
            if not rv:
                rv = await _list(list_func, transform, on_list, stats, opts, kwargs)
                stats.synced = True
            loop = asyncio.get_running_loop()
            started = loop.time()
            rv = await _watch(list_func, on_event, stats, opts, kwargs, rv)
            stats.watch_restarts += 1
            if loop.time() - started < opts.backoff.initial:
                # A watch that closes at once (proxy, overloaded server) must not become a hot loop.
                await asyncio.sleep(opts.backoff.delay(failures))
                failures += 1
            else:
                failures = 0
        except asyncio.CancelledError:
            raise
        except _Gone:
            stats.relists_410 += 1
            log.info("resourceVersion expired, relisting", extra={"resource_version": rv})
            rv = ""
        except Exception as exc:  # any failure of one attempt: log, back off, try again
            if rv:
                # Resume after the last event the broken watch delivered, not from where it started.
                rv = stats.resource_version or rv
            stats.errors += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"
            delay = opts.backoff.delay(failures)
            failures += 1
            log.warning(
                "list/watch failed, retrying",
                extra={"error": stats.last_error, "retry_in": round(delay, 3), "attempt": failures},
            )
            await asyncio.sleep(delay)


async def _list(
    list_func: ListFunc,
    transform: Transform[T],
    on_list: OnList[T],
    stats: WatchStats,
    opts: ListWatchOptions,
    kwargs: dict[str, Any],
) -> str:
    items: list[T] = []
    cont = ""
    while True:
        resp = await list_func(
            **kwargs,
            limit=opts.page_size,
            _continue=cont or None,
            _preload_content=False,
            _request_timeout=opts.request_timeout,
        )
        try:
            page = await read_json(resp)
        except ApiStatusError as exc:
            if exc.status == 410:
                # Continue token expired mid-list: start over (a fresh list needs no token).
                raise _Gone from exc
            raise
        for obj in page.get("items") or ():
            try:
                items.append(transform(obj))
            except Exception as exc:  # one malformed object must not block the whole cache
                stats.errors += 1
                log.warning("skipping malformed object in list", extra={"error": repr(exc)})
        meta = page.get("metadata") or {}
        del page  # let the raw page go while the next one is fetched
        cont = meta.get("continue") or ""
        if not cont:
            rv = str(meta.get("resourceVersion") or "")
            break
    stats.lists += 1
    stats.resource_version = rv
    on_list(items)
    return rv


async def _watch(
    list_func: ListFunc,
    on_event: OnEvent,
    stats: WatchStats,
    opts: ListWatchOptions,
    kwargs: dict[str, Any],
    rv: str,
) -> str:
    """Watch from `rv` until the stream ends; return the newest resourceVersion seen."""
    resp = await list_func(
        **kwargs,
        watch=True,
        allow_watch_bookmarks=True,
        resource_version=rv,
        timeout_seconds=opts.watch_timeout,
        _preload_content=False,
        # sock_read bounds silence, not the whole stream: a dead connection is noticed.
        _request_timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=opts.request_timeout, sock_read=opts.watch_timeout + opts.request_timeout
        ),
    )
    try:
        if resp.status == 410:
            raise _Gone
        if not 200 <= resp.status <= 299:
            raise ApiStatusError(resp.status, status_message(await resp.read()))
        while True:
            line = await resp.content.readline()
            if not line:
                return rv  # server closed the watch (timeoutSeconds or dropped): resume from rv
            if not line.strip():
                continue
            event = orjson.loads(line)
            etype = event.get("type")
            obj = event.get("object") or {}
            if etype == "ERROR":
                code = obj.get("code")
                if code == 410 or obj.get("reason") in ("Expired", "Gone"):
                    raise _Gone
                raise ApiStatusError(int(code or 500), str(obj.get("message", "watch error")))
            new_rv = (obj.get("metadata") or {}).get("resourceVersion")
            if new_rv:
                rv = str(new_rv)
                stats.resource_version = rv
            if etype == "BOOKMARK":
                stats.bookmarks += 1
                continue
            stats.events += 1
            try:
                on_event(str(etype), obj)
            except Exception:
                # A bad object must not stop the cache; it is skipped and visible in the logs.
                stats.errors += 1
                log.exception("watch event handler failed", extra={"event_type": etype})
    finally:
        resp.release()


async def post_pod_event(
    core: Any,
    *,
    namespace: str,
    name: str,
    uid: str,
    component: str,
    instance: str,
    reason: str,
    message: str,
    warning: bool,
    now: datetime,
    request_timeout: float,
) -> None:
    """A core/v1 Event about a pod (what `kubectl describe pod` shows); ``core`` is a CoreV1Api."""
    stamp = format_rfc3339(now)
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": namespace,
            "name": name,
            "uid": uid,
        },
        "reason": reason,
        # The API server refuses messages over 1 KiB.
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    resp = await core.create_namespaced_event(
        namespace, body, _preload_content=False, _request_timeout=request_timeout
    )
    await read_json(resp)
