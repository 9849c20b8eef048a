"""Normalization and validation of provider values (carbon_feed.validate)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from carbon_common.snapshot import MAX_PLAUSIBLE_INTENSITY
from carbon_feed.validate import (
    LBS_PER_MWH_TO_G_PER_KWH,
    Collector,
    InvalidValue,
    check_value,
    parse_time,
    unit_factor,
)

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_lbs_per_mwh_converts_to_grams_per_kwh() -> None:
    factor = unit_factor("lbs_co2_per_mwh")
    assert factor == LBS_PER_MWH_TO_G_PER_KWH
    # 1,000 lbs/MWh is 453.592 g/kWh
    assert check_value(1000, "marginal", factor) == pytest.approx(453.592)


@pytest.mark.parametrize("unit", ["gCO2eq/kWh", "g/kWh", "kgCO2/MWh", " GCO2/KWH "])
def test_gram_units_are_identity(unit: str) -> None:
    assert unit_factor(unit) == 1.0


def test_unknown_unit_is_refused_not_guessed() -> None:
    with pytest.raises(InvalidValue, match="unknown unit"):
        unit_factor("tonnes/GWh-ish")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ("NaN", "'NaN'"),
        (-1, "negative"),
        (1e9, "plausible maximum"),
        (MAX_PLAUSIBLE_INTENSITY + 0.5, "plausible maximum"),
        (None, "must be a number"),
        (True, "must be a number"),
        ("350", "must be a number"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(value: object, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        check_value(value, "average")


def test_conversion_happens_before_the_plausibility_check() -> None:
    # 5,000 lbs/MWh is 2,268 g/kWh: plausible; 6,000 lbs/MWh is 2,722 g/kWh: not.
    assert check_value(5000, "marginal", LBS_PER_MWH_TO_G_PER_KWH) == pytest.approx(2267.96)
    with pytest.raises(InvalidValue):
        check_value(6000, "marginal", LBS_PER_MWH_TO_G_PER_KWH)


def test_index_is_kept_as_a_percentile_and_never_scaled() -> None:
    assert check_value(42, "index", LBS_PER_MWH_TO_G_PER_KWH) == 42.0
    with pytest.raises(InvalidValue, match="above 100"):
        check_value(101, "index")


def test_boundaries_are_accepted() -> None:
    assert check_value(0, "average") == 0.0
    assert check_value(MAX_PLAUSIBLE_INTENSITY, "average") == MAX_PLAUSIBLE_INTENSITY
    assert check_value(100, "index") == 100.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T10:00:00Z", T0),
        ("2026-11-22T10:00Z", T0),  # UK Carbon Intensity drops the seconds
        ("2026-11-22T11:00:00+01:00", T0),
        ("2026-11-22T10:00:00.000Z", T0),
    ],
)
def test_times_become_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["2026-11-22T10:00:00", "yesterday", "", None, 1700000000])
def test_naive_or_garbled_times_are_refused(text: object) -> None:
    with pytest.raises(InvalidValue):
        parse_time(text)


def test_collector_keeps_good_points_and_explains_dropped_ones(caplog: pytest.LogCaptureFixture) -> None:
    collector = Collector("em")
    with caplog.at_level(logging.WARNING, logger="carbon_feed.validate"):
        good = collector.add("DE", "average", "2026-11-22T10:00:00Z", 350, period_seconds=3600, revised_at=T0)
        collector.add("DE", "average", "2026-11-22T11:00:00Z", float("nan"), period_seconds=3600)
        collector.add("FR", "average", "not a time", 50, period_seconds=3600)
        collector.add("FR", "average", T0, 50, period_seconds=0)
    result = collector.result()
    assert good is not None
    assert [r.value for r in result.readings] == [350.0]
    assert result.readings[0].revised_at == T0
    assert result.readings[0].provider == "em"
    assert len(result.rejected) == 3
    assert "DE at 2026-11-22T11:00:00Z" in result.rejected[0]
    assert "nan" in result.rejected[0]
    assert result.rejected[1].startswith("FR at not a time")
    assert "period of 0 s" in result.rejected[2]
    assert [r.reason for r in caplog.records] == list(result.rejected)  # type: ignore[attr-defined]


def test_collector_refuses_naive_datetimes_passed_directly() -> None:
    collector = Collector("static")
    assert collector.add("X", "average", datetime(2026, 1, 1), 10, period_seconds=60) is None
    assert "naive" in collector.rejected[0]
