"""Impact preview: what a candidate bundle would change, as the diff of two plans.

The reconciler observes once and decides twice — with the serving policy and with the candidate's,
evaluated on a spare OPA — and :func:`compare` turns the two plans into :class:`Impact`: one row
per place whose action differs (``copy → -``, ``keep → remove``…) and totals. Nothing is applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sidecar.decide import DecisionService
from sidecar.reconcile.plan import Plan, PlanAction
from sidecar.typing import BatchEngine

__all__ = [
    "CHANGE_KINDS",
    "CandidateFactory",
    "CandidatePolicy",
    "Change",
    "Impact",
    "Preview",
    "compare",
]

#: What a row of the impact says, in the order a row is classified (the first that fits).
CHANGE_KINDS = (
    "removal_added",  # the candidate would remove a copy the serving policy keeps
    "removal_dropped",  # the serving policy would remove it, the candidate not
    "copy_added",  # the candidate would copy (or re-tag) where the serving policy does not
    "copy_dropped",  # the serving policy would copy there, the candidate not
    "route_added",  # already there, now routed (kept) by the candidate
    "route_dropped",  # already there and routed today, left unrouted by the candidate
    "changed",  # anything else (a removal blocked by one and not the other…)
)
_COPY = ("copy", "retag")
_ABSENT = "-"


@dataclass(frozen=True, slots=True)
class CandidatePolicy:
    """A candidate bundle running on a spare OPA: its decisions and its retention queries."""

    decisions: DecisionService
    queries: BatchEngine | None
    revision: str


#: Verifies candidate bundle bytes and yields them served by a spare OPA (stopped on exit).
CandidateFactory = Callable[[bytes], AbstractAsyncContextManager[CandidatePolicy]]


@dataclass(frozen=True, slots=True)
class Change:
    """One place whose action differs: ``image`` (the source) at ``target``, before → after."""

    kind: str
    image: str  # the source image, REGISTRY/REPOSITORY:TAG@DIGEST ("" for an orphan cleanup)
    target: str  # REGISTRY/REPOSITORY:TAG
    before: str  # the serving plan's action there ("-": none), "remove (blocked)" when blocked
    after: str  # the candidate plan's action there
    size_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return the change as a JSON object."""
        return {
            "kind": self.kind,
            "image": self.image,
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True, slots=True)
class Impact:
    """The diff of the serving plan and the candidate's plan on the same observation."""

    changes: tuple[Change, ...]
    before_revision: str
    after_revision: str
    images: int  # source images decided (the same observation for both)
    routes_changed: int  # images whose routed places differ
    bytes_to_copy_before: int
    bytes_to_copy_after: int
    bytes_freed_before: int
    bytes_freed_after: int

    def count(self, kind: str) -> int:
        """How many changes of ``kind`` (one of :data:`CHANGE_KINDS`)."""
        return sum(1 for c in self.changes if c.kind == kind)

    def totals(self) -> dict[str, int]:
        """Every change kind with its count, plus images, routes changed and bytes."""
        return {
            **{kind: self.count(kind) for kind in CHANGE_KINDS},
            "images": self.images,
            "images_changed": len({c.image for c in self.changes}),
            "routes_changed": self.routes_changed,
            "bytes_to_copy_before": self.bytes_to_copy_before,
            "bytes_to_copy_after": self.bytes_to_copy_after,
            "bytes_freed_before": self.bytes_freed_before,
            "bytes_freed_after": self.bytes_freed_after,
        }

    def to_json(self) -> dict[str, Any]:
        """Return the impact as a JSON object."""
        return {
            "before_revision": self.before_revision,
            "after_revision": self.after_revision,
            "totals": self.totals(),
            "changes": [c.to_json() for c in self.changes],
        }


@dataclass(frozen=True, slots=True)
class Preview:
    """A preview's outcome: both plans (nothing of either applied) and their diff."""

    before: Plan
    after: Plan
    impact: Impact


def _state(action: PlanAction) -> str:
    return f"{action.kind} (blocked)" if action.blocked else action.kind


def _states(plan: Plan) -> dict[tuple[str, str], tuple[str, PlanAction]]:
    found: dict[tuple[str, str], tuple[str, PlanAction]] = {}
    for action in plan.actions:
        key = (action.source, action.target)
        state = _state(action)
        if key in found:  # a cleanup beside a removal of the same place: show both
            state = f"{found[key][0]}+{state}"
        found[key] = (state, action)
    return found


def _kind(before: str, after: str) -> str:
    """Classify one change: the first of :data:`CHANGE_KINDS` whose test holds."""
    removing_before = any(p in ("remove", "cleanup") for p in before.split("+"))
    removing_after = any(p in ("remove", "cleanup") for p in after.split("+"))
    tests = (
        removing_after and not removing_before,
        removing_before and not removing_after,
        after in _COPY and before not in _COPY,
        before in _COPY and after not in _COPY,
        after == "keep",
        before == "keep",
    )
    return next(
        (kind for kind, holds in zip(CHANGE_KINDS[:-1], tests, strict=True) if holds), "changed"
    )


def _routed(plan: Plan) -> dict[str, set[str]]:
    routed: dict[str, set[str]] = {}
    for action in plan.actions:
        if action.kind in (*_COPY, "keep"):
            routed.setdefault(action.source, set()).add(action.target)
    return routed


def compare(before: Plan, after: Plan) -> Impact:
    """Return what changes from the serving plan ``before`` to the candidate's plan ``after``."""
    old, new = _states(before), _states(after)
    changes: list[Change] = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key), new.get(key)
        state_was, state_now = (was[0] if was else _ABSENT), (now[0] if now else _ABSENT)
        if state_was == state_now:
            continue
        action = (now or was or ("", None))[1]
        changes.append(
            Change(
                _kind(_effective(state_was), _effective(state_now)), key[0], key[1],
                state_was, state_now, action.size_bytes if action is not None else 0,
            )
        )  # fmt: skip
    routed_before, routed_after = _routed(before), _routed(after)
    sources = routed_before.keys() | routed_after.keys()
    return Impact(
        changes=tuple(changes),
        before_revision=before.bundle_revision,
        after_revision=after.bundle_revision,
        images=max(before.images, after.images),
        routes_changed=sum(
            1 for s in sources if routed_before.get(s, set()) != routed_after.get(s, set())
        ),
        bytes_to_copy_before=before.bytes_to_copy,
        bytes_to_copy_after=after.bytes_to_copy,
        bytes_freed_before=before.bytes_freed,
        bytes_freed_after=after.bytes_freed,
    )


def _effective(state: str) -> str:
    """The state as executed: a blocked removal does nothing."""
    kept: Iterable[str] = (p for p in state.split("+") if not p.endswith("(blocked)"))
    return "+".join(kept) or _ABSENT
