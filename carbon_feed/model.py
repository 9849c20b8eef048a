"""Normalized readings: what every provider returns and what the store, forecaster and API consume."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

SignalKind = Literal["average", "marginal", "index"]
"""average: g/kWh of the grid mix; marginal: g/kWh of the marginal generator (e.g. WattTime MOER,
converted from lbs/MWh); index: a 0-100 percentile (WattTime signal-index), never a g/kWh figure."""


@dataclass(frozen=True, slots=True)
class Reading:
    provider: str
    zone: str
    signal: SignalKind
    start: datetime
    """Start of the period the value covers (UTC)."""
    period_seconds: int
    value: float
    """gCO2eq/kWh for average/marginal; 0-100 for index."""
    estimated: bool = False
    revised_at: datetime | None = None
    """Provider's own update time (e.g. Electricity Maps updatedAt): later revisions overwrite."""
    forecast: bool = False
    """True for a forecast point, False for an observation."""
    issued_at: datetime | None = None
    """For forecasts: when the provider issued it (lead time = start - issued_at)."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    readings: Sequence[Reading] = ()
    rejected: Sequence[str] = field(default_factory=tuple)
    """Human-readable reasons for values dropped during validation (NaN, negative, absurd, bad time)."""


class Provider(Protocol):
    """One carbon-intensity source. Implementations never raise for a bad value: they drop it and say why."""

    name: str

    async def fetch(self, zones: Sequence[str], now: datetime) -> FetchResult:
        """Latest observations (and revisions of recent history) plus forecasts when offered."""
