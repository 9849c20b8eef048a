"""Ingest: one provider's fetch, the store's own plausibility guard, and the write to the store."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbon_common.snapshot import MAX_PERIOD_SECONDS, MAX_PLAUSIBLE_INTENSITY
from carbon_feed.model import Provider, Reading
from carbon_feed.store import Store

log = logging.getLogger(__name__)

# A reading further from now than this is a provider's unit or clock mistake (no forecast reaches a
# year ahead, and history that old is pruned anyway). Unchecked, 9999-12-31 overflowed every rebuild.
PLAUSIBLE_TIME_SPAN = timedelta(days=366)


def insane(reading: Reading, now: datetime) -> str | None:
    """Why a reading must not be stored, or None. Providers validate already (carbon_feed.validate);
    this is the store's own guard, so one buggy provider cannot poison the history."""
    value = reading.value
    upper = 100.0 if reading.signal == "index" else MAX_PLAUSIBLE_INTENSITY
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{reading.zone}: value {value!r} is not a finite number"
    if not 0 <= value <= upper:
        return f"{reading.zone}: value {value!r} is outside range 0..{upper:g}"
    if reading.start.tzinfo is None or reading.period_seconds <= 0:
        return f"{reading.zone}: bad time (naive start or non-positive period)"
    if abs(reading.start - now) > PLAUSIBLE_TIME_SPAN or reading.period_seconds > MAX_PERIOD_SECONDS:
        return f"{reading.zone}: bad time (start {reading.start.isoformat()} is implausibly far from now)"
    return None


@dataclass(frozen=True, slots=True)
class Ingested:
    readings: list[Reading]
    """What was handed to the store (the plausible readings)."""
    written: int
    rejected: list[str]
    """Why values were dropped: by the provider's validation, then by `insane`."""


async def ingest(
    name: str, provider: Provider, zones: Sequence[str], store: Store, now: datetime, limit: float
) -> Ingested:
    """Fetch (within `limit` seconds), drop what `insane` refuses, store the rest. Raises whatever the
    fetch or the store raises: the caller counts and logs a failed round."""
    async with asyncio.timeout(limit):
        result = await provider.fetch(zones, now)
    problems = [(r, insane(r, now)) for r in result.readings]
    readings = [r for r, why in problems if why is None]
    dropped = [why for _, why in problems if why is not None]
    for why in dropped:
        log.warning("value rejected", extra={"provider": name, "reason": why})
    written = await store.aput(readings, now)
    return Ingested(readings, written, [*result.rejected, *dropped])
