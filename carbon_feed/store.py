"""History of readings and forecasts in SQLite (stdlib sqlite3, WAL).

Why these choices:
- WAL + synchronous=NORMAL: readers never block the writer, and a crash (even SIGKILL) loses at most
  the last committed transactions, never consistency; every batch is one transaction.
- Rows are keyed on (provider, zone, signal, start) for observations and additionally on issued_at for
  forecasts. ``revision`` is the provider's own update time (else our fetch time): a newer revision
  overwrites a row, an older one does not (providers revise values for months; a late retry of an old
  response must not undo a newer one).
- A small ``latest`` table, maintained in the same transaction, answers "latest per zone" in O(zones).
- sqlite3 calls block: every public coroutine runs them on one dedicated thread, which also serialises
  writes without any locking of our own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from carbon_feed.model import Reading, SignalKind

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    provider TEXT NOT NULL, zone TEXT NOT NULL, signal TEXT NOT NULL, start INTEGER NOT NULL,
    period INTEGER NOT NULL, value REAL NOT NULL, estimated INTEGER NOT NULL,
    revised_at INTEGER, revision INTEGER NOT NULL, fetched_at INTEGER NOT NULL,
    PRIMARY KEY (provider, zone, signal, start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_zone_start ON readings (zone, start);
CREATE TABLE IF NOT EXISTS forecasts (
    provider TEXT NOT NULL, zone TEXT NOT NULL, signal TEXT NOT NULL, start INTEGER NOT NULL,
    issued_at INTEGER NOT NULL, period INTEGER NOT NULL, value REAL NOT NULL,
    revised_at INTEGER, revision INTEGER NOT NULL, fetched_at INTEGER NOT NULL,
    PRIMARY KEY (provider, zone, signal, start, issued_at)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS forecasts_issued ON forecasts (issued_at);
CREATE TABLE IF NOT EXISTS latest (
    provider TEXT NOT NULL, zone TEXT NOT NULL, signal TEXT NOT NULL, start INTEGER NOT NULL,
    period INTEGER NOT NULL, value REAL NOT NULL, estimated INTEGER NOT NULL, revised_at INTEGER,
    revision INTEGER NOT NULL,
    PRIMARY KEY (provider, zone, signal)
) WITHOUT ROWID;
"""

_UPSERT_READING = """
INSERT INTO readings VALUES (?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (provider, zone, signal, start) DO UPDATE SET
    period=excluded.period, value=excluded.value, estimated=excluded.estimated,
    revised_at=excluded.revised_at, revision=excluded.revision, fetched_at=excluded.fetched_at
WHERE excluded.revision >= readings.revision
"""
_UPSERT_LATEST = """
INSERT INTO latest VALUES (?,?,?,?,?,?,?,?,?)
ON CONFLICT (provider, zone, signal) DO UPDATE SET
    start=excluded.start, period=excluded.period, value=excluded.value, estimated=excluded.estimated,
    revised_at=excluded.revised_at, revision=excluded.revision
WHERE excluded.start > latest.start
   OR (excluded.start = latest.start AND excluded.revision >= latest.revision)
"""
_UPSERT_FORECAST = """
INSERT INTO forecasts VALUES (?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (provider, zone, signal, start, issued_at) DO UPDATE SET
    period=excluded.period, value=excluded.value, revised_at=excluded.revised_at,
    revision=excluded.revision, fetched_at=excluded.fetched_at
WHERE excluded.revision >= forecasts.revision
"""


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _dt(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class ForecastPair:
    """A past forecast and the actual value observed later for the same period."""

    zone: str
    lead_seconds: int
    forecast: float
    actual: float


class Store:
    """SQLite history. Sync methods (suffix-less) run on the caller's thread; `a*` coroutines on the
    store's own thread. Use one or the other per instance: the service uses the coroutines only."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-store")
        self._db: sqlite3.Connection | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the connection is only ever used from one thread at a time
        # (either the caller's, or our single worker thread).
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def aopen(self) -> None:
        await self._run(self.open)

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread; safe to call twice or before aopen."""
        if self._closed:
            return
        self._closed = True
        await self._run(self.close)
        self._executor.shutdown(wait=True)

    # -- writes ----------------------------------------------------------------------------------
    def put(self, readings: Iterable[Reading], fetched_at: datetime) -> int:
        """Upsert observations and forecasts in one transaction; returns how many rows were written."""
        fetched = _ts(fetched_at)
        obs: list[tuple[object, ...]] = []
        fc: list[tuple[object, ...]] = []
        for r in readings:
            revised = _ts(r.revised_at) if r.revised_at else None
            revision = revised if revised is not None else fetched
            if r.forecast:
                issued = _ts(r.issued_at or fetched_at)
                fc.append(
                    (r.provider, r.zone, r.signal, _ts(r.start), issued, r.period_seconds, r.value, revised,
                     revision, fetched)
                )  # fmt: skip
            else:
                obs.append(
                    (r.provider, r.zone, r.signal, _ts(r.start), r.period_seconds, r.value, int(r.estimated),
                     revised, revision, fetched)
                )  # fmt: skip
        db = self.db
        before = db.total_changes
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_UPSERT_READING, obs)
            written = db.total_changes - before
            db.executemany(_UPSERT_LATEST, [row[:7] + row[7:9] for row in obs])
            mark = db.total_changes
            db.executemany(_UPSERT_FORECAST, fc)
            written += db.total_changes - mark
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return written

    def prune(self, now: datetime, retention: timedelta) -> int:
        """Delete history older than the retention window, and zones not heard of within it."""
        cutoff = _ts(now - retention)
        db = self.db
        before = db.total_changes
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM readings WHERE start < ?", (cutoff,))
            db.execute("DELETE FROM forecasts WHERE start < ?", (cutoff,))
            db.execute("DELETE FROM latest WHERE start < ?", (cutoff,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db.total_changes - before

    # -- reads -----------------------------------------------------------------------------------
    def latest(self) -> list[Reading]:
        """The newest observation per (provider, zone, signal)."""
        rows = self.db.execute(
            "SELECT provider, zone, signal, start, period, value, estimated, revised_at FROM latest"
        ).fetchall()
        return [
            Reading(p, z, s, _dt(st), per, v, bool(est), _dt(rev) if rev is not None else None)
            for p, z, s, st, per, v, est, rev in rows
        ]

    def history(
        self, zone: str, start: datetime, end: datetime, signal: SignalKind | None = None
    ) -> list[Reading]:
        """Observations for `zone` with start in [start, end), oldest first."""
        query = (
            "SELECT provider, zone, signal, start, period, value, estimated, revised_at FROM readings "
            "WHERE zone = ? AND start >= ? AND start < ?"
        )
        args: list[object] = [zone, _ts(start), _ts(end)]
        if signal is not None:
            query += " AND signal = ?"
            args.append(signal)
        rows = self.db.execute(query + " ORDER BY start, provider", args).fetchall()
        return [
            Reading(p, z, s, _dt(st), per, v, bool(est), _dt(rev) if rev is not None else None)
            for p, z, s, st, per, v, est, rev in rows
        ]

    def forecast(self, provider: str, zone: str, signal: SignalKind, since: datetime) -> list[Reading]:
        """For each future period, the most recently issued forecast value (start >= since)."""
        rows = self.db.execute(
            "SELECT start, period, value, MAX(issued_at) FROM forecasts "
            "WHERE provider = ? AND zone = ? AND signal = ? AND start >= ? GROUP BY start ORDER BY start",
            (provider, zone, signal, _ts(since)),
        ).fetchall()
        return [
            Reading(provider, zone, signal, _dt(st), per, v, True, None, True, _dt(issued))
            for st, per, v, issued in rows
        ]

    def forecast_pairs(self, forecaster: str, actual_provider: str, since: datetime) -> list[ForecastPair]:
        """Forecasts by `forecaster` issued since `since`, joined with the actuals observed later."""
        rows = self.db.execute(
            "SELECT f.zone, f.start - f.issued_at, f.value, r.value FROM forecasts f "
            "JOIN readings r ON r.provider = ? AND r.zone = f.zone AND r.signal = f.signal "
            "AND r.start = f.start WHERE f.provider = ? AND f.issued_at >= ?",
            (actual_provider, forecaster, _ts(since)),
        ).fetchall()
        return [ForecastPair(z, lead, fv, av) for z, lead, fv, av in rows]

    def counts(self) -> tuple[int, int]:
        """(rows in readings + forecasts, bytes of the database and its WAL on disk)."""
        (rows,) = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM readings) + (SELECT COUNT(*) FROM forecasts)"
        ).fetchone()
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += os.stat(f"{self.path}{suffix}").st_size
        return int(rows), size

    def integrity_check(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    # -- async facade ----------------------------------------------------------------------------
    async def aput(self, readings: Sequence[Reading], fetched_at: datetime) -> int:
        return await self._run(self.put, readings, fetched_at)

    async def aprune(self, now: datetime, retention: timedelta) -> int:
        return await self._run(self.prune, now, retention)

    async def alatest(self) -> list[Reading]:
        return await self._run(self.latest)

    async def ahistory(
        self, zone: str, start: datetime, end: datetime, signal: SignalKind | None = None
    ) -> list[Reading]:
        return await self._run(self.history, zone, start, end, signal)

    async def aforecast(self, provider: str, zone: str, signal: SignalKind, since: datetime) -> list[Reading]:
        return await self._run(self.forecast, provider, zone, signal, since)

    async def aforecast_pairs(
        self, forecaster: str, actual_provider: str, since: datetime
    ) -> list[ForecastPair]:
        return await self._run(self.forecast_pairs, forecaster, actual_provider, since)

    async def acounts(self) -> tuple[int, int]:
        return await self._run(self.counts)
