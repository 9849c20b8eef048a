"""The candidate memo: a hit only for the identical node list, within its TTL and node-cache version."""

from __future__ import annotations

from extender.memo import CandidateMemo


def test_memo_hits_only_the_identical_list_within_ttl() -> None:
    memo = CandidateMemo(max_entries=2, ttl=1.0)
    names = ["a", "b", "c"]
    entry = memo.put(names, ["DE", None, "FR"], {"DE": 1, None: 1, "FR": 1}, now=0.0)
    assert memo.get(["a", "b", "c"], 0.5) is entry
    assert memo.get(["a", "x", "c"], 0.5) is None  # same length and ends, different middle
    assert memo.get(["a", "b", "c"], 1.5) is None  # expired
    assert memo.get([], 0.0) is None
    assert memo.get([{"not": "hashable"}, "c"], 0.0) is None
    memo.put(["d"], ["PL"], {"PL": 1}, 0.0)
    memo.put(["e"], ["PL"], {"PL": 1}, 0.0)
    assert memo.get(names, 0.1) is None  # evicted (oldest first)


def test_memo_entry_dies_with_a_new_node_cache_version() -> None:
    memo = CandidateMemo(ttl=60.0)
    memo.put(["a"], ["DE"], {"DE": 1}, now=0.0, version=7)
    assert memo.get(["a"], 1.0, version=7) is not None
    assert memo.get(["a"], 1.0, version=8) is None
