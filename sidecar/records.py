"""Bounded in-memory decision records, so ``Explain`` can return a recent decision by id.

Records are masked when they are stored (configured input paths, and every secret value of the
sensitive policy data), so nothing masked is ever held, let alone returned. Each record is sized
(its JSON length) when stored, so what is held stays within a byte budget as well as a count.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.masking import RecordMask
from sidecar.model.decision import Decision, DecisionResult

__all__ = ["DEFAULT_MAX_BYTES", "DecisionRecord", "DecisionRecords", "record_size"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


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
    # Where each fact came from and which request facts were dropped (FactProvenance.to_json).
    provenance: Mapping[str, Any] | None = None
    # Answered from the decision cache (DecisionResult.cached), not by a new OPA evaluation.
    cached: bool = False

    @classmethod
    def of(cls, result: DecisionResult, mask: RecordMask | None = None) -> DecisionRecord:
        """Return the record of ``result``, masked by ``mask`` when given."""
        doc = result.input_json
        if doc is None and result.input is not None:
            doc = result.input.to_json()
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
            provenance=result.provenance.to_json() if result.provenance is not None else None,
            cached=result.cached,
        )


def record_size(record: DecisionRecord) -> int:
    """Return the approximate bytes ``record`` holds: the length of its JSON (input + decision)."""
    doc: dict[str, Any] = {"input": record.input, "decision": record.decision.to_json()}
    if record.provenance is not None:
        doc["provenance"] = record.provenance
    # orjson, as for the OPA query itself: this runs once per decision, on the hot path.
    return len(orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS))


class DecisionRecords:
    """Keeps the newest ``max_entries`` decisions, at most ``max_bytes`` of them, for ``ttl_s``.

    (typing.DecisionStore.) ``max_bytes`` bounds the sum of :func:`record_size` of what is held,
    so a few huge inputs cannot hold memory that the count limit alone would allow.
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        mask: RecordMask | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._max = max_entries
        self._max_bytes = max_bytes
        self._ttl = ttl_s
        self._clock = clock
        self._mask = mask if mask is not None and mask.active else None
        # Insertion order is age order, so eviction of the oldest is O(1).
        self._items: OrderedDict[str, tuple[float, DecisionRecord, int]] = OrderedDict()
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        """Return the approximate bytes held (the sum of the records' :func:`record_size`)."""
        return self._bytes

    def hides_any_of(self, doc: Mapping[str, Any]) -> bool:
        """Whether the mask would hide anything of ``doc`` (a part of a policy input)."""
        return self._mask is not None and self._mask.input(doc) != doc

    def put(self, result: DecisionResult) -> None:
        """Store ``result`` (masked first, when a mask is set), evicting the oldest when full."""
        record = DecisionRecord.of(result, self._mask)
        size = record_size(record)
        now = self._clock()
        self._drop(result.decision_id)
        self._items[result.decision_id] = (now, record, size)
        self._bytes += size
        while len(self._items) > self._max or (self._bytes > self._max_bytes and self._items):
            self._pop_oldest()
        # Expired records go now, not when looked up, so the TTL bounds what is held, too.
        while self._items:
            stored_at, _, _ = next(iter(self._items.values()))
            if now - stored_at <= self._ttl:
                break
            self._pop_oldest()

    def _pop_oldest(self) -> None:
        _, (_, _, size) = self._items.popitem(last=False)
        self._bytes -= size

    def _drop(self, decision_id: str) -> None:
        held = self._items.pop(decision_id, None)
        if held is not None:
            self._bytes -= held[2]

    def get(self, decision_id: str) -> DecisionRecord | None:
        """Return the record for ``decision_id``, or None when unknown or older than the TTL."""
        entry = self._items.get(decision_id)
        if entry is None:
            return None
        stored_at, held, _ = entry
        if self._clock() - stored_at > self._ttl:
            self._drop(decision_id)
            return None
        return held

    def __len__(self) -> int:
        """Return how many records are held."""
        return len(self._items)
