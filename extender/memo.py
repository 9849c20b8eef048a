"""The request path's memo of recently seen NodeNames lists (their zones, verdicts and encoded answers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extender.policy import Evaluation, PodPolicy
from extender.view import CarbonView


class CandidateMemo:
    """Remembers the zones of recently seen NodeNames lists.

    kube-scheduler sends the same feasible-node list for pod after pod. Looking up 5,000 zones costs
    more than parsing the request; comparing the list with the remembered one is a C-level memcmp
    per name, several times cheaper. A hit requires the *same* names in the same order (checked with
    ==, never guessed from a hash), and an entry lives at most `ttl` seconds so a node relabelled
    to another zone is seen within that time (the node cache's own watch lag is of the same order);
    the node cache's `version` (NodeLookup) changes with every update and invalidates entries at once.
    Each entry also keeps the last encoded prioritize answer, reused while the scores are unchanged.
    """

    __slots__ = ("_entries", "max_entries", "ttl")

    def __init__(self, max_entries: int = 8, ttl: float = 1.0) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: dict[tuple[int, str, str], MemoEntry] = {}

    def get(self, names: list[Any], now: float, version: int = 0) -> MemoEntry | None:
        """The entry for exactly these names. Safe on unvalidated input: a remembered list was
        validated when it was stored, so an equal list is valid too, and garbage never matches."""
        if not names:
            return None
        try:
            entry = self._entries.get((len(names), names[0], names[-1]))
        except TypeError:  # an unhashable element: not a list of names, let validation say why
            return None
        if entry is None or entry.expires < now or entry.version != version or entry.names != names:
            return None
        return entry

    def put(
        self,
        names: list[str],
        zones: list[str | None],
        counts: Mapping[str | None, int],
        now: float,
        version: int = 0,
    ) -> MemoEntry:
        entry = MemoEntry(names, zones, dict(counts), now + self.ttl, version)
        if names:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[(len(names), names[0], names[-1])] = entry
        return entry


class MemoEntry:
    """One remembered node list: its zones and counts, and the answers last computed for it."""

    __slots__ = (
        "counts",
        "evaluation",
        "evaluation_key",
        "expires",
        "filter_key",
        "filter_output",
        "names",
        "output",
        "output_scores",
        "version",
        "zones",
    )

    def __init__(
        self,
        names: list[str],
        zones: list[str | None],
        counts: dict[str | None, int],
        expires: float,
        version: int = 0,
    ) -> None:
        self.names = names
        self.zones = zones
        self.counts = counts
        self.expires = expires
        self.version = version
        self.output_scores: dict[str | None, int] | None = None
        self.output: bytes | None = None
        self.filter_key: dict[str | None, str] | None = None
        self.filter_output: bytes | None = None
        # The policy's verdict for (carbon view object, pod policy) on these nodes.
        self.evaluation_key: tuple[CarbonView | None, PodPolicy] | None = None
        self.evaluation: Evaluation | None = None
