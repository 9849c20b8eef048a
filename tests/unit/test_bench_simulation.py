"""The evaluation's workload, cluster simulation and temporal experiment on small synthetic traces."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from bench.evaluation import temporal
from bench.evaluation.cluster import Deferral, Integrals, PolicySpec, simulate
from bench.evaluation.forecasts import HISTORY_HOURS, FeedBaseline, NoisyTruth, SeasonalNaive
from bench.evaluation.product import ProductScorer
from bench.evaluation.trace import Trace
from bench.evaluation.workload import (
    ClusterSpec,
    Node,
    Pod,
    WorkloadSpec,
    arrival_rate,
    build_cluster,
    generate_pods,
)

START = datetime(2019, 1, 1, tzinfo=UTC)


def _trace(values: list[list[float]], zones: tuple[str, ...]) -> Trace:
    return Trace(START, zones, np.asarray(values, dtype=np.float64), "synthetic")


def _daily(hours: int, low: float, high: float, green_hour: int) -> list[float]:
    """A daily cycle that is `low` at `green_hour` and `high` otherwise."""
    return [low if h % 24 == green_hour else high for h in range(hours)]


def test_workload_is_seeded_bounded_and_follows_the_daily_profile() -> None:
    spec = WorkloadSpec(hours=24 * 20, mean_rate_per_hour=30, seed=5, deferrable_fraction=0.3)
    pods = generate_pods(spec)
    assert pods == generate_pods(spec)
    assert pods != generate_pods(WorkloadSpec(hours=24 * 20, mean_rate_per_hour=30, seed=6))
    assert all(spec.min_duration_h <= p.duration <= spec.max_duration_h for p in pods)
    assert [p.arrival for p in pods] == sorted(p.arrival for p in pods)
    assert 0.2 < sum(p.slack > 0 for p in pods) / len(pods) < 0.4
    by_hour = np.bincount([int(p.arrival) % 24 for p in pods], minlength=24)
    peak, trough = int(spec.peak_hour_utc), int(spec.peak_hour_utc + 12) % 24
    assert arrival_rate(spec, peak) > arrival_rate(spec, trough)
    assert by_hour[peak] > 1.5 * by_hour[trough]


def _pods(
    n: int, cpu: int = 1000, duration: float = 1.0, slack: float = 0.0, start: float = 0.0
) -> list[Pod]:
    return [Pod(f"p{i}", start + i * 0.1, duration, cpu, 1024, slack) for i in range(n)]


def test_extender_policy_steers_to_the_green_zone_and_agnostic_spreads() -> None:
    hours = 48
    trace = _trace([[500.0] * hours, [50.0] * hours], ("DIRTY", "GREEN"))
    nodes = build_cluster(ClusterSpec(trace.zones, nodes_per_zone=2))
    pods = _pods(40)
    agnostic = simulate(trace, nodes, pods, PolicySpec("agnostic"))
    ours = simulate(trace, nodes, pods, PolicySpec("rel", "extender", ProductScorer(trace, "relative"), 10))
    oracle = simulate(trace, nodes, pods, PolicySpec("oracle", "oracle"))
    assert agnostic.pods == ours.pods == oracle.pods == 40
    assert 0.3 < agnostic.zone_share["GREEN"] < 0.7
    assert ours.zone_share["GREEN"] == 1.0 == oracle.zone_share["GREEN"]
    assert ours.mean_intensity == pytest.approx(50.0)
    assert agnostic.grams > ours.grams


def test_capacity_is_finite_pods_queue_and_overflow_to_other_zones() -> None:
    hours = 48
    trace = _trace([[500.0] * hours, [50.0] * hours], ("DIRTY", "GREEN"))
    nodes = [Node("g", "GREEN", 2000, 8192), Node("d", "DIRTY", 2000, 8192)]
    # 6 one-core pods arriving together on 4 cores: 4 run at once, 2 wait for a pod to finish.
    pods = [Pod(f"p{i}", 1.0, 1.0, 1000, 1024) for i in range(6)]
    result = simulate(trace, nodes, pods, PolicySpec("rel", "extender", ProductScorer(trace, "relative"), 10))
    assert result.pods == 6
    assert result.queued == 2
    assert result.wait_h == 2.0  # two pods waited exactly one hour
    assert 0 < result.zone_share["DIRTY"] < 1


def test_oracle_deferral_waits_for_the_green_hour_and_forecast_deferral_uses_the_planner() -> None:
    hours = HISTORY_HOURS + 24 * 4
    trace = _trace([_daily(hours, 20.0, 400.0, green_hour=3)], ("Z",))
    nodes = build_cluster(ClusterSpec(trace.zones, nodes_per_zone=4))
    arrival = HISTORY_HOURS + 10.0  # 10:00: the green hour is 17 h away, within 24 h of slack
    pods = [Pod("p", arrival, 1.0, 1000, 1024, slack=24.0)]
    now = simulate(trace, nodes, pods, PolicySpec("now", "oracle"))
    oracle = simulate(trace, nodes, pods, PolicySpec("later", "oracle", deferral="oracle"))
    planned = simulate(
        trace,
        nodes,
        pods,
        PolicySpec("plan", "extender", ProductScorer(trace, "relative"), 10, "forecast", SeasonalNaive()),
    )
    assert now.mean_intensity == pytest.approx(400.0)
    assert oracle.mean_intensity == pytest.approx(20.0)
    assert oracle.deferred == 1
    assert planned.deferred == 1
    assert planned.mean_intensity == pytest.approx(
        20.0
    )  # the daily pattern repeats, so yesterday predicts today
    assert planned.wait_h == pytest.approx(17.0)


def test_capacity_aware_deferral_spreads_instead_of_overflowing_into_the_dirty_zone() -> None:
    hours = HISTORY_HOURS + 24 * 4
    green = [g * 0.2 for g in _daily(hours, 100.0, 500.0, green_hour=3)]  # 20 at 03:00, else 100
    trace = _trace([[500.0] * hours, green], ("DIRTY", "GREEN"))
    nodes = [Node("g", "GREEN", 1000, 8192), Node("d", "DIRTY", 4000, 8192)]
    arrival = HISTORY_HOURS + 10.0
    pods = [Pod(f"p{i}", arrival, 1.0, 1000, 1024, slack=24.0) for i in range(4)]

    def run(mode: Deferral, best_only: bool = False) -> float:
        scorer = ProductScorer(trace, "relative")
        spec = PolicySpec(mode, "extender", scorer, 10, mode, SeasonalNaive(), best_only=best_only)
        result = simulate(trace, nodes, pods, spec)
        assert result.pods == 4
        return result.mean_intensity

    # Capacity-blind: all four wait for GREEN's one core at 03:00; one gets it, three overflow (500).
    assert run("forecast") == pytest.approx((20 + 3 * 500) / 4)
    # Capacity-aware on the /v1/best answer alone: one is planned into 03:00, one starts now in GREEN
    # (100 beats any other window with room), the two left find no window with room greener than
    # DIRTY now and start there.
    assert run("capacity", best_only=True) == pytest.approx((20 + 100 + 2 * 500) / 4)
    # With every window of every zone's forecast as candidates (as the controller plans), they take
    # GREEN's free hours instead: nobody runs in DIRTY.
    assert run("capacity") < 100.0


def test_integrals_average_partial_hours() -> None:
    trace = _trace([[100.0, 300.0, 500.0]], ("Z",))
    integrals = Integrals(trace)
    assert float(integrals.mean(0, 0.5, 1.5)) == 200.0
    assert float(integrals.mean(0, 0.0, 3.0)) == 300.0


def test_temporal_experiment_perfect_forecast_reaches_the_oracle_and_naive_does_not_exceed_it() -> None:
    hours = HISTORY_HOURS + 24 * 10
    rng = np.random.default_rng(1)
    base = np.array(_daily(hours, 100.0, 300.0, green_hour=4)) * rng.uniform(0.8, 1.2, hours)
    trace = _trace([base.tolist()], ("Z",))
    perfect = NoisyTruth(trace.values, trace.start, noise=0.0)
    exact = temporal.evaluate(trace, 1, 24, perfect, stride=5)[0]
    assert exact.ours == exact.oracle
    assert exact.fraction_of_oracle == 1.0
    for forecaster in (SeasonalNaive(), FeedBaseline()):
        shift = temporal.evaluate(trace, 1, 24, forecaster, stride=5)[0]
        assert shift.oracle <= shift.ours <= shift.run_now
        assert 0.5 < (shift.fraction_of_oracle or 0) <= 1.0
    summary = temporal.summarize([exact])
    assert summary["fraction_of_oracle"] == 1.0


class _RevisedForecast:
    """The truth, except that the forecast issued at `wrong_origin` invents a deep dip at `fake_dip`.

    It records every (origin, history) it was asked for, so tests can check that no future data leaked.
    """

    name = "revised"

    def __init__(self, trace: Trace, wrong_origin: int, fake_dip: int) -> None:
        self.trace, self.wrong_origin, self.fake_dip = trace, wrong_origin, fake_dip
        self.calls: list[tuple[int, np.ndarray]] = []

    def __call__(self, row: int, history: np.ndarray, origin: datetime, horizon: int) -> np.ndarray:
        first = int((origin - self.trace.start).total_seconds() // 3600)
        self.calls.append((first, history.copy()))
        values = self.trace.values[row, first : first + horizon].copy()
        if first == self.wrong_origin:
            values[self.fake_dip - first] = 1.0
        return values


def _dip_trace(hours: int, dip: int) -> Trace:
    values = [300.0] * hours
    values[dip] = 100.0
    return _trace([values], ("Z",))


def test_temporal_replanning_revises_a_wrong_first_plan_and_one_shot_keeps_it() -> None:
    arrival = HISTORY_HOURS
    trace = _dip_trace(HISTORY_HOURS + 48, dip=arrival + 3)
    forecaster = _RevisedForecast(trace, wrong_origin=arrival, fake_dip=arrival + 10)
    issues = temporal.ForecastIssues(trace, 0, 25, forecaster)
    assert temporal.release_hour(issues, arrival, 1, 24, replan=False) == arrival + 10
    assert temporal.release_hour(issues, arrival, 1, 24) == arrival + 3
    # Every forecast saw only the hours before its issue time.
    for origin, history in forecaster.calls:
        assert history.size == HISTORY_HOURS
        np.testing.assert_array_equal(history, trace.values[0, origin - HISTORY_HOURS : origin])
    once = temporal.zone_outcomes(trace, 0, 1, 24, forecaster, stride=100, replan=False).shift()
    again = temporal.zone_outcomes(trace, 0, 1, 24, forecaster, stride=100).shift()
    assert (once.jobs, once.ours, once.oracle) == (1, 300.0, 100.0)
    assert (again.jobs, again.ours, again.fraction_of_oracle) == (1, 100.0, 1.0)


def test_temporal_replanning_is_released_at_the_guard_when_the_plan_keeps_slipping() -> None:
    arrival = HISTORY_HOURS
    # Falling all day: every fresh forecast says the last hour is the best, so only the guard releases.
    trace = _trace([[1000.0 - h for h in range(HISTORY_HOURS + 48)]], ("Z",))
    perfect = NoisyTruth(trace.values, trace.start, noise=0.0)
    issues = temporal.ForecastIssues(trace, 0, 13, perfect)
    assert temporal.release_hour(issues, arrival, 1, 12) == arrival + 12
    assert temporal.release_hour(issues, arrival, 1, 0) == arrival  # no slack: the guard is now


def test_temporal_outcomes_split_into_halves() -> None:
    hours = HISTORY_HOURS + 24 * 10
    rng = np.random.default_rng(3)
    trace = _trace(
        [(np.array(_daily(hours, 100.0, 300.0, 4)) * rng.uniform(0.8, 1.2, hours)).tolist()], ("Z",)
    )
    outcomes = temporal.zone_outcomes(trace, 0, 1, 24, FeedBaseline(), stride=7)
    early = outcomes.before(trace, trace.time_of(HISTORY_HOURS + 24 * 4))
    assert 0 < early.sum() < early.size
    whole, first, second = outcomes.shift(), outcomes.shift(early), outcomes.shift(~early)
    assert first.jobs + second.jobs == whole.jobs
    assert whole.run_now == pytest.approx(
        (first.run_now * first.jobs + second.run_now * second.jobs) / whole.jobs
    )
    assert np.all(outcomes.waited >= 0)
    assert np.all(outcomes.waited <= 24)
    with pytest.raises(ValueError, match="no arrival"):
        outcomes.shift(np.zeros(early.size, dtype=bool))


def test_cluster_deferral_replans_every_hour_like_the_controller() -> None:
    arrival = HISTORY_HOURS + 0.5
    trace = _dip_trace(HISTORY_HOURS + 72, dip=HISTORY_HOURS + 3)
    nodes = build_cluster(ClusterSpec(trace.zones, nodes_per_zone=2))
    pods = [Pod("p", arrival, 1.0, 1000, 1024, slack=24.0)]
    forecaster = _RevisedForecast(trace, wrong_origin=HISTORY_HOURS, fake_dip=HISTORY_HOURS + 10)
    result = simulate(
        trace,
        nodes,
        pods,
        PolicySpec("plan", "extender", ProductScorer(trace, "relative"), 10, "forecast", forecaster),
    )
    # The first plan (from the wrong forecast) said hour +10; the re-plan at hour +1 found the real dip.
    assert result.deferred == 1
    assert result.wait_h == pytest.approx(2.5)
    assert result.mean_intensity == pytest.approx(100.0)
    assert [origin for origin, _ in forecaster.calls][:3] == [
        HISTORY_HOURS,
        HISTORY_HOURS + 1,
        HISTORY_HOURS + 2,
    ]
