"""Records of the policy contract (DESIGN §3): the policy input the sidecar builds and the decision OPA returns.

Every record is a frozen dataclass so a decision can be shared between the gRPC layer, telemetry and
the decision record without anyone mutating it. ``to_json``/``from_json`` speak exactly the JSON
shapes of DESIGN §3.1/§3.2; nothing else in the package builds those dicts by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "EVENTS",
    "Action",
    "BatchAnswer",
    "Caller",
    "DecideRequest",
    "Decision",
    "DecisionResult",
    "Deferral",
    "Denial",
    "DroppedFact",
    "EngineAnswer",
    "FactProvenance",
    "ImageFacts",
    "ImageRef",
    "PolicyInput",
    "Reason",
    "RegistryFacts",
    "Route",
    "ScanFacts",
    "TenantUsage",
]

Event = Literal["push", "reconcile", "failover", "manual"]
EVENTS: tuple[str, ...] = ("push", "reconcile", "failover", "manual")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where an image lives: registry name (from the inventory), repository, tag and/or digest."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse ``REGISTRY/REPOSITORY[:TAG][@DIGEST]`` where REGISTRY is an inventory name."""
        rest, _, digest = text.partition("@")
        registry, slash, path = rest.partition("/")
        if not slash or not registry or not path:
            raise ValueError(f"{text!r} is not REGISTRY/REPOSITORY[:TAG][@DIGEST]")
        repository, colon, tag = path.rpartition(":")
        if not colon:
            repository, tag = path, ""
        return cls(registry=registry, repository=repository, tag=tag, digest=digest)

    def __str__(self) -> str:
        ref = f"{self.registry}/{self.repository}"
        if self.tag:
            ref += f":{self.tag}"
        if self.digest:
            ref += f"@{self.digest}"
        return ref


@dataclass(frozen=True, slots=True)
class ScanFacts:
    """Security-scan facts about an image (DESIGN §3.1 ``image.scan``)."""

    status: Literal["passed", "failed"]
    completed_at: str
    critical: int = 0
    high: int = 0
    source: Literal["label", "ecr", "attestation"] = "label"

    def to_json(self) -> dict[str, Any]:
        """Return the policy-input JSON object."""
        return {
            "status": self.status,
            "completed_at": self.completed_at,
            "critical": self.critical,
            "high": self.high,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """Everything known about the image being decided (DESIGN §3.1 ``image``)."""

    ref: ImageRef
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    created_at: str | None = None
    size_bytes: int = 0
    platforms: tuple[str, ...] = ()
    scan: ScanFacts | None = None
    tenant: str | None = None
    # Registries holding this digest now at the routed repository:tag (observed by a reconcile;
    # empty when nobody looked). Only the policy turns it into removals (DESIGN §3.4).
    present_at: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the policy-input JSON object."""
        return {
            "registry": self.ref.registry,
            "repository": self.ref.repository,
            "tag": self.ref.tag,
            "digest": self.ref.digest,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "created_at": self.created_at,
            "size_bytes": self.size_bytes,
            "platforms": list(self.platforms),
            "scan": self.scan.to_json() if self.scan else None,
            "tenant": self.tenant,
            "present_at": list(self.present_at),
        }


@dataclass(frozen=True, slots=True)
class RegistryFacts:
    """One registry of the inventory as the policy sees it (DESIGN §3.1 ``registries[]``)."""

    name: str
    region: str
    environment: str
    gdpr: bool = False
    role: Literal["primary", "secondary"] = "primary"
    backs: str | None = None
    healthy: bool = True
    tenants: tuple[str, ...] = ()
    egress_cost_per_gb: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Return the policy-input JSON object."""
        return {
            "name": self.name,
            "region": self.region,
            "environment": self.environment,
            "gdpr": self.gdpr,
            "role": self.role,
            "backs": self.backs,
            "healthy": self.healthy,
            "tenants": list(self.tenants),
            "egress_cost_per_gb": self.egress_cost_per_gb,
        }


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """A tenant's storage usage against its limit (DESIGN §3.1 ``tenant``)."""

    id: str
    storage_used_bytes: int = 0
    storage_limit_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return the policy-input JSON object."""
        return {
            "id": self.id,
            "storage_used_bytes": self.storage_used_bytes,
            "storage_limit_bytes": self.storage_limit_bytes,
        }


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asked for the decision (DESIGN §3.1 ``caller``)."""

    subject: str = "anonymous"
    tenant: str | None = None
    roles: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the policy-input JSON object."""
        return {"subject": self.subject, "tenant": self.tenant, "roles": list(self.roles)}


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """The complete, enriched policy input of DESIGN §3.1."""

    now: str
    event: str
    image: ImageFacts
    registries: tuple[RegistryFacts, ...]
    access: Mapping[str, int] = field(default_factory=dict)
    tenant: TenantUsage | None = None
    caller: Caller = field(default_factory=Caller)

    def to_json(self) -> dict[str, Any]:
        """Return the exact JSON document sent to OPA as ``input``."""
        return {
            "now": self.now,
            "event": self.event,
            "image": self.image.to_json(),
            "registries": [r.to_json() for r in self.registries],
            "access": dict(self.access),
            "tenant": self.tenant.to_json() if self.tenant else None,
            "caller": self.caller.to_json(),
        }


@dataclass(frozen=True, slots=True)
class Route:
    """A destination the image is copied to; rank 1 is copied first."""

    registry: str
    repository: str
    tag: str
    rank: int


@dataclass(frozen=True, slots=True)
class Denial:
    """A registry the policy refused, with every reason code."""

    registry: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Deferral:
    """A registry the policy wants but cannot reach now."""

    registry: str
    reason: str


@dataclass(frozen=True, slots=True)
class Action:
    """A follow-up action the policy asks for (today only ``cleanup``)."""

    type: str
    tenant: str
    keep_last: int
    older_than_days: int


@dataclass(frozen=True, slots=True)
class Reason:
    """A machine-readable reason code with a human message."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy decision of DESIGN §3.2."""

    allow: bool
    priority: int = 0
    routes: tuple[Route, ...] = ()
    denied: tuple[Denial, ...] = ()
    deferred: tuple[Deferral, ...] = ()
    actions: tuple[Action, ...] = ()
    reasons: tuple[Reason, ...] = ()
    policies: tuple[str, ...] = ()
    # Copies to delete (DESIGN §3.4): a subset of ``denied``, each with the codes that remove it.
    remove: tuple[Denial, ...] = ()

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Decision:
        """Build a decision from OPA's JSON result; raises ``KeyError``/``TypeError`` if malformed."""
        return cls(
            allow=bool(doc["allow"]),
            priority=int(doc.get("priority", 0)),
            routes=tuple(
                Route(str(r["registry"]), str(r["repository"]), str(r["tag"]), int(r["rank"]))
                for r in doc.get("routes", [])
            ),
            denied=tuple(
                Denial(str(d["registry"]), tuple(str(c) for c in d["reasons"]))
                for d in doc.get("denied", [])
            ),
            deferred=tuple(
                Deferral(str(d["registry"]), str(d["reason"])) for d in doc.get("deferred", [])
            ),
            actions=tuple(
                Action(
                    str(a["type"]),
                    str(a["tenant"]),
                    int(a["keep_last"]),
                    int(a["older_than_days"]),
                )
                for a in doc.get("actions", [])
            ),
            reasons=tuple(
                Reason(str(r["code"]), str(r.get("message", ""))) for r in doc.get("reasons", [])
            ),
            policies=tuple(str(p) for p in doc.get("policies", [])),
            remove=tuple(
                Denial(str(d["registry"]), tuple(str(c) for c in d["reasons"]))
                for d in doc.get("remove", [])
            ),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the DESIGN §3.2 JSON document."""
        return {
            "allow": self.allow,
            "priority": self.priority,
            "routes": [
                {"registry": r.registry, "repository": r.repository, "tag": r.tag, "rank": r.rank}
                for r in self.routes
            ],
            "denied": [{"registry": d.registry, "reasons": list(d.reasons)} for d in self.denied],
            "deferred": [{"registry": d.registry, "reason": d.reason} for d in self.deferred],
            "actions": [
                {
                    "type": a.type,
                    "tenant": a.tenant,
                    "keep_last": a.keep_last,
                    "older_than_days": a.older_than_days,
                }
                for a in self.actions
            ],
            "remove": [{"registry": d.registry, "reasons": list(d.reasons)} for d in self.remove],
            "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
            "policies": list(self.policies),
        }


@dataclass(frozen=True, slots=True)
class DroppedFact:
    """A fact the request stated that the decision did not use, and why (never its value)."""

    fact: str  # a fact path, e.g. "image.labels.security.scan.status"
    reason: str

    def to_json(self) -> dict[str, str]:
        """Return the Explain JSON object."""
        return {"fact": self.fact, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class FactProvenance:
    """Where each fact of a policy input came from, and which request facts were dropped.

    ``facts`` maps a fact path (``now``, ``image.labels.<key>``, ``image.scan``, ``access.<region>``,
    ``registries.<name>.healthy``, ...) to its origin: ``registry`` (read from the source registry
    or its scanner), ``sidecar`` (the sidecar's clock, probes and records), ``config`` (the
    configuration) or ``request`` (stated by the caller).
    """

    facts: Mapping[str, str] = field(default_factory=dict)
    dropped: tuple[DroppedFact, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the Explain JSON object ({"facts": {...}, "dropped": [...]})."""
        return {
            "facts": dict(sorted(self.facts.items())),
            "dropped": [d.to_json() for d in self.dropped],
        }


@dataclass(frozen=True, slots=True)
class DecisionResult:
    """A decision plus where it came from: ids that flow into logs, traces and the gRPC answer."""

    decision: Decision
    decision_id: str
    bundle_revision: str
    trace_id: str = ""
    degraded: bool = False
    eval_ns: int = 0
    input: PolicyInput | None = None
    decided_at: str = ""
    provenance: FactProvenance | None = None
    # Answered from the decision cache: OPA's earlier answer for the same facts, revision and
    # time band (sidecar/policy/decision_cache.py); still a decision of its own (id, record, log).
    cached: bool = False
    # ``input.to_json()`` as built for the query, so the record does not build it again (issue
    # 18: one copy of the input per decision, not two). Never mutated after the query.
    input_json: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DecideRequest:
    """What a caller asks about: the image plus facts it already knows (validated, not yet enriched).

    ``registry_health`` and ``access`` let a caller that observes health or pull history (the
    replication service, a test, a replay) supply it; enrichment fills what is missing.
    ``now`` pins evaluation time for replays; normally the sidecar's clock is used.
    ``present_at`` names the registries a reconcile found holding the image (DESIGN §3.1).
    """

    image: ImageRef
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    created_at: str | None = None
    size_bytes: int = 0
    platforms: tuple[str, ...] = ()
    event: str = "push"
    caller: Caller = field(default_factory=Caller)
    now: str | None = None
    registry_health: Mapping[str, bool] = field(default_factory=dict)
    access: Mapping[str, int] = field(default_factory=dict)
    tenant_usage: TenantUsage | None = None
    present_at: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineAnswer:
    """A raw answer from a policy engine: the result document and its provenance."""

    result: Mapping[str, Any]
    bundle_revision: str
    eval_ns: int = 0
    engine_decision_id: str = ""


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """Raw decisions of one batch query, in input order, with the revision that made them."""

    results: tuple[Mapping[str, Any], ...]
    bundle_revision: str
    eval_ns: int = 0
