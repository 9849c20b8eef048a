"""The rebalancer controller's own bookkeeping (no API server): the history of readings it keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rebalancer.controller import Options, Rebalancer
from rebalancer.metrics import RebalancerMetrics
from rebalancer.policy import PolicyConfig

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CONFIG = PolicyConfig(sustain=timedelta(minutes=30))


def test_the_controller_keeps_just_the_history_the_sustain_check_needs() -> None:
    controller = Rebalancer(
        writer=None,  # type: ignore[arg-type]
        feed=None,  # type: ignore[arg-type]
        metrics=RebalancerMetrics(),
        config=CONFIG,
        options=Options(interval=60.0),
    )
    for minute in range(120, -1, -1):
        controller.observe(None, NOW - timedelta(minutes=minute))
    # 30 minutes of sustain plus two intervals, and one observation before that.
    assert controller.history[0].at <= NOW - timedelta(minutes=32) < controller.history[1].at
    assert controller.history[-1].at == NOW
