"""One pattern for every background loop: run a step for ever; when it raises what it did not expect
(a bug, a dependency breaking its contract), catch, count, log with the traceback, and back off.

A loop that died would leave its service on old data with no sign of it; one that retried at once would
spin the CPU. The step handles the failures it expects itself and says how long to pause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn

Step = Callable[[], Awaitable[float]]
"""One round of a loop; returns the seconds to wait before the next."""


def doubling(failures: int, base: float, cap: float) -> float:
    """`base` after the first failure in a row, doubling with each further one, at most `cap`."""
    return float(min(cap, base * 2.0 ** min(max(failures, 1) - 1, 20)))


async def run_forever(
    step: Step,
    *,
    log: logging.Logger,
    message: str,
    on_error: Callable[[Exception], None],
    backoff: Callable[[int], float],
    extra: Mapping[str, object] | None = None,
    pause_first: float | None = None,
) -> NoReturn:
    """Run `step` until cancelled. After an exception: `on_error(exc)` (count it, mark the service
    failing), then wait `backoff(n)` for the n-th failure in a row, logging `message` with the
    traceback, `extra`, the failure count and the wait. `pause_first` waits before the first step."""
    if pause_first is not None:
        await asyncio.sleep(pause_first)
    failures = 0
    while True:
        try:
            pause = await step()
            failures = 0
        except Exception as exc:  # CancelledError is not an Exception: cancelling still stops the loop
            failures += 1
            on_error(exc)
            pause = backoff(failures)
            log.exception(message, extra={**(extra or {}), "failures": failures, "retryIn": pause})
        await asyncio.sleep(pause)
