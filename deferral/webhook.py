"""Mutating admission webhook: add the green-window scheduling gate to pods that opted in.

The webhook must never stand in the way of a pod: every error or unexpected object is answered
``allowed: true`` (with the request's uid, and a warning when something went wrong); a body that is not
an AdmissionReview (``admission.k8s.io/v1`` or ``v1beta1``, answered in the version received) gets a
400 with a JSON ``error`` (and the MutatingWebhookConfiguration uses
``failurePolicy: Ignore`` with a short ``timeoutSeconds`` so the API server also admits pods when the
webhook is down or slow). Which namespaces are in scope is the configuration's ``namespaceSelector``
(``carbon-aware.io/deferral=enabled``); here we only look at the pod.

Pods whose annotations are present but invalid are still gated and get an admission warning
(``kubectl`` prints it): the controller then reports the problem as an Event on the pod and releases it
at once, so the explanation lands where users look, and a pod never waits for a mistake.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from carbon_common.responses import error_response
from carbon_common.serving import ClientAborted, ServingLimits, read_body
from carbon_common.timeutil import utcnow
from deferral.annotations import (
    DEADLINE,
    DURATION,
    EARLIEST_START,
    GATE,
    MAX_DELAY,
    PREFIX,
    InvalidDeferral,
    parse_spec,
    wants_deferral,
)
from deferral.metrics import DeferralMetrics

log = logging.getLogger(__name__)

READ_TIMEOUT = ServingLimits().read_timeout
"""Seconds for a review's body to arrive (the API server sends it at once; a slow one gets 408)."""

_OWN = (DURATION, DEADLINE, MAX_DELAY, EARLIEST_START)
"""The annotations a user sets to ask for deferral (``plan`` is ours)."""

MAX_REVIEW_BYTES = 3 * 1024 * 1024
"""The API server caps objects at ~1.5 MiB; an AdmissionReview carries at most two copies of one."""


def gate_patch(pod: Mapping[str, Any], prefix: str = PREFIX, gate: str = GATE) -> list[dict[str, Any]]:
    """JSONPatch ops that add the gate, or [] when the pod did not opt in or already has it.

    Idempotent (a reinvoked webhook, or a user who added the gate, gets no second gate) and never
    touches a pod that already names a node (the API server forbids gates on bound pods).
    """
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    if not isinstance(metadata, Mapping) or not isinstance(spec, Mapping):
        return []
    annotations = metadata.get("annotations")
    if not isinstance(annotations, Mapping) or not wants_deferral(annotations, prefix):
        return []
    if spec.get("nodeName"):
        return []
    gates = spec.get("schedulingGates")
    if not gates:
        return [{"op": "add", "path": "/spec/schedulingGates", "value": [{"name": gate}]}]
    if not isinstance(gates, list):
        return []
    if any(isinstance(g, Mapping) and g.get("name") == gate for g in gates):
        return []
    return [{"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": gate}}]


API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
"""Both carry the same request and response fields; the answer is written in the version received."""


class NotAReview(ValueError):
    """The body is not an AdmissionReview request we can answer (no uid to answer to)."""


def _envelope(review: Any) -> tuple[str, Mapping[str, Any], str]:
    """(apiVersion, request, uid) of an AdmissionReview request; NotAReview saying what is wrong."""
    if not isinstance(review, Mapping):
        raise NotAReview("body is not a JSON object")
    if review.get("kind") != "AdmissionReview":
        raise NotAReview(f"kind must be AdmissionReview, got {review.get('kind')!r}")
    version = review.get("apiVersion")
    if version not in API_VERSIONS:
        raise NotAReview(f"apiVersion must be one of {', '.join(API_VERSIONS)}, got {version!r}")
    request = review.get("request")
    if not isinstance(request, Mapping):
        raise NotAReview("AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise NotAReview("AdmissionReview request has no uid")
    return str(version), request, uid


def review_response(review: Any, prefix: str = PREFIX, gate: str = GATE) -> tuple[dict[str, Any], str]:
    """The AdmissionReview answer for one request, and what we did (for metrics and logs).

    Outcomes: ``gated``, ``skipped`` (not opted in / already gated / not a pod create), ``error``.
    Raises `NotAReview` when there is no request to answer; past that point every answer carries the
    request's uid, so the API server always reads it (an answer without the uid is discarded, and
    ``failurePolicy: Ignore`` then admits the pod ungated without a word).
    """
    version, request, uid = _envelope(review)
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    answer = {"apiVersion": version, "kind": "AdmissionReview", "response": response}
    try:
        outcome = _mutate(request, response, prefix, gate)
    except Exception as error:  # a bug: admit unchanged, but say so where the user looks
        log.exception("admission review failed, allowing the pod without the gate", extra={"uid": uid})
        response.pop("patch", None)
        response.pop("patchType", None)
        response["warnings"] = [
            f"carbon-aware deferral webhook failed, the pod is not deferred: {error!r}"[:250]
        ]
        return answer, "error"
    return answer, outcome


def _mutate(request: Mapping[str, Any], response: dict[str, Any], prefix: str, gate: str) -> str:
    kind = request.get("kind") or {}
    pod = request.get("object")
    if (
        request.get("operation") != "CREATE"
        or not isinstance(kind, Mapping)
        or kind.get("kind") != "Pod"
        or not isinstance(pod, Mapping)
    ):
        return "skipped"
    ops = gate_patch(pod, prefix, gate)
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping):
        annotations = {}
    if not ops:
        if not wants_deferral(annotations, prefix) and any(prefix + key in annotations for key in _OWN):
            # Half an opt-in is a mistake, not a choice: say so rather than start the pod unannounced.
            response["warnings"] = [
                f"carbon-aware deferral ignored, the pod starts at once: it needs {prefix}{DURATION} and "
                f"{prefix}{DEADLINE} or {prefix}{MAX_DELAY}"
            ]
        return "skipped"
    try:
        # The pod has no creationTimestamp yet at admission: now is what the API server will stamp.
        parse_spec(annotations, created=utcnow(), prefix=prefix)
    except InvalidDeferral as error:
        # Still gated: the controller releases it at once with a CarbonInvalid Event on the pod, so the
        # explanation stays visible after kubectl's output is gone. The API server may truncate
        # warnings over 256 characters; keep ours whole.
        response["warnings"] = [f"carbon-aware deferral ignored, the pod starts at once: {error}"[:250]]
    response["patchType"] = "JSONPatch"
    response["patch"] = base64.b64encode(orjson.dumps(ops)).decode()
    return "gated"


KEY_METRICS = web.AppKey("deferral_webhook_metrics", DeferralMetrics)
KEY_PREFIX = web.AppKey("deferral_webhook_prefix", str)


def _reject(metrics: DeferralMetrics, message: str, status: int = 400) -> web.Response:
    # Nothing to answer to (no uid): the API server would discard any AdmissionReview we sent. A 400
    # with the reason makes the cause obvious in its logs; failurePolicy decides what happens next.
    log.warning("not an admission review", extra={"error": message})
    metrics.admissions.labels(outcome="error").inc()
    return error_response(status, message)


async def handle_mutate(request: web.Request) -> web.Response:
    metrics = request.app[KEY_METRICS]
    if request.content_length is not None and request.content_length > MAX_REVIEW_BYTES:
        return _reject(metrics, f"body of {request.content_length} bytes exceeds {MAX_REVIEW_BYTES}", 413)
    try:
        body = await read_body(request, READ_TIMEOUT)
    except ClientAborted as error:
        # Nobody is left to answer and nothing is wrong here: not an ERROR traceback (issue 12 item 4).
        log.debug("client closed the connection mid-review", extra={"error": str(error)})
        metrics.admissions.labels(outcome="aborted").inc()
        return web.Response(status=400)
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return _reject(metrics, f"body is not JSON: {error}")
    try:
        answer, outcome = review_response(review, request.app[KEY_PREFIX])
    except NotAReview as error:
        return _reject(metrics, str(error))
    metrics.admissions.labels(outcome=outcome).inc()
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def add_webhook_routes(app: web.Application, metrics: DeferralMetrics, prefix: str = PREFIX) -> None:
    app[KEY_METRICS] = metrics
    app[KEY_PREFIX] = prefix
    app.router.add_post("/mutate", handle_mutate)
