"""Deferred destinations: what a decision wanted but could not reach, kept to be decided again.

The request is stored without ``registry_health`` and ``now``: when the registry recovers, the
image is decided afresh — with the health of that moment — so a replay routes wherever the
policy wants the image *then* (the recovered primary, not its stand-in).
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.model.decision import Caller, DecideRequest, DecisionResult, ImageRef, TenantUsage
from sidecar.model.jobs import DeferredWork

__all__ = [
    "AWAITING_POLICY",
    "deferred_work",
    "policy_deferral",
    "request_from_json",
    "request_to_json",
]

# The "registry" of a request the fail mode answered: one record per image and tag, decided
# again once OPA answers. ``@`` cannot start a registry name.
AWAITING_POLICY = "@policy"


def request_to_json(request: DecideRequest) -> str:
    """Return the facts of ``request`` a later decision needs, as JSON text.

    ``present_at`` is left out: it is an observation of one moment, and a later decision made on
    a stale one could name a copy for removal that is no longer there (or miss a new one).
    """
    image, caller, usage = request.image, request.caller, request.tenant_usage
    doc: dict[str, Any] = {
        "image": {
            "registry": image.registry,
            "repository": image.repository,
            "tag": image.tag,
            "digest": image.digest,
        },
        "labels": dict(request.labels),
        "annotations": dict(request.annotations),
        "created_at": request.created_at,
        "size_bytes": request.size_bytes,
        "platforms": list(request.platforms),
        "event": request.event,
        "caller": {"subject": caller.subject, "tenant": caller.tenant, "roles": list(caller.roles)},
        "access": dict(request.access),
        "tenant_usage": (
            None
            if usage is None
            else {
                "id": usage.id,
                "storage_used_bytes": usage.storage_used_bytes,
                "storage_limit_bytes": usage.storage_limit_bytes,
            }
        ),
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()


def request_from_json(text: str, *, event: str | None = None) -> DecideRequest:
    """Return the request stored by :func:`request_to_json` (``event`` replaces its event)."""
    doc = orjson.loads(text)
    image, caller, usage = doc["image"], doc["caller"], doc.get("tenant_usage")
    return DecideRequest(
        image=ImageRef(image["registry"], image["repository"], image["tag"], image["digest"]),
        labels=dict(doc["labels"]),
        annotations=dict(doc["annotations"]),
        created_at=doc["created_at"],
        size_bytes=int(doc["size_bytes"]),
        platforms=tuple(doc["platforms"]),
        event=event or doc["event"],
        caller=Caller(caller["subject"], caller["tenant"], tuple(caller["roles"])),
        access={str(k): int(v) for k, v in doc["access"].items()},
        tenant_usage=(
            None
            if usage is None
            else TenantUsage(usage["id"], usage["storage_used_bytes"], usage["storage_limit_bytes"])
        ),
    )


def deferred_work(result: DecisionResult, request: DecideRequest) -> list[DeferredWork]:
    """Return one record per deferred destination of an allowing decision (none otherwise)."""
    decision, image = result.decision, request.image
    if not decision.allow or not decision.deferred or not image.digest:
        return []
    stored = request_to_json(request)
    return [
        DeferredWork(
            source_registry=image.registry,
            source_repository=image.repository,
            digest=image.digest,
            registry=deferral.registry,
            tag=image.tag,
            priority=decision.priority,
            decision_id=result.decision_id,
            request=stored,
        )
        for deferral in decision.deferred
    ]


def policy_deferral(result: DecisionResult, request: DecideRequest) -> list[DeferredWork]:
    """Return the record that has a fail-mode answer decided again by OPA (none otherwise).

    A degraded answer is no verdict on the image (``closed`` denies everything, ``legacy``
    knows only the Freightliner rules): the request is kept until OPA decides it.
    """
    image = request.image
    if not result.degraded or not image.digest:
        return []
    return [
        DeferredWork(
            source_registry=image.registry,
            source_repository=image.repository,
            digest=image.digest,
            registry=AWAITING_POLICY,
            tag=image.tag,
            priority=result.decision.priority,
            decision_id=result.decision_id,
            request=request_to_json(request),
        )
    ]
