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


def test_bounded_by_bytes_as_well_as_entries() -> None:
    # issue 12 item 2: a request decides how many zones a record holds; entries alone do not bound
    # memory (10,000 records of 5,000 zones would be gigabytes).
    wide = DecisionRecord({f"Z{i:060d}": ZoneFigures(1.0, 5) for i in range(5000)}, 1.0)
    store = DecisionStore(max_entries=10_000, ttl=100.0, max_bytes=4 * 2**20)
    for i in range(100):
        store.put(f"u{i}", wide, now=0.0)
    assert store.bytes <= 4 * 2**20
    assert 0 < len(store) < 100
    assert store.get("u99", 0.0) is wide  # the newest stay, the oldest went
    assert store.get("u0", 0.0) is None
    store.pop("u99", 0.0)
    store.put("small", REC, now=0.0)
    assert store.get("small", 0.0) is REC


def test_bytes_are_released_on_pop_expiry_and_replace() -> None:
    store = DecisionStore(ttl=1.0)
    store.put("u", REC, now=0.0)
    store.put("u", REC, now=0.0)  # replaced, not counted twice
    one = store.bytes
    assert one > 0
    store.put("v", REC, now=0.0)
    assert store.bytes == 2 * one
    store.pop("u", 0.0)
    assert store.bytes == one
    store.expire(5.0)
    assert (len(store), store.bytes) == (0, 0)


def test_a_record_over_the_whole_budget_is_not_kept() -> None:
    store = DecisionStore(max_bytes=1000)
    store.put("u", REC, now=0.0)
    huge = DecisionRecord({f"Z{i}": ZoneFigures(1.0, 5) for i in range(100)}, 1.0)
    store.put("h", huge, now=0.0)
    assert store.get("h", 0.0) is None
    assert store.get("u", 0.0) is REC
