"""The SQLite history: restarts keep data, newer revisions overwrite and older ones do not, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from carbon_feed.model import Reading
from carbon_feed.store import Store

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)


def obs(value: float, start: datetime = T0, revised: datetime | None = None, zone: str = "DE") -> Reading:
    return Reading("em", zone, "average", start, 3600, value, revised_at=revised)


def fc(value: float, start: datetime, issued: datetime, provider: str = "em") -> Reading:
    return Reading(provider, "DE", "average", start, 3600, value, True, None, True, issued)


def open_store(path: Path) -> Store:
    store = Store(path)
    store.open()
    return store


def test_restart_keeps_history_and_latest(tmp_path: Path) -> None:
    db = tmp_path / "feed.sqlite"
    store = open_store(db)
    store.put([obs(300, T0), obs(310, T0 + H), obs(55, T0, zone="FR")], T0)
    store.close()
    again = open_store(db)
    latest = {(r.zone, r.start): r.value for r in again.latest()}
    assert latest == {("DE", T0 + H): 310, ("FR", T0): 55}
    assert [r.value for r in again.history("DE", T0, T0 + 2 * H)] == [300, 310]
    assert again.integrity_check() == "ok"
    again.close()


def test_newer_revision_overwrites_older_does_not(tmp_path: Path) -> None:
    store = open_store(tmp_path / "feed.sqlite")
    store.put([obs(100, revised=T0 + 2 * H)], T0 + 2 * H)
    # A late retry of an older response must not undo the newer revision.
    store.put([obs(50, revised=T0 + H)], T0 + 3 * H)
    assert [r.value for r in store.history("DE", T0, T0 + H)] == [100]
    assert [r.value for r in store.latest()] == [100]
    store.put([obs(70, revised=T0 + 3 * H)], T0 + 3 * H)
    assert [r.value for r in store.history("DE", T0, T0 + H)] == [70]
    assert [(r.value, r.revised_at) for r in store.latest()] == [(70, T0 + 3 * H)]
    store.close()


def test_without_revision_times_the_later_fetch_wins(tmp_path: Path) -> None:
    store = open_store(tmp_path / "feed.sqlite")
    store.put([obs(100)], T0 + H)
    store.put([obs(120)], T0 + 2 * H)
    store.put([obs(90)], T0 + H / 2)  # fetched earlier, written late: ignored
    assert [r.value for r in store.history("DE", T0, T0 + H)] == [120]
    store.close()


def test_latest_moves_forward_only(tmp_path: Path) -> None:
    store = open_store(tmp_path / "feed.sqlite")
    store.put([obs(1, T0 + 2 * H)], T0)
    store.put([obs(2, T0)], T0 + H)  # backfilled history, not the latest
    assert [(r.start, r.value) for r in store.latest()] == [(T0 + 2 * H, 1)]
    store.close()


def test_retention_deletes_old_history_and_forgotten_zones(tmp_path: Path) -> None:
    store = open_store(tmp_path / "feed.sqlite")
    old = T0 - timedelta(days=40)
    store.put([obs(1, old), fc(2, old, old - H), obs(9, old, zone="XX")], old)
    store.put([obs(3, T0), fc(4, T0 + H, T0)], T0)
    store.prune(T0, timedelta(days=30))
    assert [r.value for r in store.history("DE", old - H, T0 + H)] == [3]
    assert store.history("XX", old - H, T0 + H) == []
    assert store.counts()[0] == 2
    # DE's latest is recent and stays; XX was last heard of 40 days ago and is gone
    assert [(r.zone, r.value) for r in store.latest()] == [("DE", 3)]
    store.close()


def test_forecast_returns_the_most_recent_issue_per_period(tmp_path: Path) -> None:
    store = open_store(tmp_path / "feed.sqlite")
    store.put([fc(200, T0 + H, T0 - H), fc(210, T0 + 2 * H, T0 - H)], T0)
    store.put([fc(205, T0 + H, T0)], T0)
    points = store.forecast("em", "DE", "average", T0)
    assert [(p.start, p.value, p.issued_at) for p in points] == [
        (T0 + H, 205, T0),
        (T0 + 2 * H, 210, T0 - H),
    ]
    store.close()


def test_forecast_pairs_join_forecasts_with_later_actuals(tmp_path: Path) -> None:
    store = open_store(tmp_path / "feed.sqlite")
    store.put([fc(110, T0 + H, T0, provider="baseline"), fc(90, T0 + 3 * H, T0, provider="baseline")], T0)
    store.put([obs(100, T0 + H)], T0 + 2 * H)
    pairs = store.forecast_pairs("baseline", "em", T0 - H)
    assert [(p.lead_seconds, p.forecast, p.actual) for p in pairs] == [(3600, 110, 100)]
    store.close()


async def test_async_facade_runs_off_the_loop(tmp_path: Path) -> None:
    store = Store(tmp_path / "feed.sqlite")
    await store.aopen()
    assert await store.aput([obs(1), fc(2, T0 + H, T0)], T0) == 2
    rows, size = await store.acounts()
    assert rows == 2
    assert size > 0
    assert [r.value for r in await store.alatest()] == [1]
    await store.aclose()
