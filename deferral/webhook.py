"""Mutating admission webhook: add the green-window scheduling gate to pods that opted in.

The webhook must never stand in the way of a pod: every error, malformed review or unexpected object is
answered ``allowed: true`` without a patch (and the MutatingWebhookConfiguration uses
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

from carbon_common.timeutil import utcnow
from deferral.annotations import GATE, PREFIX, InvalidDeferral, parse_spec, wants_deferral
from deferral.metrics import DeferralMetrics

log = logging.getLogger(__name__)

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


def review_response(review: Any, prefix: str = PREFIX, gate: str = GATE) -> tuple[dict[str, Any], str]:
    """The AdmissionReview answer for one request, and what we did (for metrics and logs).

    Outcomes: ``gated``, ``skipped`` (not opted in / already gated / not a pod create), ``error``.
    """
    request = review.get("request") if isinstance(review, Mapping) else None
    uid = request.get("uid") if isinstance(request, Mapping) else None
    response: dict[str, Any] = {"uid": uid if isinstance(uid, str) else "", "allowed": True}
    answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    if not isinstance(request, Mapping) or not isinstance(uid, str):
        return answer, "error"
    kind = request.get("kind") or {}
    pod = request.get("object")
    if (
        request.get("operation") != "CREATE"
        or not isinstance(kind, Mapping)
        or kind.get("kind") != "Pod"
        or not isinstance(pod, Mapping)
    ):
        return answer, "skipped"
    ops = gate_patch(pod, prefix, gate)
    if not ops:
        return answer, "skipped"
    response["patchType"] = "JSONPatch"
    response["patch"] = base64.b64encode(orjson.dumps(ops)).decode()
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        # The pod has no creationTimestamp yet at admission: now is what the API server will stamp.
        parse_spec(annotations, created=utcnow(), prefix=prefix)
    except InvalidDeferral as error:
        # The API server may truncate warnings over 256 characters; keep ours whole.
        response["warnings"] = [f"carbon-aware deferral ignored, the pod starts at once: {error}"[:250]]
    return answer, "gated"


KEY_METRICS = web.AppKey("deferral_webhook_metrics", DeferralMetrics)
KEY_PREFIX = web.AppKey("deferral_webhook_prefix", str)


async def handle_mutate(request: web.Request) -> web.Response:
    metrics = request.app[KEY_METRICS]
    outcome = "error"
    try:
        if request.content_length is not None and request.content_length > MAX_REVIEW_BYTES:
            raise ValueError(f"body of {request.content_length} bytes exceeds {MAX_REVIEW_BYTES}")
        review = orjson.loads(await request.read())
        answer, outcome = review_response(review, request.app[KEY_PREFIX])
    except Exception as error:  # never block admission: answer "allowed" whatever went wrong
        log.warning("admission review failed, allowing unchanged", extra={"error": repr(error)})
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": "", "allowed": True},
        }
        # A body we cannot parse has no uid the API server could match: it rejects the answer and
        # failurePolicy Ignore admits the pod. 400 makes the cause obvious in its logs.
        metrics.admissions.labels(outcome="error").inc()
        return web.Response(status=400, body=orjson.dumps(answer), content_type="application/json")
    metrics.admissions.labels(outcome=outcome).inc()
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def add_webhook_routes(app: web.Application, metrics: DeferralMetrics, prefix: str = PREFIX) -> None:
    app[KEY_METRICS] = metrics
    app[KEY_PREFIX] = prefix
    app.router.add_post("/mutate", handle_mutate)
