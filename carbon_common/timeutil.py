"""RFC 3339 UTC times, the only time format on every wire and file of this project."""

from __future__ import annotations

from datetime import UTC, datetime


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
