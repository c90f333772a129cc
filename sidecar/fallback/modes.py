"""Answers decisions while OPA is unavailable, per the configured fail mode (DESIGN §6).

* ``closed`` — ``allow: false``; every registry but the source denied ``POLICY_UNAVAILABLE``.
* ``last-known`` — the decision OPA gave for the same facts (the input without ``now``) under the
  same bundle revision, from a bounded LRU cache, without its ``remove`` and ``actions``; a miss
  answers like ``closed``.
* ``legacy`` — the Freightliner rules evaluated natively with the policy's safety denials
  (:mod:`sidecar.fallback._legacy`).

Only :class:`~sidecar.errors.PolicyUnavailable` may lead here; the caller marks the answer degraded.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from sidecar.config import Config
from sidecar.fallback._data import FallbackData, customer_allowlist, load_fallback_data
from sidecar.fallback._legacy import (
    POLICY_UNAVAILABLE,
    REASON_MESSAGES,
    legacy_decision,
)
from sidecar.model.decision import Decision, Denial, PolicyInput, Reason

__all__ = [
    "POLICY_UNAVAILABLE",
    "FailMode",
    "Fallback",
    "FallbackData",
    "LastKnownCache",
    "closed_decision",
    "facts_key",
    "legacy_decision",
    "load_fallback_data",
]

FailMode = Literal["closed", "legacy", "last-known"]
_MODES: tuple[FailMode, ...] = ("closed", "legacy", "last-known")


def closed_decision(policy_input: PolicyInput) -> Decision:
    """Deny everything: every registry but the source denied ``POLICY_UNAVAILABLE``."""
    source = policy_input.image.ref.registry
    names = sorted({r.name for r in policy_input.registries} - {source})
    return Decision(
        allow=False,
        denied=tuple(Denial(name, (POLICY_UNAVAILABLE,)) for name in names),
        reasons=(Reason(POLICY_UNAVAILABLE, REASON_MESSAGES[POLICY_UNAVAILABLE]),),
        policies=("sidecar.fallback.closed",),
    )


def facts_key(policy_input: Mapping[str, Any], revision: str) -> str:
    """Return the cache key of an input: sha256 of its canonical JSON without ``now``, + revision."""
    # ``now`` changes on every request; everything else (labels, health, access, caller…) is a
    # fact the decision may depend on, so it is all in the key.
    facts = {k: v for k, v in policy_input.items() if k != "now"}
    digest = hashlib.sha256(orjson.dumps(facts, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{revision}\n{digest}"


class LastKnownCache:
    """A bounded LRU of recent OPA decisions keyed by :func:`facts_key`."""

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._items: OrderedDict[str, Decision] = OrderedDict()

    def put(self, policy_input: Mapping[str, Any], revision: str, decision: Decision) -> None:
        """Remember ``decision`` for these facts and revision, evicting the least recently used."""
        key = facts_key(policy_input, revision)
        self._items[key] = decision
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def get(self, policy_input: Mapping[str, Any], revision: str) -> Decision | None:
        """Return the decision for identical facts under ``revision``, or None."""
        key = facts_key(policy_input, revision)
        decision = self._items.get(key)
        if decision is not None:
            self._items.move_to_end(key)
        return decision

    def __len__(self) -> int:
        return len(self._items)


class Fallback:
    """The configured fail mode; DecisionService calls :meth:`remember` and :meth:`decide`."""

    def __init__(
        self,
        mode: FailMode | str = "closed",
        *,
        data: FallbackData | None = None,
        cache: LastKnownCache | None = None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"fail mode must be one of {_MODES}, not {mode!r}")
        if mode == "legacy" and data is None:
            raise ValueError("the legacy fail mode needs the bundle data (load_fallback_data)")
        self.mode: FailMode = mode
        self._data = data
        self._cache = cache if cache is not None else LastKnownCache()

    @classmethod
    def from_config(cls, config: Config, *, sensitive: Mapping[str, Any] | None = None) -> Fallback:
        """Build the fail mode of ``policy.fail_mode`` (legacy reads the bundle data files now).

        ``sensitive`` is the decrypted ``data.sensitive`` document, so the legacy mode applies
        the customer allowlists like the policy does.
        """
        policy = config.policy
        mode = policy.fail_mode
        data = load_fallback_data(config) if mode == "legacy" else None
        if data is not None and sensitive:
            data = dataclasses.replace(data, customer_allowlist=customer_allowlist(sensitive))
        return cls(mode, data=data, cache=LastKnownCache(policy.last_known_entries))

    def remember(self, policy_input: Mapping[str, Any], revision: str, decision: Decision) -> None:
        """Record a decision OPA made (kept only in ``last-known`` mode)."""
        if self.mode == "last-known":
            self._cache.put(policy_input, revision, decision)

    def decide(self, policy_input: PolicyInput, revision: str) -> tuple[Decision, str, str]:
        """Return (decision, bundle revision it rests on, how it was made) without OPA.

        ``revision`` is the last revision OPA reported. The third value is the mode, or
        ``last-known-miss`` when the cache had no entry and the answer is ``closed``'s.
        """
        if self.mode == "legacy" and self._data is not None:
            return legacy_decision(self._data, policy_input), revision, "legacy"
        if self.mode == "last-known":
            cached = self._cache.get(policy_input.to_json(), revision)
            if cached is not None:
                # A degraded answer never destroys anything (DESIGN §3.4, §6): the replayed
                # decision keeps its routes and denials, not its removals or cleanups.
                return dataclasses.replace(cached, remove=(), actions=()), revision, "last-known"
            return closed_decision(policy_input), revision, "last-known-miss"
        return closed_decision(policy_input), revision, "closed"
