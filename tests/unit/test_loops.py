"""carbon_common.loops: the one background-loop pattern (catch, count, log, back off, never die)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from carbon_common.loops import doubling, run_forever


def test_doubling_starts_at_base_doubles_and_stops_at_the_cap() -> None:
    assert [doubling(n, 1.0, 10.0) for n in (1, 2, 3, 4, 5, 1000)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_run_forever_counts_logs_backs_off_and_resets_after_a_success(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: list[float | Exception] = [ValueError("a"), KeyError("b"), 30.0, RuntimeError("c")]
    slept: list[float] = []
    errors: list[str] = []

    async def step() -> float:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if not outcomes:
            raise asyncio.CancelledError  # cancelling stops the loop; nothing else does

    monkeypatch.setattr("carbon_common.loops.asyncio.sleep", fake_sleep)
    with caplog.at_level(logging.ERROR), pytest.raises(asyncio.CancelledError):
        await run_forever(
            step,
            log=logging.getLogger("test.loops"),
            message="step failed",
            on_error=lambda exc: errors.append(type(exc).__name__),
            backoff=lambda failures: float(failures),
            pause_first=0.5,
        )
    assert errors == ["ValueError", "KeyError", "RuntimeError"]
    assert slept == [0.5, 1.0, 2.0, 30.0, 1.0]  # the success reset the count of failures in a row
    assert [r.getMessage() for r in caplog.records] == ["step failed"] * 3
    assert all(r.exc_info is not None for r in caplog.records)
