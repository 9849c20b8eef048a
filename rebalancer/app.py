"""The carbon-rebalancer service: health, metrics, and the controller's background tasks."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from kubernetes_asyncio import client
from prometheus_client.aiohttp import make_aiohttp_handler

from carbon_common.kube import ListFunc, list_watch, load_api_client
from carbon_common.leader import LeaderElector
from carbon_common.loops import doubling, run_forever
from carbon_common.responses import health_response, readiness_response
from carbon_common.tasks import cancel_and_wait
from rebalancer.controller import Cache, Options, Rebalancer
from rebalancer.feed import SnapshotClient
from rebalancer.kubeio import KubeApiWriter
from rebalancer.metrics import RebalancerMetrics
from rebalancer.settings import RebalancerSettings, policy_config

log = logging.getLogger(__name__)

KEY_SETTINGS = web.AppKey("rebalancer_settings", RebalancerSettings)
KEY_METRICS = web.AppKey("rebalancer_metrics", RebalancerMetrics)
KEY_CONTROLLER = web.AppKey("rebalancer_controller", Rebalancer)


async def healthz(_: web.Request) -> web.Response:
    return health_response()


async def readyz(request: web.Request) -> web.Response:
    # Ready once every cache has listed: before that a new leader would decide on a partial cluster.
    controller = request.app.get(KEY_CONTROLLER)
    if controller is None or not controller.synced:
        return readiness_response(False, "caches not synced")
    return readiness_response(True, "caches synced", dryRun=controller.options.dry_run)


def create_app(settings: RebalancerSettings, metrics: RebalancerMetrics | None = None) -> web.Application:
    app = web.Application()
    metrics = metrics or RebalancerMetrics()
    app[KEY_SETTINGS] = settings
    app[KEY_METRICS] = metrics
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    app.cleanup_ctx.append(_controller_ctx)
    return app


def _watch(cache: Cache[Any], func: ListFunc, what: str) -> asyncio.Task[None]:
    return asyncio.create_task(
        list_watch(func, cache.on_list, cache.on_event, cache.stats, transform=cache.transform),
        name=f"rebalancer-{what}-watch",
    )


async def _controller_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[KEY_SETTINGS]
    metrics = app[KEY_METRICS]
    api = await load_api_client(settings.kubeconfig)
    leader = settings.leader
    identity = leader.identity or socket.gethostname()
    session = aiohttp.ClientSession()
    elector: LeaderElector | None = None
    if leader.leader_elect:
        elector = LeaderElector(
            api,
            leader.lease(identity),
            on_change=lambda leading: metrics.is_leader.set(1 if leading else 0),
            on_error=lambda: metrics.errors.labels(operation="lease").inc(),
        )
    else:
        metrics.is_leader.set(1)
    controller = Rebalancer(
        writer=KubeApiWriter(api, identity),
        feed=SnapshotClient(session, settings.feed_url, metrics, settings.feed_timeout),
        metrics=metrics,
        config=policy_config(settings),
        options=Options(
            zone_label=settings.zone_label,
            dry_run=settings.dry_run,
            interval=settings.interval,
            max_data_age=settings.max_data_age,
            allow_local_storage=settings.allow_local_storage,
        ),
        is_leader=(lambda: elector.is_leader) if elector is not None else (lambda: True),
    )
    app[KEY_CONTROLLER] = controller
    core = client.CoreV1Api(api)
    policy = client.PolicyV1Api(api)
    tasks = [
        _watch(controller.pods, functools.partial(core.list_pod_for_all_namespaces), "pods"),
        _watch(controller.nodes, functools.partial(core.list_node), "nodes"),
        _watch(
            controller.pdbs, functools.partial(policy.list_pod_disruption_budget_for_all_namespaces), "pdbs"
        ),
        _watch(controller.namespaces, functools.partial(core.list_namespace), "namespaces"),
    ]
    tasks.append(
        asyncio.create_task(
            run_forever(
                controller.step,
                log=log,
                message="rebalancer run failed",
                on_error=lambda _: metrics.errors.labels(operation="run").inc(),
                backoff=lambda failures: doubling(failures, settings.interval, 8 * settings.interval),
            ),
            name="rebalancer-runs",
        )
    )
    if elector is not None:
        tasks.append(asyncio.create_task(elector.run(), name="rebalancer-leader"))
    log.info(
        "rebalancer started",
        extra={"identity": identity, "leader_elect": leader.leader_elect, "dry_run": settings.dry_run},
    )
    try:
        yield
    finally:
        await cancel_and_wait(*tasks)
        if elector is not None:
            await elector.release()
        await session.close()
        await api.close()
