"""Translation between the gRPC messages of freightliner.policy.v1 and the sidecar's model records.

This is the only place that knows both shapes; it does no validation beyond what the wire format
forces (validation of values lives in the enrichment layer, so the CLI path gets it too).
"""

from __future__ import annotations

import json

from sidecar._proto import policy_pb2 as pb
from sidecar.errors import SidecarError
from sidecar.model.decision import (
    Caller,
    DecideRequest,
    Decision,
    DecisionResult,
    ImageRef,
    TenantUsage,
)
from sidecar.records import DecisionRecord

__all__ = [
    "decide_request_from_proto",
    "decide_response_to_proto",
    "decision_to_proto",
    "error_detail_to_proto",
    "explain_response_to_proto",
]


def decide_request_from_proto(msg: pb.DecideRequest) -> DecideRequest:
    """Return the model request for a gRPC DecideRequest."""
    image = msg.image
    caller = msg.caller
    usage = msg.tenant_usage if msg.HasField("tenant_usage") else None
    return DecideRequest(
        image=ImageRef(
            registry=image.registry,
            repository=image.repository,
            tag=image.tag,
            digest=image.digest,
        ),
        labels=dict(image.labels),
        annotations=dict(image.annotations),
        created_at=image.created_at or None,
        size_bytes=image.size_bytes,
        platforms=tuple(image.platforms),
        event=msg.event or "push",
        caller=Caller(
            subject=caller.subject or "anonymous",
            tenant=caller.tenant or None,
            roles=tuple(caller.roles),
        ),
        now=msg.now or None,
        registry_health=dict(msg.registry_health),
        access=dict(msg.access),
        tenant_usage=(
            TenantUsage(usage.id, usage.storage_used_bytes, usage.storage_limit_bytes)
            if usage is not None and usage.id
            else None
        ),
    )


def decision_to_proto(decision: Decision) -> pb.Decision:
    """Return the gRPC Decision for a model decision."""
    return pb.Decision(
        allow=decision.allow,
        priority=decision.priority,
        routes=[
            pb.Route(registry=r.registry, repository=r.repository, tag=r.tag, rank=r.rank)
            for r in decision.routes
        ],
        denied=[pb.Denial(registry=d.registry, reasons=list(d.reasons)) for d in decision.denied],
        deferred=[pb.Deferral(registry=d.registry, reason=d.reason) for d in decision.deferred],
        actions=[
            pb.Action(
                type=a.type,
                tenant=a.tenant,
                keep_last=a.keep_last,
                older_than_days=a.older_than_days,
            )
            for a in decision.actions
        ],
        reasons=[pb.Reason(code=r.code, message=r.message) for r in decision.reasons],
        policies=list(decision.policies),
    )


def decide_response_to_proto(result: DecisionResult, request_id: str = "") -> pb.DecideResponse:
    """Return the gRPC DecideResponse for a decision result."""
    return pb.DecideResponse(
        decision=decision_to_proto(result.decision),
        decision_id=result.decision_id,
        bundle_revision=result.bundle_revision,
        trace_id=result.trace_id,
        degraded=result.degraded,
        request_id=request_id,
    )


def error_detail_to_proto(error: SidecarError) -> pb.ErrorDetail:
    """Return the in-band error of a DecideStream answer."""
    return pb.ErrorDetail(
        code=error.code.value, message=error.message, field=getattr(error, "field", "")
    )


def explain_response_to_proto(record: DecisionRecord) -> pb.ExplainResponse:
    """Return the gRPC ExplainResponse for a stored (already masked) decision record."""
    return pb.ExplainResponse(
        decision_id=record.decision_id,
        input_json=json.dumps(record.input, sort_keys=True),
        result_json=json.dumps(record.decision.to_json(), sort_keys=True),
        decision=decision_to_proto(record.decision),
        bundle_revision=record.bundle_revision,
        trace_id=record.trace_id,
        degraded=record.degraded,
        decided_at=record.decided_at,
        provenance_json=(
            json.dumps(record.provenance, sort_keys=True) if record.provenance is not None else ""
        ),
    )
