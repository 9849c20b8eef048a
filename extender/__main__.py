"""`carbon-extender` / `python -m extender`: the CLI.

Every ExtenderSettings field is a flag (`--max-data-age`) and an environment variable
(`CARBON_EXTENDER_MAX_DATA_AGE`); a flag wins over the environment, which wins over the default.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from carbon_common.jsonlog import setup_logging
from carbon_common.serving import ServingLimits, make_runner, start_site
from carbon_common.settings import ConfigError, parse, parser_for, report
from extender.app import Binder, Service, create_app, create_ops_app
from extender.carbon import FeedPoller, SnapshotFileWatcher
from extender.metrics import ExtenderMetrics
from extender.nodes import NodeLookup
from extender.settings import ENV_PREFIX, EventLoop, ExtenderSettings, validate
from extender.view import CarbonState
from extender.zones import RegionMapError, ZoneResolver, load_region_map

log = logging.getLogger("extender")

PROG = "carbon-extender"
DESCRIPTION = (
    "Carbon-aware kube-scheduler extender (extender protocol v1: filter, prioritize, bind, preempt). "
    "Every flag can also be set with the environment variable shown."
)
SettingsError = ConfigError  # the name callers and tests have used


def build_parser() -> argparse.ArgumentParser:
    return parser_for(ExtenderSettings, ENV_PREFIX, PROG, DESCRIPTION)


def parse_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> ExtenderSettings:
    """Settings from flags over environment over defaults; raises ConfigError listing every problem."""
    return parse(
        ExtenderSettings,
        ENV_PREFIX,
        argv,
        os.environ if env is None else env,
        prog=PROG,
        description=DESCRIPTION,
        validate=validate,
    )


async def serve(settings: ExtenderSettings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    resolver = ZoneResolver(
        settings.zone_label, settings.region_label, load_region_map(settings.region_map_file)
    )
    carbon = CarbonState()
    services: list[Service] = []
    api: Any = None
    binder: Binder | None = None
    nodes: NodeLookup
    node_service: Service
    # Lazy imports: the Kubernetes client stack is only needed when talking to an API server.
    if settings.nodes_file is not None:
        from extender.nodes import StaticNodeCache

        static = StaticNodeCache(settings.nodes_file, resolver.zone_of_labels)
        nodes = node_service = static
    if settings.nodes_file is None or settings.kubeconfig is not None:
        from carbon_common.kube import load_api_client

        api = await load_api_client(settings.kubeconfig, connections=settings.api_connections)
    if settings.nodes_file is None:
        from extender.nodes import KubeNodeCache

        kube = KubeNodeCache(api, resolver.zone_of_labels)
        nodes = node_service = kube
    services.append(node_service)
    metrics = ExtenderMetrics(nodes, carbon)
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
    limits = ServingLimits(read_timeout=settings.read_timeout, max_connections=settings.max_connections)
    # The verbs read their bodies themselves (read_body), to count a client that hangs up as "aborted";
    # "Error" is the extender protocol's error field, also in the answers aiohttp's parser gives.
    runner = make_runner(app, limits, read_bodies=False, error_key="Error")
    ops_runner: web.AppRunner | None = None
    await runner.setup()
    try:
        await start_site(runner, settings.host, settings.port, limits, ssl_context)
        if settings.metrics_port is not None:
            # Plain HTTP on purpose: the kubelet's httpGet probes and Prometheus present no client
            # certificate, and this listener serves nothing that changes state. Its own listener, so
            # its own connection cap: a flood of the verb port does not fail the probes.
            ops_runner = make_runner(create_ops_app(app), limits)
            await ops_runner.setup()
            await start_site(ops_runner, settings.metrics_host, settings.metrics_port, limits)
        log.info(
            "carbon extender serving",
            extra={
                "host": settings.host,
                "port": settings.port,
                "tls": ssl_context is not None,
                "binding": binder is not None,
                "eventLoop": type(asyncio.get_running_loop()).__module__.split(".")[0],
                "metricsHost": settings.metrics_host if settings.metrics_port is not None else None,
                "metricsPort": settings.metrics_port,
            },
        )
        await stop.wait()
        log.info("shutting down")
    finally:
        if ops_runner is not None:
            await ops_runner.cleanup()
        await runner.cleanup()
        if binder is not None:
            await binder.close()
        if api is not None:
            await api.close()


def event_loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for asyncio.Runner; None means asyncio's default loop. uvloop's loop and
    transports cost less per request, and every scheduling cycle waits for our filter and
    prioritize answers (docs/e2e.md measures the throughput); "auto" falls back quietly where
    uvloop is absent."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = parse_settings(argv)
    except ConfigError as exc:
        return report(PROG, exc)
    setup_logging(settings.log_level)
    try:
        loop_factory = event_loop_factory(settings.event_loop)
    except ImportError as exc:
        log.error("cannot start", extra={"error": f"--event-loop uvloop: {exc}"})
        return 1
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(settings))
    except (RegionMapError, OSError, ssl.SSLError, ValueError) as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 1
    except Exception as exc:  # e.g. kubernetes_asyncio's ConfigException: no usable kubeconfig
        log.error("cannot start", extra={"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
