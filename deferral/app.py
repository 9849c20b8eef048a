"""The carbon-deferral service: webhook routes, health, metrics, and the controller's background tasks."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from kubernetes_asyncio import client
from prometheus_client.aiohttp import make_aiohttp_handler

from carbon_common.kube import WatchStats, list_watch, load_api_client
from carbon_common.leader import LeaderElector
from carbon_common.responses import error_response, health_response, readiness_response
from carbon_common.tasks import cancel_and_wait
from carbon_common.tls import CertReloader
from deferral.annotations import GATE
from deferral.controller import ControllerOptions, GreenWindowController
from deferral.feed import FeedClient
from deferral.kubeio import KubePodWriter
from deferral.metrics import DeferralMetrics
from deferral.settings import DeferralSettings, effective_guard_margin
from deferral.webhook import add_webhook_routes

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KEY_SETTINGS = web.AppKey("deferral_settings", DeferralSettings)
KEY_METRICS = web.AppKey("deferral_metrics", DeferralMetrics)
KEY_WATCH = web.AppKey("deferral_watch_stats", WatchStats)
KEY_CONTROLLER = web.AppKey("deferral_controller", GreenWindowController)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp answers unknown paths, wrong methods and refused bodies with text: every error of this
    service is JSON, like its other answers (headers such as Allow or Connection: close are kept)."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {
            k: v for k, v in error.headers.items() if k.lower() not in ("content-type", "content-length")
        }
        return error_response(error.status, error.text or error.reason, headers)


async def healthz(_: web.Request) -> web.Response:
    return health_response()


async def readyz(request: web.Request) -> web.Response:
    # Ready once the pod cache has listed: before that a new leader would not know the waiting pods.
    # The webhook alone is always ready (it needs nothing but itself).
    stats = request.app.get(KEY_WATCH)
    if stats is None:
        return readiness_response(True, "webhook only: nothing to sync")
    if not stats.synced:
        return readiness_response(False, "pod cache not synced")
    return readiness_response(True, "pod cache synced")


def create_app(
    settings: DeferralSettings, metrics: DeferralMetrics | None = None, reloader: CertReloader | None = None
) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[json_errors])
    metrics = metrics or DeferralMetrics()
    app[KEY_SETTINGS] = settings
    app[KEY_METRICS] = metrics
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    if settings.webhook:
        add_webhook_routes(app, metrics, settings.annotation_prefix)
    if settings.controller:
        app[KEY_WATCH] = WatchStats()
        metrics.watch(app[KEY_WATCH])
        app.cleanup_ctx.append(_controller_ctx)
    if reloader is not None:

        async def reload_ctx(_: web.Application) -> AsyncIterator[None]:
            await reloader.start()
            yield
            await reloader.stop()

        app.cleanup_ctx.append(reload_ctx)
    return app


async def _controller_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[KEY_SETTINGS]
    metrics = app[KEY_METRICS]
    api = await load_api_client(settings.kubeconfig)
    leader = settings.leader
    identity = leader.identity or socket.gethostname()
    session = aiohttp.ClientSession()
    elector: LeaderElector | None = None
    controller: GreenWindowController | None = None

    def on_change(leading: bool) -> None:
        metrics.is_leader.set(1 if leading else 0)
        if controller is not None:
            # Deposed: abandon releases and plans in flight before another replica can take over.
            controller.leadership_changed(leading)

    if leader.leader_elect:
        elector = LeaderElector(
            api,
            leader.lease(identity),
            on_change=on_change,
            on_error=lambda: metrics.errors.labels(operation="lease").inc(),
        )
    else:
        metrics.is_leader.set(1)
    controller = GreenWindowController(
        writer=KubePodWriter(api, identity),
        feed=FeedClient(
            session,
            settings.feed_url,
            metrics,
            zones=[z.strip() for z in settings.zones.split(",") if z.strip()],
            timeout=settings.feed_timeout,
        ),
        metrics=metrics,
        is_leader=(lambda: elector.is_leader) if elector is not None else (lambda: True),
        options=ControllerOptions(
            prefix=settings.annotation_prefix,
            gate=GATE,
            tick=settings.tick,
            replan_interval=settings.replan_interval,
            guard_margin=effective_guard_margin(settings),
            max_concurrent_releases=settings.max_concurrent_releases,
            zone_label=settings.zone_label,
            wait_for_nodes=True,  # the node watch below
        ),
    )
    app[KEY_CONTROLLER] = controller
    core = client.CoreV1Api(api)
    tasks = [
        asyncio.create_task(
            list_watch(
                functools.partial(core.list_pod_for_all_namespaces),
                controller.on_list,
                controller.on_event,
                app[KEY_WATCH],
                transform=controller.transform,
            ),
            name="deferral-pod-watch",
        ),
        asyncio.create_task(
            list_watch(
                functools.partial(core.list_node),
                controller.on_node_list,
                controller.on_node_event,
                WatchStats(),
                transform=controller.node_transform,
            ),
            name="deferral-node-watch",
        ),
        asyncio.create_task(controller.run_releaser(), name="deferral-releaser"),
        asyncio.create_task(controller.run_planner(), name="deferral-planner"),
    ]
    if elector is not None:
        tasks.append(asyncio.create_task(elector.run(), name="deferral-leader"))
    log.info("controller started", extra={"identity": identity, "leader_elect": leader.leader_elect})
    try:
        yield
    finally:
        await cancel_and_wait(*tasks)
        await controller.close()
        if elector is not None:
            await elector.release()
        await session.close()
        await api.close()
