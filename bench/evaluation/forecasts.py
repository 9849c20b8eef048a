"""Forecasts the deferral policy plans with: never the future itself.

The feed's baseline forecaster (``carbon_feed.forecast.baseline_forecast``: persistence fading into a
21-day hour-of-day profile, plus last week's value at the same hour) is what the product uses when a
provider offers no forecast, so it is the default here. A seasonal-naive forecast (each future hour =
the same hour of the most recent observed day) is kept as a second, classic baseline. The result JSON
records which one ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import numpy.typing as npt

from carbon_common.interval import Interval
from carbon_common.windows import best_windows, fits
from carbon_feed.forecast import HISTORY_DAYS, baseline_forecast
from deferral.planner import MAX_GAP, TIE

FloatArray = npt.NDArray[np.float64]
HOUR = timedelta(hours=1)
HISTORY_HOURS = HISTORY_DAYS * 24
"""History handed to a forecaster: what the feed hands the baseline (``carbon_feed.forecast.HISTORY_DAYS``:
the 21-day profile plus one day). Arrivals start once that much of the trace has passed."""


class Forecaster(Protocol):
    name: str

    def __call__(self, row: int, history: FloatArray, origin: datetime, horizon: int) -> FloatArray:
        """`horizon` hourly values of zone `row` from `origin` on; `history`: its hours before `origin`."""
        ...


class SeasonalNaive:
    """Each future hour takes the value of the same hour of day in the most recent observed day."""

    name = "seasonal-naive-24h"

    def __call__(self, row: int, history: FloatArray, origin: datetime, horizon: int) -> FloatArray:
        if history.size == 0:
            raise ValueError("seasonal-naive forecast needs at least one observed hour")
        if history.size < 24:
            return np.full(horizon, float(history[-1]))
        last_day = history[-24:]
        return np.array([last_day[h % 24] for h in range(horizon)], dtype=np.float64)


class FeedBaseline:
    """carbon_feed.forecast.baseline_forecast, fed the same hourly observations the feed would store."""

    name = "carbon_feed.forecast.baseline_forecast"

    def __call__(self, row: int, history: FloatArray, origin: datetime, horizon: int) -> FloatArray:
        first = origin - history.size * HOUR
        observations = [(first + i * HOUR, float(v)) for i, v in enumerate(history)]
        points = baseline_forecast(observations, horizon)
        if len(points) != horizon or points[0].start != origin:
            raise ValueError(
                f"{self.name} returned {len(points)} points for a {horizon} h horizon at {origin}"
            )
        return np.array([p.intensity for p in points], dtype=np.float64)


class NoisyTruth:
    """The replay provider's forecast model: the actual future with seeded multiplicative Gaussian error
    growing with lead time, sigma = noise * sqrt(lead hours / 24) (``carbon_feed.replay``). It stands
    for a good provider forecast of known quality ("Let's Wait Awhile", Wiesner et al. 2021, assumed 5 %)."""

    def __init__(self, trace_values: FloatArray, trace_start: datetime, noise: float, seed: int = 0) -> None:
        if noise < 0:
            raise ValueError("noise must be >= 0")
        self.values = trace_values
        self.start = trace_start
        self.noise = noise
        self.seed = seed
        self.name = f"replay forecast (truth with {noise:.0%} error at 24 h lead)"

    def __call__(self, row: int, history: FloatArray, origin: datetime, horizon: int) -> FloatArray:
        first = int((origin - self.start) / HOUR)
        truth = self.values[row, first : first + horizon]
        if truth.size < horizon:  # past the trace's end: hold the last value (only the padding sees it)
            fill = truth[-1] if truth.size else float(self.values[row, -1])
            truth = np.concatenate([truth, np.full(horizon - truth.size, fill)])
        # One seed per (zone, issue hour): reproducible, independent across issue times.
        rng = np.random.default_rng([self.seed, row, max(first, 0)])
        # Lead 0 is the current hour; the replay's sigma grows from there.
        sigma = self.noise * np.sqrt(np.arange(horizon) / 24.0)
        noisy = truth * (1.0 + rng.normal(0.0, 1.0, horizon) * sigma)
        return np.asarray(np.maximum(0.0, noisy), dtype=np.float64)


def default_forecaster() -> Forecaster:
    return FeedBaseline()


def planner_best_windows(
    points: Sequence[Interval], duration: timedelta, start: datetime, deadline: datetime
) -> list[Interval]:
    """The best windows of every zone's forecast, as the bench hands them to the planner (no feed in
    between): carbon_common.windows.best_windows with the planner's gap and tie rules
    (deferral.planner.MAX_GAP, TIE); [] when the run cannot fit."""
    if not fits(duration, start, deadline):
        return []
    return best_windows(points, duration, start, deadline, max_gap=MAX_GAP, rel_tol=0.0, abs_tol=TIE)
