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

from aiohttp import web

from carbon_common.jsonlog import setup_logging
from carbon_common.serving import ServingLimits, make_runner, start_site
from carbon_common.settings import ConfigError, parse, parser_for, report
from extender.app import STATE, create_ops_app
from extender.assembly import build_app
from extender.settings import ENV_PREFIX, EventLoop, ExtenderSettings, validate
from extender.zones import RegionMapError

log = logging.getLogger("extender")

PROG = "carbon-extender"
DESCRIPTION = (
    "Carbon-aware kube-scheduler extender (extender protocol v1: filter, prioritize, bind, preempt). "
    "Every flag can also be set with the environment variable shown."
)


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

    app, ssl_context = await build_app(settings)
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
                "binding": app[STATE].binder is not None,
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
        await runner.cleanup()  # stops the services, then closes the binder and the API client


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
