"""The capacity-aware LP bound (bench.evaluation.bound) on instances small enough to solve by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bench.evaluation.bound import BoundError, candidate_starts, capacity_bound
from bench.evaluation.workload import Node, Pod

W = 1000.0  # watts per core: 1 core for 1 h = 1 kWh, so grams = the intensities summed


def _nodes(**cores: int) -> list[Node]:
    return [Node(f"{zone}-n", zone, c * 1000, 4096) for zone, c in cores.items()]


def test_fixed_pods_fill_the_green_zone_then_overflow_into_the_next() -> None:
    values = np.array([[100.0, 100.0], [300.0, 300.0]])
    pods = [Pod("a", 0.0, 1.0, 1000, 512), Pod("b", 0.0, 1.0, 1000, 512)]
    bound = capacity_bound(values, ("G", "D"), _nodes(G=1, D=1), pods, W)
    # One core of room in G: one pod there (100), the other in D (300).
    assert bound.grams == pytest.approx(400.0)
    assert bound.energy_kwh == pytest.approx(2.0)
    assert bound.zone_share == pytest.approx({"G": 0.5, "D": 0.5})


def test_capacity_binds_deferred_pods_spread_over_the_green_hours() -> None:
    # Zone G is green in hour 1 (100) and middling in hour 0 (300); D is dirty (500). Two 1-core
    # 1-hour pods arrive at 0 with 1 h of slack. Capacity-blind, both would run in G at hour 1 (200);
    # with one core in G, the optimum is one in G at hour 1 and one in G at hour 0: 100 + 300.
    values = np.array([[300.0, 100.0, 900.0], [500.0, 500.0, 500.0]])
    pods = [Pod("a", 0.0, 1.0, 1000, 512, slack=1.0), Pod("b", 0.0, 1.0, 1000, 512, slack=1.0)]
    bound = capacity_bound(values, ("G", "D"), _nodes(G=1, D=1), pods, W)
    assert bound.grams == pytest.approx(400.0)
    roomy = capacity_bound(values, ("G", "D"), _nodes(G=2, D=1), pods, W)
    assert roomy.grams == pytest.approx(200.0)


def test_a_pod_runs_contiguously_at_its_request() -> None:
    # A 1-core pod of 2 h with 2 h of slack, green hours 0 and 2 and dirty 1 and 3: every start covers
    # one green and one dirty hour, although G has room to run it twice over in the green hours.
    values = np.array([[100.0, 500.0, 100.0, 500.0]])
    pods = [Pod("a", 0.0, 2.0, 1000, 512, slack=2.0)]
    bound = capacity_bound(values, ("G",), _nodes(G=4), pods, W)
    assert bound.grams == pytest.approx(600.0)


def test_too_many_deferrable_pods_are_grouped_into_a_looser_bound() -> None:
    values = np.array([[100.0, 500.0, 100.0, 500.0]])
    pods = [Pod("a", 0.0, 2.0, 1000, 512, slack=2.0), Pod("b", 0.0, 1.0, 1000, 512)]
    exact = capacity_bound(values, ("G",), _nodes(G=4), pods, W)
    grouped = capacity_bound(values, ("G",), _nodes(G=4), pods, W, max_exact_columns=0)
    assert (exact.formulation, grouped.formulation) == ("per-pod starts", "deferrable pods grouped")
    assert exact.grams == pytest.approx(600.0 + 100.0)
    # Grouped, the deferrable pod's two core-hours may take the two green hours (no contiguity).
    assert grouped.grams == pytest.approx(200.0 + 100.0)
    assert grouped.energy_kwh == pytest.approx(exact.energy_kwh) == pytest.approx(3.0)
    # Capacity still binds per hour and a group still runs no faster than its request.
    two = [Pod("a", 0.0, 1.0, 1000, 512, slack=1.0), Pod("b", 0.0, 1.0, 1000, 512, slack=1.0)]
    tight = np.array([[300.0, 100.0, 900.0], [500.0, 500.0, 500.0]])
    bound = capacity_bound(tight, ("G", "D"), _nodes(G=1, D=1), two, W, max_exact_columns=0)
    assert bound.grams == pytest.approx(400.0)


def test_candidate_starts_are_where_the_run_crosses_an_hour_boundary() -> None:
    pod = Pod("a", 0.25, 1.5, 1000, 512, slack=2.0)
    assert candidate_starts(pod) == [0.25, 0.5, 1.0, 1.5, 2.0, 2.25]
    assert candidate_starts(Pod("b", 0.25, 1.5, 1000, 512)) == [0.25]


def test_a_start_between_hour_boundaries_is_covered() -> None:
    # Green only in [1.5, 2.5) as seen hour by hour: a 1-hour pod arriving at 0.5 with 1 h of slack can
    # start at 1.5, half in hour 1 (100) and half in hour 2 (100), which the bound must not miss.
    values = np.array([[900.0, 100.0, 100.0, 900.0]])
    pods = [Pod("a", 0.5, 1.0, 1000, 512, slack=1.0)]
    bound = capacity_bound(values, ("G",), _nodes(G=1), pods, W)
    assert bound.grams == pytest.approx(100.0)


def test_partial_hours_are_charged_their_share() -> None:
    values = np.array([[100.0, 300.0]])
    bound = capacity_bound(values, ("G",), _nodes(G=1), [Pod("a", 0.5, 1.0, 1000, 512)], W)
    assert bound.grams == pytest.approx(0.5 * 100 + 0.5 * 300)


def test_a_workload_that_does_not_fit_is_a_clear_error() -> None:
    values = np.array([[100.0, 100.0]])
    pods = [Pod("a", 0.0, 1.0, 2000, 512)]
    with pytest.raises(BoundError, match="HiGHS status"):
        capacity_bound(values, ("G",), _nodes(G=1), pods, W)


def test_a_span_past_the_intensity_data_is_refused() -> None:
    with pytest.raises(ValueError, match="past the 1 h"):
        capacity_bound(np.array([[100.0]]), ("G",), _nodes(G=1), [Pod("a", 0.0, 1.0, 1000, 512, 1.0)], W)
