"""The extender's aiohttp application: routes, middlewares and the request-path glue.

The request path does no I/O except the bind call: it parses the request (wire), looks zones up in
the node cache or the request's own Node objects, reads the current CarbonView, asks the pure policy,
and encodes the answer. Everything that refreshes data runs as a Service started in cleanup_ctx.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import orjson
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from carbon_common.responses import error_response as common_error_response
from carbon_common.responses import health_response, readiness_response
from carbon_common.serving import ClientAborted, read_body
from carbon_common.timeutil import format_rfc3339, utcnow
from extender import wire
from extender.decisions import DecisionRecord, DecisionStore, ZoneFigures, resolve
from extender.memo import CandidateMemo, MemoEntry
from extender.metrics import ExtenderMetrics
from extender.nodes import NodeLookup
from extender.policy import Evaluation, PodPolicy, ZoneDecision, evaluate, pod_policy
from extender.settings import ExtenderSettings
from extender.view import CarbonState
from extender.zones import ZoneResolver, load_region_map

log = logging.getLogger("extender")

VERBS = ("filter", "prioritize", "bind", "preempt")


class Binder(Protocol):
    """Creates the Binding (extender/binder.py). Returns None on success, else an error message;
    it bounds its own time (--bind-timeout) and reports a timeout as an error message."""

    async def bind(
        self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str] | None
    ) -> str | None: ...

    async def close(self) -> None: ...


class Service(Protocol):
    """A background data source (node cache, snapshot watcher, feed poller)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(slots=True)
class ExtenderState:
    settings: ExtenderSettings
    nodes: NodeLookup
    carbon: CarbonState
    binder: Binder | None
    resolver: ZoneResolver
    metrics: ExtenderMetrics
    decisions: DecisionStore
    clock: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic
    services: Sequence[Service] = field(default_factory=tuple)
    memo: CandidateMemo = field(default_factory=CandidateMemo)
    no_data_logged: dict[str | None, float] = field(default_factory=dict)
    request_zones: dict[str, str | None] = field(default_factory=dict)
    large_requests: asyncio.Lock = field(default_factory=asyncio.Lock)


STATE = web.AppKey("extender_state", ExtenderState)


# --- responses ------------------------------------------------------------------------------------


def _json(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    # "Error" is the field every extender result type has, so even a scheduler reading an error body
    # as a result sees the message.
    return common_error_response(status, message, headers, key="Error")


# --- middlewares ----------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON answer and the process keeps serving."""
    state = request.app[STATE]
    if request.method == "POST" and request.match_info.http_exception is None:
        limit = state.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _too_large(limit)
        if request.content_type != "application/json":
            return error_response(
                415, f"Content-Type must be application/json, got {request.content_type or 'nothing'!r}"
            )
    try:
        length = request.content_length
        if request.method == "POST" and (length is None or length > LARGE_BODY_BYTES):
            # One large request at a time: parsing costs about six times the body in memory
            # (docs/extender.md), so concurrent large bodies, not one, would break the memory limit.
            # kube-scheduler calls filter and prioritize one pod at a time, so it never waits here.
            async with state.large_requests:
                return await handler(request)
        return await handler(request)
    except ClientAborted as exc:
        # The client hung up mid-request: nobody will read an answer, and it is not our failure.
        log.debug("client closed the connection mid-request", extra={"path": request.path, "error": str(exc)})
        return error_response(400, "client closed the connection mid-request")
    except web.HTTPRequestEntityTooLarge:
        return _too_large(state.settings.max_body_bytes)
    except web.HTTPRequestTimeout as exc:
        response = error_response(408, exc.text or "request timeout")
        response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, f"{exc.reason}: {request.method} {request.path}", headers)
    except Exception as exc:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


# Above this (or without Content-Length) a request body is "large": ~100 full Node objects.
LARGE_BODY_BYTES = 1 * 2**20


def _too_large(limit: int) -> web.Response:
    return error_response(413, f"request body exceeds the limit of {limit} bytes (--max-body-bytes)")


# --- request helpers ------------------------------------------------------------------------------


async def _read(request: web.Request, state: ExtenderState) -> bytes:
    """The body, within --read-timeout and --max-body-bytes, not cached by aiohttp (see read_body)."""
    return await read_body(request, state.settings.read_timeout, max_bytes=state.settings.max_body_bytes)


def _candidates(state: ExtenderState, args: wire.ExtenderArgs) -> tuple[list[str], list[str | None]]:
    """Node names and their zones, in request order. NodeNames mode asks the node cache; full-Nodes
    mode reads the labels of the Node objects sent, which are newer than any cache."""
    if args.node_names is not None:
        # The bulk lookup: a cache that keeps a plain name → zone dict answers with
        # map(dict.get, names) in C, several times faster than a call per node.
        return args.node_names, state.nodes.zones_of(args.node_names)
    zone_of_labels = state.resolver.zone_of_labels
    names: list[str] = []
    zones: list[str | None] = []
    for item in args.items:
        meta = item["metadata"]
        names.append(meta["name"])
        zones.append(zone_of_labels(meta.get("labels") or _NO_LABELS))
    return names, zones


_NO_LABELS: Mapping[str, str] = {}


def _parse(state: ExtenderState, body: bytes) -> tuple[wire.ExtenderArgs, MemoEntry | None]:
    """Parse ExtenderArgs; in NodeNames mode, find the memo entry for this exact list, which also
    spares re-validating 5,000 names that were validated when the entry was made."""
    args = wire.parse_extender_args(body, check_names=False)
    if args.node_names is None:
        return args, None
    entry = state.memo.get(args.node_names, state.monotonic(), state.nodes.version)
    if entry is None:
        wire.check_node_names(args)
    return args, entry


def _zones(
    state: ExtenderState, args: wire.ExtenderArgs, entry: MemoEntry | None
) -> tuple[list[str], list[str | None], Mapping[str | None, int], MemoEntry | None]:
    """Names, zones and nodes per zone; in NodeNames mode remembered for the next identical list."""
    if entry is not None:
        return entry.names, entry.zones, entry.counts, entry
    names, zones = _candidates(state, args)
    counts = Counter(zones)
    if args.node_names is None:
        return names, zones, counts, None
    return names, zones, counts, state.memo.put(names, zones, counts, state.monotonic(), state.nodes.version)


def _evaluate(
    state: ExtenderState, policy: PodPolicy, counts: Mapping[str | None, int], entry: MemoEntry | None
) -> Evaluation:
    """The policy's verdict; for a remembered node list, reused while the carbon view object and the
    pod's policy are the same (data ages in the decision then lag by at most the memo TTL, 1 s)."""
    view = state.carbon.view
    key = (view, policy)
    if entry is not None and entry.evaluation_key is not None and entry.evaluation is not None:
        old_view, old_policy = entry.evaluation_key
        if old_view is view and old_policy == policy:
            return entry.evaluation
    ev = evaluate(policy, counts, view, state.clock(), state.settings)
    if entry is not None:
        entry.evaluation_key, entry.evaluation = key, ev
    return ev


def _policy(state: ExtenderState, args: wire.ExtenderArgs) -> PodPolicy:
    policy = pod_policy(args.pod.annotations, state.settings.annotation_prefix)
    if policy.problems:
        state.metrics.annotation_problems.inc()
        log.warning(
            "malformed pod annotation ignored",
            extra={"pod": f"{args.pod.namespace}/{args.pod.name}", "problems": list(policy.problems)},
        )
    return policy


def _log_decision(verb: str, args: wire.ExtenderArgs, ev: Evaluation, nodes: int) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    log.debug(
        "decision",
        extra={
            "verb": verb,
            "pod": f"{args.pod.namespace}/{args.pod.name}",
            "uid": args.pod.uid,
            "nodes": nodes,
            "optOut": ev.pod.opt_out,
            "maxIntensity": ev.pod.max_intensity,
            "problems": list(ev.pod.problems),
            "meanIntensity": ev.mean_intensity,
            "zones": {
                str(z): {
                    "status": d.status,
                    "intensity": d.intensity,
                    "ageSeconds": d.age,
                    "score": d.score,
                    "passed": d.passed,
                    "reason": d.reason,
                }
                for z, d in ev.zones.items()
            },
        },
    )


NO_DATA_LOG_INTERVAL = 60.0


def _warn_no_data(state: ExtenderState, zone: str | None, decision: ZoneDecision) -> None:
    """One warning per zone and minute when candidates are scored neutrally for lack of fresh data:
    loud enough to notice a dead feed, quiet enough at hundreds of pods per second."""
    now = state.monotonic()
    last = state.no_data_logged.get(zone)
    if last is not None and now - last < NO_DATA_LOG_INTERVAL:
        return
    state.no_data_logged[zone] = now
    log.warning(
        "no fresh carbon data for zone, scoring its nodes neutrally",
        extra={
            "zone": zone,
            "status": decision.status,
            "ageSeconds": decision.age,
            "maxDataAge": state.settings.max_data_age,
            "carbonData": state.carbon.view is not None,
        },
    )


class _Timer:
    """Duration and outcome of one verb call, recorded even when the handler raises."""

    __slots__ = ("metrics", "outcome", "start", "verb")

    def __init__(self, metrics: ExtenderMetrics, verb: str) -> None:
        self.metrics, self.verb, self.outcome, self.start = metrics, verb, "error", time.perf_counter()

    def __enter__(self) -> _Timer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if isinstance(exc, ClientAborted):
            self.outcome = "aborted"  # the client hung up: not a failure of ours
        elif isinstance(exc, web.HTTPRequestTimeout):
            self.outcome = "timeout"  # the body did not arrive within --read-timeout
        elif isinstance(exc, web.HTTPClientError):
            self.outcome = "bad_request"  # e.g. a body over --max-body-bytes without Content-Length
        m = self.metrics
        m.child(m.request_duration, self.verb).observe(time.perf_counter() - self.start)
        m.child(m.requests, self.verb, self.outcome).inc()


# --- verbs ----------------------------------------------------------------------------------------


async def filter_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    with _Timer(state.metrics, "filter") as timer:
        body = await _read(request, state)
        try:
            args, entry = _parse(state, body)
            out = _filter(state, args, entry)
        except wire.WireError as exc:
            timer.outcome = "bad_request"
            return _json(wire.filter_error(str(exc)), 400)
        timer.outcome = "ok"
        return _json(out)


def _filter(state: ExtenderState, args: wire.ExtenderArgs, entry: MemoEntry | None) -> bytes:
    """The filter answer; WireError when the request's NodeList cannot be handed back."""
    policy = _policy(state, args)
    if policy.opt_out or policy.max_intensity is None:
        # Nothing can fail: answer the request's own nodes without looking at a single one.
        return wire.filter_result(args, None, {}, {})
    names, zones, counts, entry = _zones(state, args, entry)
    ev = _evaluate(state, policy, counts, entry)
    _log_decision("filter", args, ev, len(names))
    failing = {z: d for z, d in ev.zones.items() if not d.passed}
    if not failing:
        return wire.filter_result(args, None, {}, {})
    for zone, decision in failing.items():
        reason = "over_cap" if decision.status == "fresh" else "unknown_denied"
        state.metrics.child(state.metrics.nodes_filtered, reason).inc(counts[zone])
    key = {z: d.reason or "carbon policy" for z, d in failing.items()}
    if entry is not None and entry.filter_output is not None and entry.filter_key == key:
        return entry.filter_output
    # Grid intensity cannot be changed by preempting pods, so these are unresolvable.
    passed = [name for name, zone in zip(names, zones, strict=True) if zone not in key]
    unresolvable = {name: key[zone] for name, zone in zip(names, zones, strict=True) if zone in key}
    out = wire.filter_result(args, passed, {}, unresolvable)
    if entry is not None:
        entry.filter_key, entry.filter_output = key, out
    return out


async def prioritize_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    with _Timer(state.metrics, "prioritize") as timer:
        body = await _read(request, state)
        try:
            args, entry = _parse(state, body)
        except wire.WireError as exc:
            timer.outcome = "bad_request"
            return error_response(400, str(exc))
        policy = _policy(state, args)
        names, zones, counts, entry = _zones(state, args, entry)
        ev = _evaluate(state, policy, counts, entry)
        _log_decision("prioritize", args, ev, len(names))
        score_of = {z: d.score for z, d in ev.zones.items()}
        if entry is not None and entry.output is not None and entry.output_scores == score_of:
            body_out = entry.output  # same nodes, same scores: the previous answer, byte for byte
        else:
            body_out = wire.priority_list(names, list(map(score_of.__getitem__, zones)))
            if entry is not None:
                entry.output_scores, entry.output = score_of, body_out
        metrics = state.metrics
        for zone, decision in ev.zones.items():
            metrics.scores.add(decision.score, counts[zone])
            if decision.neutral:
                reason = "opt_out" if policy.opt_out else decision.status
                metrics.child(metrics.neutral, reason).inc(counts[zone])
                if reason in ("stale", "missing"):
                    _warn_no_data(state, zone, decision)
        state.decisions.put(
            args.pod.uid,
            DecisionRecord(
                {
                    z: ZoneFigures(d.intensity if d.status == "fresh" else None, d.score)
                    for z, d in ev.zones.items()
                },
                ev.mean_intensity,
            ),
            state.monotonic(),
        )
        if args.node_names is None:
            _remember_request_zones(state, names, zones)
        timer.outcome = "ok"
        return _json(body_out)


# Ten times the largest supported cluster (5,000 nodes), for name churn. With names at most 253
# characters and zones at most 63 (longer ones are refused or read as "no zone"), 50,000 entries of
# the longest kind hold 21.6 MiB (measured with tracemalloc): the map's bound in bytes too.
MAX_REQUEST_ZONES = 50_000


def _remember_request_zones(state: ExtenderState, names: list[str], zones: list[str | None]) -> None:
    """Full-Nodes mode: the node cache may not know these nodes, so /bind looks their zone up here.
    One shared map (bounded by the cluster's node count, reset past MAX_REQUEST_ZONES to survive
    name churn) instead of a copy per pending pod, which at 5,000 nodes would be 5,000 entries each."""
    if len(state.request_zones) > MAX_REQUEST_ZONES:
        state.request_zones.clear()
    state.request_zones.update(zip(names, zones, strict=True))


BIND_DISABLED = (
    "binding is not enabled on this extender (started without API access for binding); "
    "remove bindVerb from the scheduler's extender configuration"
)


async def bind_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    with _Timer(state.metrics, "bind") as timer:
        body = await _read(request, state)
        try:
            args = wire.parse_binding_args(body)
        except wire.WireError as exc:
            timer.outcome = "bad_request"
            return _json(orjson.dumps({"Error": str(exc)}), 400)
        if state.binder is None:
            state.metrics.child(state.metrics.binds, "disabled").inc()
            timer.outcome = "ok"
            return _json(wire.binding_result(BIND_DISABLED))
        record = state.decisions.pop(args.pod_uid, state.monotonic())
        zone = state.request_zones.get(args.node) or state.nodes.zone_of(args.node)
        decision = resolve(record, args.node, zone)
        now = state.clock()
        intensity = decision.intensity
        view = state.carbon.view
        if intensity is None and decision.zone is not None and view is not None:
            # No prioritize call (single feasible node): record what the node's zone is at now.
            reading = view.fresh(decision.zone, now, state.settings.max_data_age)
            intensity = reading.intensity if reading is not None else None
        annotations = None
        if state.settings.annotate_decision:
            note = {
                "zone": decision.zone,
                "intensity": intensity,
                "score": decision.score,
                "candidatesMeanIntensity": decision.mean_intensity,
                "time": format_rfc3339(now),
            }
            annotations = {state.settings.annotation_prefix + "decision": orjson.dumps(note).decode()}
        error = await _bind(state, args, annotations)
        if error is None:
            state.metrics.child(state.metrics.binds, "success").inc()
            if decision.avoided is not None:
                state.metrics.avoided.observe(decision.avoided)
            log.info(
                "bound",
                extra={
                    "pod": f"{args.pod_namespace}/{args.pod_name}",
                    "node": args.node,
                    "zone": decision.zone,
                    "intensity": intensity,
                    "meanIntensity": decision.mean_intensity,
                    "avoided": decision.avoided,
                },
            )
        else:
            state.metrics.child(state.metrics.binds, "error").inc()
            log.warning("bind failed", extra={"pod": f"{args.pod_namespace}/{args.pod_name}", "error": error})
        timer.outcome = "ok"
        return _json(wire.binding_result(error or ""))


async def _bind(
    state: ExtenderState, args: wire.BindingArgs, annotations: Mapping[str, str] | None
) -> str | None:
    assert state.binder is not None
    # No timeout here: the Binder applies --bind-timeout itself and records the outcome. A second,
    # outer timeout of the same length always fired first, so timed-out binds never reached
    # carbon_extender_bind_outcomes_total.
    try:
        return await state.binder.bind(
            args.pod_namespace, args.pod_name, args.pod_uid, args.node, annotations
        )
    except Exception as exc:
        log.exception("binder raised", extra={"pod": f"{args.pod_namespace}/{args.pod_name}"})
        return f"binding {args.pod_namespace}/{args.pod_name} to {args.node} failed: {exc}"


async def preempt_handler(request: web.Request) -> web.Response:
    state = request.app[STATE]
    with _Timer(state.metrics, "preempt") as timer:
        body = await _read(request, state)
        try:
            args = wire.parse_preemption_args(body)
        except wire.WireError as exc:
            timer.outcome = "bad_request"
            return error_response(400, str(exc))
        # Carbon data cannot be improved by evicting pods: pass the scheduler's choice through.
        timer.outcome = "ok"
        return _json(wire.preemption_result(args.victims))


async def healthz(request: web.Request) -> web.Response:
    return health_response()


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ready = state.nodes.synced
    # Missing carbon data does not make the extender unready: it scores neutrally instead, so the
    # scheduler never stalls because a carbon API is down.
    carbon = state.carbon
    return readiness_response(
        ready,
        "node cache synced" if ready else "node cache not synced yet",
        nodes=len(state.nodes),
        carbonData=carbon.view is not None,
        # Shown, not acted on: a failing source leaves the last good data (or neutral scores).
        carbonSourceFailing=carbon.failing,
        carbonSourceError=carbon.last_error if carbon.failing else None,
    )


# --- factory --------------------------------------------------------------------------------------


def create_app(
    settings: ExtenderSettings,
    nodes: NodeLookup,
    carbon: CarbonState,
    binder: Binder | None = None,
    *,
    services: Sequence[Service] = (),
    resolver: ZoneResolver | None = None,
    metrics: ExtenderMetrics | None = None,
    decisions: DecisionStore | None = None,
    clock: Callable[[], datetime] = utcnow,
    monotonic: Callable[[], float] = time.monotonic,
) -> web.Application:
    """Build the app. `services` are started in order on startup and stopped in reverse on cleanup."""
    if resolver is None:
        resolver = ZoneResolver(
            settings.zone_label, settings.region_label, load_region_map(settings.region_map_file)
        )
    state = ExtenderState(
        settings=settings,
        nodes=nodes,
        carbon=carbon,
        binder=binder,
        resolver=resolver,
        metrics=metrics or ExtenderMetrics(nodes, carbon),
        decisions=decisions or DecisionStore(),
        clock=clock,
        monotonic=monotonic,
        services=tuple(services),
    )
    app = web.Application(middlewares=[errors_middleware], client_max_size=settings.max_body_bytes)
    app[STATE] = state
    app.router.add_post("/filter", filter_handler)
    app.router.add_post("/prioritize", prioritize_handler)
    app.router.add_post("/bind", bind_handler)
    app.router.add_post("/preempt", preempt_handler)
    _add_ops_routes(app, state)
    app.cleanup_ctx.append(_services_ctx)
    return app


def create_ops_app(app: web.Application) -> web.Application:
    """GET /healthz, /readyz and /metrics of `app` (same node cache, carbon data and registry) and
    nothing else, for a second plain-HTTP listener (--metrics-port): the kubelet and Prometheus can
    reach it while the verbs stay on loopback or behind mTLS. Every other path is a JSON 404, so
    /bind is never reachable here. It starts no services: `app` owns them."""
    state = app[STATE]
    ops = web.Application(middlewares=[errors_middleware])
    ops[STATE] = state
    _add_ops_routes(ops, state)
    return ops


def _add_ops_routes(app: web.Application, state: ExtenderState) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(state.metrics.registry))


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    started: list[Service] = []
    try:
        for service in app[STATE].services:
            await service.start()
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("service stop failed", extra={"service": type(service).__name__})
