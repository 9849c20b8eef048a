"""RFC 3339 parsing: every malformed or unrepresentable value is a ValueError, never anything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carbon_common.timeutil import floor_hour, format_rfc3339, parse_duration, parse_rfc3339


@pytest.mark.parametrize(
    "value",
    [
        # Valid ISO text whose UTC instant is outside datetime's range: once an OverflowError that
        # escaped every caller's `except ValueError` and ended the extender's snapshot watcher.
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+01:00",
        "",
        "yesterday",
        "2026-11-22T10:00:00",  # no offset
    ],
)
def test_unusable_timestamps_raise_value_error(value: str) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_rfc3339(value)


def test_extremes_that_fit_in_utc_parse() -> None:
    assert parse_rfc3339("9999-12-31T23:59:59Z") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_rfc3339("0001-01-01T00:00:00-01:00") == datetime(1, 1, 1, 1, tzinfo=UTC)


def test_round_trip() -> None:
    moment = parse_rfc3339("2026-11-22T11:00:00+01:00")
    assert format_rfc3339(moment) == "2026-11-22T10:00:00Z"


# One duration grammar for the feed's settings and /v1/best, deferral's annotations and the bench: the
# union of what the feed's parser (numbers as seconds, Go h/m/s/ms) and deferral's (numeric strings,
# all Go units, "1." and ".5" numbers) accepted.
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # seconds: numbers and numeric strings
        (90, 90),
        (1.5, 1.5),
        ("90", 90),
        ("1.5", 1.5),
        (" 5400.5 ", 5400.5),
        # Go durations, every unit, composed, fractional
        ("1h30m", 5400),
        ("90m", 5400),
        ("1.5h", 5400),
        ("45m", 2700),
        ("10s", 10),
        ("1h0m30s", 3630),
        ("2h0m10s", 7210),
        ("250ms", 0.25),
        ("1500us", 0.0015),
        ("1500µs", 0.0015),
        ("1500000000ns", 1.5),
        ("1us", 0.000001),
        (".5h", 1800),
        ("1.h", 3600),
    ],
)
def test_durations_parse_as_seconds_or_go_style(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("  ", "empty duration"),
        ("h", "not a duration"),
        ("1x", "not a duration"),
        ("1d", "not a duration"),
        ("abc", "not a duration"),
        ("1h30", "not a duration"),
        ("1h-3m", "not a duration"),
        ("1h 30m", "not a duration"),
        ("5 m", "not a duration"),
        ("nan", "not a duration"),
        ("inf", "not a duration"),
        ("-inf", "not a duration"),
        (float("nan"), "not a duration"),
        (True, "not a duration"),
        ("0", "must be positive"),
        (0, "must be positive"),
        ("-5", "must be positive"),
        ("0s", "must be positive"),
        # docs/fuzz.md finding 2: positive, but timedelta rounds these to zero.
        ("0.0000001", "shorter than a microsecond"),
        ("1ns", "shorter than a microsecond"),
        (4e-7, "shorter than a microsecond"),
        ("9999h", "longer than a year"),
        (367 * 86400, "longer than a year"),
    ],
)
def test_bad_durations_are_refused_with_a_reason(text: str | int | float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_parse_duration_returns_a_timedelta() -> None:
    assert parse_duration("1h30m") == timedelta(hours=1, minutes=30)


@pytest.mark.parametrize(
    ("moment", "hour"),
    [
        (datetime(2026, 3, 1, 10, 0, tzinfo=UTC), datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        (datetime(2026, 3, 1, 10, 59, 59, 999999, tzinfo=UTC), datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        (datetime(2026, 3, 1, 10, 0, 0, 1, tzinfo=UTC), datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_floor_hour(moment: datetime, hour: datetime) -> None:
    assert floor_hour(moment) == hour
