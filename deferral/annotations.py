"""The pod annotations of a deferrable workload: parsing and validation, no I/O.

A deferrable pod says how long it runs (``duration``) and when it must be done (``deadline``, or
``max-delay`` counted from the pod's creation), optionally not before ``earliest-start``. Everything
that can be wrong with those values is reported as an `InvalidDeferral` whose message is written, as
is, into an Event on the pod: the controller then releases the pod at once, because a typo must never
strand a workload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbon_common.timeutil import format_rfc3339, parse_duration, parse_rfc3339

PREFIX = "carbon-aware.io/"
GATE = "carbon-aware.io/green-window"
"""The scheduling gate that holds a deferrable pod back until the controller releases it."""

DURATION = "duration"
DEADLINE = "deadline"
MAX_DELAY = "max-delay"
EARLIEST_START = "earliest-start"
PLAN = "plan"


class InvalidDeferral(ValueError):
    """The pod's deferral annotations are malformed or cannot be satisfied."""


def format_duration(span: timedelta) -> str:
    """Go-style, for messages: ``1h30m0s``-like but without the zero tails (``1h30m``)."""
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def wants_deferral(annotations: Mapping[str, str] | None, prefix: str = PREFIX) -> bool:
    """True when the pod opted in: a duration plus a deadline or a maximum delay (values unchecked)."""
    if not annotations:
        return False
    has_duration = prefix + DURATION in annotations
    has_limit = prefix + DEADLINE in annotations or prefix + MAX_DELAY in annotations
    return has_duration and has_limit


@dataclass(frozen=True, slots=True)
class DeferralSpec:
    """What the pod asked for, in absolute UTC times."""

    duration: timedelta
    deadline: datetime
    """Latest finish."""
    earliest_start: datetime
    """Not before this (the creation time when the pod did not say)."""
    margin: timedelta = timedelta(0)
    """How much earlier than deadline - duration the guard fires: the controller's own lateness
    (a tick, a leader failover), so that a late release still finishes by the deadline."""

    @property
    def latest_start(self) -> datetime:
        """The deadline guard: a pod released at this moment still finishes by its deadline, with
        `margin` to spare; never before the earliest start (a tight span then starts at once)."""
        return max(self.earliest_start, self.deadline - self.duration - self.margin)


def parse_spec(
    annotations: Mapping[str, str] | None,
    created: datetime,
    prefix: str = PREFIX,
    margin: timedelta = timedelta(0),
) -> DeferralSpec:
    """Read the deferral annotations; raise `InvalidDeferral` saying exactly what is wrong.

    ``created`` anchors ``max-delay`` and is the default earliest start. Only the pod's own
    annotations are read, so a restarted controller computes the same deadline guard.
    """
    try:
        spec = _parse_spec(annotations, created, prefix, margin)
        spec.latest_start  # noqa: B018 - computed here so that it cannot overflow later
    except OverflowError:
        # Times at the edge of what a datetime holds (9999-12-31, 0001-01-01) parse, but a run
        # starting or ending there does not fit: as invalid as any other impossible span.
        raise InvalidDeferral(
            f"times out of range: a run cannot start at {prefix}{EARLIEST_START} or end by "
            f"{prefix}{DEADLINE} so close to year 1 or 9999"
        ) from None
    return spec


def _annotation(notes: Mapping[str, object], prefix: str, key: str) -> str | None:
    """The annotation's value, None when absent. Kubernetes annotations are strings; a direct caller
    of the webhook can send a JSON list, object, number or null instead: as malformed as a typo."""
    if prefix + key not in notes:
        return None
    value = notes[prefix + key]
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise InvalidDeferral(f"{prefix}{key}: an annotation value must be a string, got {kind}")
    return value


def _parse_spec(
    annotations: Mapping[str, str] | None, created: datetime, prefix: str, margin: timedelta
) -> DeferralSpec:
    notes: Mapping[str, object] = annotations or {}
    raw_duration = _annotation(notes, prefix, DURATION)
    if raw_duration is None:
        raise InvalidDeferral(f"missing annotation {prefix}{DURATION} (expected run time, e.g. 1h30m)")
    try:
        duration = parse_duration(raw_duration)
    except ValueError as error:
        raise InvalidDeferral(f"{prefix}{DURATION}: {error}") from None

    earliest = created
    raw_earliest = _annotation(notes, prefix, EARLIEST_START)
    if raw_earliest is not None:
        try:
            earliest = max(created, parse_rfc3339(raw_earliest))
        except ValueError as error:
            raise InvalidDeferral(f"{prefix}{EARLIEST_START}: {error}") from None

    raw_deadline = _annotation(notes, prefix, DEADLINE)
    raw_delay = _annotation(notes, prefix, MAX_DELAY)
    if raw_deadline is not None and raw_delay is not None:
        # Two limits that may disagree: refuse to guess which one the user meant.
        raise InvalidDeferral(f"set either {prefix}{DEADLINE} or {prefix}{MAX_DELAY}, not both")
    if raw_deadline is not None:
        try:
            deadline = parse_rfc3339(raw_deadline)
        except ValueError as error:
            raise InvalidDeferral(f"{prefix}{DEADLINE}: {error}") from None
    elif raw_delay is not None:
        try:
            deadline = created + parse_duration(raw_delay) + duration
        except ValueError as error:
            raise InvalidDeferral(f"{prefix}{MAX_DELAY}: {error}") from None
    else:
        raise InvalidDeferral(f"missing annotation {prefix}{DEADLINE} or {prefix}{MAX_DELAY}")

    if earliest + duration > deadline:
        raise InvalidDeferral(
            f"a run of {format_duration(duration)} starting at {format_rfc3339(earliest)} cannot finish "
            f"by the deadline {format_rfc3339(deadline)}"
        )
    return DeferralSpec(duration=duration, deadline=deadline, earliest_start=earliest, margin=margin)
