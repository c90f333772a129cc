"""A decision cache that is never wrong: OPA's answer for the same facts, revision and time band.

A policy is a pure function of ``input`` and bundle ``data`` (DESIGN §3), and time enters only
through ``input.now``. So an answer can be reused for another input when

* every fact but ``now`` is identical (the key: sha256 of the canonical JSON of the enriched input
  without ``now`` — labels, scan, health, access, usage, caller… all of it);
* the bundle revision is the one OPA serves (the key holds the revision; a new revision the
  sidecar sees clears the cache); and
* no *time boundary* lies between the ``now`` it was evaluated at and the new ``now``. The policy
  declares its boundaries itself (``data.replication.cacheable.time_boundaries_ns``: the instant
  a scan becomes too old), so the sidecar does not re-implement any policy rule. When the new
  ``now`` cannot be read as RFC 3339, nothing is cached or served.

What is never stored: a degraded (fail-mode) answer — the caller only puts OPA's answers.
The cache answers only the *decision*; the caller gives every answer its own decision id, record,
log line and span, so the audit trail lists each decision whether or not OPA evaluated it.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from sidecar.model.decision import Decision

__all__ = ["CACHEABLE_PATH", "CachedDecision", "DecisionCache", "facts_digest", "rfc3339_ns"]

#: The document that answers a decision plus its time boundaries (rego/replication/cacheable.rego).
CACHEABLE_PATH = "replication/cacheable"

# A boundary read back through JSON may have passed through a float (a fractional maximum scan
# age): an answer is reused only when both instants are clear of every boundary by this much.
_SLACK_NS = 1_000_000
# Go's RFC 3339 layout as OPA reads it (upper-case T and Z only). What this does not accept is
# never cached, so it may refuse more than OPA does, never less.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339_ns(text: object) -> int | None:
    """Return ``text`` as ns since the epoch (as OPA's ``time.parse_rfc3339_ns``), else None."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        # The constructor validates the calendar (no 30 February) like Go's parser does.
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        return None
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    whole = (moment - _EPOCH) // timedelta(seconds=1)
    return whole * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def facts_digest(policy_input: Mapping[str, Any]) -> str:
    """Return sha256 of the canonical JSON (sorted keys) of ``policy_input`` without ``now``."""
    facts = {key: value for key, value in policy_input.items() if key != "now"}
    return hashlib.sha256(orjson.dumps(facts, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedDecision:
    """OPA's decision for some facts, the revision it rests on, when and how long it holds."""

    decision: Decision
    bundle_revision: str
    evaluated_ns: int  # the input's ``now`` when OPA evaluated it
    boundaries_ns: tuple[int, ...]

    def holds_at(self, now_ns: int) -> bool:
        """Whether no time boundary lies between the evaluation instant and ``now_ns``."""
        low, high = sorted((self.evaluated_ns, now_ns))
        return not any(low - _SLACK_NS <= b < high + _SLACK_NS for b in self.boundaries_ns)


class DecisionCache:
    """A bounded LRU of :class:`CachedDecision` under one bundle revision at a time."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._revision = ""
        self._items: OrderedDict[str, CachedDecision] = OrderedDict()

    @property
    def revision(self) -> str:
        """The bundle revision the entries rest on ("" before any answer)."""
        return self._revision

    def note_revision(self, revision: str) -> None:
        """Record the revision OPA serves now; a different one drops every entry."""
        if revision and revision != self._revision:
            self._items.clear()
            self._revision = revision

    def get(self, key: str, now_ns: int) -> tuple[CachedDecision | None, str]:
        """Return (entry, ``hit``) or (None, ``miss``/``expired``) for ``key`` at ``now_ns``."""
        entry = self._items.get(key)
        if entry is None or entry.bundle_revision != self._revision:
            return None, "miss"
        if not entry.holds_at(now_ns):
            # Crossed a boundary: OPA decides again, and its answer replaces this one.
            del self._items[key]
            return None, "expired"
        self._items.move_to_end(key)
        return entry, "hit"

    def put(
        self,
        key: str,
        decision: Decision,
        revision: str,
        evaluated_ns: int,
        boundaries_ns: Sequence[int],
    ) -> None:
        """Keep OPA's ``decision`` for ``key``; evicts the least recently used beyond the bound."""
        self.note_revision(revision)
        self._items[key] = CachedDecision(decision, revision, evaluated_ns, tuple(boundaries_ns))
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry (the sidecar activated or learned of another revision)."""
        self._items.clear()

    def __len__(self) -> int:
        """Return how many decisions are held."""
        return len(self._items)
