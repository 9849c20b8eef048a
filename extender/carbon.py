"""The background sources of carbon data: a snapshot file watcher and an HTTP poller of carbon-feed.

Each builds a new `CarbonView` (extender.view) off the request path and swaps it into the
`CarbonState`; a bad update is logged and counted and the last good view stays, so a broken feed never
erases known data.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from pathlib import Path

import aiohttp

from carbon_common.loops import doubling, run_forever
from carbon_common.snapshot import SnapshotError, parse_snapshot
from carbon_common.tasks import cancel_and_wait
from carbon_common.timeutil import utcnow
from extender.view import CarbonState, CarbonView

log = logging.getLogger(__name__)


# Unexpected errors (a bug, not bad data) are retried after 1 s, 2 s, 4 s ... up to a minute.
UNEXPECTED_MAX_BACKOFF = 60.0


def unexpected_backoff(failures: int, base: float) -> float:
    """Delay before retrying after `failures` consecutive unexpected errors (base doubles, capped)."""
    if failures <= 0:
        return base
    return doubling(failures, max(base, 1.0), UNEXPECTED_MAX_BACKOFF)


WATCHER_FAILED = "snapshot file check failed unexpectedly, keeping last good data and retrying"


class SnapshotFileWatcher:
    """Reloads the snapshot file whenever its (inode, size, mtime) changes.

    carbon-feed replaces the file by rename, so the inode changes on every write; size and mtime catch
    editors and tests that rewrite in place. Polling (default 1 s) needs no inotify and works on every
    volume type Kubernetes mounts.
    """

    def __init__(self, path: str | os.PathLike[str], state: CarbonState, interval: float = 1.0) -> None:
        self.path = Path(path)
        self.state = state
        self.interval = interval
        self._signature: tuple[int, int, int] | None = None
        self._missing_logged = False
        self.unexpected_failures = 0
        self._task: asyncio.Task[None] | None = None

    def check(self) -> bool:
        """Reload if the file changed. Returns True when a new view was installed."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if not self._missing_logged:
                self.state.record_error(f"snapshot file unavailable: {exc}")  # counted once per outage
                log.warning(
                    "snapshot file unavailable, keeping last data",
                    extra={"path": str(self.path), "error": str(exc)},
                )
                self._missing_logged = True
            return False
        self._missing_logged = False
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            snapshot = parse_snapshot(self.path.read_bytes())
        except (OSError, SnapshotError) as exc:  # SnapshotError is a ValueError: every bad value
            self.state.record_error(str(exc))
            log.error(
                "bad snapshot file, keeping last good data", extra={"path": str(self.path), "error": str(exc)}
            )
            return False
        self.state.set(CarbonView(snapshot, utcnow(), f"file:{self.path}"))
        log.info("snapshot loaded", extra={"path": str(self.path), "zones": len(snapshot.zones)})
        return True

    def tick(self) -> None:
        """check(), surviving anything: an exception check() does not expect (a bug, a MemoryError) is
        logged with its traceback, counted, and the file is read again on a later tick, backing off
        while the failures continue."""
        try:
            self.check()
        except Exception as exc:
            self._unexpected(exc)
            extra = {"path": str(self.path), "failures": self.unexpected_failures}
            log.exception(WATCHER_FAILED, extra=extra)
        else:
            self.unexpected_failures = 0

    def _unexpected(self, exc: Exception) -> None:
        self._signature = None  # read the file again next time, even if it did not change
        self.unexpected_failures += 1
        self.state.record_error(f"{type(exc).__name__}: {exc}")

    def _delay(self) -> float:
        return unexpected_backoff(self.unexpected_failures, self.interval)

    async def _step(self) -> float:
        self.check()
        self.unexpected_failures = 0
        return self._delay()

    async def start(self) -> None:
        """The first check before returning (so start-up serves the file's data at once), then the
        background loop."""
        self.tick()
        loop = run_forever(
            self._step,
            log=log,
            message=WATCHER_FAILED,
            on_error=self._unexpected,
            backoff=lambda _: self._delay(),
            extra={"path": str(self.path)},
            pause_first=self._delay(),
        )
        self._task = asyncio.create_task(loop, name="snapshot-file-watcher")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


class FeedPoller:
    """Polls `{feed_url}/v1/snapshot` with If-None-Match; on errors retries sooner with exponential
    backoff (1 s, 2 s, 4 s ... capped at the poll interval) plus jitter, so a restarted feed is picked
    up quickly without a thundering herd."""

    def __init__(
        self,
        feed_url: str,
        state: CarbonState,
        interval: float = 30.0,
        timeout: float = 10.0,
        min_backoff: float = 1.0,
    ) -> None:
        self.url = feed_url.rstrip("/") + "/v1/snapshot"
        self.state = state
        self.interval = interval
        self.timeout = timeout
        self.min_backoff = min_backoff
        self.etag: str | None = None
        self.failures = 0
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def poll_once(self) -> bool:
        """One GET. Returns True when a new view was installed; errors are recorded, never raised."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        headers = {"Accept": "application/json"}
        if self.etag is not None:
            headers["If-None-Match"] = self.etag
        try:
            async with self._session.get(self.url, headers=headers) as response:
                if response.status == 304:
                    self.failures = 0
                    self.state.record_ok()
                    return False
                if response.status != 200:
                    raise SnapshotError(f"feed answered HTTP {response.status}")
                body = await response.read()
                etag = response.headers.get("ETag")
            snapshot = parse_snapshot(body)
        except (aiohttp.ClientError, TimeoutError, SnapshotError) as exc:
            self.failures += 1
            message = str(exc) or type(exc).__name__
            self.state.record_error(message)
            log.warning(
                "feed poll failed, keeping last good data",
                extra={"url": self.url, "error": message, "failures": self.failures},
            )
            return False
        self.failures = 0
        self.etag = etag
        self.state.set(CarbonView(snapshot, utcnow(), self.url))
        log.info("snapshot fetched", extra={"url": self.url, "zones": len(snapshot.zones)})
        return True

    def next_delay(self) -> float:
        if self.failures == 0:
            return self.interval
        backoff: float = min(self.interval, self.min_backoff * 2.0 ** (self.failures - 1))
        return backoff * random.uniform(0.8, 1.2)

    def _unexpected(self, exc: Exception) -> None:
        # Not a feed error poll_once knows (those are recorded there): a bug or a surprise from the
        # client stack. Counted with the feed's errors, so the retry backs off the same way.
        self.failures += 1
        self.state.record_error(f"{type(exc).__name__}: {exc}")

    async def _step(self) -> float:
        await self.poll_once()
        return self.next_delay()

    async def start(self) -> None:
        loop = run_forever(
            self._step,
            log=log,
            message="feed poll failed unexpectedly, keeping last good data and retrying",
            on_error=self._unexpected,
            backoff=lambda _: self.next_delay(),
            extra={"url": self.url},
        )
        self._task = asyncio.create_task(loop, name="feed-poller")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
