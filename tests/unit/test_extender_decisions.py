"""The per-pod decision store between prioritize and bind."""

from __future__ import annotations

from extender.decisions import DecisionRecord, DecisionStore, ZoneFigures, resolve

REC = DecisionRecord({"SE": ZoneFigures(20.0, 10), "DE": ZoneFigures(420.0, 0)}, 220.0)


def test_put_get_and_ttl() -> None:
    store = DecisionStore(ttl=10.0)
    store.put("u1", REC, now=0.0)
    assert store.get("u1", now=5.0) is REC
    assert store.get("u1", now=11.0) is None
    assert len(store) == 0


def test_bounded_oldest_first() -> None:
    store = DecisionStore(max_entries=2, ttl=100.0)
    for i in range(3):
        store.put(f"u{i}", REC, now=float(i))
    assert store.get("u0", 3.0) is None
    assert store.get("u2", 3.0) is REC
    assert len(store) == 2


def test_put_expires_old_entries() -> None:
    store = DecisionStore(ttl=1.0)
    store.put("old", REC, now=0.0)
    store.put("new", REC, now=5.0)
    assert len(store) == 1


def test_empty_uid_is_not_stored() -> None:
    store = DecisionStore()
    store.put("", REC, 0.0)
    assert len(store) == 0


def test_pop_removes() -> None:
    store = DecisionStore()
    store.put("u", REC, 0.0)
    assert store.pop("u", 1.0) is REC
    assert store.get("u", 1.0) is None


def test_resolve_avoided_against_mean() -> None:
    bound = resolve(REC, "n1", "SE")
    assert (bound.zone, bound.intensity, bound.score) == ("SE", 20.0, 10)
    assert bound.avoided == 200.0
    assert resolve(REC, "n2", "DE").avoided == -200.0


def test_resolve_handles_missing_record_and_zone() -> None:
    assert resolve(None, "n1", "SE").avoided is None
    assert resolve(REC, "n1", "XX").intensity is None
    assert resolve(REC, "n1", None).zone is None
