"""The green-window controller: plan each gated pod's start, remove the gate when it is due.

Three loops share one in-memory view of the gated pods:

- the pod cache (carbon_common.kube.list_watch feeding `on_list` / `on_event`), on every replica;
- the planner: asks the feed for each pod's window when the pod is new or its plan is older than
  ``replan_interval``, and persists the plan on the pod (annotation ``carbon-aware.io/plan`` + Event);
- the releaser: every ``tick`` seconds removes the gate of each pod whose plan or deadline guard is due,
  up to ``max_concurrent_releases`` at a time (after a failover many pods can be due at once, and each
  must not queue behind the API latency of the others). It never waits for the feed, so a slow or dead
  feed cannot delay a deadline, nor for the Events it writes: those are background tasks, tracked and
  awaited (then cancelled) by `close`, their failures logged and counted.

Releases and plans in flight are cancelled as soon as this replica loses the Lease
(`leadership_changed`), so a deposed leader stops writing before another can take over.

Only the leader writes. The deadline guard is recomputed from the pod's own annotations at every tick,
so it holds across restarts and leader changes; a persisted plan is read back after a restart so the
pod keeps its window without a new forecast. A release is a JSON patch whose ``test`` op checks that
our gate is still at the index we saw: a second release (another replica, a stale cache, a restart)
fails with 422 instead of removing someone else's gate, so each pod is released exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from carbon_common.kube import ApiStatusError
from carbon_common.loops import run_forever
from carbon_common.timeutil import format_rfc3339, parse_rfc3339, utcnow
from deferral.annotations import GATE, PLAN, PREFIX, DeferralSpec, InvalidDeferral, parse_spec
from deferral.capacity import Booking, Capacity
from deferral.kubeio import PodWriter
from deferral.metrics import DeferralMetrics
from deferral.planner import Forecast, Plan, ReleaseReason, plan_start, plan_with_capacity, release_reason
from deferral.usage import ZONE_LABEL, ClusterUsage, NodeRoom, RunningPod, node_room, pod_cpu_m, running_pod

log = logging.getLogger(__name__)

_LONG_AGO = datetime.min.replace(tzinfo=UTC)
T = TypeVar("T")


class ForecastSource(Protocol):
    async def best(self, spec: DeferralSpec, now: datetime) -> tuple[Forecast | None, str]: ...


@dataclass(slots=True)
class GatedPod:
    uid: str
    namespace: str
    name: str
    created: datetime
    annotations: dict[str, str]
    gate_index: int
    """Position of our gate in spec.schedulingGates, checked by the release patch's test op."""
    cpu_m: int = 0
    """CPU request (millicores): the room the pod needs where it is planned."""

    @property
    def ref(self) -> dict[str, str]:
        return {"uid": self.uid, "namespace": self.namespace, "name": self.name}

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def gated_pod(obj: Mapping[str, Any], gate: str = GATE) -> GatedPod | None:
    """The pod if it carries our gate and is not being deleted; None otherwise (or if malformed)."""
    metadata = obj.get("metadata")
    spec = obj.get("spec")
    if not isinstance(metadata, Mapping) or not isinstance(spec, Mapping):
        return None
    if metadata.get("deletionTimestamp"):
        return None
    gates = spec.get("schedulingGates")
    if not isinstance(gates, list):
        return None
    index = next((i for i, g in enumerate(gates) if isinstance(g, Mapping) and g.get("name") == gate), None)
    uid, namespace, name = metadata.get("uid"), metadata.get("namespace"), metadata.get("name")
    if index is None or not all(isinstance(v, str) and v for v in (uid, namespace, name)):
        return None
    try:
        created = parse_rfc3339(str(metadata.get("creationTimestamp", "")))
    except ValueError:
        return None
    raw = metadata.get("annotations")
    annotations = (
        {str(k): str(v) for k, v in raw.items() if isinstance(v, str)} if isinstance(raw, Mapping) else {}
    )
    return GatedPod(str(uid), str(namespace), str(name), created, annotations, index, pod_cpu_m(spec))


def release_ops(pod: GatedPod, gate: str = GATE) -> list[dict[str, Any]]:
    path = f"/spec/schedulingGates/{pod.gate_index}"
    return [{"op": "test", "path": f"{path}/name", "value": gate}, {"op": "remove", "path": path}]


@dataclass(frozen=True, slots=True)
class ControllerOptions:
    prefix: str = PREFIX
    gate: str = GATE
    tick: float = 1.0
    """Seconds between release checks: how late past its planned time a pod may start."""
    replan_interval: float = 900.0
    """Seconds between forecasts for a waiting pod (forecasts are revised hourly or so)."""
    guard_margin: float = 0.0
    """Seconds before deadline - duration at which the guard releases (DeferralSpec.margin)."""
    max_concurrent_plans: int = 8
    max_concurrent_releases: int = 16
    """Gate removals in flight at once (each is one PATCH to the API server)."""
    zone_label: str = ZONE_LABEL
    """Node label naming its zone (the extender's --zone-label), for capacity-aware planning."""
    wait_for_nodes: bool = False
    """Plan nothing until the node watch has listed the nodes once. The service sets it: right after
    a start the pods are listed before the nodes, and plans made then would ignore capacity until the
    next re-plan (15 min by default). Deadline-guard releases need no plan and are not held."""


UNBOUND_HOLD = timedelta(minutes=5)
"""How long a released pod that no node took yet keeps its booking: long enough for the scheduler's
queue, short enough that a pod that cannot be placed does not hold room it never uses."""


@dataclass(slots=True)
class _State:
    spec: DeferralSpec | None = None
    invalid: str | None = None
    plan: Plan | None = None
    last_forecast: float | None = None
    """Loop time of the last feed call for this pod (None: never asked)."""
    released: bool = False
    seen_annotations: dict[str, str] | None = None
    plan_raw: str | None = None
    """The plan annotation last read or written, so our own write coming back is not re-parsed."""
    due_at: datetime = _LONG_AGO
    """Earliest moment a release check can say yes: min(plan start, guard); the past for invalid pods.
    Lets every tick skip waiting pods with one comparison."""

    def refresh_due(self) -> None:
        if self.spec is None:
            self.due_at = _LONG_AGO
        elif self.plan is None:
            self.due_at = self.spec.latest_start
        else:
            self.due_at = min(self.plan.start, self.spec.latest_start)


@dataclass(slots=True)
class GreenWindowController:
    writer: PodWriter
    feed: ForecastSource
    metrics: DeferralMetrics
    is_leader: Callable[[], bool]
    options: ControllerOptions = field(default_factory=ControllerOptions)
    now: Callable[[], datetime] = utcnow
    pods: dict[str, GatedPod] = field(default_factory=dict)
    usage: ClusterUsage = field(default_factory=ClusterUsage)
    """Nodes and running pods (capacity-aware planning); empty until a node watch feeds it."""
    _states: dict[str, _State] = field(default_factory=dict)
    _inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    """Releases and plans under way: cancelled when leadership is lost."""
    _events: set[asyncio.Task[None]] = field(default_factory=set)
    """Event writes under way (off the critical path): awaited, then cancelled, by `close`."""
    _unbound: dict[str, tuple[Booking, datetime]] = field(default_factory=dict)
    """Released pods not yet bound to a node, with when their booking lapses: between the release and
    the bind a pod is neither waiting nor running, and without this booking the room it is about to
    take looks free, so the next plans crowd into it (the e2e caught exactly that)."""

    # --- leadership and shutdown ---

    def leadership_changed(self, leading: bool) -> None:
        """The elector's on_change hook: a deposed leader abandons every write it has in flight."""
        if not leading:
            for task in list(self._inflight):
                task.cancel()

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def flush_events(self) -> None:
        """Wait until every Event write started so far has finished (or failed, logged)."""
        while self._events:
            await asyncio.wait(list(self._events))

    async def close(self, grace: float = 5.0) -> None:
        """On shutdown, after the loops have stopped: give pending Events `grace` seconds, then
        cancel them, so shutdown fits the pod's grace period."""
        for task in list(self._inflight):
            task.cancel()
        pending = list(self._events)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # --- pod cache callbacks (synchronous, called by list_watch) ---

    def transform(self, obj: dict[str, Any]) -> GatedPod | RunningPod | None:
        """list_watch's per-object transform: keep gated pods, and the CPU of pods bound to a node
        (capacity), as each list page arrives; drop the rest."""
        return gated_pod(obj, self.options.gate) or running_pod(obj, self.options.prefix)

    def on_list(self, items: list[GatedPod | RunningPod | None]) -> None:
        seen = {pod.uid: pod for pod in items if isinstance(pod, GatedPod)}
        self.usage.running = {pod.uid: pod for pod in items if isinstance(pod, RunningPod)}
        self.pods = seen
        for uid in set(self._states) - set(seen):
            del self._states[uid]
        for pod in seen.values():
            self._track(pod)
        self._update_gauge()

    def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        # Called for every pod event in the cluster: O(1) here, the gauge is refreshed once per tick.
        pod = gated_pod(obj, self.options.gate) if kind != "DELETED" else None
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        running = running_pod(obj, self.options.prefix) if kind != "DELETED" and pod is None else None
        if running is None:
            self.usage.running.pop(uid, None)
        else:
            self.usage.running[uid] = running
        if running is not None or kind == "DELETED":
            self._unbound.pop(uid, None)
        if pod is None:
            # Deleted, or the gate is gone (we or someone else released it): stop tracking, but keep
            # its room booked until it is bound.
            if kind != "DELETED" and running is None and (booking := self._booking(uid)) is not None:
                self._unbound[uid] = (booking, self.now() + UNBOUND_HOLD)
            self.pods.pop(uid, None)
            self._states.pop(uid, None)
        else:
            self.pods[pod.uid] = pod
            self._track(pod)

    def _track(self, pod: GatedPod) -> None:
        state = self._states.setdefault(pod.uid, _State())
        if state.seen_annotations == pod.annotations:
            return  # status or gate changes only: nothing to re-read (watch events are mostly these)
        state.seen_annotations = pod.annotations
        try:
            state.spec = parse_spec(
                pod.annotations,
                pod.created,
                self.options.prefix,
                timedelta(seconds=self.options.guard_margin),
            )
            state.invalid = None
        except Exception as error:  # InvalidDeferral, or a bug: either way the pod is released at once
            state.spec, state.invalid = (
                None,
                str(error) if isinstance(error, InvalidDeferral) else repr(error),
            )
            state.refresh_due()
            return
        # The annotation is the shared truth: a follower keeps up with the leader's re-plans through
        # it, and a new leader starts from the last plan even if the feed is down.
        raw = pod.annotations.get(self.options.prefix + PLAN)
        if raw is not None and raw != state.plan_raw:
            state.plan_raw = raw
            try:
                state.plan = Plan.from_annotation(raw)
            except ValueError as error:
                log.warning(
                    "ignoring unreadable plan annotation", extra={"pod": pod.key, "error": str(error)}
                )
        state.refresh_due()

    def on_node_list(self, items: list[NodeRoom | None]) -> None:
        self.usage.on_node_list(items)

    def on_node_event(self, kind: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        room = node_room(obj, self.options.zone_label) if kind != "DELETED" else None
        self.usage.on_node(name, room)

    def node_transform(self, obj: dict[str, Any]) -> NodeRoom | None:
        return node_room(obj, self.options.zone_label)

    def _booking(self, uid: str) -> Booking | None:
        """The room a planned pod holds: its CPU in its planned zone over [start, start + duration)."""
        state, pod = self._states.get(uid), self.pods.get(uid)
        if state is None or pod is None or state.spec is None or state.plan is None:
            return None
        if state.plan.basis != "forecast" or state.plan.zone is None:
            return None
        return Booking(state.plan.zone, pod.cpu_m, state.plan.start, state.plan.start + state.spec.duration)

    def _capacity(self, planning: str, now: datetime) -> Capacity | None:
        """Room per zone for the pod `planning`: nodes minus running pods minus the releases planned for
        the other waiting pods (each in its planned zone over [start, start + duration)), released ones
        included until they are bound."""
        for uid in [uid for uid, (_, lapses) in self._unbound.items() if lapses <= now]:
            del self._unbound[uid]
        planned = [b for uid in self._states if uid != planning and (b := self._booking(uid)) is not None]
        planned += [booking for booking, _ in self._unbound.values()]
        return self.usage.capacity(now, planned)

    def _update_gauge(self) -> None:
        self.metrics.pods_waiting.set(sum(1 for s in self._states.values() if not s.released))

    # --- releaser ---

    async def run_releaser(self) -> None:
        # A bug must not stop every future release: the next tick retries.
        await self._every_tick(self.release_due, "release")

    async def _every_tick(self, work: Callable[[], Awaitable[int]], name: str) -> None:
        """`work` once per tick for ever; a failure is counted as operation `<name>_loop` and logged."""

        async def step() -> float:
            await work()
            return self.options.tick

        await run_forever(
            step,
            log=log,
            message=f"{name} loop failed",
            on_error=lambda _: self.metrics.errors.labels(operation=f"{name}_loop").inc(),
            backoff=lambda _: self.options.tick,
        )

    async def release_due(self) -> int:
        """Release every pod that is due now; return how many this call released."""
        self._update_gauge()
        if not self.is_leader():
            return 0
        now = self.now()
        due: list[tuple[GatedPod, _State, ReleaseReason, str]] = []
        for uid, state in list(self._states.items()):
            if state.released or now < state.due_at:
                continue
            pod = self.pods.get(uid)
            if pod is None:
                continue
            reason: ReleaseReason | None
            if state.spec is None:
                reason, message = "invalid", f"invalid deferral annotations, starting now: {state.invalid}"
            elif state.plan is None and now >= state.spec.deadline:
                # Never planned and already too late: the annotations were wrong from the start
                # (a pod that waited under a plan and missed it is a guard release instead).
                deadline = format_rfc3339(state.spec.deadline)
                reason, message = "invalid", f"deadline {deadline} already passed, starting now"
            else:
                plan = state.plan or Plan(state.spec.latest_start, "no_forecast", state.spec.latest_start)
                reason = release_reason(state.spec, plan, now)
                message = self._release_message(reason, state.spec, plan, now) if reason else ""
            if reason is not None:
                due.append((pod, state, reason, message))
        if not due:
            return 0
        limit = asyncio.Semaphore(self.options.max_concurrent_releases)

        async def one(pod: GatedPod, state: _State, reason: ReleaseReason, message: str) -> bool:
            async with limit:
                # Waiting for a slot can take a while: only a current leader writes.
                return self.is_leader() and await self._release(pod, state, reason, message, now)

        # return_exceptions: a release cancelled by a lost Lease must not end this loop.
        results = await asyncio.gather(*(self._spawn(one(*item)) for item in due), return_exceptions=True)
        released = sum(1 for result in results if result is True)
        for result in results:
            if isinstance(result, Exception):  # _release handles its errors: this is a bug
                self.metrics.errors.labels(operation="release").inc()
                log.error("release failed", exc_info=result)
        if released:
            self._update_gauge()
        return released

    @staticmethod
    def _release_message(reason: ReleaseReason | None, spec: DeferralSpec, plan: Plan, now: datetime) -> str:
        if reason == "window_reached":
            return (
                f"green window reached: released at {format_rfc3339(now)}, expected "
                f"{_g(plan.intensity_then)} (was {_g(plan.intensity_now)} when planned)"
            )
        return (
            f"deadline guard: released at {format_rfc3339(now)} so that a run of "
            f"{int(spec.duration.total_seconds())} s finishes by {format_rfc3339(spec.deadline)}"
        )

    async def _release(
        self, pod: GatedPod, state: _State, reason: ReleaseReason, message: str, now: datetime
    ) -> bool:
        try:
            await self.writer.patch_json(pod.namespace, pod.name, release_ops(pod, self.options.gate))
        except ApiStatusError as error:
            if error.status == 404:
                state.released = True  # the pod is gone: nothing to release
                return False
            if error.status in (409, 422):
                # The test op failed: our cached gate index is stale. Either someone (another replica,
                # a user, our earlier self) already removed our gate, or another gate before ours was
                # removed and ours moved. The watch brings the current pod (a new index, or no gate and
                # then we forget the pod), so retry at the next tick rather than risk stranding it.
                log.info("gate not where we saw it, retrying", extra={"pod": pod.key, "status": error.status})
                return False
            self.metrics.errors.labels(operation="release").inc()
            log.warning("release failed, will retry", extra={"pod": pod.key, "error": str(error)})
            return False
        except Exception as error:  # network trouble: retry at the next tick
            self.metrics.errors.labels(operation="release").inc()
            log.warning("release failed, will retry", extra={"pod": pod.key, "error": repr(error)})
            return False
        state.released = True
        self.metrics.releases.labels(reason=reason).inc()
        self.metrics.planned_delay.observe(max(0.0, (now - pod.created).total_seconds()))
        if reason == "window_reached" and state.plan is not None and state.plan.avoided is not None:
            self.metrics.intensity_avoided.observe(state.plan.avoided)
        log.info("released", extra={"pod": pod.key, "reason": reason})
        event_reason = "CarbonInvalid" if reason == "invalid" else "CarbonReleased"
        self._event(pod, event_reason, message, reason in ("invalid", "error"), now)
        return True

    # --- planner ---

    async def run_planner(self) -> None:
        # Keep planning the other pods on the next tick; the guard does not depend on this loop.
        await self._every_tick(self.plan_pending, "plan")

    async def plan_pending(self) -> int:
        """Plan every pod that has no plan yet or whose forecast is older than replan_interval."""
        if not self.is_leader() or (self.options.wait_for_nodes and not self.usage.nodes_listed):
            return 0
        clock = asyncio.get_running_loop().time()
        now = self.now()
        # Pods at or past their guard need no forecast: the releaser takes them as they are. Nor do
        # pods whose planned start has come: re-planned a moment into their window, the run would
        # overlap the releases booked right after it and look as if it no longer fits.
        due = [
            (self.pods[uid], state)
            for uid, state in self._states.items()
            if uid in self.pods
            and state.spec is not None
            and now < state.spec.latest_start
            and (state.plan is None or now < state.plan.start)
            and not state.released
            and (state.last_forecast is None or clock - state.last_forecast >= self.options.replan_interval)
        ]
        limit = asyncio.Semaphore(self.options.max_concurrent_plans)

        async def one(pod: GatedPod, state: _State) -> None:
            async with limit:
                if not self.is_leader():
                    return
                try:
                    await self._plan(pod, state, clock)
                except asyncio.CancelledError:
                    state.last_forecast = None  # abandoned, not done: plan again when leading again
                    raise
                except Exception as error:
                    # Planning is pure apart from calls that already handle their errors: this is a
                    # bug. Never strand the pod on it: release it now, visibly.
                    log.exception("planning failed, releasing the pod", extra={"pod": pod.key})
                    await self._release(
                        pod, state, "error", f"planning failed, starting now: {error!r}", self.now()
                    )

        # return_exceptions: a plan cancelled by a lost Lease must not end this loop.
        await asyncio.gather(*(self._spawn(one(pod, state)) for pod, state in due), return_exceptions=True)
        return len(due)

    async def _plan(self, pod: GatedPod, state: _State, clock: float) -> None:
        assert state.spec is not None
        state.last_forecast = clock
        now = self.now()
        forecast, why = await self.feed.best(state.spec, now)
        if state.released or pod.uid not in self.pods or not self.is_leader():
            return  # released or gone while we waited for the feed
        previous = state.plan
        capacity = self._capacity(pod.uid, now)
        if capacity is None:
            plan = plan_start(state.spec, now, forecast, previous)
        else:
            plan = plan_with_capacity(state.spec, now, forecast, pod.cpu_m, capacity, previous)
        state.plan = plan
        state.refresh_due()
        if previous is not None and _same(previous, plan):
            return
        raw = plan.to_annotation()
        state.plan_raw = raw
        try:
            await self.writer.merge_annotations(pod.namespace, pod.name, {self.options.prefix + PLAN: raw})
        except Exception as error:  # the plan still holds in memory; the guard does not need it
            self.metrics.errors.labels(operation="annotate").inc()
            log.warning("could not persist the plan", extra={"pod": pod.key, "error": repr(error)})
        self._event(pod, "CarbonPlanned", _plan_message(plan, why), False, now)
        log.info("planned", extra={"pod": pod.key, "start": format_rfc3339(plan.start), "basis": plan.basis})

    def _event(self, pod: GatedPod, reason: str, message: str, warning: bool, now: datetime) -> None:
        """Write an Event in the background: the release or plan it reports is already done."""
        task = asyncio.create_task(self._write_event(pod, reason, message, warning, now))
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _write_event(
        self, pod: GatedPod, reason: str, message: str, warning: bool, now: datetime
    ) -> None:
        try:
            await self.writer.event(pod.ref, reason, message, warning, now)
        except Exception as error:  # events are best effort: never block a release on them
            self.metrics.errors.labels(operation="event").inc()
            log.warning("could not record an event", extra={"pod": pod.key, "error": repr(error)})


def _same(a: Plan, b: Plan) -> bool:
    """Plans that differ by less than a minute are the same plan (no new event, no new patch)."""
    return a.basis == b.basis and abs(a.start - b.start) < timedelta(minutes=1)


def _g(value: float | None) -> str:
    return "unknown intensity" if value is None else f"{value:.0f} gCO2eq/kWh"


def _plan_message(plan: Plan, why: str) -> str:
    start = format_rfc3339(plan.start)
    guard = format_rfc3339(plan.guard)
    if plan.basis == "forecast":
        return (
            f"planned start {start} in the greenest window ({plan.zone}, expected {_g(plan.intensity_then)}; "
            f"now {_g(plan.intensity_now)}); deadline guard {guard}"
            + (f"; capacity: {plan.capacity}" if plan.capacity else "")
        )
    if plan.basis == "guard":
        return f"deadline guard {guard} already reached: starting now"
    return f"no forecast ({why}): waiting at most until the deadline guard {guard}"
