"""Placement policy: pure functions from (pod annotations, candidate zones, carbon view, now, settings)
to a pass/fail and a score per zone. No I/O, no clock, no globals, so every rule is unit-testable.

Decisions are made per *zone*, not per node: every node of a zone gets the same verdict, which keeps
the per-node work on the request path to one dict lookup even at 5,000 nodes.

Neutral handling: a node whose zone is unknown (no label, unmapped region), whose zone is missing from
the carbon data, or whose reading is older than `max_data_age` gets `settings.neutral_score` and is
not steered for or against. If no candidate has fresh data, every candidate is neutral. An opted-out
pod gets the neutral score everywhere and is never filtered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from carbon_common.snapshot import reading_age
from extender.settings import ExtenderSettings
from extender.view import CarbonView
from extender.wire import MAX_SCORE, MIN_SCORE

ZoneStatus = Literal["fresh", "stale", "missing", "unknown_zone"]
"""fresh: usable reading. stale: older than max_data_age. missing: zone not in the carbon data (or no
data at all yet). unknown_zone: the node has no resolvable zone."""

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0", ""}


@dataclass(frozen=True, slots=True)
class PodPolicy:
    """What a pod asks for through its annotations, plus what could not be understood."""

    opt_out: bool = False
    max_intensity: float | None = None
    problems: tuple[str, ...] = ()


def pod_policy(annotations: Mapping[str, Any], prefix: str) -> PodPolicy:
    """Read `<prefix>opt-out` and `<prefix>max-intensity`. A malformed value is reported in `problems`
    and otherwise ignored: a typo in an annotation must never make a pod unschedulable."""
    problems: list[str] = []
    opt_out = False
    raw_opt = annotations.get(prefix + "opt-out")
    if raw_opt is not None:
        text = raw_opt.strip().lower() if isinstance(raw_opt, str) else None
        if text in _TRUE:
            opt_out = True
        elif text not in _FALSE:
            problems.append(f"{prefix}opt-out: expected true or false, got {raw_opt!r}; ignored")
    cap: float | None = None
    raw_cap = annotations.get(prefix + "max-intensity")
    if raw_cap is not None:
        try:
            if not isinstance(raw_cap, str):
                raise ValueError
            value = float(raw_cap.strip())
            if not math.isfinite(value) or value < 0:
                raise ValueError
            cap = value
        except ValueError:
            problems.append(
                f"{prefix}max-intensity: expected a non-negative g/kWh number, got {raw_cap!r}; ignored"
            )
    return PodPolicy(opt_out, cap, tuple(problems))


@dataclass(frozen=True, slots=True)
class ZoneDecision:
    """The verdict for every candidate node in one zone, with the numbers behind it."""

    zone: str | None
    status: ZoneStatus
    intensity: float | None
    age: float | None
    """Seconds since the reading was observed; None if there is no reading."""
    score: int
    passed: bool = True
    reason: str | None = None
    """Why the zone's nodes failed the filter (names zone and intensity); None when passed."""
    neutral: bool = False


@dataclass(frozen=True, slots=True)
class Evaluation:
    pod: PodPolicy
    zones: Mapping[str | None, ZoneDecision]
    mean_intensity: float | None
    """Node-weighted mean intensity of the candidates with fresh data: the expected intensity of a
    carbon-blind placement, the baseline for "intensity avoided"."""


def _facts(
    zone: str | None, view: CarbonView | None, now: datetime, max_age: float
) -> tuple[ZoneStatus, float | None, float | None]:
    if zone is None:
        return "unknown_zone", None, None
    reading = view.snapshot.zones.get(zone) if view is not None else None
    if reading is None:
        return "missing", None, None
    age = reading_age(reading, now)  # the one definition of age (carbon_common.snapshot)
    return ("fresh" if age <= max_age else "stale"), reading.intensity, age


def _linear(value: float, best: float, worst: float) -> int:
    """10 at `best`, 0 at `worst`, linear and clamped in between, rounded half up to an int."""
    if worst <= best:
        return MAX_SCORE
    fraction = (worst - value) / (worst - best)
    return max(MIN_SCORE, min(MAX_SCORE, math.floor(fraction * MAX_SCORE + 0.5)))


def _cap_verdict(
    pod: PodPolicy, zone: str | None, status: ZoneStatus, intensity: float | None, settings: ExtenderSettings
) -> tuple[bool, str | None]:
    cap = pod.max_intensity
    if cap is None or pod.opt_out:
        return True, None
    where = f"zone {zone}" if zone is not None else "this node (no carbon zone)"
    if status == "fresh" and intensity is not None:
        if intensity > cap:
            return False, (
                f"carbon intensity of {where} is {intensity:.0f} gCO2eq/kWh, "
                f"above the pod's {settings.annotation_prefix}max-intensity of {cap:g}"
            )
        return True, None
    if settings.cap_unknown == "deny":
        return False, (
            f"carbon intensity of {where} is unknown ({status.replace('_', ' ')}); the pod's "
            f"{settings.annotation_prefix}max-intensity of {cap:g} requires fresh data"
        )
    return True, None


def evaluate(
    pod: PodPolicy,
    zone_counts: Mapping[str | None, int],
    view: CarbonView | None,
    now: datetime,
    settings: ExtenderSettings,
) -> Evaluation:
    """Decide for each candidate zone. `zone_counts` maps zone (None = no zone) to how many candidate
    nodes it has; counts only weight the baseline mean."""
    facts = {zone: _facts(zone, view, now, settings.max_data_age) for zone in zone_counts}
    fresh = {z: i for z, (status, i, _) in facts.items() if status == "fresh" and i is not None}

    if settings.scoring == "relative" and fresh:
        best, worst = min(fresh.values()), max(fresh.values())
    else:
        best, worst = settings.absolute_best, settings.absolute_worst

    decisions: dict[str | None, ZoneDecision] = {}
    for zone, (status, intensity, age) in facts.items():
        passed, reason = _cap_verdict(pod, zone, status, intensity, settings)
        steer = not pod.opt_out and zone in fresh
        # Relative mode with all candidates equal: best == worst, everyone is "greenest" → 10.
        score = _linear(intensity, best, worst) if steer and intensity is not None else settings.neutral_score
        decisions[zone] = ZoneDecision(zone, status, intensity, age, score, passed, reason, not steer)

    weighted = sum(fresh[z] * zone_counts[z] for z in fresh)
    count = sum(zone_counts[z] for z in fresh)
    mean = weighted / count if count else None
    return Evaluation(pod, decisions, mean)
