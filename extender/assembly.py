"""The extender's app with every resource it owns, for `serve()` (extender/__main__.py).

The API client and the binder are released by the app's first cleanup context, so they outlive every
service the later ones stop (the node cache watches through the client): `runner.cleanup()` is the one
shutdown, as in the other services.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from extender.app import Binder, Service, create_app
from extender.carbon import FeedPoller, SnapshotFileWatcher
from extender.metrics import ExtenderMetrics
from extender.nodes import NodeLookup
from extender.settings import ExtenderSettings
from extender.view import CarbonState
from extender.zones import ZoneResolver, load_region_map

log = logging.getLogger("extender")


async def build_app(settings: ExtenderSettings) -> tuple[web.Application, ssl.SSLContext | None]:
    """The app and the TLS context of its verb listener (None for plain HTTP)."""
    resolver = ZoneResolver(
        settings.zone_label, settings.region_label, load_region_map(settings.region_map_file)
    )
    api: Any = None
    if settings.nodes_file is None or settings.kubeconfig is not None:
        # Lazy import: the Kubernetes client stack is only needed when talking to an API server.
        from carbon_common.kube import load_api_client

        api = await load_api_client(settings.kubeconfig, connections=settings.api_connections)
    binder: Binder | None = None
    try:
        app, binder, ssl_context = _assemble(settings, resolver, api)
    except BaseException:
        if api is not None:
            await api.close()
        raise

    async def kube_client_ctx(_: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if binder is not None:
                await binder.close()  # before the client: the binder borrows its connection pool
            if api is not None:
                await api.close()

    app.cleanup_ctx.insert(0, kube_client_ctx)
    return app, ssl_context


def _assemble(
    settings: ExtenderSettings, resolver: ZoneResolver, api: Any
) -> tuple[web.Application, Binder | None, ssl.SSLContext | None]:
    carbon = CarbonState()
    services: list[Service] = []
    nodes: NodeLookup
    node_service: Service
    if settings.nodes_file is not None:
        from extender.nodes import StaticNodeCache

        static = StaticNodeCache(settings.nodes_file, resolver.zone_of_labels)
        nodes = node_service = static
    else:
        from extender.nodes import KubeNodeCache

        kube = KubeNodeCache(api, resolver.zone_of_labels)
        nodes = node_service = kube
    services.append(node_service)
    metrics = ExtenderMetrics(nodes, carbon)
    binder: Binder | None = None
    if api is not None:
        from extender.binder import Binder as KubeBinder

        binder = KubeBinder(
            api,
            settings.bind_timeout,
            on_result=lambda result: metrics.child(metrics.bind_outcomes, result).inc(),
        )

    if settings.snapshot_file is not None:
        services.append(SnapshotFileWatcher(settings.snapshot_file, carbon))
    elif settings.feed_url is not None:
        services.append(FeedPoller(settings.feed_url, carbon, settings.feed_poll_interval))
    else:
        log.warning("no --snapshot-file or --feed-url: every node will be scored neutrally")

    ssl_context: ssl.SSLContext | None = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        from carbon_common.tls import CertReloader, server_ssl_context

        ssl_context = server_ssl_context(settings.tls_cert, settings.tls_key, settings.client_ca)
        services.append(CertReloader(ssl_context, settings.tls_cert, settings.tls_key, settings.client_ca))

    app = create_app(settings, nodes, carbon, binder, services=services, resolver=resolver, metrics=metrics)
    return app, binder, ssl_context
