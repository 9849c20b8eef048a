"""The baseline forecaster (persistence blended into a daily profile) and its error accounting."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from carbon_common.timeutil import floor_hour
from carbon_feed.forecast import (
    HISTORY_DAYS,
    PROFILE_DAYS,
    TAU_HOURS,
    WEEK_WEIGHT,
    baseline_forecast,
    hourly,
    lead_bucket,
    mape_by_bucket,
    persistence_weight,
)

T0 = datetime(2026, 11, 15, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)


def test_no_history_no_forecast() -> None:
    assert baseline_forecast([], 24) == []


def test_constant_history_gives_constant_forecast() -> None:
    history = [(T0 + i * H, 200.0) for i in range(48)]
    forecast = baseline_forecast(history, 24)
    assert len(forecast) == 24
    assert forecast[0].start == T0 + 48 * H
    assert all(p.intensity == pytest.approx(200.0) for p in forecast)
    assert all(p.end - p.start == H for p in forecast)


def test_blend_of_shaped_persistence_and_daily_profile() -> None:
    # a week where hour h reads 100 + h, then a spike of 500 at the last hour (23:00)
    history = [(T0 + i * H, 100.0 + (T0 + i * H).hour) for i in range(7 * 24 - 1)]
    last = T0 + (7 * 24 - 1) * H
    history.append((last, 500.0))
    forecast = baseline_forecast(history, 24)
    profile_23 = (6 * (100.0 + 23) + 500.0) / 7  # the spike is part of the 23:00 profile
    for lead, point in enumerate(forecast, 1):
        target = last + lead * H
        assert point.start == target
        w = math.exp(-lead / TAU_HOURS)
        typical = profile_23 if target.hour == 23 else 100.0 + target.hour
        # one week back the target hour read 100 + h (the spike is newer): the weekly term pulls
        # 23:00 back from the spiked profile towards that
        ramp = WEEK_WEIGHT * min(lead, 24) / 24
        typical += ramp * (100.0 + target.hour - typical)
        shaped = 500.0 + typical - profile_23
        assert point.intensity == pytest.approx(w * shaped + (1 - w) * typical)
    # the level persists and follows the daily shape (00:00 is 23 below 23:00's profile) ...
    assert forecast[0].intensity > 300
    # ... and relaxes towards the profile as the lead grows
    assert abs(forecast[23].intensity - profile_23) < abs(forecast[0].intensity - 100.0)


def _weekly(moment: datetime) -> float:
    """Weekdays read 400, weekends 200 (a demand-driven grid), on top of a small daily shape."""
    return (200.0 if moment.weekday() >= 5 else 400.0) + moment.hour


def test_captures_a_weekly_pattern() -> None:
    # two weeks of history ending on a Friday 23:00: the profile (all 14 days) averages weekdays and the
    # weekend, but last week's Saturday says the next day is cleaner, and the forecast must say so too
    end = datetime(2026, 11, 13, 23, 0, tzinfo=UTC)
    assert end.weekday() == 4
    history = [(end - i * H, _weekly(end - i * H)) for i in range(14 * 24)]
    forecast = baseline_forecast(history, 24)
    week_blind = baseline_forecast(history, 24, week_weight=0.0)
    assert all(p.start.weekday() == 5 for p in forecast)
    gaps = [b.intensity - p.intensity for p, b in zip(forecast, week_blind, strict=True)]
    assert all(gap > 0 for gap in gaps)
    # the weekly term ramps in over the first day, to WEEK_WEIGHT of last week's deviation
    assert gaps == sorted(gaps)
    profile_23 = (5 * 400.0 + 2 * 200.0) / 7 + 23
    assert gaps[-1] == pytest.approx(WEEK_WEIGHT * (profile_23 - _weekly(end + 24 * H - 7 * 24 * H)))


def test_no_weekly_term_without_last_weeks_data() -> None:
    # only 3 days of history: there is no same-hour-last-week, so the weekly weight changes nothing
    history = [(T0 + i * H, 100.0 + 50 * ((T0 + i * H).hour % 5)) for i in range(72)]
    assert baseline_forecast(history, 24) == baseline_forecast(history, 24, week_weight=0.0)


def _two_eras(days: int, recent_days: int) -> list[tuple[datetime, float]]:
    """`days` of hourly history; the last `recent_days` follow one daily shape, the days before another."""
    end = T0 + days * 24 * H
    out = []
    for i in range(days * 24):
        moment = T0 + i * H
        recent = end - moment <= timedelta(days=recent_days)
        out.append((moment, 100.0 + 10 * (moment.hour % 6) if recent else 400.0 + 20 * (moment.hour % 4)))
    return out


def test_profile_reads_the_last_profile_days_only() -> None:
    # what callers are told to hand over: the profile and the weekly term both fit
    assert HISTORY_DAYS >= PROFILE_DAYS + 1
    assert HISTORY_DAYS >= 8
    history = _two_eras(PROFILE_DAYS + 10, recent_days=PROFILE_DAYS)
    recent = history[-PROFILE_DAYS * 24 :]
    # days before the profile's window change nothing ...
    assert baseline_forecast(history, 48) == baseline_forecast(recent, 48)
    # ... while the days inside it do: a one-week profile would forecast otherwise
    older = _two_eras(PROFILE_DAYS + 10, recent_days=7)
    assert baseline_forecast(older, 48) != baseline_forecast(older, 48, profile_days=7)


@pytest.mark.parametrize("days", [1, 3, 7, 10, PROFILE_DAYS - 1])
def test_shorter_history_averages_the_days_there_are(days: int) -> None:
    # a fresh install, or a zone added last week: the forecaster works from the first day, its profile
    # the mean of the days stored (exactly a profile_days=days forecaster), the weekly term once 7 d exist
    history = _two_eras(days, recent_days=days // 2)
    forecast = baseline_forecast(history, 48)
    assert len(forecast) == 48
    assert forecast[0].start == history[-1][0] + H
    assert forecast == baseline_forecast(history, 48, profile_days=days)
    assert all(100.0 <= p.intensity <= 460.0 for p in forecast)  # within the range it has seen


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tau_hours": 0.0},
        {"tau_hours": -1.0},
        {"profile_days": 0},
        {"week_weight": 1.5},
        {"week_weight": -0.1},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        baseline_forecast([(T0, 100.0)], 24, **kwargs)  # type: ignore[arg-type]


def test_shaped_persistence_never_goes_negative() -> None:
    # the profile swings 0..900 but the current level is 10: the shape would push it below zero
    history = [(T0 + i * H, 900.0 if (T0 + i * H).hour == 12 else 0.0) for i in range(7 * 24)]
    history[-1] = (history[-1][0], 10.0)
    assert all(p.intensity >= 0 for p in baseline_forecast(history, 24))


def test_sub_hourly_observations_are_averaged_per_hour() -> None:
    series = hourly([(T0, 100.0), (T0 + H / 2, 200.0), (T0 + H, 50.0)])
    assert series == {T0: 150.0, T0 + H: 50.0}


def test_persistence_weight_decays() -> None:
    assert persistence_weight(0) == 1.0
    assert persistence_weight(TAU_HOURS) == pytest.approx(math.exp(-1))
    assert persistence_weight(10 * TAU_HOURS) < 1e-4
    assert persistence_weight(1) > persistence_weight(24) > persistence_weight(72)


@pytest.mark.parametrize(
    ("lead", "bucket"),
    [
        (0, None),
        (-60, None),
        (1, "1h"),
        (3600, "1h"),
        (3601, "3h"),
        (86400, "24h"),
        (90000, "48h"),
        (10**7, None),
    ],
)
def test_lead_buckets(lead: int, bucket: str | None) -> None:
    assert lead_bucket(lead) == bucket


def test_mape_by_bucket() -> None:
    errors = mape_by_bucket(
        [
            (3600, 110.0, 100.0),  # 10 %
            (1800, 90.0, 100.0),  # 10 %
            (7200, 150.0, 100.0),  # 50 %
            (7200, 1.0, 0.0),  # undefined: skipped
            (0, 1.0, 2.0),  # nowcast: not a forecast
        ]
    )
    assert set(errors) == {"1h", "3h"}
    assert errors["1h"].mape == pytest.approx(0.1)
    assert errors["1h"].samples == 2
    assert errors["3h"].mape == pytest.approx(0.5)
    assert errors["3h"].samples == 1


def test_floor_hour_keeps_whole_hours_and_floors_the_rest() -> None:
    assert floor_hour(T0 + 3 * H) == T0 + 3 * H
    assert floor_hour(T0 + 3 * H + timedelta(minutes=59, seconds=59, microseconds=1)) == T0 + 3 * H
    assert floor_hour(T0 + timedelta(microseconds=1)) == T0
    assert floor_hour(T0 + timedelta(seconds=1)).tzinfo is UTC
