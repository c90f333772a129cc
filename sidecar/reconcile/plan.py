"""Plan: the diff of what the decisions want and what the registries hold, as a value.

Actions are ``copy`` (routed, absent), ``retag`` (routed, the tag holds another digest that the
sidecar itself wrote there — one it did not write is someone else's: planned, blocked), ``remove``
(the decision's ``remove``, DESIGN §3.4), ``cleanup`` (the retention query's ``delete``) and
``keep`` (routed and present). A removal or cleanup the safety rails forbid stays in the plan with
``blocked`` saying why, so a dry run shows what the policy asked and what the sidecar refuses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.model.decision import DecisionResult
from sidecar.reconcile.observe import Observation, ObservedTag, Scope

__all__ = [
    "BLOCKED_FOREIGN",
    "KINDS",
    "Plan",
    "PlanAction",
    "SourceImage",
    "Written",
    "build_plan",
    "cleanup_actions",
]

#: Action kinds, in the order a plan lists them for one image.
KINDS = ("copy", "retag", "keep", "remove", "cleanup")
_ORDER = {kind: index for index, kind in enumerate(KINDS)}
#: Why a removal is not executed (the safety rails of DESIGN §3.4 and policy.reconcile.protect).
BLOCKED_SOURCE = "never removed from a source registry"
BLOCKED_DEGRADED = "degraded decision (fail mode): never removes"
BLOCKED_PROTECTED = "tag matches policy.reconcile.protect"
BLOCKED_UNREADABLE = "registry could not be read"
BLOCKED_FOREIGN = "the tag holds a digest the sidecar did not write there: never overwritten"

#: (registry, repository, tag, digest) of the real copies the sidecar made (its job store).
Written = Collection[tuple[str, str, str, str]]


@dataclass(frozen=True, slots=True)
class SourceImage:
    """A source tag in scope and its decision (event ``reconcile``)."""

    tag: ObservedTag
    result: DecisionResult


@dataclass(frozen=True, slots=True)
class PlanAction:
    """One thing to do (or keep) in one registry: ``registry/repository:tag`` → ``digest``."""

    kind: str
    registry: str
    repository: str
    tag: str
    digest: str
    source: str  # the source image, REGISTRY/REPOSITORY:TAG@DIGEST
    size_bytes: int = 0
    priority: int = 0
    rank: int = 0
    decision_id: str = ""
    bundle_revision: str = ""
    reasons: tuple[str, ...] = ()
    blocked: str = ""  # non-empty: the action is shown but never executed

    @property
    def target(self) -> str:
        """The place acted on, ``REGISTRY/REPOSITORY:TAG``."""
        return f"{self.registry}/{self.repository}:{self.tag}"

    def to_json(self) -> dict[str, Any]:
        """Return the action as a JSON object (``--json``, the Reconcile stream)."""
        return {
            "kind": self.kind,
            "registry": self.registry,
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "source": self.source,
            "size_bytes": self.size_bytes,
            "priority": self.priority,
            "rank": self.rank,
            "decision_id": self.decision_id,
            "bundle_revision": self.bundle_revision,
            "reasons": list(self.reasons),
            "blocked": self.blocked,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """A whole plan: actions in stable order, totals, and what could not be observed."""

    actions: tuple[PlanAction, ...]
    images: int = 0
    degraded: int = 0
    bundle_revision: str = ""
    unreadable: Mapping[str, str] = field(default_factory=dict)
    # Non-empty: an activation re-plan, narrowed to the images whose decision differs from the
    # one made under this (the previous) revision; ``decided`` counts every image decided.
    changed_since: str = ""
    decided: int = 0

    @property
    def bytes_to_copy(self) -> int:
        """Bytes of every copy and retag (what the registries would receive at most)."""
        return sum(
            a.size_bytes for a in self.actions if a.kind in ("copy", "retag") and not a.blocked
        )

    @property
    def bytes_freed(self) -> int:
        """Bytes of every removal and cleanup that is not blocked."""
        return sum(
            a.size_bytes for a in self.actions if a.kind in ("remove", "cleanup") and not a.blocked
        )

    def counts(self) -> dict[str, int]:
        """How many actions of each kind (every kind present, blocked ones included)."""
        tally = Counter(a.kind for a in self.actions)
        return {kind: tally.get(kind, 0) for kind in KINDS}

    def of(self, *kinds: str) -> tuple[PlanAction, ...]:
        """The actions of ``kinds``, in plan order."""
        return tuple(a for a in self.actions if a.kind in kinds)

    def to_json(self) -> dict[str, Any]:
        """Return the plan as a JSON object."""
        return {
            "images": self.images,
            "degraded": self.degraded,
            "bundle_revision": self.bundle_revision,
            "counts": self.counts(),
            "bytes_to_copy": self.bytes_to_copy,
            "bytes_freed": self.bytes_freed,
            "unreadable": dict(self.unreadable),
            "changed_since": self.changed_since,
            "decided": self.decided or self.images,
            "actions": [a.to_json() for a in self.actions],
        }


def _source_ref(tag: ObservedTag) -> str:
    return f"{tag.registry}/{tag.repository}:{tag.tag}@{tag.digest}"


def _image_actions(
    image: SourceImage,
    observation: Observation,
    scope: Scope,
    sources: Collection[str],
    written: Written | None,
) -> Iterable[PlanAction]:
    src, result = image.tag, image.result
    decision = result.decision
    common = {
        "source": _source_ref(src),
        "size_bytes": src.size_bytes,
        "priority": decision.priority,
        "decision_id": result.decision_id,
        "bundle_revision": result.bundle_revision,
    }
    if decision.allow:
        for route in decision.routes:
            if route.registry in sources:
                continue  # the reconciler never writes to a source registry
            held = observation.at(route.registry, route.repository, route.tag)
            kind = "copy" if held is None else ("keep" if held.digest == src.digest else "retag")
            blocked = ""
            if kind == "retag" and held is not None and written is not None:
                mine = (route.registry, route.repository, route.tag, held.digest)
                blocked = "" if mine in written else BLOCKED_FOREIGN
            yield PlanAction(
                kind, route.registry, route.repository, route.tag, src.digest,
                rank=route.rank, blocked=blocked, **common,  # type: ignore[arg-type]
            )  # fmt: skip
    for removal in decision.remove:
        held = observation.at(removal.registry, src.repository, src.tag)
        if held is None or held.digest != src.digest:
            # Absent, or someone else's write at that tag: never removed (DESIGN §3.4).
            continue
        blocked = ""
        if removal.registry in sources or removal.registry == src.registry:
            blocked = BLOCKED_SOURCE
        elif result.degraded:
            blocked = BLOCKED_DEGRADED
        elif scope.protected(src.tag):
            blocked = BLOCKED_PROTECTED
        elif removal.registry in observation.unreadable:
            blocked = BLOCKED_UNREADABLE
        yield PlanAction(
            "remove", removal.registry, src.repository, src.tag, src.digest,
            reasons=removal.reasons, blocked=blocked,
            **{**common, "size_bytes": held.size_bytes},  # type: ignore[arg-type]
        )  # fmt: skip


def build_plan(
    images: Sequence[SourceImage],
    observation: Observation,
    scope: Scope,
    sources: Collection[str],
    *,
    cleanups: Sequence[PlanAction] = (),
    written: Written | None = None,
) -> Plan:
    """Return the plan for decided ``images`` against ``observation`` (stable order).

    ``written``: what the sidecar copied where; a retag over any other digest is blocked
    (``None``: no job store to ask, every retag goes ahead).
    """
    actions = [
        a for image in images for a in _image_actions(image, observation, scope, sources, written)
    ]
    actions += cleanups
    actions.sort(key=lambda a: (a.source, _ORDER[a.kind], a.rank, a.registry, a.repository, a.tag))
    revisions = sorted({i.result.bundle_revision for i in images if not i.result.degraded})
    return Plan(
        tuple(actions),
        images=len(images),
        degraded=sum(1 for i in images if i.result.degraded),
        bundle_revision=",".join(revisions),
        unreadable=dict(observation.unreadable),
    )


def cleanup_actions(
    answer: Mapping[str, Any],
    observation: Observation,
    scope: Scope,
    sources: Collection[str],
    *,
    decision_of: Mapping[str, SourceImage],
    bundle_revision: str,
) -> list[PlanAction]:
    """Turn one retention answer (``delete`` list, DESIGN §3.4) into ``cleanup`` actions.

    A candidate is planned only where the observation shows that digest at that tag now, never
    in a source registry, and never for a protected tag (then planned, blocked).
    """
    planned: list[PlanAction] = []
    for item in answer.get("delete") or ():
        if not isinstance(item, Mapping):
            continue
        registry, repository = str(item.get("registry", "")), str(item.get("repository", ""))
        tag, digest = str(item.get("tag", "")), str(item.get("digest", ""))
        held = observation.at(registry, repository, tag)
        if held is None or held.digest != digest:
            continue
        image = decision_of.get(digest)
        blocked = ""
        if registry in sources:
            blocked = BLOCKED_SOURCE
        elif image is not None and image.result.degraded:
            blocked = BLOCKED_DEGRADED
        elif scope.protected(tag):
            blocked = BLOCKED_PROTECTED
        planned.append(
            PlanAction(
                "cleanup", registry, repository, tag, digest,
                source=_source_ref(image.tag) if image else "",
                size_bytes=held.size_bytes,
                decision_id=image.result.decision_id if image else "",
                bundle_revision=bundle_revision,
                reasons=(str(item.get("reason", "QUOTA_EXCEEDED")),),
                blocked=blocked,
            )
        )  # fmt: skip
    return planned
