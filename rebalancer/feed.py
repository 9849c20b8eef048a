"""Client of the feed's ``/v1/snapshot``: current readings and their forecasts.

Every failure (feed down, slow, not 200, body not a snapshot) comes back as ``None`` with the reason
logged and counted, never as an exception: the controller records "no data" for that run, which
breaks every sustained streak, so nothing moves on missing data.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from carbon_common.snapshot import Snapshot, SnapshotError, parse_snapshot
from rebalancer.metrics import RebalancerMetrics

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024


class SnapshotClient:
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, metrics: RebalancerMetrics, timeout: float
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/v1/snapshot"
        self._metrics = metrics
        self._timeout = timeout

    async def snapshot(self) -> Snapshot | None:
        try:
            snapshot = await self._fetch()
        except _Failed as failure:
            self._metrics.feed_requests.labels(outcome=failure.outcome).inc()
            log.warning("cannot read the feed's snapshot", extra={"url": self._url, "reason": failure.reason})
            return None
        self._metrics.feed_requests.labels(outcome="ok").inc()
        return snapshot

    async def _fetch(self) -> Snapshot:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.get(self._url) as resp:
                    if resp.status != 200:
                        raise _Failed("status", f"HTTP {resp.status}")
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(65536):
                        body += chunk
                        if len(body) > MAX_BODY:
                            raise _Failed("invalid", f"body over {MAX_BODY} bytes")
            return parse_snapshot(bytes(body))
        except TimeoutError:
            raise _Failed("timeout", f"no answer within {self._timeout:g}s") from None
        except aiohttp.ClientError as error:
            raise _Failed("unreachable", repr(error)) from None
        except SnapshotError as error:
            raise _Failed("invalid", str(error)) from None


class _Failed(Exception):
    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
