"""Times and durations: RFC 3339 UTC (the only time format on every wire and file of this project),
hour flooring, and the one duration grammar every setting, query parameter and annotation accepts."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

# Go's time.ParseDuration units ("µs" and "us" are both accepted upstream).
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
# A year: longer than any sensible duration here, short enough that datetime arithmetic cannot overflow.
_MAX_DURATION_SECONDS = 366 * 86400.0


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime.

    Naive timestamps are rejected rather than guessed: a zone-less time from a provider is a bug to
    surface, not something to silently read as local time.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected an RFC 3339 timestamp string, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp has no UTC offset: {value!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-12:00 or 0001-01-01T00:00:00+01:00 parse, but their UTC instant lies
        # outside datetime's range. Callers catch ValueError; an OverflowError escaping here once
        # ended the extender's snapshot watcher for good.
        raise ValueError(f"timestamp out of range once converted to UTC: {value!r}") from None


def format_rfc3339(moment: datetime) -> str:
    """Format as `2026-11-22T10:00:00Z` (seconds precision, UTC)."""
    if moment.tzinfo is None:
        raise ValueError("refusing to format a naive datetime")
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def utcnow() -> datetime:
    return datetime.now(UTC)


def floor_hour(moment: datetime) -> datetime:
    """The start of the hour containing `moment` (hourly series are keyed by it)."""
    if not (moment.minute or moment.second or moment.microsecond):
        return moment  # most providers are hourly: skip replace(), the feed baseline's hottest call
    return moment.replace(minute=0, second=0, microsecond=0)


def parse_duration(text: str | int | float) -> timedelta:
    """Seconds (a number, or a string such as ``"5400"`` or ``"5400.5"``) or a Go duration (``"1h30m"``,
    ``"90m"``, ``"1.5h"``, ``"250ms"``; units ns, us, µs, ms, s, m, h; no spaces, no sign).

    Raises ValueError naming the text. Zero and negative durations are refused (a run time or an
    interval of zero is a mistake, not a request), and so are NaN, infinities, more than a year and
    less than a microsecond (timedelta's resolution: such a duration would become zero).
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = text.strip()
        if not raw:
            raise ValueError("empty duration")
        try:
            seconds = float(raw)
        except ValueError:
            seconds = _go_duration_seconds(raw)
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {text!r}")
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    if seconds > _MAX_DURATION_SECONDS:
        raise ValueError(f"duration longer than a year: {text!r}")
    duration = timedelta(seconds=seconds)
    if not duration:
        # "1ns" or 1e-7 passed the checks above but rounds to zero: callers rely on a positive result.
        raise ValueError(f"duration shorter than a microsecond: {text!r}")
    return duration


def _go_duration_seconds(value: str) -> float:
    position, total = 0, 0.0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if match is None:
            raise ValueError(f"not a duration (use seconds or e.g. 1h30m): {value!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return total
