"""Bounded in-memory decision records, so ``Explain`` can return a recent decision by id.

Records are masked when they are stored (configured input paths, and every secret value of the
sensitive policy data), so nothing masked is ever held, let alone returned. Without a mask the
decision result is kept as is and turned into a record only when asked for.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.masking import RecordMask
from sidecar.model.decision import Decision, DecisionResult

__all__ = ["DecisionRecord", "DecisionRecords"]


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What ``Explain`` returns: the (masked) input and result, revision and trace of a decision."""

    decision_id: str
    decision: Decision
    input: Mapping[str, Any] | None
    bundle_revision: str
    trace_id: str = ""
    degraded: bool = False
    decided_at: str = ""

    @classmethod
    def of(cls, result: DecisionResult, mask: RecordMask | None = None) -> DecisionRecord:
        """Return the record of ``result``, masked by ``mask`` when given."""
        doc = result.input.to_json() if result.input is not None else None
        decision = result.decision
        if mask is not None and mask.active:
            doc = mask.input(doc) if doc is not None else None
            decision = Decision.from_json(mask.result(decision.to_json()))
        return cls(
            decision_id=result.decision_id,
            decision=decision,
            input=doc,
            bundle_revision=result.bundle_revision,
            trace_id=result.trace_id,
            degraded=result.degraded,
            decided_at=result.decided_at,
        )


class DecisionRecords:
    """Keeps the newest ``max_entries`` decisions for at most ``ttl_s`` seconds (typing.DecisionStore)."""

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        mask: RecordMask | None = None,
    ) -> None:
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        self._mask = mask if mask is not None and mask.active else None
        # Insertion order is age order, so eviction of the oldest is O(1).
        self._items: OrderedDict[str, tuple[float, DecisionResult | DecisionRecord]] = OrderedDict()

    def put(self, result: DecisionResult) -> None:
        """Store ``result`` (masked first, when a mask is set), evicting the oldest when full."""
        entry = result if self._mask is None else DecisionRecord.of(result, self._mask)
        now = self._clock()
        self._items[result.decision_id] = (now, entry)
        self._items.move_to_end(result.decision_id)
        while len(self._items) > self._max:
            self._items.popitem(last=False)
        # Expired records go now, not when looked up, so the TTL bounds what is held, too.
        while self._items:
            stored_at, _ = next(iter(self._items.values()))
            if now - stored_at <= self._ttl:
                break
            self._items.popitem(last=False)

    def get(self, decision_id: str) -> DecisionRecord | None:
        """Return the record for ``decision_id``, or None when unknown or older than the TTL."""
        entry = self._items.get(decision_id)
        if entry is None:
            return None
        stored_at, held = entry
        if self._clock() - stored_at > self._ttl:
            del self._items[decision_id]
            return None
        return held if isinstance(held, DecisionRecord) else DecisionRecord.of(held)

    def __len__(self) -> int:
        """Return how many records are held."""
        return len(self._items)
