"""bench.deferral_eval: the controller's release rule on traces (re-planning every hour, or once)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import deferral_eval
from deferral.annotations import DeferralSpec

T0 = datetime(2019, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)


def _series(hours: int, green: dict[int, float]) -> dict[datetime, float]:
    return {T0 + h * H: green.get(h, 300.0) for h in range(hours)}


def _spec(arrival: int, slack_h: int) -> DeferralSpec:
    start = T0 + arrival * H
    return DeferralSpec(duration=H, deadline=start + (slack_h + 1) * H, earliest_start=start)


def test_perfect_forecast_releases_at_the_greenest_hour_either_way() -> None:
    series = _series(120, {60: 50.0, 66: 20.0})
    for replan in (True, False):
        timings: list[float] = []
        start = deferral_eval.release_time("Z", series, _spec(50, 24), 26, "perfect", timings, replan)
        assert start == T0 + 66 * H
        assert len(timings) == (17 if replan else 1)  # one plan per hour until released, or one


def test_a_plan_that_keeps_slipping_is_released_at_the_guard() -> None:
    # Falling all day: the best hour is always the last one, so only the deadline guard releases.
    series = {T0 + h * H: 1000.0 - h for h in range(120)}
    start = deferral_eval.release_time("Z", series, _spec(50, 12), 14, "perfect", [])
    assert start == T0 + 62 * H


def test_cli_reports_replanning_and_plan_once(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    rows = ["datetime,zone,intensity"]
    for h in range(24 * 8):
        stamp = (T0 + h * H).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(f"{stamp},Z,{60.0 if h % 24 == 4 else 300.0 + h % 7}")
    trace.write_text("\n".join(rows) + "\n")
    docs = {}
    for flags in ([], ["--once"]):
        out = tmp_path / f"out{len(flags)}"
        argv = ["--trace", str(trace), "--step", "7", "--out", str(out), *flags]
        assert deferral_eval.main(argv) == 0
        docs[len(flags)] = json.loads((out / "deferral_eval.json").read_text())
    replanned, once = docs[0], docs[1]
    assert replanned["replan"].startswith("every hour")
    assert once["replan"] == "once at arrival"
    # A repeating day: yesterday predicts today, so both find the green hour, as the oracle does.
    for doc in (replanned, once):
        assert doc["zones"][0]["mean_intensity_planner"] == doc["zones"][0]["mean_intensity_oracle"]
        assert doc["captured_of_oracle_pct"] == 100.0
