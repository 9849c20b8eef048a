"""Normalization and validation: every provider value passes through here before it becomes a Reading.

Pure code (no I/O apart from one log line per rejected value). Bad values are dropped with a reason
that names provider, zone and time, so an operator can find the offending point in the provider's API.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from carbon_common.snapshot import MAX_PLAUSIBLE_INTENSITY
from carbon_common.timeutil import format_rfc3339, parse_rfc3339
from carbon_feed.model import FetchResult, Reading, SignalKind

log = logging.getLogger(__name__)

LBS_PER_MWH_TO_G_PER_KWH: Final = 0.453592
"""1 lb = 453.592 g and 1 MWh = 1,000 kWh, so lbs/MWh * 0.453592 = g/kWh."""

# Unit spellings seen in provider responses, mapped to the factor that yields g/kWh.
_UNIT_FACTORS: Final[dict[str, float]] = {
    "gco2eq/kwh": 1.0,
    "gco2/kwh": 1.0,
    "g/kwh": 1.0,
    "kgco2/mwh": 1.0,
    "kg/mwh": 1.0,
    "lbs_co2_per_mwh": LBS_PER_MWH_TO_G_PER_KWH,
    "lbs/mwh": LBS_PER_MWH_TO_G_PER_KWH,
}
INDEX_UNITS: Final = frozenset({"percentile", "index"})
MAX_INDEX: Final = 100.0


class InvalidValue(ValueError):
    """One value cannot be used; the message is the reason recorded in FetchResult.rejected."""


def unit_factor(unit: str) -> float:
    """Factor that converts a value in `unit` into gCO2eq/kWh; raises InvalidValue for unknown units."""
    factor = _UNIT_FACTORS.get(unit.strip().lower())
    if factor is None:
        raise InvalidValue(f"unknown unit {unit!r}")
    return factor


def parse_time(value: Any) -> datetime:
    """A provider timestamp as aware UTC; naive or garbled times are rejected, never guessed."""
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None


def number(value: Any) -> float:
    """A finite JSON number. bool is refused (True would read as 1 g/kWh); "NaN" strings are named."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str) and value.strip().lower() in {"nan", "inf", "-inf", "infinity"}:
            raise InvalidValue(f"value is {value!r}")
        raise InvalidValue(f"value must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise InvalidValue(f"value is {result!r}")
    return result


def check_value(value: Any, signal: SignalKind, factor: float = 1.0) -> float:
    """Validate and convert a raw value: g/kWh in 0..MAX_PLAUSIBLE_INTENSITY, or an index in 0..100.

    Index values are never scaled by a unit factor: a percentile is not an emission rate.
    """
    raw = number(value)
    if raw < 0:
        raise InvalidValue(f"negative value {raw:g}")
    if signal == "index":
        if raw > MAX_INDEX:
            raise InvalidValue(f"index {raw:g} is above {MAX_INDEX:g}")
        return raw
    converted = raw * factor
    if converted > MAX_PLAUSIBLE_INTENSITY:
        raise InvalidValue(
            f"{converted:g} gCO2eq/kWh is above the plausible maximum {MAX_PLAUSIBLE_INTENSITY:g}"
        )
    return converted


@dataclass(slots=True)
class Collector:
    """Builds one FetchResult: validated Readings plus the reason for every value it dropped."""

    provider: str
    readings: list[Reading] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def add(
        self,
        zone: str,
        signal: SignalKind,
        start: Any,
        value: Any,
        *,
        period_seconds: int,
        factor: float = 1.0,
        estimated: bool = False,
        revised_at: Any = None,
        forecast: bool = False,
        issued_at: datetime | None = None,
    ) -> Reading | None:
        """Validate one point; return the Reading, or None after recording why it was dropped."""
        try:
            begin = start if isinstance(start, datetime) else parse_time(start)
            if begin.tzinfo is None:
                raise InvalidValue("naive start time")
            revised = None
            if revised_at is not None:
                revised = revised_at if isinstance(revised_at, datetime) else parse_time(revised_at)
            if period_seconds <= 0:
                raise InvalidValue(f"period of {period_seconds} s")
            reading = Reading(
                provider=self.provider,
                zone=zone,
                signal=signal,
                start=begin.astimezone(UTC),
                period_seconds=period_seconds,
                value=check_value(value, signal, factor),
                estimated=estimated,
                revised_at=revised,
                forecast=forecast,
                issued_at=issued_at,
            )
        except InvalidValue as exc:
            # Built only on rejection: this method runs for every point of every forecast.
            shown = format_rfc3339(start) if isinstance(start, datetime) and start.tzinfo else start
            self.reject(f"{zone} at {shown}: {exc}", zone=zone)
            return None
        self.readings.append(reading)
        return reading

    def reject(self, reason: str, *, zone: str | None = None) -> None:
        """Record a dropped value or a zone the provider could not serve; logged once here."""
        self.rejected.append(reason)
        log.warning("value rejected", extra={"provider": self.provider, "zone": zone, "reason": reason})

    def result(self) -> FetchResult:
        return FetchResult(readings=tuple(self.readings), rejected=tuple(self.rejected))
