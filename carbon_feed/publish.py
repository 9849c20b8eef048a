"""Publishing a rebuilt view: the snapshot file the extender reads, and the gauges Prometheus scrapes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from carbon_common.snapshot import Snapshot, write_snapshot_atomic
from carbon_feed.config import ConfigError
from carbon_feed.forecast import LEAD_BUCKETS
from carbon_feed.metrics import FeedMetrics
from carbon_feed.model import Reading
from carbon_feed.view import FeedState, ZoneView

log = logging.getLogger(__name__)


def check_snapshot_file(path: str | None) -> None:
    """The extender reads this file: a path the feed can never write is a configuration error at
    start, not an error logged after every refresh while the extender scores nodes neutrally."""
    if not path:
        return
    key = "snapshot_file (--snapshot-file, CARBON_FEED_SNAPSHOT_FILE)"
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot create {target.parent}: {exc.strerror}") from None
    if target.is_dir():
        raise ConfigError(f"{key}: {target} is a directory")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot write to {target.parent}")


class SnapshotPublisher:
    """Writes the snapshot file (when configured) and sets the view's gauges."""

    def __init__(self, path: str | None, metrics: FeedMetrics) -> None:
        self.path = path
        self.metrics = metrics

    async def publish(self, state: FeedState, now: datetime) -> None:
        if state.snapshot is not None:
            await self.write(state.snapshot)
        self.update_metrics(state.zones, state.indexes, now)

    async def write(self, snapshot: Snapshot) -> None:
        path = self.path
        if not path:
            return
        try:
            await asyncio.to_thread(write_snapshot_atomic, path, snapshot)
        except Exception as exc:
            # A full or read-only volume must not stop the feed: /v1/snapshot still serves it, and
            # the next rebuild writes again.
            self.metrics.snapshot_writes.labels("error").inc()
            log.error("snapshot write failed", extra={"path": path, "error": f"{type(exc).__name__}: {exc}"})
            return
        self.metrics.snapshot_writes.labels("ok").inc()

    def update_metrics(
        self, zones: Mapping[str, ZoneView], indexes: Mapping[str, Reading], now: datetime
    ) -> None:
        m = self.metrics
        m.snapshot_zones.set(sum(1 for v in zones.values() if v.fresh))
        for zone, view in zones.items():
            m.intensity.labels(zone, view.reading.signal).set(view.reading.value)
            for label, bound in LEAD_BUCKETS:
                target = now + timedelta(seconds=bound)
                point = next((p for p in view.forecast if p.start <= target < p.end), None)
                if point is not None:
                    m.forecast.labels(zone, label).set(point.intensity)
        for zone, reading in indexes.items():
            m.index.labels(zone).set(reading.value)
