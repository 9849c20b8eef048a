"""The baseline forecaster (persistence blended into a daily profile) and its error accounting."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from carbon_feed.forecast import (
    TAU_HOURS,
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


def test_blend_of_last_value_and_daily_profile() -> None:
    # a week where hour h reads 100 + h, then a spike of 500 at the last hour (23:00)
    history = [(T0 + i * H, 100.0 + (T0 + i * H).hour) for i in range(7 * 24 - 1)]
    last = T0 + (7 * 24 - 1) * H
    history.append((last, 500.0))
    forecast = baseline_forecast(history, 24)
    for lead, point in enumerate(forecast, 1):
        target = last + lead * H
        assert point.start == target
        w = math.exp(-lead / TAU_HOURS)
        profile = 100.0 + target.hour  # the spike is at 23:00, so only the 23:00 profile changes
        if target.hour == 23:
            profile = (6 * (100.0 + 23) + 500.0) / 7
        assert point.intensity == pytest.approx(w * 500.0 + (1 - w) * profile)
    # the first hour is dominated by persistence, the day-ahead one by the profile
    assert forecast[0].intensity > 350
    assert forecast[22].intensity == pytest.approx(123.0, abs=1.0)


def test_sub_hourly_observations_are_averaged_per_hour() -> None:
    series = hourly([(T0, 100.0), (T0 + H / 2, 200.0), (T0 + H, 50.0)])
    assert series == {T0: 150.0, T0 + H: 50.0}


def test_persistence_weight_decays() -> None:
    assert persistence_weight(0) == 1.0
    assert persistence_weight(TAU_HOURS) == pytest.approx(math.exp(-1))
    assert persistence_weight(48) < 1e-6


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
