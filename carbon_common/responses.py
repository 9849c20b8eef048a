"""The bodies every service answers with: one error body, one /healthz body, one /readyz body.

Errors are `{"error": "<what is wrong>"}` (the extender's verbs use the extender protocol's `Error`
field instead: kube-scheduler reads that one). `/healthz` is `{"status": "ok"}` while the process
serves; `/readyz` is `{"ready": <bool>, "reason": "<why>", ...details}` with 200 when ready, else 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None, *, key: str = "error"
) -> web.Response:
    return json_response({key: message}, status, headers)


def health_response() -> web.Response:
    return json_response({"status": "ok"})


def readiness_response(ready: bool, reason: str, **details: Any) -> web.Response:
    return json_response({"ready": ready, "reason": reason, **details}, 200 if ready else 503)
