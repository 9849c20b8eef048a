"""Shared by the tests that run `python -m extender` as a real process."""

from __future__ import annotations

import asyncio
import os
import ssl

import aiohttp

from tests.e2e.kubeharness.procs import free_port

__all__ = ["extender_env", "free_port", "wait_ready"]


def extender_env() -> dict[str, str]:
    """This environment without CARBON_EXTENDER_* variables, so only the test's own settings apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CARBON_EXTENDER_")}


async def wait_ready(
    session: aiohttp.ClientSession, url: str, *, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Poll ``url`` until it answers 200: up to 20 s for start-up on a loaded machine."""
    for _ in range(200):
        try:
            async with session.get(url, ssl=ssl_context if ssl_context is not None else True) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200")
