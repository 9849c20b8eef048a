"""The rebalancer's loop: caches fed by list/watch, one decision run every interval, and its actions.

Every replica keeps its caches and its history of readings warm (so a new leader has the sustain
history at once); only the leader decides and acts. A run:
1. reads the feed's snapshot and records the fresh readings as one observation (a failed read records
   an empty one, which breaks every sustained streak: nothing moves on missing data);
2. asks the pure policy (`rebalancer.policy.decide`) for one decision per opted-in pod;
3. evicts the chosen pods (or, in dry-run, only reports them), and posts a Kubernetes Event on a pod
   when its decision changes (not every run: a skipped pod would otherwise get one per interval).

After a restart nothing is evicted twice: an evicted pod is terminating or gone, its replacement is a
young pod in cool-down, and its owner is "settling" until the replacement is Ready.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from carbon_common.interval import Interval
from carbon_common.kube import ApiStatusError, WatchStats
from carbon_common.snapshot import Snapshot, is_fresh
from carbon_common.timeutil import utcnow
from rebalancer.kubeio import KubeWriter
from rebalancer.metrics import RebalancerMetrics
from rebalancer.objects import REBALANCE, node_view, pdb_view, pod_view
from rebalancer.policy import Decision, Inputs, NodeView, Observation, PdbView, PodView, PolicyConfig, decide

log = logging.getLogger(__name__)

# One failed call must not end the run: the other decisions still get their eviction or Event.
_API_FAILURES = (ApiStatusError, aiohttp.ClientError, OSError, TimeoutError)

V = TypeVar("V")


class SnapshotSource(Protocol):
    async def snapshot(self) -> Snapshot | None: ...


class Cache(Generic[V]):
    """Objects of one kind by key, replaced on each list, updated on each watch event."""

    def __init__(
        self, parse: Callable[[Mapping[str, Any]], V | None], key: Callable[[Mapping[str, Any]], str]
    ):
        self.parse = parse
        self.key = key
        self.items: dict[str, V] = {}
        self.stats = WatchStats()

    def transform(self, obj: dict[str, Any]) -> tuple[str, V | None]:
        return self.key(obj), self.parse(obj)

    def on_list(self, items: list[tuple[str, V | None]]) -> None:
        self.items = {k: v for k, v in items if v is not None}

    def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        key, value = self.transform(obj)
        if kind == "DELETED" or value is None:
            self.items.pop(key, None)
        else:
            self.items[key] = value


def _meta(obj: Mapping[str, Any], field_name: str) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get(field_name) or "") if isinstance(metadata, Mapping) else ""


def _namespaced_key(obj: Mapping[str, Any]) -> str:
    return f"{_meta(obj, 'namespace')}/{_meta(obj, 'name')}"


def _opted_in_namespace(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return _meta(obj, "name") if isinstance(labels, Mapping) and labels.get(REBALANCE) == "true" else None


@dataclass(frozen=True, slots=True)
class Options:
    zone_label: str = "carbon-aware.io/zone"
    dry_run: bool = True
    interval: float = 60.0
    max_data_age: float = 10800.0
    allow_local_storage: bool = False


@dataclass(slots=True)
class RunReport:
    """What one run decided and did (for the logs and the tests)."""

    decisions: list[Decision] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)
    """Pod "namespace/name" -> eviction result (evicted, dry-run, pdb-blocked, gone, error)."""


class Rebalancer:
    def __init__(
        self,
        writer: KubeWriter,
        feed: SnapshotSource,
        metrics: RebalancerMetrics,
        config: PolicyConfig,
        options: Options,
        is_leader: Callable[[], bool] = lambda: True,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.writer = writer
        self.feed = feed
        self.metrics = metrics
        self.config = config
        self.options = options
        self.is_leader = is_leader
        self.clock = clock
        self.pods: Cache[PodView] = Cache(
            lambda o: pod_view(o, allow_local_storage=options.allow_local_storage), lambda o: _meta(o, "uid")
        )
        self.nodes: Cache[NodeView] = Cache(
            lambda o: node_view(o, options.zone_label), lambda o: _meta(o, "name")
        )
        self.pdbs: Cache[PdbView] = Cache(pdb_view, _namespaced_key)
        self.namespaces: Cache[str] = Cache(_opted_in_namespace, lambda o: _meta(o, "name"))
        self.history: list[Observation] = []
        self.forecasts: dict[str, tuple[Interval, ...]] = {}
        self.evicted: set[str] = set()
        self._reported: dict[str, str] = {}

    @property
    def synced(self) -> bool:
        return all(c.stats.synced for c in (self.pods, self.nodes, self.pdbs, self.namespaces))

    def observe(self, snapshot: Snapshot | None, now: datetime) -> None:
        """Record this run's fresh readings (none when the feed failed) and keep only the history the
        sustain check can use."""
        zones = {}
        if snapshot is not None:
            zones = {z: r for z, r in snapshot.zones.items() if is_fresh(r, now, self.options.max_data_age)}
        self.history.append(Observation(now, {z: r.intensity for z, r in zones.items()}))
        self.forecasts = {z: r.forecast for z, r in zones.items()}
        # Keep one observation older than the sustain span: the streak must be seen to start before it.
        keep_from = now - self.config.sustain - timedelta(seconds=2 * self.options.interval)
        while len(self.history) > 2 and self.history[1].at <= keep_from:
            self.history.pop(0)

    async def step(self) -> float:
        """One run; returns the pause before the next (run_forever's step)."""
        await self.run_once()
        return self.options.interval

    async def run_once(self) -> RunReport | None:
        now = self.clock()
        self.observe(await self.feed.snapshot(), now)
        if not self.is_leader() or not self.synced:
            return None
        self.metrics.runs.inc()
        namespaces = frozenset(self.namespaces.items.values())
        pods = [
            replace(p, opted_in=True) if p.namespace in namespaces else p for p in self.pods.items.values()
        ]
        live = {p.uid for p in pods if not p.terminating}
        self.evicted &= live
        decisions = decide(
            Inputs(
                now=now,
                pods=pods,
                nodes=list(self.nodes.items.values()),
                pdbs=list(self.pdbs.items.values()),
                history=list(self.history),
                forecasts=self.forecasts,
                evicted=frozenset(self.evicted),
            ),
            self.config,
        )
        report = RunReport(decisions)
        counts: dict[str, int] = {}
        for decision in decisions:
            counts[decision.reason] = counts.get(decision.reason, 0) + 1
            if decision.action == "evict":
                report.results[f"{decision.pod.namespace}/{decision.pod.name}"] = await self._evict(
                    decision, now
                )
            else:
                await self._report(decision, "CarbonRebalanceSkipped", now)
        self.metrics.candidates.clear()
        for reason, count in counts.items():
            self.metrics.candidates.labels(reason=reason).set(count)
        for uid in set(self._reported) - {d.pod.uid for d in decisions}:
            del self._reported[uid]
        return report

    async def _evict(self, decision: Decision, now: datetime) -> str:
        pod = decision.pod
        fields = _fields(decision)
        if self.options.dry_run:
            self.metrics.evictions.labels(result="dry-run").inc()
            log.info("would evict (dry run)", extra=fields)
            await self._report(decision, "CarbonRebalanceDryRun", now)
            return "dry-run"
        try:
            result: str = await self.writer.evict(pod)
        except _API_FAILURES as error:
            self.metrics.errors.labels(operation="evict").inc()
            result = "error"
            fields["error"] = repr(error)
        self.metrics.evictions.labels(result=result).inc()
        if result == "evicted":
            self.evicted.add(pod.uid)
            self.metrics.avoided.inc(decision.avoided)
            log.info("evicted", extra=fields)
            await self._report(decision, "CarbonRebalanced", now)
        elif result == "pdb-blocked":
            # The budget changed since we read it: the pod stays, a later run tries again.
            log.info("eviction refused by a PodDisruptionBudget; retried later", extra=fields)
            blocked = replace(
                decision,
                action="skip",
                reason="pdb",
                message="the Eviction API refused (429): " + decision.message,
            )
            await self._report(blocked, "CarbonRebalanceSkipped", now)
        else:
            log.warning("eviction did not happen", extra={**fields, "result": result})
        return result

    async def _report(self, decision: Decision, reason: str, now: datetime) -> None:
        """A Kubernetes Event on the pod when its decision changed since the last one reported."""
        pod = decision.pod
        if self._reported.get(pod.uid) == decision.reason and reason != "CarbonRebalanced":
            return
        self._reported[pod.uid] = decision.reason
        try:
            await self.writer.event(pod, reason, _message(decision), warning=False, now=now)
        except _API_FAILURES as error:
            self.metrics.errors.labels(operation="event").inc()
            log.warning("could not post an event", extra={"pod": pod.name, "error": repr(error)})


def _fields(decision: Decision) -> dict[str, Any]:
    return {
        "namespace": decision.pod.namespace,
        "pod": decision.pod.name,
        "reason": decision.reason,
        "zone": decision.zone,
        "intensity": decision.intensity,
        "target": decision.target,
        "targetIntensity": decision.target_intensity,
    }


def _message(decision: Decision) -> str:
    numbers = ""
    if decision.zone is not None and decision.intensity is not None:
        numbers = f" [zone {decision.zone} {decision.intensity:g} g/kWh"
        if decision.target is not None and decision.target_intensity is not None:
            numbers += f", target {decision.target} {decision.target_intensity:g} g/kWh"
        numbers += "]"
    return f"{decision.reason}: {decision.message}{numbers}"
