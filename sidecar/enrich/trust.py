"""Which facts a request may state: observed facts win, and the rest needs an observation or a role.

Three rules (DESIGN §3.1, issue 15):

* **Observed facts win.** When the source registry was read, its config labels, manifest
  annotations, created time, size and platforms ARE the image's facts; the request's versions of
  them are dropped (a differing or extra one is recorded in the provenance, never its value).
* **Gate facts need an observation.** When the registry could not be read (down, unknown tag, or
  ``registry_enrichment: false``), a *gate* label or annotation the request states (``gate_labels``:
  scan labels, tenant, compliance, customer id; every ``policy-sidecar.io/`` annotation) and a
  stated created time are dropped, so a claimed ``security.scan.status=passed`` counts as no scan
  (SCAN_MISSING) and a claimed tenant as none (TENANT_ISOLATION, CROSS_TENANT). The one exception
  closes a gate instead: ``compliance-required=true`` is kept. Size and platforms stay, because
  none of them can open a gate that their absence leaves closed. Other labels stay.
* **The sidecar's own facts are the sidecar's.** ``now``, ``registry_health``, ``tenant_usage``
  and ``access`` come from the request only for a caller holding a role in ``override_roles``
  (replay, testing); :func:`check_request_facts` refuses them otherwise.

A caller holding an override role is believed where nothing was observed (a replay states the
facts of the decision it replays); an observation still wins over it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from sidecar.config import DEFAULT_GATE_LABELS, DEFAULT_OVERRIDE_ROLES
from sidecar.errors import InvalidArgument
from sidecar.model.decision import (
    Caller,
    DecideRequest,
    DroppedFact,
    FactProvenance,
    PolicyInput,
)

__all__ = [
    "DEFAULT_GATE_LABELS",
    "DEFAULT_OVERRIDE_ROLES",
    "OVERRIDE_FACTS",
    "FactTrust",
    "check_request_facts",
    "merge_request_image",
    "provenance_of",
    "strip_overrides",
]

OVERRIDE_FACTS = ("now", "registry_health", "tenant_usage", "access")
# Gate label values that can only close a gate, kept even when nothing was observed.
_CLOSING = {"compliance-required": "true"}
_CONFLICT = "the registry's value wins"
_NOT_IN_REGISTRY = "not on the image in the registry, which was read"
_UNOBSERVED = "a gate fact, and the registry was not read: it needs a caller role in override_roles"
_NO_ROLE = "a sidecar fact: it needs a caller role in override_roles"


@dataclass(frozen=True, slots=True)
class FactTrust:
    """Whom the enricher believes for facts it could not observe (``policy.facts``)."""

    override_roles: frozenset[str] = frozenset(DEFAULT_OVERRIDE_ROLES)
    gate_labels: tuple[str, ...] = DEFAULT_GATE_LABELS
    # The local operator (the in-process CLI, the bench): it owns the config, its request is a replay.
    trust_all: bool = False
    # gate_labels as one compiled pattern: matched once per stated label on every decision.
    _gates: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_gates", _compile(self.gate_labels))

    @classmethod
    def operator(cls) -> FactTrust:
        """The trust of the local operator, who owns the configuration: every stated fact."""
        return cls(trust_all=True)

    def believes(self, caller: Caller) -> bool:
        """Whether ``caller`` may state sidecar facts and unobserved gate facts."""
        return self.trust_all or not self.override_roles.isdisjoint(caller.roles)

    def gate_label(self, key: str) -> bool:
        """Whether label ``key`` is a gate fact (matches a ``gate_labels`` glob)."""
        return self._gates.match(key) is not None


def _compile(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regular expression matching any of the shell-style ``patterns`` (none: nothing)."""
    return re.compile("|".join(fnmatch.translate(p) for p in patterns) or "(?!)")


_GATE_ANNOTATIONS = _compile(("policy-sidecar.io/*",))


def _stated(request: DecideRequest) -> list[str]:
    """The sidecar facts ``request`` states, in OVERRIDE_FACTS order."""
    values = (request.now, request.registry_health, request.tenant_usage, request.access)
    return [name for name, value in zip(OVERRIDE_FACTS, values, strict=True) if value]


def check_request_facts(request: DecideRequest, trust: FactTrust) -> None:
    """Raise InvalidArgument naming a sidecar fact ``request`` states without an override role."""
    stated = _stated(request)
    if not stated or trust.believes(request.caller):
        return
    roles = sorted(trust.override_roles)
    raise InvalidArgument(
        stated[0],
        f"only a caller with a role in policy.facts.override_roles {roles} may state "
        f"{', '.join(stated)}; caller {request.caller.subject!r} has roles "
        f"{list(request.caller.roles)}",
    )


def strip_overrides(
    request: DecideRequest, trust: FactTrust
) -> tuple[DecideRequest, tuple[DroppedFact, ...]]:
    """Return ``request`` without the sidecar facts its caller may not state, and what went."""
    stated = _stated(request)
    if not stated or trust.believes(request.caller):
        return request, ()
    stripped = dataclasses.replace(
        request, now=None, registry_health={}, tenant_usage=None, access={}
    )
    return stripped, tuple(DroppedFact(name, _NO_ROLE) for name in stated)


def _merge_map(
    kind: str,
    stated: Mapping[str, str],
    held: Mapping[str, str],
    *,
    observed: bool,
    gate: Callable[[str], bool],
    believe: bool,
) -> tuple[dict[str, str], dict[str, str], list[DroppedFact]]:
    """Merge request ``stated`` into ``held`` (labels or annotations): (merged, origins, dropped)."""
    merged = dict(held)
    origins = dict.fromkeys((f"image.{kind}.{k}" for k in held), "registry" if observed else "")
    dropped: list[DroppedFact] = []
    for key, value in stated.items():
        path = f"image.{kind}.{key}"
        if observed:
            if held.get(key, value) != value:
                dropped.append(DroppedFact(path, _CONFLICT))
            elif key not in held:
                dropped.append(DroppedFact(path, _NOT_IN_REGISTRY))
            continue
        opens = not believe and _CLOSING.get(key) != value.strip().lower()
        if opens and gate(key):
            dropped.append(DroppedFact(path, _UNOBSERVED))
            continue
        merged[key] = value
        origins[path] = "request"
    return merged, {k: v for k, v in origins.items() if v}, dropped


_T = TypeVar("_T")


def _scalar(stated: _T, held: _T, observed: bool, gate: bool = False) -> tuple[_T, str, str]:
    """(value, origin, why the stated value was dropped) of one scalar image fact."""
    if observed:
        return held, "registry", (_CONFLICT if stated and stated != held else "")
    if not stated:
        return held, "", ""
    if gate:
        return held, "", _UNOBSERVED
    return stated, "request", ""


def merge_request_image(
    draft: PolicyInput,
    request: DecideRequest,
    observed: Mapping[str, str],
    trust: FactTrust,
) -> tuple[PolicyInput, dict[str, str], list[DroppedFact]]:
    """Join the request's image facts to the observed ones in ``draft`` by the rules above.

    ``observed`` maps the fact paths observation sources read (``image.labels``, ...) to the
    source. Returns the draft, the origin of every image fact set so far, and what was dropped.
    """
    believe = trust.believes(request.caller)
    image = draft.image
    labels, origins, dropped = _merge_map(
        "labels",
        request.labels,
        image.labels,
        observed="image.labels" in observed,
        gate=trust.gate_label,
        believe=believe,
    )
    annotations, annotation_origins, more = _merge_map(
        "annotations",
        request.annotations,
        image.annotations,
        observed="image.annotations" in observed,
        gate=lambda key: _GATE_ANNOTATIONS.match(key) is not None,
        believe=believe,
    )
    origins.update(annotation_origins)
    dropped.extend(more)
    created_at = _scalar(
        request.created_at, image.created_at, "image.created_at" in observed, not believe
    )
    size_bytes = _scalar(request.size_bytes, image.size_bytes, "image.size_bytes" in observed)
    platforms = _scalar(tuple(request.platforms), image.platforms, "image.platforms" in observed)
    for path, (_, origin, problem) in (
        ("image.created_at", created_at),
        ("image.size_bytes", size_bytes),
        ("image.platforms", platforms),
    ):
        if origin:
            origins[path] = origin
        if problem:
            dropped.append(DroppedFact(path, problem))
    # Where copies exist is the caller's observation (the reconciler's), kept as stated: it can
    # only add to the answer's ``remove``, which no RPC executes; nothing here observes it.
    if request.present_at:
        origins["image.present_at"] = "request"
    new_image = dataclasses.replace(
        image,
        labels=labels,
        annotations=annotations,
        created_at=created_at[0],
        size_bytes=size_bytes[0],
        platforms=platforms[0],
        present_at=tuple(request.present_at),
    )
    return dataclasses.replace(draft, image=new_image), origins, dropped


def provenance_of(
    policy_input: PolicyInput,
    request: DecideRequest,
    image_origins: Mapping[str, str],
    observed: Mapping[str, str],
    dropped: Iterable[DroppedFact],
) -> FactProvenance:
    """Return the provenance of ``policy_input``, built from ``request`` (already stripped)."""
    facts = dict(image_origins)
    facts["now"] = "request" if request.now else "sidecar"
    facts["registries"] = "config"
    facts["registries.healthy"] = "sidecar"
    for name in request.registry_health:
        facts[f"registries.{name}.healthy"] = "request"
    for region in policy_input.access:
        facts[f"access.{region}"] = "request" if region in request.access else "sidecar"
    image = policy_input.image
    if image.scan is not None:
        label = facts.get("image.labels.security.scan.status", "request")
        facts["image.scan"] = "registry" if "image.scan" in observed else label
    if image.tenant is not None:
        labelled = image.labels.get("tenant", "").strip() == image.tenant
        facts["image.tenant"] = facts.get("image.labels.tenant", "config") if labelled else "config"
    if policy_input.tenant is not None:
        stated = request.tenant_usage is not None and policy_input.tenant == request.tenant_usage
        facts["tenant"] = "request" if stated else "config"
    return FactProvenance(facts, tuple(dropped))
