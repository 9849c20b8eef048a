"""Stopping background tasks: one way for every service."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel the tasks (None entries are skipped) and wait until each has really finished.

    Waiting matters: a task that is merely cancelled may still hold a file, a socket or a lease when
    the caller goes on to close the resources it uses.
    """
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    for task in live:
        with contextlib.suppress(asyncio.CancelledError):
            await task
