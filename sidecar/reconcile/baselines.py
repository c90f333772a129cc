"""What each bundle revision's decisions did to the registries: the baseline of activation re-plans.

An activation re-plans only the images whose *outcome* the new revision changes (allowed or not,
the routed places, the registries it is removed from — not the decision id, priority or rank,
which change nothing in the registries), plus the cleanups not asked before. :class:`Baselines`
keeps the outcomes of the serving policy's plans per revision: the last few in memory and, with a
store, in the job store's database too, so a restarted sidecar — or the replica that did not make
the last runs — still compares with the revision before instead of planning everything.

What the store holds is read back as untrusted text: bounded, checked shape by shape, and anything
else is no baseline (the plan is then whole, as it always was without one).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sidecar.model.decision import DecisionResult
from sidecar.telemetry import get_logger
from sidecar.typing import ReconcileBaselines

__all__ = [
    "MAX_BASELINE_BYTES",
    "Baseline",
    "Baselines",
    "Outcome",
    "Place",
    "decode",
    "encode",
    "outcome",
]

_log = get_logger("sidecar.reconcile")
#: Revisions kept in memory (the previous one is what a re-plan needs).
_IN_MEMORY = 2
#: The largest baseline read back from the store, decompressed (100,000 tags fit in a tenth).
MAX_BASELINE_BYTES = 64 * 1024 * 1024
_FORMAT = 1

Place = tuple[str, str, str, str]  # (registry, repository, tag, digest)
# What a decision does to the registries: allow, routed places, registries to remove from.
Outcome = tuple[bool, tuple[tuple[str, str, str], ...], tuple[str, ...]]


@dataclass(slots=True)
class Baseline:
    """The outcomes decided under one revision (and the cleanups its retention query asked)."""

    outcomes: dict[Place, Outcome] = field(default_factory=dict)
    cleanups: set[Place] = field(default_factory=set)


def outcome(result: DecisionResult) -> Outcome | None:
    """What ``result`` does to the registries; None for a degraded answer (no verdict)."""
    if result.degraded:
        return None
    decision = result.decision
    routes = (
        tuple(sorted((r.registry, r.repository, r.tag) for r in decision.routes))
        if decision.allow
        else ()
    )
    return decision.allow, routes, tuple(sorted(r.registry for r in decision.remove))


def encode(baseline: Baseline) -> str:
    """``baseline`` as compact text for the store (JSON, zlib, base64)."""
    doc = {
        "format": _FORMAT,
        "outcomes": [
            [*place, allow, [list(r) for r in routes], list(removes)]
            for place, (allow, routes, removes) in sorted(baseline.outcomes.items())
        ],
        "cleanups": [list(place) for place in sorted(baseline.cleanups)],
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def decode(text: str) -> Baseline:
    """The baseline :func:`encode` wrote; ValueError for anything else (or over the size bound)."""
    try:
        packed = base64.b64decode(text.encode("ascii"), validate=True)
        inflate = zlib.decompressobj()
        raw = inflate.decompress(packed, MAX_BASELINE_BYTES)
    except (UnicodeEncodeError, binascii.Error, zlib.error) as exc:
        raise ValueError(f"not a stored baseline: {exc}") from exc
    if inflate.unconsumed_tail or not inflate.eof:
        raise ValueError(f"not a stored baseline: over {MAX_BASELINE_BYTES} bytes or truncated")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not a stored baseline: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError("not a stored baseline: unknown format")
    baseline = Baseline()
    for row in _list(doc.get("outcomes")):
        items = _list(row)
        if len(items) != 7:
            raise ValueError("not a stored baseline: an outcome is not 7 fields")
        place, allow = _place(items[:4]), items[4]
        if not isinstance(allow, bool):
            raise ValueError("not a stored baseline: allow is not a boolean")
        routes = tuple(_strings(_list(r), 3) for r in _list(items[5]))
        removes = _strings(_list(items[6]), None)
        baseline.outcomes[place] = (allow, routes, removes)  # type: ignore[assignment]
    baseline.cleanups = {_place(_list(row)) for row in _list(doc.get("cleanups"))}
    return baseline


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("not a stored baseline: a list expected")
    return value


def _strings(values: list[Any], size: int | None) -> tuple[str, ...]:
    if (size is not None and len(values) != size) or not all(isinstance(v, str) for v in values):
        raise ValueError("not a stored baseline: strings expected")
    return tuple(values)


def _place(values: list[Any]) -> Place:
    registry, repository, tag, digest = _strings(values, 4)
    return registry, repository, tag, digest


class Baselines:
    """Each revision's outcomes: the last :data:`_IN_MEMORY` in memory, every one in ``store``.

    A store that fails is logged and left: memory still serves this process, and a missing
    baseline only makes a re-plan whole.
    """

    def __init__(self, store: ReconcileBaselines | None = None) -> None:
        self._store = store
        self._memory: OrderedDict[str, Baseline] = OrderedDict()

    async def get(self, revision: str) -> Baseline | None:
        """The outcomes recorded under ``revision``, from memory or the store; None if none."""
        baseline = self._memory.get(revision)
        if baseline is None and self._store is not None:
            baseline = await _load(self._store, revision)
            if baseline is not None:
                self._keep(revision, baseline)
        return baseline

    async def record(
        self, results: Iterable[tuple[Place, DecisionResult]], cleanups: Iterable[tuple[str, Place]]
    ) -> None:
        """Record each non-degraded outcome, and each cleanup, under the revision that decided it;
        then store every revision touched."""
        decided: dict[str, list[tuple[Place, Outcome]]] = {}
        for place, result in results:
            what = outcome(result)
            if what is not None:
                decided.setdefault(result.bundle_revision, []).append((place, what))
        asked: dict[str, list[Place]] = {}
        for revision, place in cleanups:
            if revision:
                asked.setdefault(revision, []).append(place)
        for revision in sorted(decided.keys() | asked.keys()):
            baseline = await self.get(revision)
            if baseline is None:
                baseline = Baseline()
                self._keep(revision, baseline)
            baseline.outcomes.update(decided.get(revision, ()))
            baseline.cleanups.update(asked.get(revision, ()))
            if self._store is not None:
                await _save(self._store, revision, baseline)

    def _keep(self, revision: str, baseline: Baseline) -> None:
        self._memory[revision] = baseline
        self._memory.move_to_end(revision)
        while len(self._memory) > _IN_MEMORY:
            self._memory.popitem(last=False)  # the least recently used revision


async def _save(store: ReconcileBaselines, revision: str, baseline: Baseline) -> None:
    """Store ``baseline``; a failure is logged (memory still serves this process)."""
    # A copy is encoded off the event loop (100,000 tags take a noticeable while), so a
    # concurrent record changing this baseline meanwhile cannot break the iteration.
    snapshot = Baseline(dict(baseline.outcomes), set(baseline.cleanups))
    try:
        await store.save_baseline(revision, await asyncio.to_thread(encode, snapshot))
    except Exception as exc:  # any store failure: memory still serves this process
        _log.warning("reconcile baseline not stored", revision=revision, error=str(exc))


async def _load(store: ReconcileBaselines, revision: str) -> Baseline | None:
    """``revision``'s stored baseline; None when absent or unreadable (the re-plan is whole)."""
    try:
        text = await store.load_baseline(revision)
        return None if text is None else await asyncio.to_thread(decode, text)
    except Exception as exc:  # any failure means no baseline: the re-plan is whole
        _log.warning("reconcile baseline unreadable; planning whole", revision=revision,
                     error=str(exc))  # fmt: skip
        return None
