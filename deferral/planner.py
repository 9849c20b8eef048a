"""When to release a deferred pod: pure policy, no I/O, no clock of its own.

Rules (also in docs/deferral.md):

- The deadline guard ``deadline - duration`` bounds every plan: a pod is never planned later, and is
  released at once when the guard has already passed, whatever the forecast says.
- With a forecast, the start is the greenest window the feed found (lowest time-weighted average over
  the run, any zone: the extender picks the zone at release time); ties go to the earliest start, so
  work is never delayed for nothing. A window that already began means "release now".
- Knowing capacity (`plan_with_capacity`): the greenest window whose zone has CPU room for the whole
  run (free allocatable minus running pods and other pods' planned releases, deferral.capacity); a
  window that capacity forces to be dirtier than a zone with room now is no plan: start now.
- Without a usable forecast (feed down, no data for the span), a plan made earlier from a forecast is
  kept while it is still ahead; otherwise the pod waits for the deadline guard. Waiting without
  information costs nothing on average, keeps the option to use a forecast that comes back, and the
  guard still guarantees the deadline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from carbon_common.interval import Interval
from carbon_common.timeutil import format_rfc3339, parse_rfc3339
from carbon_common.windows import fits, rolling_windows
from deferral.annotations import DeferralSpec
from deferral.capacity import Capacity

Basis = Literal["forecast", "no_forecast", "guard"]
"""forecast: a green window; no_forecast: waiting for the guard; guard: the guard is already due."""
ReleaseReason = Literal["window_reached", "deadline_guard", "invalid", "error"]

TIE = 1e-6
"""Two intensities closer than this (g/kWh) are a tie (feeds round to 0.1 g/kWh or finer)."""
MAX_GAP = timedelta(seconds=1)
"""Uncovered time a window of a zone's forecast may have (carbon_common.windows, max_gap): providers'
intervals do not always quite abut."""


@dataclass(frozen=True, slots=True)
class Forecast:
    """The feed's /v1/best answer for one pod's span, reduced to what planning needs."""

    windows: Sequence[Interval]
    """The best windows (each with its zone), carbon_common.windows."""
    current: Mapping[str, float] = field(default_factory=dict)
    """Intensity now per zone."""
    generated_at: datetime | None = None
    candidates: Sequence[Interval] = ()
    """Other windows of the span (every forecast hour of every zone), for capacity-aware planning only:
    when the best windows are full, these are where the pod can still go green."""

    def best_now(self) -> float | None:
        """The intensity the pod would get if released now (the extender picks the greenest zone)."""
        return min(self.current.values()) if self.current else None


@dataclass(frozen=True, slots=True)
class Plan:
    start: datetime
    basis: Basis
    guard: datetime
    zone: str | None = None
    intensity_then: float | None = None
    intensity_now: float | None = None
    planned_at: datetime | None = None
    capacity: str | None = None
    """Why the zone can take the pod then (capacity-aware planning), in words; None when not known."""

    def to_annotation(self) -> str:
        body: dict[str, Any] = {
            "start": format_rfc3339(self.start),
            "basis": self.basis,
            "guard": format_rfc3339(self.guard),
            "zone": self.zone,
            "intensityThen": self.intensity_then,
            "intensityNow": self.intensity_now,
        }
        if self.planned_at is not None:
            body["plannedAt"] = format_rfc3339(self.planned_at)
        if self.capacity is not None:
            body["capacity"] = self.capacity
        return orjson.dumps(body).decode()

    @classmethod
    def from_annotation(cls, text: str) -> Plan:
        """Read back a persisted plan; raises ValueError on anything malformed (then we re-plan)."""
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"plan annotation is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise ValueError("plan annotation is not a JSON object")
        basis = body.get("basis")
        if basis not in ("forecast", "no_forecast", "guard"):
            raise ValueError(f"plan annotation has unknown basis {basis!r}")
        planned_at = body.get("plannedAt")
        return cls(
            start=parse_rfc3339(str(body.get("start", ""))),
            basis=basis,
            guard=parse_rfc3339(str(body.get("guard", ""))),
            zone=_opt_str(body.get("zone")),
            intensity_then=_opt_float(body.get("intensityThen")),
            intensity_now=_opt_float(body.get("intensityNow")),
            planned_at=parse_rfc3339(str(planned_at)) if planned_at is not None else None,
            capacity=_opt_str(body.get("capacity")),
        )

    @property
    def avoided(self) -> float | None:
        """Estimated g/kWh avoided by waiting (now minus then); None when either is unknown."""
        if self.intensity_then is None or self.intensity_now is None:
            return None
        return self.intensity_now - self.intensity_then


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def plan_start(
    spec: DeferralSpec, now: datetime, forecast: Forecast | None, previous: Plan | None = None
) -> Plan:
    """Choose the release time of one pod (see the module docstring for the rules)."""
    guard = spec.latest_start
    intensity_now = forecast.best_now() if forecast is not None else None
    if now >= guard:
        return Plan(guard, "guard", guard, intensity_now=intensity_now, planned_at=now)

    lower = max(now, spec.earliest_start)
    usable = [w for w in (forecast.windows if forecast else ()) if w.start <= guard]
    if usable:
        best = min(usable, key=lambda w: (w.intensity, w.start))
        ties = [w for w in usable if w.intensity - best.intensity <= TIE]
        chosen = min(ties, key=lambda w: w.start)
        start = min(max(chosen.start, lower), guard)
        return Plan(
            start,
            "forecast",
            guard,
            zone=chosen.zone,
            intensity_then=chosen.intensity,
            intensity_now=intensity_now,
            planned_at=now,
        )

    if previous is not None and previous.basis == "forecast" and previous.start <= guard:
        return previous
    return Plan(guard, "no_forecast", guard, intensity_now=intensity_now, planned_at=now)


def plan_with_capacity(
    spec: DeferralSpec,
    now: datetime,
    forecast: Forecast | None,
    cpu_m: int,
    capacity: Capacity,
    previous: Plan | None = None,
) -> Plan:
    """`plan_start`, knowing which zones can take the pod (`cpu_m` millicores) when.

    - The greenest window whose zone has room for the whole run wins (ties: the earliest, then the
      zone name). When that is the window `plan_start` would pick anyway, the plan is the same.
    - When capacity moved the choice to a less green window, and a zone with room now is at least as
      green now as that window, waiting buys nothing: the pod starts now (a plan that pushes the pod
      into a dirtier zone than running now is not a plan).
    - When no window has room, the pod starts now in the greenest zone with room now; when no zone
      has room now either, the capacity-blind plan stands (the pod would queue wherever it went).
    - The deadline guard and the no-forecast rules are `plan_start`'s, unchanged.
    """
    blind = plan_start(spec, now, forecast, previous)
    if blind.basis != "forecast" or forecast is None or blind.zone is None:
        return blind
    guard = spec.latest_start
    lower = max(now, spec.earliest_start)

    def room(zone: str, start: datetime) -> int:
        return capacity.free(zone, start, start + spec.duration)

    free = room(blind.zone, blind.start)
    if free >= cpu_m:
        return replace(blind, capacity=f"{blind.zone}: {free}m CPU free for {cpu_m}m")
    usable = [w for w in (*forecast.windows, *forecast.candidates) if w.start <= guard]
    fitting = [w for w in usable if room(w.zone, min(max(w.start, lower), guard)) >= cpu_m]
    now_options = sorted(
        (value, zone) for zone, value in forecast.current.items() if room(zone, lower) >= cpu_m
    )
    start_now = lower <= now and bool(now_options)
    if fitting:
        chosen = min(fitting, key=lambda w: (w.intensity, w.start, w.zone))
        ties = [w for w in fitting if w.intensity - chosen.intensity <= TIE]
        chosen = min(ties, key=lambda w: (w.start, w.zone))
        start = min(max(chosen.start, lower), guard)
        if not (start_now and now_options[0][0] <= chosen.intensity + TIE):
            note = (
                f"{blind.zone} full at {format_rfc3339(blind.start)} ({free}m CPU free for {cpu_m}m); "
                f"{chosen.zone}: {room(chosen.zone, start)}m free"
            )
            return replace(
                blind, start=start, zone=chosen.zone, intensity_then=chosen.intensity, capacity=note
            )
    elif not start_now:
        return replace(blind, capacity=f"no zone has {cpu_m}m CPU free in any window or now")
    green_now, zone_now = now_options[0]
    note = (
        f"{blind.zone} full at {format_rfc3339(blind.start)} ({free}m CPU free for {cpu_m}m); "
        f"no window with room beats {zone_now} now ({room(zone_now, lower)}m free)"
    )
    return replace(blind, start=lower, zone=zone_now, intensity_then=green_now, capacity=note)


def release_reason(spec: DeferralSpec, plan: Plan, now: datetime) -> ReleaseReason | None:
    """Why the pod must be released now, or None to keep waiting.

    The guard is recomputed from the spec, not taken from the plan, so a tampered or stale plan
    annotation cannot push a release past the deadline guard.
    """
    if now >= spec.latest_start:
        return "deadline_guard"
    if now >= plan.start:
        return "window_reached" if plan.basis == "forecast" else "deadline_guard"
    return None


def candidate_windows(
    points: Sequence[Interval], duration: timedelta, start: datetime, deadline: datetime
) -> list[Interval]:
    """Every window of every zone's forecast a pod of `duration` may take between `start` and
    `deadline` (carbon_common.windows.rolling_windows, allowing MAX_GAP); [] when the run cannot fit."""
    if not fits(duration, start, deadline):
        return []
    return rolling_windows(points, duration, start, deadline, max_gap=MAX_GAP)
