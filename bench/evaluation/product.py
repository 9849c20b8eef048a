"""The product's own placement policy (`extender.policy.evaluate`) behind the simulation's scorer.

The simulation never re-implements scoring: for each decision it builds the same `CarbonView` the
extender would hold at that hour (the trace's value of the hour as the zone's latest reading) and asks
`extender.policy.evaluate` for the per-zone scores, exactly as the prioritize handler does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from bench.evaluation.trace import Trace
from bench.evaluation.workload import Node, Pod
from carbon_common.snapshot import Snapshot, ZoneReading
from extender.policy import evaluate, pod_policy
from extender.settings import ExtenderSettings, ScoringMode
from extender.view import CarbonView

DECISION_OFFSET = timedelta(minutes=5)
"""Decisions happen a few minutes after the hourly reading was observed (it is fresh, never stale)."""


class ProductScorer:
    def __init__(self, trace: Trace, scoring: ScoringMode, settings: ExtenderSettings | None = None) -> None:
        self.trace = trace
        self.settings = replace(settings or ExtenderSettings(), scoring=scoring)
        self._pod = pod_policy({}, self.settings.annotation_prefix)
        self._hour = -1
        self._view: CarbonView | None = None

    def view_at(self, hour: int) -> CarbonView:
        if hour != self._hour or self._view is None:
            observed = self.trace.time_of(hour)
            zones = {
                zone: ZoneReading(zone, float(self.trace.values[z, hour]), observed, "trace")
                for z, zone in enumerate(self.trace.zones)
            }
            self._view = CarbonView(Snapshot(observed, zones), observed, self.trace.source)
            self._hour = hour
        return self._view

    def scores(self, pod: Pod, nodes: Sequence[Node], hour: int) -> list[int]:
        view = self.view_at(hour)
        counts: Counter[str | None] = Counter(n.zone for n in nodes)
        now = self.trace.time_of(hour) + DECISION_OFFSET
        decision = evaluate(self._pod, counts, view, now, self.settings)
        return [decision.zones[n.zone].score for n in nodes]
