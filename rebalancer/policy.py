"""Which running pods to move to a greener zone, and why: the pure decision, no I/O.

The controller gives a snapshot of the cluster (pods, nodes, PodDisruptionBudgets, each already parsed
by `rebalancer.objects`), the history of zone intensities it has observed, the feed's forecast and
the evictions it made recently; `decide` returns one `Decision` per opted-in pod, each with its reason
and its numbers. Safety comes before carbon: every check that can say "leave it" runs before a move.

A pod moves only when all hold, in this order:
- it is a candidate: opted in, owned by a controller that recreates it, not a mirror or DaemonSet pod,
  no local storage (unless allowed), Running and Ready, not terminating;
- its zone is known and the feed has a current reading for it;
- it is older than the cool-down: a moved pod is a new pod, recreated by its controller, so the
  cool-down is the pod's age and a restart of the rebalancer forgets nothing that matters;
- every other pod of its owner is Ready and none is terminating (the last move has settled): an owner
  therefore loses at most one pod at a time to the rebalancer, whatever its PodDisruptionBudget allows;
- some zone beats its zone by both margins (absolute g/kWh and relative), has done so in every
  observation for at least the sustain time, is not forecast to be dirtier than its zone within the
  horizon, and has a Ready, schedulable, labelled node with room for its requests;
- the run's, the namespace's and the owner's eviction limits are not used up, and every
  PodDisruptionBudget that selects it still allows a disruption in this run.

Pods are considered greatest gain first, so the limits keep the best moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from carbon_common.interval import Interval

Action = Literal["evict", "skip"]

# Reasons a candidate is skipped, from the first check to the last; the zone checks are ranked so
# that a pod with no acceptable zone reports the check that came closest to passing.
ZONE_CHECKS = ("no-greener-zone", "not-sustained", "forecast-reversal", "no-room")


@dataclass(frozen=True, slots=True)
class Resources:
    cpu_m: int = 0
    memory: int = 0
    """Bytes."""

    def fits(self, free: Resources) -> bool:
        return self.cpu_m <= free.cpu_m and self.memory <= free.memory

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu_m - other.cpu_m, self.memory - other.memory)

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_m + other.cpu_m, self.memory + other.memory)


@dataclass(frozen=True, slots=True)
class PodView:
    namespace: str
    name: str
    uid: str
    node: str
    created: datetime
    owner_kind: str = ""
    owner_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    requests: Resources = Resources()
    opted_in: bool = False
    running: bool = True
    ready: bool = True
    terminating: bool = False
    exclusion: str | None = None
    """Why this pod can never be moved (e.g. "bare-pod", "daemonset"); None for a movable kind."""

    @property
    def owner(self) -> str:
        """Key of the owning controller: the unit of the per-owner limit."""
        return f"{self.namespace}/{self.owner_kind}/{self.owner_name}"


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    zone: str | None
    ready: bool
    schedulable: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    allocatable: Resources = Resources()


@dataclass(frozen=True, slots=True)
class PdbView:
    namespace: str
    name: str
    match_labels: Mapping[str, str] | None
    """None: a selector we cannot read, treated as selecting every pod of the namespace (safe side)."""
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    disruptions_allowed: int = 0

    def selects(self, pod: PodView) -> bool:
        if pod.namespace != self.namespace:
            return False
        if self.match_labels is None:
            return True
        if any(pod.labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for key, operator, values in self.match_expressions:
            present = key in pod.labels
            ok = {
                "In": present and pod.labels.get(key) in values,
                "NotIn": not present or pod.labels.get(key) not in values,
                "Exists": present,
                "DoesNotExist": not present,
            }.get(operator, True)  # an unknown operator selects (the safe side: it counts against us)
            if not ok:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Observation:
    at: datetime
    intensities: Mapping[str, float]
    """gCO2eq/kWh per zone with a fresh reading at `at`."""


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    margin_abs: float = 50.0
    margin_rel: float = 0.2
    sustain: timedelta = timedelta(minutes=30)
    horizon: timedelta = timedelta(hours=2)
    cooldown: timedelta = timedelta(hours=6)
    max_per_run: int = 2
    max_per_namespace: int = 1
    max_per_owner: int = 1


@dataclass(frozen=True, slots=True)
class Inputs:
    now: datetime
    pods: Sequence[PodView]
    nodes: Sequence[NodeView]
    pdbs: Sequence[PdbView] = ()
    history: Sequence[Observation] = ()
    """Oldest first; the last one is the current reading."""
    forecasts: Mapping[str, Sequence[Interval]] = field(default_factory=dict)
    evicted: frozenset[str] = frozenset()
    """UIDs of pods this process evicted, until the watch shows them gone or terminating."""


@dataclass(frozen=True, slots=True)
class Decision:
    pod: PodView
    action: Action
    reason: str
    message: str
    zone: str | None = None
    intensity: float | None = None
    target: str | None = None
    target_intensity: float | None = None

    @property
    def avoided(self) -> float:
        """Estimated g/kWh avoided by the move (its zone minus the target's); 0 when not moving."""
        if self.action != "evict" or self.intensity is None or self.target_intensity is None:
            return 0.0
        return self.intensity - self.target_intensity


def _s(span: timedelta) -> str:
    return f"{span.total_seconds():.0f}"


def _beats(source: float, target: float, config: PolicyConfig) -> bool:
    gain = source - target
    return gain >= config.margin_abs and gain >= config.margin_rel * source and gain > 0


def sustained_since(
    history: Sequence[Observation], source: str, target: str, config: PolicyConfig
) -> datetime | None:
    """Start of the current unbroken run of observations in which `target` beats `source`; None if
    the latest does not. An observation missing either zone breaks the run."""
    since = None
    for observation in reversed(history):
        s, t = observation.intensities.get(source), observation.intensities.get(target)
        if s is None or t is None or not _beats(s, t, config):
            break
        since = observation.at
    return since


def reversal(
    forecasts: Mapping[str, Sequence[Interval]], source: str, target: str, now: datetime, horizon: timedelta
) -> Interval | None:
    """The first forecast interval within the horizon where `target` is not greener than `source`.

    Only overlapping spans of both forecasts are compared; with no forecast there is no evidence of a
    reversal (the margins and the sustain time still apply)."""
    end = now + horizon
    for t in forecasts.get(target, ()):
        if t.end <= now or t.start >= end:
            continue
        for s in forecasts.get(source, ()):
            if s.end <= t.start or s.start >= t.end or s.end <= now or s.start >= end:
                continue
            if t.intensity >= s.intensity:
                return t
    return None


def free_by_node(nodes: Sequence[NodeView], pods: Sequence[PodView]) -> dict[str, Resources]:
    """Allocatable minus the requests of the pods bound to each node (terminating ones included:
    they hold their room until they are gone)."""
    free = {n.name: n.allocatable for n in nodes}
    for pod in pods:
        if pod.node in free:
            free[pod.node] = free[pod.node] - pod.requests
    return free


def _room(
    pod: PodView, zone: str, nodes: Sequence[NodeView], free: Mapping[str, Resources]
) -> NodeView | None:
    for node in nodes:
        if node.zone != zone or not node.ready or not node.schedulable:
            continue
        if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
            continue
        if pod.requests.fits(free.get(node.name, Resources())):
            return node
    return None


def _precheck(
    pod: PodView,
    zone: str | None,
    here: float | None,
    now: datetime,
    config: PolicyConfig,
    evicted: frozenset[str],
    unsettled: set[str],
) -> tuple[str, str] | None:
    """(reason, message) of the first check before the zone comparison that keeps the pod, or None."""
    if pod.exclusion is not None:
        return pod.exclusion, "this kind of pod is never evicted"
    if pod.terminating or not pod.running:
        return "not-running", "the pod is not running (or is terminating)"
    if not pod.ready:
        return "not-ready", "the pod is not Ready"
    if zone is None:
        return "no-zone", f"node {pod.node!r} is unknown or has no zone label"
    if here is None:
        return "no-data", f"no current intensity for zone {zone}"
    if now - pod.created < config.cooldown:
        return "cooldown", f"the pod is {_s(now - pod.created)}s old, cool-down {_s(config.cooldown)}s"
    if pod.uid in evicted:
        return "already-evicted", "evicted by this rebalancer; its deletion is not visible yet"
    if pod.owner in unsettled:
        return "owner-settling", "another pod of its owner is not Ready yet"
    return None


def decide(inputs: Inputs, config: PolicyConfig) -> list[Decision]:
    now = inputs.now
    nodes_by_name = {n.name: n for n in inputs.nodes}
    current = inputs.history[-1].intensities if inputs.history else {}
    # Targets: zones with at least one Ready, schedulable, labelled node and a current reading.
    target_zones = sorted(
        {n.zone for n in inputs.nodes if n.zone and n.ready and n.schedulable and n.zone in current},
        key=lambda z: (current[z], z),
    )
    free = free_by_node(inputs.nodes, inputs.pods)
    unsettled = {p.owner for p in inputs.pods if p.opted_in and (not p.ready or p.terminating)}

    skipped: list[Decision] = []
    movable: list[Decision] = []
    for pod in inputs.pods:
        if not pod.opted_in:
            continue
        node = nodes_by_name.get(pod.node)
        zone = node.zone if node is not None else None
        here = current.get(zone) if zone else None

        problem = _precheck(pod, zone, here, now, config, inputs.evicted, unsettled)
        if problem is None and zone is not None and here is not None:  # _precheck checked both
            movable.append(_best_zone(pod, zone, here, inputs, config, target_zones, free))
        else:
            reason, message = problem or ("no-data", "no zone or no intensity")
            skipped.append(Decision(pod, "skip", reason, message, zone, here))

    # Greatest gain first: the limits below keep the best moves.
    movable.sort(key=lambda d: (-d.avoided, d.pod.namespace, d.pod.name))
    budgets = {(p.namespace, p.name): p.disruptions_allowed for p in inputs.pdbs}
    per_namespace: dict[str, int] = {}
    per_owner: dict[str, int] = {}
    evicted = 0
    decisions: list[Decision] = []
    for decision in movable:
        pod = decision.pod
        if decision.action != "evict":
            decisions.append(decision)
            continue
        pdbs = [p for p in inputs.pdbs if p.selects(pod)]
        limit = None
        if evicted >= config.max_per_run:
            limit = ("rate-run", f"{config.max_per_run} eviction(s) per run already planned")
        elif per_namespace.get(pod.namespace, 0) >= config.max_per_namespace:
            limit = ("rate-namespace", f"{config.max_per_namespace} eviction(s) per namespace per run")
        elif per_owner.get(pod.owner, 0) >= config.max_per_owner:
            limit = ("rate-owner", f"{config.max_per_owner} eviction(s) per owner per run")
        elif blocked := [p.name for p in pdbs if budgets[(p.namespace, p.name)] <= 0]:
            limit = ("pdb", f"PodDisruptionBudget {', '.join(blocked)} allows no further disruption now")
        elif (target_node := _room(pod, decision.target or "", inputs.nodes, free)) is None:
            # The room was taken by a move planned earlier in this run.
            limit = ("no-room", f"the room in {decision.target} is taken by this run's other moves")
        if limit is not None:
            decisions.append(replace(decision, action="skip", reason=limit[0], message=limit[1]))
            continue
        assert target_node is not None
        free[target_node.name] = free[target_node.name] - pod.requests
        evicted += 1
        per_namespace[pod.namespace] = per_namespace.get(pod.namespace, 0) + 1
        per_owner[pod.owner] = per_owner.get(pod.owner, 0) + 1
        for p in pdbs:
            budgets[(p.namespace, p.name)] -= 1
        decisions.append(decision)
    return skipped + decisions


def _best_zone(
    pod: PodView,
    zone: str,
    here: float,
    inputs: Inputs,
    config: PolicyConfig,
    target_zones: Sequence[str],
    free: Mapping[str, Resources],
) -> Decision:
    """Evict toward the greenest acceptable zone, or skip with the check that came closest to passing."""
    best_rank = -1
    best: tuple[str, str, str | None, float | None] = (
        "no-greener-zone",
        f"no zone beats {zone} ({here:g} g/kWh) by {config.margin_abs:g} g/kWh and {config.margin_rel:.0%}",
        None,
        None,
    )
    for target in target_zones:
        there = inputs.history[-1].intensities[target]
        if target == zone or not _beats(here, there, config):
            continue
        since = sustained_since(inputs.history, zone, target, config)
        assert since is not None  # the latest observation beats
        if inputs.now - since < config.sustain:
            failure = (
                1,
                "not-sustained",
                f"{target} beats {zone} for {_s(inputs.now - since)}s, need {_s(config.sustain)}s",
            )
        elif (flip := reversal(inputs.forecasts, zone, target, inputs.now, config.horizon)) is not None:
            failure = (
                2,
                "forecast-reversal",
                f"{target} is forecast at {flip.intensity:g} g/kWh from {flip.start.isoformat()}"
                f", not greener than {zone}",
            )
        elif _room(pod, target, inputs.nodes, free) is None:
            failure = (3, "no-room", f"no Ready node in {target} has room for the pod's requests")
        else:
            return Decision(
                pod,
                "evict",
                "greener-zone",
                f"{target} at {there:g} g/kWh beats {zone} at {here:g} g/kWh",
                zone,
                here,
                target,
                there,
            )
        if failure[0] > best_rank:
            best_rank, best = failure[0], (failure[1], failure[2], target, there)
    return Decision(pod, "skip", best[0], best[1], zone, here, best[2], best[3])
