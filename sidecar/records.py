"""Bounded in-memory decision records, so ``Explain`` can return a recent decision by id."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from sidecar.model import DecisionResult

__all__ = ["DecisionRecords"]


class DecisionRecords:
    """Keeps the newest ``max_entries`` decisions for at most ``ttl_s`` seconds (typing.DecisionStore)."""

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        # Insertion order is age order, so eviction of the oldest is O(1).
        self._items: OrderedDict[str, tuple[float, DecisionResult]] = OrderedDict()

    def put(self, result: DecisionResult) -> None:
        """Store ``result``, evicting the oldest record when full."""
        self._items[result.decision_id] = (self._clock(), result)
        self._items.move_to_end(result.decision_id)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def get(self, decision_id: str) -> DecisionResult | None:
        """Return the record for ``decision_id``, or None when unknown or older than the TTL."""
        entry = self._items.get(decision_id)
        if entry is None:
            return None
        stored_at, result = entry
        if self._clock() - stored_at > self._ttl:
            del self._items[decision_id]
            return None
        return result

    def __len__(self) -> int:
        """Return how many records are held."""
        return len(self._items)
