"""The one interval record: a carbon intensity over a span of time, optionally of one zone.

Every forecast point, trace hour and candidate window of the project is this record (in the spirit of
the GSF Carbon Aware SDK's single EmissionsData: location, time, duration, rating). The snapshot's
forecast, the feed's forecasts and baseline, the /v1/best and /v1/forecast answers as the deferral
controller reads them, and the windows computed over them (carbon_common.windows) all carry it, so
nothing converts between look-alike types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Interval:
    start: datetime
    end: datetime
    """Exclusive: the interval is [start, end)."""
    intensity: float
    """gCO2eq/kWh over the interval (for a window: the time-weighted average over it)."""
    zone: str = field(default="", kw_only=True)
    """The zone it belongs to; "" where the zone is known from the context (one zone's series)."""
