"""Suite-wide fixtures: every test must leave no asyncio task behind (kopf-style leak check)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    # Autouse fixtures are set up first and torn down last, so by now every server, client and
    # background task the test started through fixtures has been closed: whatever still runs leaked.
    yield
    me = asyncio.current_task()
    leaked: list[asyncio.Task[object]] = []
    for _ in range(50):  # cancellations finish within a few loop turns; allow ~0.5 s
        leaked = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0.01)
    for task in leaked:
        task.cancel()
    names = ", ".join(sorted(f"{t.get_name()} ({t.get_coro()!r})" for t in leaked))
    pytest.fail(f"the test left {len(leaked)} asyncio task(s) running: {names}")
