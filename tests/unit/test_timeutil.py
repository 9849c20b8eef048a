"""RFC 3339 parsing: every malformed or unrepresentable value is a ValueError, never anything else."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carbon_common.timeutil import format_rfc3339, parse_rfc3339


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
    with pytest.raises(ValueError):
        parse_rfc3339(value)


def test_extremes_that_fit_in_utc_parse() -> None:
    assert parse_rfc3339("9999-12-31T23:59:59Z") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_rfc3339("0001-01-01T00:00:00-01:00") == datetime(1, 1, 1, 1, tzinfo=UTC)


def test_round_trip() -> None:
    moment = parse_rfc3339("2026-11-22T11:00:00+01:00")
    assert format_rfc3339(moment) == "2026-11-22T10:00:00Z"
