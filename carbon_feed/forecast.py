"""Forecasts: the provider's own when it offers one, otherwise a baseline built from history.

Pure functions, no I/O. The baseline for lead time L hours, issued after the last observed hour t0,
for the target hour t = t0 + L, is

    typical(t) = P(h(t)) + r(L) * (x(t - 7 d) - P(h(t)))     r(L) = WEEK_WEIGHT * min(L, 24) / 24
    F(L)       = w(L) * max(0, typical(t) + x(t0) - P(h(t0)))  +  (1 - w(L)) * typical(t)
    w(L)       = exp(-L / TAU_HOURS)
    P(h)       = mean of the observations at hour-of-day h over the last PROFILE_DAYS (21) days

The daily profile P carries the clock (solar, demand); last week's deviation from it at the same hour
carries the weekly cycle (weekends, Monday mornings), shrunk to WEEK_WEIGHT because one week is a noisy
sample, and ramped in over the first day because at short leads the current level says more. The
current deviation x(t0) - P(h(t0)) (weather, outages) persists and decays with TAU_HOURS. Without an
observation one week before the target there is no weekly term; without history for an hour of day the
profile is the mean of everything seen; with no history at all there is no forecast (never a guess).
With fewer than PROFILE_DAYS days the profile is the mean of the days there are: the forecaster works
from the first hour on and reaches its full form once HISTORY_DAYS of history are stored.

PROFILE_DAYS is 21, not 7: three weeks average the weather out of the daily shape, and the weekly cycle
is carried by the weekly term, not the profile. On the 2019 replay traces this raised the deferral
planner's share of the oracle's saving on both halves (docs/feed.md has the numbers).

TAU_HOURS and WEEK_WEIGHT were chosen on 2019-01..06 of the ENTSO-E replay traces only, for the
deferral planner's share of the oracle's saving (what the baseline is for: ranking the next day's hours)
and reported on 2019-07..12 held out; docs/feed.md has the numbers and the method.
bench/forecast_mape.py measures it against persistence and same-hour-yesterday on the replay traces.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbon_common.interval import Interval
from carbon_common.timeutil import floor_hour

TAU_HOURS = 24.0
WEEK_WEIGHT = 0.2
PROFILE_DAYS = 21
"""Days of history the daily profile P averages over."""
WEEK = timedelta(days=7)
HISTORY_DAYS = max(PROFILE_DAYS, WEEK.days) + 1
"""History (days before now) a caller should hand baseline_forecast: the profile's and the weekly term's
look-back plus a day of margin, so the profile's window stays full while the newest observation is up to
a day old (a provider publishing late). Less still works, see above."""
HOUR = timedelta(hours=1)
BASELINE = "baseline"
"""Provider name under which the baseline's own forecasts are stored (for its error metrics)."""

# Lead-time buckets for forecast error metrics: a lead falls into the first bucket whose bound is >= it.
LEAD_BUCKETS: tuple[tuple[str, int], ...] = (
    ("1h", 3600),
    ("3h", 3 * 3600),
    ("6h", 6 * 3600),
    ("12h", 12 * 3600),
    ("24h", 24 * 3600),
    ("48h", 48 * 3600),
    ("72h", 72 * 3600),
)


def hourly(observations: Iterable[tuple[datetime, float]]) -> dict[datetime, float]:
    """Mean value per UTC hour (sub-hourly providers such as WattTime's 5-minute MOER are averaged)."""
    sums: dict[datetime, list[float]] = defaultdict(list)
    for start, value in observations:
        sums[floor_hour(start)].append(value)
    return {hour: sum(values) / len(values) for hour, values in sums.items()}


def persistence_weight(lead_hours: float, tau_hours: float = TAU_HOURS) -> float:
    return math.exp(-lead_hours / tau_hours)


def baseline_forecast(
    observations: Sequence[tuple[datetime, float]],
    horizon_hours: int,
    *,
    tau_hours: float = TAU_HOURS,
    profile_days: int = PROFILE_DAYS,
    week_weight: float = WEEK_WEIGHT,
) -> list[Interval]:
    """Hourly baseline for the `horizon_hours` after the last observed hour ([] without history)."""
    if not tau_hours > 0:
        raise ValueError(f"tau_hours must be > 0, got {tau_hours}")
    if profile_days < 1:
        raise ValueError(f"profile_days must be >= 1, got {profile_days}")
    if not 0 <= week_weight <= 1:
        raise ValueError(f"week_weight must be within [0, 1], got {week_weight}")
    series = hourly(observations)
    if not series or horizon_hours <= 0:
        return []
    last_hour = max(series)
    last = series[last_hour]
    window_start = last_hour - timedelta(days=profile_days)
    by_hour: dict[int, list[float]] = defaultdict(list)
    for hour, value in series.items():
        if hour > window_start:
            by_hour[hour.hour].append(value)
    recent = [v for values in by_hour.values() for v in values]
    overall = sum(recent) / len(recent)

    def profile(hour_of_day: int) -> float:
        values = by_hour.get(hour_of_day)
        return sum(values) / len(values) if values else overall

    now_profile = profile(last_hour.hour)
    result: list[Interval] = []
    for lead in range(1, horizon_hours + 1):
        target = last_hour + lead * HOUR
        typical = profile(target.hour)
        last_week = series.get(target - WEEK)
        if last_week is not None:
            # a convex mix of two non-negative values: never below zero
            ramp = week_weight * min(lead, 24) / 24
            typical += ramp * (last_week - typical)
        weight = persistence_weight(lead, tau_hours)
        # max(0): a steep daily shape must not push a low current level below zero
        shaped = max(0.0, last + typical - now_profile)
        result.append(Interval(target, target + HOUR, weight * shaped + (1 - weight) * typical))
    return result


def lead_bucket(lead_seconds: float) -> str | None:
    """Bucket label for a lead time; None for leads <= 0 (nowcasts) or beyond the last bucket."""
    if lead_seconds <= 0:
        return None
    for label, bound in LEAD_BUCKETS:
        if lead_seconds <= bound:
            return label
    return None


@dataclass(frozen=True, slots=True)
class BucketError:
    mape: float
    """Mean absolute percentage error as a ratio (0.08 = 8 %)."""
    samples: int


def mape_by_bucket(pairs: Iterable[tuple[float, float, float]]) -> dict[str, BucketError]:
    """MAPE per lead bucket from (lead seconds, forecast, actual) triples.

    Actuals of zero are skipped: a percentage error against zero is undefined (and a real grid never
    reads exactly zero on an average signal).
    """
    sums: dict[str, list[float]] = defaultdict(list)
    for lead, forecast, actual in pairs:
        bucket = lead_bucket(lead)
        if bucket is None or actual == 0:
            continue
        sums[bucket].append(abs(forecast - actual) / abs(actual))
    return {b: BucketError(sum(v) / len(v), len(v)) for b, v in sums.items()}
